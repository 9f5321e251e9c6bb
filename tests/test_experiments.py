"""experiments/ says what each file is: reproductions in one shape, benchmarks timing through
one helper; `toylab reproduce` writes claims.json into a folder of its own and says which
claims failed."""

import importlib
import inspect
import json
import pkgutil
import sys
import types
from pathlib import Path

import pytest

import experiments
from experiments import benchmarks
from experiments.reproductions.claims import Claim
from toylab.cli import default_figures_dir, main


@pytest.mark.parametrize("name", list(experiments.REPRODUCTIONS))
def test_every_reproduction_has_one_shape(name):
    mod = importlib.import_module(experiments.REPRODUCTIONS[name])
    assert set(inspect.signature(mod.reproduce).parameters) == {"out", "quick", "quiet", "only", "work"}
    assert mod.FIGURES and all(len(k) == 1 and k.isalpha() for k in mod.FIGURES)
    for fn in mod.FIGURES.values():  # fn(out, quick, quiet, work, shared) -> claims
        params = list(inspect.signature(fn).parameters)
        assert params[:4] == ["out", "quick", "quiet", "work"] and len(params) >= 5, (name, fn.__name__, params)


def test_every_benchmark_times_through_the_one_helper():
    names = [m.name for m in pkgutil.iter_modules(benchmarks.__path__) if m.name != "common" and not m.ispkg]
    assert sorted(names) == ["bilinear", "degeneracy", "dictionaries", "grokking", "groups", "interaction", "llc",
                            "superposition"]
    for name in names:
        source = Path(importlib.import_module(f"experiments.benchmarks.{name}").__file__).read_text()
        assert "perf_counter" not in source, name
        assert "timed(" in source or "time_ensemble(" in source, name


def test_timed_times_first_call_apart_and_takes_the_median():
    from experiments.benchmarks.common import timed

    calls = []
    out = timed(lambda x: calls.append(x) or x * 2, 21, repeats=3)
    assert calls == [21] * 4 and out["result"] == 42 and len(out["times"]) == 3
    assert out["first_s"] is not None and out["min_s"] <= out["seconds"]


def _fake_reproduction(monkeypatch, claims):
    mod = types.ModuleType("fake_repro")

    def reproduce(out, quick=True, quiet=False, only=None, work=None):
        Path(out).mkdir(parents=True, exist_ok=True)
        (Path(out) / "fake.png").write_bytes(b"png")
        return claims
    mod.reproduce = reproduce
    monkeypatch.setitem(sys.modules, "fake_repro", mod)
    monkeypatch.setitem(experiments.REPRODUCTIONS, "fake", "fake_repro")


def test_reproduce_writes_claims_json_and_names_failed_claims(tmp_path, monkeypatch, capsys):
    import numpy as np

    # passed as numpy bools, as reproductions compute them
    claims = [Claim("fake (a)", "one holds", "1", "1.0", np.bool_(True)),
              Claim("fake (b)", "two fails", "2", "3.5", np.float64(3.5) < 3)]
    _fake_reproduction(monkeypatch, claims)
    monkeypatch.chdir(tmp_path)
    assert main(["reproduce", "fake", "--quick", "--quiet"]) == 1
    out_lines = capsys.readouterr().out.strip().splitlines()
    assert out_lines[-1].startswith("FAILED: fake (b): two fails") and "measured: 3.5" in out_lines[-1]
    folders = list((tmp_path / "reproductions").iterdir())  # a folder of its own, not figures/
    assert len(folders) == 1 and folders[0].name.startswith("quick-")
    record = json.loads((folders[0] / "claims.json").read_text())
    assert record["toylab_version"] and record["jax_version"]
    assert [(c["claim"], c["passed"], c["measured"]) for c in record["claims"]] == [
        ("one holds", True, "1.0"), ("two fails", False, "3.5")]
    # all pass: exit 0
    _fake_reproduction(monkeypatch, claims[:1])
    assert main(["reproduce", "fake", "--out", str(tmp_path / "mine"), "--quiet"]) == 0
    assert json.loads((tmp_path / "mine" / "claims.json").read_text())["claims"][0]["passed"] is True


def test_reproduce_refuses_to_overwrite_the_committed_figures(capsys):
    before = {p.name: p.stat().st_mtime_ns for p in default_figures_dir().glob("*")}
    assert main(["reproduce", "--quick", "--out", str(default_figures_dir())]) == 2
    assert "toylab figures" in capsys.readouterr().err
    assert {p.name: p.stat().st_mtime_ns for p in default_figures_dir().glob("*")} == before


def test_help_lists_families_reproductions_and_choices_without_jax(capsys):
    import subprocess

    code = "import sys\nfrom toylab.cli import main\ntry:\n    main(['--help'])\nexcept SystemExit:\n    pass\n" \
           "print('JAX LOADED' if 'jax' in sys.modules else 'NO JAX')"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60).stdout
    assert "NO JAX" in out
    for name in ("superposition", "grokking", "groups", "bilinear"):
        assert name in out
    assert "reproductions (toylab reproduce NAME)" in out
    assert main(["fields", "superposition"]) == 0
    fields = capsys.readouterr().out
    assert "choices: linear, relu_output, relu_hidden, abs" in fields
