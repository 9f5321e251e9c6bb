"""Plumbing of ``toylab bench interaction`` (experiments/benchmarks/interaction.py): a tiny
transformer through every timed part, the rows and the verdict it prints, its JSON, and bad
arguments answered with one line and exit code 2 before anything is computed."""

import json

import pytest

from toylab.experiments.benchmarks import interaction as bench

TINY = ["--p", "5", "--d-model", "8", "--n-heads", "2", "--d-mlp", "8", "--n-alpha", "1", "--repeats", "1"]


@pytest.mark.end_to_end
@pytest.mark.slow
def test_bench_interaction_plumbing(tmp_path, capsys):
    out = tmp_path / "b.json"
    assert bench.main([*TINY, "--models", "1,2", "--json", str(out)], prog="toylab bench interaction") == 0
    printed = capsys.readouterr().out
    assert "RANDOM weights" in printed and "7 training pairs" in printed  # ⌊0.3 · 5²⌋ = 7
    assert "resid_pre.0 (24), resid_mid.0 (8), resid_post.0 (8), logits (5)" in printed
    table = printed.split("\npart ")[1]  # the table after the progress lines
    for label in ("activations (all node layers)", "interaction_basis (whole)",
                  "Jacobian Gram resid_pre.0 → resid_mid.0 (24→8)", "Jacobian Gram resid_mid.0 → resid_post.0 (8→8)",
                  "Jacobian Gram resid_post.0 → logits (8→5)", "Jacobian Grams, all sections (sum)",
                  "Grams + eigendecompositions + rotations (float64)", "pca_basis (whole)",
                  "interaction_graph (whole, 1 node)", "basis + graph, 1 model", "basis + graph, 2 models vmapped"):
        assert label in table, label
    assert "× one model's time, per model" in table and "% of interaction_basis" in table
    verdict = [line for line in printed.splitlines() if line.startswith("verdict: ")]
    assert len(verdict) == 1 and " dominate" in verdict[0] and "2 models vmapped" in verdict[0]
    data = json.loads(out.read_text())
    assert data["examples"] == 7 and data["n_alpha"] == 1 and data["weights"] == "random (init)"
    rows = {r["key"]: r for r in data["rows"]}
    assert set(rows) == {"activations", "basis", "jacobian.0", "jacobian.1", "jacobian.2", "jacobians", "eigh", "pca",
                         "graph", "models.1", "models.2"}
    assert all(r["seconds"] > 0 and r["compile_s"] > 0 for r in data["rows"])
    assert rows["jacobians"]["seconds"] == pytest.approx(sum(rows[f"jacobian.{i}"]["seconds"] for i in range(3)))
    assert rows["models.2"]["seconds_per_model"] == pytest.approx(rows["models.2"]["seconds"] / 2)
    assert rows["models.2"]["per_model_vs_one"] == pytest.approx(rows["models.2"]["seconds_per_model"]
                                                                 / rows["models.1"]["seconds"])


@pytest.mark.slow
def test_bench_interaction_parts(capsys):
    # only some parts: only their rows; the eigendecompositions alone still get their Jacobian Grams (untimed)
    assert bench.main([*TINY, "--parts", "eigh"]) == 0
    printed = capsys.readouterr().out
    table = printed.split("\npart ")[1]
    assert "Grams + eigendecompositions + rotations (float64)" in table
    assert "Jacobian Gram" not in table and "interaction_graph" not in table and "basis + graph" not in table
    assert "verdict: only the Grams + eigendecompositions among Jacobians, eigendecompositions and activations timed" \
        in printed


@pytest.mark.parametrize("argv, says", [
    (["--models", "0"], "argument --models: invalid value '0'"),
    (["--models", "1,x"], "argument --models: invalid value '1,x'"),
    (["--p", "1"], "argument --p: invalid value '1'"),
    (["--train-fraction", "0"], "argument --train-fraction: invalid value '0'"),
    (["--n-alpha", "65"], "argument --n-alpha: invalid value '65'"),
    (["--batch-size", "-3"], "argument --batch-size: invalid value '-3'"),
    (["--parts", "graph,nope"], "argument --parts: invalid value 'graph,nope'"),
    (["--d-model", "10", "--n-heads", "4"], "argument --n-heads: invalid value 4: must divide --d-model=10"),
    (["--truncation", "1"], "argument --truncation: invalid value '1': must be a number in [0, 1)"),
    (["--p", "3", "--train-fraction", "0.1"], "argument --train-fraction: invalid value 0.1: keeps 1 of the 3² pairs"),
    (["--nope"], "unrecognized arguments: --nope"),
    (["--json", "/nonexistent-folder/b.json"], "argument --json: invalid value '/nonexistent-folder/b.json'"),
])
def test_bench_interaction_bad_arguments(capsys, argv, says):
    assert bench.main(argv, prog="toylab bench interaction") == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith("toylab bench interaction: error: ")
    assert says in captured.err


def test_bench_interaction_registered(capsys):
    from toylab.cli import main
    from toylab.experiments import BENCHMARKS

    assert BENCHMARKS["interaction"] == "toylab.experiments.benchmarks.interaction"
    assert main(["bench", "interaction", "--models", "0"]) == 2  # through the CLI: the same one line
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("toylab bench interaction: error: argument --models")


def test_bench_interaction_watchdog():
    # a program that burns CPU is slow, not stalled; one that uses none for --stall seconds is a deadlock
    import threading

    now, cpu, fired = [0.0], [0.0], []
    done = threading.Event()

    def on_stall(label, idle):
        fired.append((label, idle))
        done.set()
    dog = bench.Watchdog(5.0, on_stall, poll_s=0.01, clock=lambda: now[0], cpu_clock=lambda: cpu[0])
    try:
        with dog.watching("busy"):
            for _ in range(20):  # 20 s of wall time, CPU advancing all along
                now[0] += 1.0
                cpu[0] += 0.5
                threading.Event().wait(0.02)
        now[0] += 100.0  # nothing watched: no alarm however long
        threading.Event().wait(0.05)
        assert not fired
        with dog.watching("stuck"):
            now[0] += 6.0
            assert done.wait(5.0)
        assert fired[0][0] == "stuck" and fired[0][1] >= 5.0
    finally:
        dog.close()
