"""``toylab bench accelerator`` (experiments/benchmarks/accelerator.py): the whole check at
``--tiny`` on CPU (every row measured, its JSON record and table), the prediction column with a
stand-in plan and without one, the default record name, and bad options answered with one line
and exit code 2 before anything is computed."""

import json
import types

import pytest

from toylab.experiments.benchmarks import accelerator as bench
from toylab.experiments.benchmarks._common import Budget, is_out_of_memory

PROG = "toylab bench accelerator"


@pytest.fixture(scope="module")
def tiny_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("accelerator") / "record.json"
    capture = pytest.MonkeyPatch()
    printed = []
    capture.setattr("builtins.print", lambda *a, **k: printed.append(" ".join(map(str, a))))
    try:
        code = bench.main(["--tiny", "--json", str(out)], prog=PROG)
    finally:
        capture.undo()
    return code, "\n".join(printed), json.loads(out.read_text())


@pytest.mark.slow
@pytest.mark.end_to_end
def test_tiny_check_records_every_row(tiny_run):
    code, printed, record = tiny_run
    assert code == 0, printed
    assert record["tiny"] is True and record["rows_run"] == list(bench.ROWS)
    assert record["device"]["platform"] == "cpu" and record["device"]["count"] >= 1
    assert record["device"]["memory_bytes"] > 0
    assert record["versions"]["jax"] and record["versions"]["toylab"]
    assert record["plan"]["used"] is False and record["plan"]["note"] == "plan: off at --tiny"
    assert set(record["seconds"]) == set(bench.ROWS)
    rows = record["rows"]
    assert {r["row"] for r in rows} == set(bench.ROWS)
    for r in rows:
        assert set(r) >= {"figure", "measured", "unit", "criterion", "verdict", "predicted"}
        assert r["verdict"] != "error", r
    measured = [r for r in rows if r["criterion"] == "record" and r["row"] != "memory"]
    # every figure measured at --tiny (a number > 0), none skipped for its budget
    assert all(isinstance(r["measured"], float) and r["measured"] > 0 for r in measured), measured
    judged = [r for r in rows if r["criterion"] not in ("record", "sanity")]
    assert judged and all(r["verdict"] == "not judged at --tiny" for r in judged)
    assert all(r["verdict"] == "PASS" for r in rows if r["criterion"] == "sanity")
    by = {r["figure"]: r for r in rows}
    ratio = by["superposition: 8 / 1 instance throughput"]
    one, eight = by["superposition n=20 m=5: 1 instance"], by["superposition n=20 m=5: 8 instances"]
    assert ratio["measured"] == pytest.approx(eight["measured"] / one["measured"])
    projected = by["grokking p=13: 2 seeds x 40000 steps, projected"]
    two = by["grokking p=13: 2 seeds"]
    assert projected["measured"] == pytest.approx(2 * 40_000 / two["measured"] + two["compile_s"])
    assert by["memory: largest superposition ensemble that fits"]["measured"] == 128  # the cap at --tiny
    assert by["matching: scipy = JAX"]["measured"] == "yes"
    # the table: one line per row, in order, with the verdicts
    table = printed[printed.index("figure "):].splitlines()
    assert [c.strip() for c in table[0].split(" | ")] == ["figure", "measured", "criterion", "verdict", "predicted"]
    assert [line.split(" | ")[0].strip() for line in table[2:2 + len(rows)]] == [r["figure"] for r in rows]
    assert "no FAIL" in printed


class _StubPlan:
    """toylab.core.plan's surface, answering without compiling."""

    def __init__(self):
        self.calls = []

    def current_target(self):
        return "cpu"

    def plan_sweep(self, family, base=None, grid=None, *, seeds=1, targets=()):
        self.calls.append((family, seeds, tuple(targets)))
        t = types.SimpleNamespace(predicted_seconds=12.0, fits=True, max_runs=100, steps_per_second=1234.0)
        return types.SimpleNamespace(targets={name: t for name in targets})


@pytest.mark.slow
def test_prediction_column_from_the_plan_and_without_it(tmp_path, monkeypatch, capsys):
    stub = _StubPlan()
    monkeypatch.setattr(bench, "_plan_module", lambda: stub)
    out = tmp_path / "a.json"
    assert bench.main(["--tiny", "--plan", "--only", "memory", "--json", str(out)], prog=PROG) == 0
    record = json.loads(out.read_text())
    row = record["rows"][0]
    assert stub.calls == [("superposition", 1, ("cpu",))]
    assert row["predicted"] == "100 instances" and row["predicted_value"] == 100
    assert row["criterion"].startswith("plan's max_runs") and row["verdict"] == "not judged at --tiny"
    assert record["plan"] == {"used": True, "target": "cpu", "note": None, "seconds": pytest.approx(
        record["plan"]["seconds"])}
    monkeypatch.setattr(bench, "_plan_module", lambda: None)  # toylab.core.plan missing
    assert bench.main(["--tiny", "--plan", "--only", "memory", "--json", str(out)], prog=PROG) == 0
    row = json.loads(out.read_text())["rows"][0]
    assert row["predicted"] == "plan: unavailable" and row["verdict"] == "record"
    assert "plan: unavailable" in capsys.readouterr().out


def test_default_record_name_names_the_device_and_date():
    import datetime

    day = datetime.date(2026, 12, 7)
    assert bench.default_json_name("NVIDIA H100 80GB HBM3", day) == "accelerator-nvidia-h100-80gb-hbm3-2026-12-07.json"
    assert bench.default_json_name("cpu", day) == "accelerator-cpu-2026-12-07.json"


def test_budget_and_out_of_memory_helpers():
    now = [0.0]
    b = Budget(10, clock=lambda: now[0])
    assert b.allows() and b.allows(9.5) and not b.allows(10.5)
    now[0] = 11.0
    assert b.left() == -1.0 and b.spent() == 11.0 and not b.allows()
    assert is_out_of_memory(RuntimeError("RESOURCE_EXHAUSTED: Out of memory while trying to allocate 8.0GiB"))
    assert is_out_of_memory(MemoryError())
    assert not is_out_of_memory(ValueError("shapes do not match"))


@pytest.mark.parametrize("argv, says", [
    (["--only", "nope"], "argument --only: invalid value 'nope'"),
    (["--only", ""], "argument --only: invalid value ''"),
    (["--json", "/nonexistent-folder/a.json"], "argument --json: invalid value '/nonexistent-folder/a.json'"),
    (["--tiny", "x"], "unrecognized arguments: x"),
])
def test_bad_options_exit_2_with_one_line(capsys, argv, says):
    assert bench.main(argv, prog=PROG) == 2
    captured = capsys.readouterr()
    assert captured.out == ""
    assert captured.err.count("\n") == 1 and captured.err.startswith(f"{PROG}: error: ")
    assert says in captured.err
