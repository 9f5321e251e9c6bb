"""Plumbing of ``toylab bench layout`` (experiments/benchmarks/layout.py) at tiny sizes: the
table it prints, its JSON, the FAIL line and exit code 1 when a default is slower than both
blocks of 1 and one vmap, and bad arguments answered with one line and exit code 2."""

import json

import pytest

from toylab.experiments.benchmarks import layout as bench


@pytest.mark.end_to_end
def test_bench_layout_tiny_prints_the_table(tmp_path, capsys):
    out = tmp_path / "layout.json"
    argv = ["--tiny", "--families", "superposition", "--sizes", "2", "--repeats", "1", "--json", str(out)]
    assert bench.main(argv, prog="toylab bench layout") == 0
    printed = capsys.readouterr().out
    assert "superposition: tiny config, 5 steps; default block " in printed
    assert "blocks of 1" in printed and "one vmap" in printed and "default/best" in printed
    assert printed.rstrip().endswith("1 of 1 defaults at least as fast as blocks of 1 or one vmap")
    row, = json.loads(out.read_text())["rows"]
    assert row["family"] == "superposition" and row["instances"] == 2 and row["steps"] == 5
    for name in ("blocks_of_1", "one_vmap", "default"):
        assert row[name] > 0
    # a tiny instance's default block covers both: the same program as one vmap, timed once
    assert row["block_size"] >= 2 and row["default_is"] == "vmap" and row["default"] == row["one_vmap"]
    assert row["slower_than_both"] is False


def test_a_default_slower_than_both_fails(monkeypatch, capsys):
    monkeypatch.setattr(bench, "default_block", lambda family, cfg: (4, 0.1))

    def measure(family, cfg, n, repeats, block):
        return {"family": family, "instances": n, "steps": cfg.steps, "block_size": block, "default_is": None,
                "blocks_of_1": 100.0, "one_vmap": 120.0, "default": 90.0 if n == 8 else 99.0}

    monkeypatch.setattr(bench, "measure", measure)
    assert bench.main(["--tiny", "--families", "groups", "--sizes", "8,16"]) == 1
    printed = capsys.readouterr().out
    fails = [line for line in printed.splitlines() if line.startswith("FAIL: ")]
    # 90 < 0.95 * 100 fails; 99 is within the 5% tolerance of the slower of the two
    assert fails == ["FAIL: groups at 8 instances: the default (block 4) runs 90.0 instance-steps/s, slower than "
                     "blocks of 1 (100.0) and one vmap (120.0)"]
    assert printed.rstrip().endswith("1 of 2 defaults at least as fast as blocks of 1 or one vmap; 1 FAIL")
    assert bench.main(["--tiny", "--families", "groups", "--sizes", "16", "--tolerance", "0"]) == 1


def test_slower_than_both():
    row = {"blocks_of_1": 10.0, "one_vmap": 20.0}
    assert bench.slower_than_both({**row, "default": 9.0}, 0.0)
    assert not bench.slower_than_both({**row, "default": 10.0}, 0.0)  # as fast as one of them
    assert not bench.slower_than_both({**row, "default": 9.6}, 0.05)


def test_every_family_has_a_setting():
    from toylab.core.family import family_names

    assert set(bench.CASES) == set(family_names())
    for family in bench.CASES:
        for tiny in (True, False):
            cfg = bench._config(family, tiny, None)
            assert cfg.steps == cfg.log_every
        assert bench._config(family, True, 7).steps == 7
    sae = bench._config("dictionaries", False, None)  # the sweep: 64 -> 256, batch 4096, one stream
    assert (sae.kind, sae.dim, sae.n_latents, sae.batch_size, sae.data_seed) == ("relu", 64, 256, 4096, 0)


@pytest.mark.parametrize("argv, says", [
    (["--families", "nope"], "argument --families: invalid value 'nope'"),
    (["--families", ""], "argument --families: invalid value ''"),
    (["--sizes", "8,0"], "argument --sizes: invalid value '8,0'"),
    (["--steps", "0"], "argument --steps: invalid value '0'"),
    (["--repeats", "x"], "argument --repeats: invalid value 'x'"),
    (["--tolerance", "1"], "argument --tolerance: invalid value '1'"),
    (["--json", "/nonexistent-folder/l.json"], "argument --json: invalid value '/nonexistent-folder/l.json'"),
    (["--nope"], "unrecognized arguments: --nope"),
])
def test_bench_layout_bad_arguments(capsys, argv, says):
    assert bench.main(argv, prog="toylab bench layout") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("toylab bench layout: error: ")
    assert says in captured.err
