"""Plumbing of ``toylab bench dictionaries`` (experiments/benchmarks/dictionaries.py) at tiny
sizes: the rows it prints, its JSON, the torch loop when torch is installed, and bad arguments
answered with one line and exit code 2 before anything is computed."""

import json

import pytest

from toylab.experiments.benchmarks import dictionaries as bench

TINY = ["--saes", "2", "--steps", "2", "--batch", "32"]


@pytest.mark.end_to_end
def test_bench_dictionaries_plumbing(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main([*TINY, "--no-torch", "--json", str(out)], prog="toylab bench dictionaries") == 0
    printed = capsys.readouterr().out
    assert "2 ReLU + L1 SAEs, 64 → 256 latents, batch 32" in printed
    rows = [line for line in printed.splitlines() if line.strip().startswith("jax ")]
    # the runner's block choice (on CPU, a scan over blocks) and one vmap over all
    assert len(rows) == 2 and "runner's choice" in rows[0] and "one vmap over all" in rows[1]
    assert all("SAE-steps/s" in r and "GFLOP/s in the products" in r for r in rows)
    data = json.loads(out.read_text())
    assert [pt["models"] for pt in data["jax"]] == [2, 2] and data["jax"][1]["block_size"] is None
    for pt in data["jax"]:  # the rate printed is the work timed over the time it took
        assert pt["steps"] == 2 and pt["seconds"] > 0
        assert pt["model_steps_per_s"] == pytest.approx(pt["models"] * pt["steps"] / pt["seconds"])
    assert data["torch"] == {}


@pytest.mark.end_to_end
def test_bench_dictionaries_torch_loop_and_ceiling(capsys):
    pytest.importorskip("torch")
    assert bench.main([*TINY, "--block-size", "none", "--torch-saes", "1", "--torch-threads", "1"]) == 0
    printed = capsys.readouterr().out
    assert "torch saes=1    one at a time, 1 thread:" in printed
    assert "ceiling: XLA's matrix product here runs at" in printed
    ratio = [line for line in printed.splitlines() if line.startswith("jax sweep (block None) / best torch loop: ")]
    assert len(ratio) == 1 and ratio[0].endswith("(goal on this CPU: 5x)")


def test_sae_step_flops_counts_five_products():
    cfg = bench._config(batch=8, steps=1)
    assert bench.sae_step_flops(cfg) == 5 * 2 * 8 * 64 * 256
    assert cfg.data_seed == 0  # every SAE of the sweep reads one stream, as the docstring says


@pytest.mark.parametrize("argv, says", [
    (["--saes", "0"], "argument --saes: invalid value '0'"),
    (["--batch", "x"], "argument --batch: invalid value 'x'"),
    (["--block-size", "-1"], "argument --block-size: invalid value '-1'"),
    (["--torch-threads", "1,0"], "argument --torch-threads: invalid value '1,0'"),
    (["--json", "/nonexistent-folder/b.json"], "argument --json: invalid value '/nonexistent-folder/b.json'"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_bench_dictionaries_bad_arguments(capsys, argv, says):
    assert bench.main(argv, prog="toylab bench dictionaries") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("toylab bench dictionaries: error: ")
    assert says in captured.err
