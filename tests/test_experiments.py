"""experiments/ says what each file is: reproductions in one shape, benchmarks timing through
one helper; `toylab reproduce` writes claims.json into a folder of its own and says which
claims failed."""

import importlib
import inspect
import json
import sys
from pathlib import Path

import pytest

import toylab.experiments as experiments
from toylab.experiments import benchmarks
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
    names = list(experiments.BENCHMARKS)
    # every public module of the folder is a benchmark: the discovered names are the files
    files = sorted(p.stem for p in Path(benchmarks.__file__).parent.glob("*.py") if not p.stem.startswith("_"))
    assert names == files and "llc" in names
    for name in names:
        source = Path(importlib.import_module(f"toylab.experiments.benchmarks.{name}").__file__).read_text()
        assert "perf_counter" not in source, name
        assert "timed(" in source or "time_ensemble(" in source, name


def test_timed_times_first_call_apart_and_takes_the_median():
    from toylab.experiments.benchmarks._common import timed

    calls = []
    out = timed(lambda x: calls.append(x) or x * 2, 21, repeats=3)
    assert calls == [21] * 4 and out["result"] == 42 and len(out["times"]) == 3
    assert out["first_s"] is not None and out["min_s"] <= out["seconds"]


FAKE_REPRODUCTION = '''"""A reproduction added as one file."""
from pathlib import Path

import numpy as np

from toylab.experiments.reproductions._claims import Claim

CLAIMS = [Claim("fake (a)", "one holds", "1", "1.0", np.bool_(True)),  # numpy bools, as reproductions compute them
          Claim("fake (b)", "two fails", "2", "3.5", np.float64(3.5) < 3)]
KEEP = {keep}


def reproduce(out, quick=True, quiet=False, only=None, work=None):
    Path(out).mkdir(parents=True, exist_ok=True)
    (Path(out) / "fake.png").write_bytes(b"png")
    return CLAIMS[:KEEP]
'''


def _fake_reproduction(tmp_path, monkeypatch, keep):
    """A reproduction that is one file, in a folder added to the reproductions' package path:
    nothing else is edited for `toylab reproduce fake` to find it."""
    from toylab.experiments import reproductions

    folder = tmp_path / f"more_reproductions_{keep}"
    folder.mkdir()
    (folder / "fake.py").write_text(FAKE_REPRODUCTION.format(keep=keep))
    lab = [p for p in reproductions.__path__ if "more_reproductions_" not in p]  # not an earlier call's folder
    monkeypatch.setattr(reproductions, "__path__", [*lab, str(folder)])
    sys.modules.pop("toylab.experiments.reproductions.fake", None)
    monkeypatch.setattr(reproductions, "fake", None, raising=False)


def test_reproduce_writes_claims_json_and_names_failed_claims(tmp_path, monkeypatch, capsys):
    _fake_reproduction(tmp_path, monkeypatch, keep=2)
    assert experiments.REPRODUCTIONS["fake"] == "toylab.experiments.reproductions.fake"
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
    _fake_reproduction(tmp_path, monkeypatch, keep=1)
    assert main(["reproduce", "fake", "--out", str(tmp_path / "mine"), "--quiet"]) == 0
    assert json.loads((tmp_path / "mine" / "claims.json").read_text())["claims"][0]["passed"] is True


def test_reproduce_names_a_missing_package_before_running_anything(tmp_path, monkeypatch, capsys):
    """A reproduction whose REQUIRES is not installed: exit 2, one line naming it, the missing
    distribution and the extra that installs it; nothing run, nothing written."""
    _fake_reproduction(tmp_path, monkeypatch, keep=1)
    (tmp_path / "more_reproductions_1" / "fake.py").write_text(
        FAKE_REPRODUCTION.format(keep=1) + '\nREQUIRES = {"toylab_no_such_module": "no-such-dist"}\n')
    out = tmp_path / "out"
    assert main(["reproduce", "fake", "--quick", "--quiet", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "NAME='fake'" in err[0] and "no-such-dist" in err[0] and "toylab[reproduce]" in err[0]
    assert not out.exists()


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


def test_parts_are_found_by_their_files(tmp_path, monkeypatch):
    """A reproduction, benchmark or family is a public module of its folder: adding a file adds
    it (no table to edit); helpers start with an underscore."""
    from toylab._discovery import public_modules, summary_line

    pkg = tmp_path / "probe_parts"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "alpha.py").write_text('"""First line of alpha.\n\nMore."""\nimport jax_is_not_imported_by_discovery\n')
    (pkg / "_helper.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text('"""A package counts too."""')
    (pkg / "notes.txt").write_text("not a module")
    monkeypatch.syspath_prepend(str(tmp_path))
    import probe_parts

    assert public_modules(probe_parts) == {"alpha": "probe_parts.alpha", "sub": "probe_parts.sub"}
    assert summary_line("probe_parts.alpha") == "First line of alpha."  # read, not imported
    assert summary_line("probe_parts.sub") == "A package counts too."
    assert "probe_parts.alpha" not in sys.modules


def test_the_wheel_holds_one_top_level_package(tmp_path):
    """experiments/ installs as toylab.experiments: a user's own `experiments` package never
    meets ours. setup.py's metadata names the top-level packages a wheel of the repo holds."""
    import subprocess

    repo = Path(__file__).resolve().parent.parent
    run = subprocess.run([sys.executable, "setup.py", "-q", "egg_info", "--egg-base", str(tmp_path)], cwd=repo,
                         capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    info = tmp_path / "toylab.egg-info"
    assert (info / "top_level.txt").read_text().split() == ["toylab"]
    sources = (info / "SOURCES.txt").read_text().split()
    packaged = {s for s in sources if s.startswith("experiments/")}
    on_disk = {str(p.relative_to(repo)) for p in (repo / "experiments").rglob("*.py")}
    assert packaged == on_disk  # every file of experiments/ ships, under toylab.experiments
    assert experiments.__name__ == "toylab.experiments"
    assert Path(experiments.__file__).resolve() == repo / "experiments" / "__init__.py"


def test_a_user_experiments_package_does_not_shadow_ours(tmp_path):
    """From a research repository with its own experiments/ package, `toylab reproduce` and
    `toylab bench` still find the lab's, and the user's is still theirs."""
    import subprocess

    (tmp_path / "experiments").mkdir()
    (tmp_path / "experiments" / "__init__.py").write_text("MINE = True\n")
    code = ("import experiments, toylab.experiments as ours; assert experiments.MINE; "
            "assert 'grokking' in ours.REPRODUCTIONS and 'llc' in ours.BENCHMARKS; print('ok')")
    run = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True)
    assert run.returncode == 0 and run.stdout.strip() == "ok", run.stderr


def test_every_figure_set_is_four_pieces():
    from toylab.experiments.reproductions._common import FigureSet

    for name, path in experiments.REPRODUCTIONS.items():
        mod = importlib.import_module(path)
        for letter, piece in mod.FIGURES.items():
            assert isinstance(piece, FigureSet), (name, letter)


def test_claims_are_checked_on_the_numbers_and_can_fail():
    """A claims piece is pure: handed numbers where the paper's statement does not hold, it fails."""
    from toylab.experiments.reproductions import superposition as sup

    holds = {("linear", p): 5 for p in sup.A_DENSITIES} | {("relu_output", p): 5 for p in sup.A_DENSITIES}
    holds["relu_output", 0.001] = 12
    dstar = {key: 1.0 for key in holds}
    assert all(c.passed for c in sup.claims_a({"represented": holds, "dstar": dstar}, quick=True))
    no_superposition = dict(holds)
    no_superposition["relu_output", 0.001] = 5  # the ReLU model stays at m features when sparse
    verdicts = [c.passed for c in sup.claims_a({"represented": no_superposition, "dstar": dstar}, quick=True)]
    assert verdicts == [True, False]
    verdicts = [c.passed for c in sup.claims_f({"n_computed": [3.0, 7.5], "errors": []}, quick=True)]
    assert verdicts == [True, True]
    verdicts = [c.passed for c in sup.claims_f({"n_computed": [6.0, 4.0], "errors": []}, quick=True)]
    assert verdicts == [False, False]
