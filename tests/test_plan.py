"""The plan of a sweep: XLA's cost and memory analyses read correctly, the roofline's
arithmetic, the targets' refusals, the JSON figures, the calibration cache, and that a plan
trains and writes nothing."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import pytest

from toylab.core import plan as plan_mod
from toylab.core.config import ConfigError
from toylab.core.plan import (PlannedSweep, SweepPlanned, check_plan_fits, count_kernels, dot_type, parse_memory,
                              plan_sweep, program_costs, recording)
from toylab.core.sweep import run_sweep

SMALL = {"steps": 100, "log_every": 50, "batch_size": 256}
REAL_CALIBRATE = plan_mod.calibrate_cpu
FAKE_CPU = {"flops_per_s": 5e10, "bytes_per_s": 1e10, "kernel_seconds": 1e-6, "measured": "test"}


@pytest.fixture(autouse=True, scope="module")
def fake_calibration(tmp_path_factory):
    """A calibration on file for this machine's key, so no test measures the CPU (one does, faked)."""
    cache = tmp_path_factory.mktemp("cache")
    (cache / "cpu-calibration.json").write_text(json.dumps({"key": plan_mod._cpu_key(), **FAKE_CPU}))
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("TOYLAB_CACHE", str(cache))
        mp.setattr(plan_mod, "_CPU", {})
        mp.setattr(plan_mod, "calibrate_cpu", lambda: pytest.fail("the cached calibration was not used"))
        yield cache


_PLANS = {}


def planned(seeds=1, targets=("cpu",), **fields):
    """plan_sweep of the small superposition sweep, made once per arguments."""
    key = (seeds, tuple(targets), tuple(sorted(fields.items())))
    if key not in _PLANS:
        _PLANS[key] = plan_sweep("superposition", {**SMALL, **fields}, seeds=seeds, targets=list(targets))
    return _PLANS[key]


def test_program_costs_match_a_matrix_product():
    a = jax.ShapeDtypeStruct((64, 32), jnp.float32)
    b = jax.ShapeDtypeStruct((32, 16), jnp.float32)
    costs = program_costs(jax.jit(lambda x, y: x @ y).lower(a, b).compile())
    assert costs["flops"] == 2 * 64 * 32 * 16
    assert costs["argument_bytes"] == 4 * (64 * 32 + 32 * 16)
    assert costs["output_bytes"] == 4 * 64 * 16
    assert costs["peak_memory_bytes"] >= costs["argument_bytes"] + costs["output_bytes"]


def test_dot_type_reads_the_precision_and_operand_types():
    x = jnp.ones((8, 8), jnp.float32)
    lowered = lambda f: jax.jit(f).lower(x).as_text()  # noqa: E731
    assert dot_type(lowered(lambda a: jnp.matmul(a, a, precision=jax.lax.Precision.HIGHEST))) == "float32"
    assert dot_type(lowered(lambda a: jnp.matmul(a, a, precision=jax.lax.Precision.DEFAULT))) == "tf32"
    assert dot_type(lowered(lambda a: a.astype(jnp.bfloat16) @ a.astype(jnp.bfloat16))) == "bfloat16"
    assert dot_type(lowered(lambda a: a + 1)) == "float32"  # no dot: the float32 rate


def test_count_kernels_grows_with_unfusable_work():
    x = jnp.eye(4)

    def chain(k):
        def f(a):
            for _ in range(k):
                a = jnp.tanh(a @ a[::-1])
            return a
        return count_kernels(jax.jit(f).lower(x).compile().as_text())

    assert chain(8) > chain(2) >= 2


@pytest.mark.slow  # compiles programs
def test_one_step_figures_scale_with_the_batch_and_steps_not_with_runs():
    small, double = planned(), planned(batch_size=512)
    many, longer = planned(seeds=8), planned(steps=200)
    g, g2, g8, gl = small.groups[0], double.groups[0], many.groups[0], longer.groups[0]
    # The step is the loop body, counted once: twice the batch is about twice the work.
    assert 1.8 < g2.flops_per_step / g.flops_per_step < 2.2
    assert g8.flops_per_step == g.flops_per_step and g8.runs == 8
    assert gl.flops_per_step == g.flops_per_step
    assert many.flops == pytest.approx(8 * small.flops)
    assert longer.flops == pytest.approx(2 * small.flops, rel=0.05)
    # A step does at least its four products (encode, decode, and their gradients).
    n, m, b = 20, 5, 256
    assert g.flops_per_step >= 2 * (2 * b * n * m) * 2
    assert g.kernels_per_step > 0 and g.compile_seconds > 0 and g.programs == 3


@pytest.mark.slow  # compiles programs
def test_roofline_arithmetic_on_each_target():
    p = planned(seeds=4, targets=("cpu", "h100"))
    g = p.groups[0]
    h100 = plan_mod.get_target("h100")
    per_step = max(4 * g.flops_per_step / h100.rate(g.dot_type), 4 * g.bytes_per_step / h100.bytes_per_s) \
        + g.kernels_per_step * h100.kernel_seconds
    per_eval = max(4 * g.eval_flops / h100.rate(g.dot_type), 4 * g.eval_bytes / h100.bytes_per_s)
    expected = g.steps * per_step + (g.steps // g.log_every) * per_eval + g.compile_seconds
    assert p.targets["h100"].predicted_seconds == pytest.approx(expected)
    cpu = p.targets["cpu"]
    assert cpu.fits and cpu.predicted_seconds > g.compile_seconds
    assert cpu.steps_per_second == pytest.approx(4 * g.steps / cpu.predicted_seconds)
    # The calibration on file is what the CPU target uses.
    assert plan_mod.get_target("cpu").bytes_per_s == FAKE_CPU["bytes_per_s"]


@pytest.mark.slow  # compiles programs
def test_a_target_too_small_for_one_run_is_refused_by_name():
    p = plan_sweep("superposition", SMALL, seeds=2, targets=["h100", "a100"], target_memory="100KB")
    t = p.targets["h100"]
    assert not t.fits and t.predicted_seconds is None and t.max_runs == 0
    assert "one run of group 0 needs about" in t.notes[0]
    with pytest.raises(ConfigError) as e:
        check_plan_fits(p, ["h100"])
    assert e.value.field == "target" and e.value.value == "h100"
    roomy = plan_sweep("superposition", SMALL, seeds=2, targets=["h100"], target_memory="40GB")
    assert roomy.targets["h100"].fits and roomy.targets["h100"].memory_bytes == 40 * 10 ** 9
    check_plan_fits(roomy, ["h100"])


@pytest.mark.slow  # compiles programs
def test_chunk_size_follows_the_target_memory():
    p = planned(seeds=64, targets=("h100",))
    per_run = p.groups[0].run_bytes
    tight = plan_sweep("superposition", SMALL, seeds=64, targets=["h100"], target_memory=int(10.5 * per_run / 0.9))
    assert tight.targets["h100"].max_runs == 10 and tight.targets["h100"].chunk_size == 10
    assert p.targets["h100"].chunk_size == 64


@pytest.mark.parametrize("kwargs, field", [
    ({"targets": ["h200"]}, "target"), ({"targets": []}, "targets"), ({"target_memory": "12XB"}, "target_memory"),
    ({"target_memory": -5}, "target_memory"), ({"target_memory": True}, "target_memory"),
    ({"chunk_size": 0}, "chunk_size"), ({"recalibrate": "yes"}, "recalibrate"), ({"block_size": "wide"}, "block_size"), ({"seeds": 0}, "seeds"),
])
def test_bad_input_names_the_field(kwargs, field):
    with pytest.raises(ConfigError) as e:
        plan_sweep("superposition", SMALL, **{"seeds": 1, **kwargs})
    assert e.value.field == field


def test_parse_memory_units():
    assert parse_memory("80GB") == 80 * 10 ** 9
    assert parse_memory("16 GiB") == 16 * 2 ** 30
    assert parse_memory("512MiB") == 512 * 2 ** 20
    assert parse_memory(4096) == 4096


@pytest.mark.slow  # compiles programs
def test_run_sweep_plan_trains_and_writes_nothing(tmp_path):
    out = tmp_path / "never"
    p = run_sweep("superposition", SMALL, {"lr": [1e-3, 3e-3]}, seeds=2, out=out, plan=True)
    assert isinstance(p, plan_mod.SweepPlan) and p.runs == 4 and len(p.groups) == 1
    assert not out.exists()
    with pytest.raises(ConfigError) as e:
        run_sweep("superposition", SMALL, plan="yes")
    assert e.value.field == "plan"


@pytest.mark.slow  # compiles programs
def test_json_holds_the_figures_per_group_in_total_and_per_target(tmp_path):
    p = plan_sweep("superposition", SMALL, {"model": ["linear", "relu_output"]}, seeds=3)
    d = json.loads(p.write_json(tmp_path / "sub" / "plan.json").read_text())
    assert len(d["groups"]) == 2  # two static groups, two programs
    for key in ("flops", "bytes", "peak_memory_bytes", "compile_seconds"):
        assert d["total"][key] > 0
        assert all(g[key] > 0 for g in d["groups"])
    assert d["total"]["flops"] == pytest.approx(sum(g["flops"] for g in d["groups"]))
    assert set(d["targets"]) == {"cpu", "h100", "a100", "tpu-v5e"}
    for t in d["targets"].values():
        assert t["fits"] is True and t["predicted_seconds"] > 0
    assert "cpu" in p.format() and "h100" in p.format()


@pytest.mark.slow  # compiles programs
def test_recording_returns_stand_ins_that_refuse_results():
    with recording(targets=["h100"]) as plans:
        planned = run_sweep("superposition", SMALL, seeds=2)
        assert isinstance(planned, PlannedSweep) and planned.plan is plans[0]
        with pytest.raises(SweepPlanned):
            planned[0]
        with pytest.raises(SweepPlanned):
            planned.runs
    assert set(plans[0].targets) == {"h100"}


def test_calibration_is_measured_once_then_read_and_a_damaged_cache_is_measured_again(fake_calibration, monkeypatch):
    calls = []
    monkeypatch.setattr(plan_mod, "calibrate_cpu",
                        lambda: calls.append(1) or {"key": plan_mod._cpu_key(), **FAKE_CPU, "flops_per_s": 7e9})
    monkeypatch.setattr(plan_mod, "_CPU", {})
    path = fake_calibration / "cpu-calibration.json"
    saved = path.read_text()
    path.write_text("{not json")
    assert plan_mod.cpu_target().flops_per_s["float32"] == 7e9 and calls == [1]
    monkeypatch.setattr(plan_mod, "_CPU", {})
    assert plan_mod.cpu_target().flops_per_s["float32"] == 7e9 and calls == [1]  # read back from the file
    assert json.loads(path.read_text())["flops_per_s"] == 7e9
    plan_mod.cpu_target(recalibrate=True)
    assert calls == [1, 1]
    path.write_text(saved)


@pytest.mark.slow  # compiles programs
def test_real_calibration_measures_positive_rates():
    cal = REAL_CALIBRATE()  # the module's own (the fixture stands a guard in its place)
    assert cal["flops_per_s"] > 1e8 and cal["bytes_per_s"] > 1e8 and 0 < cal["kernel_seconds"] < 1e-3
    assert cal["key"] == plan_mod._cpu_key()


def _cli(*args, cwd):
    return subprocess.run([sys.executable, "-m", "toylab", *args], capture_output=True, text=True, cwd=cwd)


@pytest.mark.slow  # compiles programs
def test_cli_plan_prints_and_writes_json(tmp_path):
    r = _cli("plan", "superposition", "--set", "steps=100", "--set", "batch_size=256", "--seeds", "2",
             "--target", "cpu,h100", "--json", "plan.json", cwd=tmp_path)
    assert r.returncode == 0, r.stderr
    assert "h100" in r.stdout and "predicted" in r.stdout and "nothing trained" in r.stdout
    d = json.loads((tmp_path / "plan.json").read_text())
    assert set(d["targets"]) == {"cpu", "h100"} and d["runs"] == 2


@pytest.mark.slow  # compiles programs
@pytest.mark.parametrize("args, named", [
    (["--target", "h100", "--target-memory", "100KB"], "target='h100'"),
    (["--target", "v100"], "--target='v100'"),
    (["--target-memory", "lots"], "--target-memory='lots'"),
    (["--set", "n_features=0"], "n_features"),
])
def test_cli_plan_refusals_are_one_line_exit_2_and_write_nothing(tmp_path, args, named):
    r = _cli("plan", "superposition", "--set", "steps=100", *args, "--json", "plan.json", cwd=tmp_path)
    assert r.returncode == 2
    assert len(r.stderr.strip().splitlines()) == 1 and named in r.stderr and "Traceback" not in r.stderr
    assert not (tmp_path / "plan.json").exists()


PLANNED_REPRODUCTION = '''"""A reproduction whose sets train two sweeps, one of them looked at before the next."""
from toylab.core.sweep import run_sweep
from toylab.experiments.reproductions._common import FigureSet

SMALL = {"steps": 100, "log_every": 50, "batch_size": 256}


def prepare(quick, quiet, work=None):
    return run_sweep("superposition", SMALL, seeds=2, quiet=quiet)[0]  # looks at its results


def train_a(quick, quiet, work=None, shared=None):
    first = run_sweep("superposition", {**SMALL, "n_hidden": 3}, seeds=4, quiet=quiet)
    second = run_sweep("superposition", {**SMALL, "n_hidden": 4}, seeds=4, quiet=quiet)
    return first, second


def train_b(quick, quiet, work=None, shared=None):
    first = run_sweep("superposition", {**SMALL, "n_hidden": 3}, seeds=4, quiet=quiet)  # the same as (a)'s
    return run_sweep("superposition", {**SMALL, "n_hidden": 2}, seeds=first.runs[0].seed)  # needs results


def nothing(*args):
    raise AssertionError("a plan analyses, draws and claims nothing")


FIGURES = {"a": FigureSet(train_a, nothing, nothing, nothing), "b": FigureSet(train_b, nothing, nothing, nothing)}


def reproduce(out, quick=True, quiet=False, only=None, work=None):
    raise AssertionError("a plan does not run the reproduction")
'''


@pytest.mark.slow  # compiles programs
def test_reproduce_full_plan_plans_every_sweep_once_and_trains_nothing(tmp_path, monkeypatch, capsys):
    from toylab.cli import main
    from toylab.experiments import reproductions

    folder = tmp_path / "more_reproductions_plan"
    folder.mkdir()
    (folder / "planned.py").write_text(PLANNED_REPRODUCTION)
    monkeypatch.setattr(reproductions, "__path__", [*reproductions.__path__, str(folder)])
    sys.modules.pop("toylab.experiments.reproductions.planned", None)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "planned", "--full", "--plan", "--target", "a100"]) == 0
    out = capsys.readouterr().out
    assert "plan of planned (full): 3 sweeps" in out  # prepare's, (a)'s two; (b)'s first is (a)'s
    assert out.count("on one a100 (") == 3 and "training predicted on one a100" in out
    assert "set (b): its training reads a sweep's results" in out
    assert "analyses not included" in out
    assert sorted(p.name for p in tmp_path.iterdir()) == ["more_reproductions_plan"]  # nothing written
    assert main(["reproduce", "planned", "--quick", "--plan"]) == 2
    assert main(["reproduce", "planned", "--plan", "--target", "v100"]) == 2


@pytest.mark.parametrize("argv", [["--families", "foo"], ["--families", ""], ["--json", "/no/such/folder/x.json"]])
def test_bench_plan_refuses_bad_options_in_one_line(argv, capsys):
    from toylab.experiments.benchmarks import plan as bench

    assert bench.main(argv, prog="toylab bench plan") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("toylab bench plan: error:")


def test_planning_an_unknown_reproduction_names_it():
    from toylab.experiments.reproductions._plan import plan_reproduction

    with pytest.raises(ConfigError) as e:
        plan_reproduction("nope")
    assert e.value.field == "module" and e.value.value == "nope"
