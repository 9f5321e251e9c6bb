"""`toylab reproduce --jobs N`: reproductions as child processes side by side, each one's output
in OUT/logs/NAME.log, claims.json in the usual order whatever finishes first, a failed child as
one line and a failed claim; and the per-set timing table (printed, and OUT/timings.json)."""

from __future__ import annotations

import json
import sys

import numpy as np
import pytest

import toylab.experiments as experiments
from toylab.cli import main

FAKE = '''"""A reproduction added as one file, {name}."""
import time
from pathlib import Path

from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import FigureSet, run_figures


def train(quick, quiet, work, shared):
    print("training {name}", flush=True)
    if {crash!r}:
        raise RuntimeError("{name} broke on purpose")
    t0 = time.time()
    time.sleep({sleep})
    return (t0, time.time())


def analyse(trained, quick):
    return {{"span": trained}}


def draw(measured, out, quick):
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "{name}.txt").write_text(" ".join(map(str, measured["span"])))


def claims(measured, quick):
    return [Claim("{name} (a)", "it slept", "yes", "yes", True), Claim("{name} (a)", "it woke", "yes", "yes", True)]


FIGURES = {{"a": FigureSet(train, analyse, draw, claims)}}


def reproduce(out, quick=True, quiet=False, only=None, work=None):
    return run_figures(FIGURES, out, quick, quiet, only, work)
'''


def _add(tmp_path, monkeypatch, name, sleep=0.0, crash=False):
    """A reproduction module ``name`` in a folder added to the reproductions' package path
    (the children are handed the same path)."""
    from toylab.experiments import reproductions

    folder = tmp_path / "more_reproductions_jobs"
    folder.mkdir(exist_ok=True)
    (folder / f"{name}.py").write_text(FAKE.format(name=name, sleep=sleep, crash=crash))
    if str(folder) not in reproductions.__path__:
        lab = [p for p in reproductions.__path__ if "more_reproductions_" not in p]
        monkeypatch.setattr(reproductions, "__path__", [*lab, str(folder)])
    sys.modules.pop(f"toylab.experiments.reproductions.{name}", None)
    monkeypatch.setattr(reproductions, name, None, raising=False)
    assert name in experiments.REPRODUCTIONS


@pytest.mark.slow
def test_jobs_runs_children_side_by_side_and_keeps_the_claims_in_order(tmp_path, monkeypatch, capsys):
    # zjobs_b is the longer by its last timing, so it starts first; claims.json still lists zjobs_a first
    _add(tmp_path, monkeypatch, "zjobs_a", sleep=3)
    _add(tmp_path, monkeypatch, "zjobs_b", sleep=3)
    out = tmp_path / "out"
    out.mkdir()
    (out / "timings.json").write_text(json.dumps({"reproductions": {
        "zjobs_a": {"quick": True, "wall_s": 1.0}, "zjobs_b": {"quick": True, "wall_s": 9.0}}}))
    assert main(["reproduce", "zjobs_a", "zjobs_b", "--quick", "--quiet", "--jobs", "2", "--out", str(out)]) == 0
    console = capsys.readouterr().out
    lines = console.splitlines()
    starts = [line.split()[1] for line in lines if line.startswith("started")]
    assert starts == ["zjobs_b", "zjobs_a"]  # longest first
    assert sum(line.startswith("finished") and "2 of 2 claims hold" in line for line in lines) == 2
    assert "training" not in console  # the children's output is in their logs
    for name in ("zjobs_a", "zjobs_b"):
        assert f"training {name}" in (out / "logs" / f"{name}.log").read_text()
    assert not list((out / "logs").glob("*.result.json"))
    # side by side: the two sleeps overlap
    (a0, a1), (b0, b1) = (map(float, (out / f"{n}.txt").read_text().split()) for n in ("zjobs_a", "zjobs_b"))
    assert a0 < b1 and b0 < a1
    record = json.loads((out / "claims.json").read_text())
    assert [c["reproduction"] for c in record["claims"]] == ["zjobs_a (a)"] * 2 + ["zjobs_b (a)"] * 2
    assert "4 of 4 claims checked against the papers hold" in console
    # the timing table, printed and written
    assert "seconds of wall time per figure set" in console
    assert any(line.startswith("zjobs_a") and "| a " in line for line in lines)
    timings = json.loads((out / "timings.json").read_text())
    assert timings["last_run"]["jobs"] == 2
    for name in ("zjobs_a", "zjobs_b"):
        entry = timings["reproductions"][name]
        assert entry["quick"] is True and entry["peak_rss_bytes"] > 0
        (row,) = entry["sets"]
        assert row["set"] == "a" and row["train"] >= 2.5 and row["total"] >= row["train"]
        assert row["compile"] >= 0 and entry["wall_s"] >= row["total"]


@pytest.mark.slow
def test_a_child_that_crashes_is_one_line_and_a_failed_claim(tmp_path, monkeypatch, capsys):
    _add(tmp_path, monkeypatch, "zjobs_ok")
    _add(tmp_path, monkeypatch, "zjobs_crash", crash=True)
    out = tmp_path / "out"
    assert main(["reproduce", "zjobs_ok", "zjobs_crash", "--quick", "--quiet", "--jobs", "2", "--out", str(out)]) == 1
    captured = capsys.readouterr()
    failed = [line for line in captured.out.splitlines() if line.startswith("FAILED ")]
    log = out / "logs" / "zjobs_crash.log"
    assert len(failed) == 1 and "zjobs_crash" in failed[0] and "exit code 1" in failed[0] and str(log) in failed[0]
    assert "Traceback" not in captured.out + captured.err
    assert "broke on purpose" in log.read_text()
    assert captured.out.splitlines()[-1].startswith("FAILED: zjobs_crash: the reproduction runs to the end")
    record = json.loads((out / "claims.json").read_text())
    assert [(c["reproduction"], c["passed"]) for c in record["claims"]] == [
        ("zjobs_ok (a)", True), ("zjobs_ok (a)", True), ("zjobs_crash", False)]


def test_jobs_one_runs_in_this_process_with_the_timing_table(tmp_path, monkeypatch, capsys):
    _add(tmp_path, monkeypatch, "zjobs_here")
    out = tmp_path / "out"
    assert main(["reproduce", "zjobs_here", "--quick", "--quiet", "--jobs", "1", "--out", str(out)]) == 0
    console = capsys.readouterr().out
    assert "training zjobs_here" in console and not (out / "logs").exists()
    assert "seconds of wall time per figure set" in console
    timings = json.loads((out / "timings.json").read_text())
    assert [r["set"] for r in timings["reproductions"]["zjobs_here"]["sets"]] == ["a"]
    assert json.loads((out / "claims.json").read_text())["claims"][0]["reproduction"] == "zjobs_here (a)"


@pytest.mark.parametrize("value", ["0", "x", "-2", "1.5"])
def test_jobs_must_be_a_positive_integer(tmp_path, value, capsys):
    out = tmp_path / "out"
    assert main(["reproduce", "superposition", "--quick", "--jobs", value, "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--jobs" in err[0] and "positive integer" in err[0]
    assert not out.exists()  # refused before anything is written


def test_default_jobs_fit_cores_and_memory(monkeypatch):
    from toylab.experiments.reproductions import _jobs

    monkeypatch.setattr(_jobs, "cores_available", lambda: 8)
    monkeypatch.setattr(_jobs, "available_memory_bytes", lambda: 14e9)
    assert _jobs.default_jobs(7, {})[0] == 2  # 14 GB / 6.5 GB each
    assert _jobs.default_jobs(9, {"x": {"peak_rss_bytes": 1e9}})[0] == 8
    assert _jobs.default_jobs(3, {"x": {"peak_rss_bytes": 1e9}})[0] == 3
    assert _jobs.default_jobs(7, {"x": {"peak_rss_bytes": 20e9}})[0] == 1
    costs = _jobs.expected_costs(["bilinear", "grokking", "new"], True, {"bilinear": {"quick": True, "wall_s": 999}})
    assert sorted(costs, key=lambda n: -costs[n]) == ["bilinear", "grokking", "new"]


def test_start_order_plans_the_schedule_that_ends_first():
    from toylab.experiments.reproductions import _jobs

    costs = {"a": 3.0, "b": 3.0, "c": 2.0, "d": 2.0, "e": 2.0}
    longest = ["a", "b", "c", "d", "e"]
    assert _jobs.makespan(longest, costs, 2) == 7.0  # a|b, then c, d on one slot and e waits
    order = _jobs.start_order(list(costs), costs, 2, first=())
    assert _jobs.makespan(order, costs, 2) == 6.0  # {a, b} on one slot, {c, d, e} on the other
    assert sorted(order) == longest
    # the names that must start at once do, and the plan is no worse than longest first when it can be
    order = _jobs.start_order(list(costs), costs, 2, first=("e",))
    assert "e" in order[:2] and _jobs.makespan(order, costs, 2) == 6.0
    # one slot, or no more names than slots: longest first (those in `first` ahead)
    assert _jobs.start_order(list(costs), costs, 1, first=("e",)) == ["e", "a", "b", "c", "d"]
    assert _jobs.start_order(["c", "a"], costs, 2, first=()) == ["a", "c"]
    # the built-in quick costs: grokking (which trains the shared seed-0 transformer) starts at once,
    # and the plan ends no later than longest first
    built = dict(_jobs.BUILTIN_SECONDS)
    order = _jobs.start_order(list(built), built, 2)
    assert "grokking" in order[:2]
    assert _jobs.makespan(order, built, 2) < _jobs.makespan(sorted(built, key=lambda n: -built[n]), built, 2)


def test_run_figures_records_each_phase_and_the_shared_preparation(tmp_path):
    import time

    import jax
    import jax.numpy as jnp

    from toylab.experiments.reproductions._common import FigureSet, format_timings, record_timings, run_figures

    def nap(seconds, value=None):
        time.sleep(seconds)
        return value

    compiled = jax.jit(lambda x: jnp.tanh(x) * 3.0 + x.sum())  # compiled inside (a)'s train

    def train_a(quick, quiet, work, shared):
        return compiled(jnp.ones((7, 5)) * shared)

    a = FigureSet(train_a, lambda t, q: nap(0.2, {"t": t}), lambda m, o, q: nap(0.1), lambda m, q: nap(0, ["a"]))
    b = FigureSet(lambda *args: None, lambda t, q: {}, lambda m, o, q: None, lambda m, q: ["b", "c"])
    with record_timings() as rows:
        claims = run_figures({"a": a, "b": b}, tmp_path, True, True, None, prepare=lambda q, qu, w: nap(0.1, 2.0))
    assert claims == ["a", "b", "c"]
    assert [r["set"] for r in rows] == ["prepare", "a", "b"]
    prep, row_a, _ = rows
    assert prep["train"] >= 0.1 and prep["total"] == pytest.approx(prep["train"], abs=1e-3)
    assert row_a["train_compile"] > 0 and row_a["train"] >= row_a["train_compile"]
    assert row_a["analyse"] >= 0.2 and row_a["figures"] >= 0.1 and row_a["analyse_compile"] < 0.2
    assert row_a["total"] >= row_a["train"] + row_a["analyse"] + row_a["figures"] - 1e-3
    table = format_timings({"toy": {"wall_s": 9.0, "sets": rows}}, wall=9.5, jobs=1)
    assert [line.split("|")[1].strip() for line in table.splitlines()[3:7]] == ["prepare", "a", "b", "all"]
    assert table.splitlines()[6].split("|")[-1].strip() == "9.0"
    # outside record_timings nothing is recorded and the sets run as before
    assert run_figures({"a": a}, tmp_path, True, True, "a", prepare=lambda q, qu, w: 1.0) == ["a"]


SHARING = '''"""A reproduction that asks for the sweep another one asks for, by the same name."""
from pathlib import Path

from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import FigureSet, run_figures, shared_sweep


def train(quick, quiet, work, shared):
    res = shared_sweep("tiny-toy", "superposition", {{"n_features": 5, "n_hidden": 2, "steps": 3000,
                                                     "log_every": 1000}}, seeds=2, quiet=True, work=work)
    print("instance-steps trained", res.work["trained"], "finished before", res.work["finished"], flush=True)
    return [float(res[i].model.W.sum()) for i in range(2)]


def analyse(trained, quick):
    return {{"w": trained}}


def draw(measured, out, quick):
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "{name}.txt").write_text(repr(measured["w"]))


def claims(measured, quick):
    return [Claim("{name} (a)", "it read the toy", "yes", "yes", True)]


FIGURES = {{"a": FigureSet(train, analyse, draw, claims)}}


def reproduce(out, quick=True, quiet=False, only=None, work=None):
    return run_figures(FIGURES, out, quick, quiet, only, work)
'''


@pytest.mark.slow
def test_a_sweep_two_children_ask_for_is_trained_once(tmp_path, monkeypatch):
    """Two reproductions side by side ask for one sweep by name: the first trains it, the other
    waits on its lock and reads it (no instance-step trained twice); the same numbers reach
    both; the shared folder is gone at the end."""
    import os

    from toylab.experiments import reproductions
    from toylab.experiments.reproductions._common import SHARED_ENV

    folder = tmp_path / "more_reproductions_sharing"
    folder.mkdir()
    for name in ("zshare_a", "zshare_b"):
        (folder / f"{name}.py").write_text(SHARING.format(name=name))
        sys.modules.pop(f"toylab.experiments.reproductions.{name}", None)
        monkeypatch.setattr(reproductions, name, None, raising=False)
    lab = [p for p in reproductions.__path__ if "more_reproductions_" not in p]
    monkeypatch.setattr(reproductions, "__path__", [*lab, str(folder)])
    out = tmp_path / "out"
    assert main(["reproduce", "zshare_a", "zshare_b", "--quick", "--quiet", "--jobs", "2", "--out", str(out)]) == 0
    trained = []
    for name in ("zshare_a", "zshare_b"):
        line = next(x for x in (out / "logs" / f"{name}.log").read_text().splitlines() if x.startswith("instance-steps"))
        trained.append((int(line.split()[2]), int(line.split()[-1])))
    assert sorted(trained) == [(0, 6000), (6000, 0)]  # 2 seeds × 3000 steps, trained by one of them
    assert (out / "zshare_a.txt").read_text() == (out / "zshare_b.txt").read_text()
    assert SHARED_ENV not in os.environ


@pytest.mark.slow
def test_shared_sweep_in_one_process_and_alone(tmp_path):
    """Inside shared_sweeps the second ask reads the first's sweep; with ``work`` the sweep is
    kept there; alone (neither) it is trained each time, in a temporary folder."""
    import os

    from toylab.experiments.reproductions._common import SHARED_ENV, shared_sweep, shared_sweeps

    cfg = {"n_features": 4, "n_hidden": 2, "steps": 200, "log_every": 100}
    with shared_sweeps() as folder:
        assert os.environ[SHARED_ENV] == str(folder)
        first = shared_sweep("toy", "superposition", cfg, quiet=True)
        again = shared_sweep("toy", "superposition", cfg, quiet=True)
        assert first.work["trained"] == 200 and again.work["trained"] == 0 and again.work["finished"] == 200
        assert np.array_equal(np.asarray(first[0].model.W), np.asarray(again[0].model.W))
        assert (folder / "toy" / "manifest.json").exists()
    assert not folder.exists() and SHARED_ENV not in os.environ
    kept = shared_sweep("toy", "superposition", cfg, quiet=True, work=tmp_path / "work")
    assert kept.root == tmp_path / "work" / "toy" and kept.work["trained"] == 200
    assert shared_sweep("toy", "superposition", cfg, quiet=True).work["trained"] == 200


@pytest.mark.slow
def test_a_child_sizes_its_thread_pool_then_runs_on_every_core():
    """size_thread_pool(1) in a fresh process: JAX's CPU client starts with a smaller pool
    (fewer threads than a process left alone), then every thread of the process may run on
    every core again, and JAX computes."""
    import os
    import subprocess

    if not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("needs two cores to give a child a share of")
    code = ("import os, sys\nfrom toylab.experiments.reproductions._jobs import size_thread_pool\n"
            "before = os.sched_getaffinity(0)\nif sys.argv[1] == 'sized':\n    size_thread_pool(1)\n"
            "import jax, jax.numpy as jnp\nx = float(jnp.arange(4.0).sum())\n"
            "tasks = [int(t) for t in os.listdir('/proc/self/task')]\n"
            "assert all(os.sched_getaffinity(t) == before for t in tasks), 'a thread kept the one-core mask'\n"
            "print('sum', x, 'threads', len(tasks))\n")
    threads = {}
    for mode in ("sized", "alone"):
        out = subprocess.run([sys.executable, "-c", code, mode], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        assert "sum 6.0" in out.stdout
        threads[mode] = int(out.stdout.split()[-1])
    assert threads["sized"] < threads["alone"]


@pytest.mark.parametrize("name", ["", "a/b", "..", 3])
def test_shared_sweep_refuses_a_name_that_is_not_a_folder_name(name):
    from toylab.core.config import ConfigError
    from toylab.experiments.reproductions._common import shared_sweep

    with pytest.raises(ConfigError, match="name"):
        shared_sweep(name, "superposition", {"steps": 20, "log_every": 10}, quiet=True)
