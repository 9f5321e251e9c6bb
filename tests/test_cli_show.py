"""`toylab show RESULTS`: what a folder holds (family, grid, seeds, steps, runs done and the
missing ones by name), the summary table, loss curves to a PNG; a missing or corrupt
folder is one line and exit 2; the folder is never written unless --plot chooses it."""

import hashlib
import json

import numpy as np
import pytest

from toylab.cli import main
from toylab.core.sweep import run_sweep

TINY = dict(n_features=4, n_hidden=2, batch_size=16, steps=60, log_every=20)
GRID = {"feature_probability": [0.5, 0.1]}


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


@pytest.fixture
def folder(tmp_path):
    out = tmp_path / "s"
    run_sweep("superposition", TINY, GRID, seeds=3, out=out, chunk_size=3, quiet=True)
    return out


def test_show_prints_what_the_folder_holds(folder, capsys):
    before = _digest(folder)
    assert main(["show", str(folder)]) == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"superposition in {folder}: 6 of 6 runs finished"
    assert out[1] == "grid: feature_probability = 0.5, 0.1"
    assert out[2] == "seeds: 3 per point (seed 0..2)"
    assert out[3] == "steps: 60 (logged every 20)"
    assert not any(line.startswith("missing") for line in out)
    header = next(line for line in out if line.startswith("feature_probability |"))
    cols = header.split(" | ")
    assert "loss (mean±std over 3 seeds)" in cols
    rows = json.loads((folder / "summary.json").read_text())
    for fp in (0.5, 0.1):
        line = next(line for line in out if line.startswith(f"{fp} |"))
        cell = line.split(" | ")[cols.index("loss (mean±std over 3 seeds)")]
        losses = np.asarray([r["loss"] for r in rows if r["feature_probability"] == fp])
        assert cell == f"{losses.mean():.4g} ± {losses.std():.2g}"
    assert _digest(folder) == before  # showing writes nothing


def test_show_names_missing_runs(folder, capsys):
    (folder / "chunks" / "g000-c0001.done.json").unlink()
    assert main(["show", str(folder)]) == 0
    out = capsys.readouterr().out
    assert "3 of 6 runs finished" in out
    assert ("missing: 3 runs not finished: run 3 (feature_probability=0.1, seed 0); run 4 (feature_probability=0.1, "
            "seed 1); run 5 (feature_probability=0.1, seed 2)") in out
    assert "chunks/g000-c0001.done.json, the record that confirms that chunk's files, is missing" in out
    line = next(line for line in out.splitlines() if line.startswith("0.1 |"))
    assert set(line.split(" | ")[1:]) == {"-"}


@pytest.mark.slow
def test_show_plot_writes_the_loss_curves(folder, tmp_path, capsys):
    from PIL import Image

    png = tmp_path / "curves.png"
    assert main(["show", str(folder), "--plot", str(png)]) == 0
    assert f"loss curves of 6 runs: {png}" in capsys.readouterr().out
    with Image.open(png) as im:
        assert im.format == "PNG" and im.size[0] > 300
    assert main(["show", str(folder), "--plot"]) == 0  # the default: RESULTS/loss.png
    assert (folder / "loss.png").stat().st_size > 1000


def test_training_curves_draws_one_line_per_run():
    import matplotlib

    matplotlib.use("Agg")
    from toylab.core.config import ConfigError
    from toylab.plots.runs import training_curves

    steps = np.arange(1, 4) * 10
    fig = training_curves([steps, steps, steps], [[3, 2, 1], [4, 2, 1], [1, 0.5, 0.2]], groups=[0, 0, 1],
                          labels=["a", "b"])
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and ax.get_yscale() == "log"
    np.testing.assert_array_equal(ax.lines[2].get_ydata(), [1, 0.5, 0.2])
    assert [t.get_text() for t in ax.get_legend().get_texts()] == ["a", "b"]
    assert ax.lines[0].get_color() == ax.lines[1].get_color() != ax.lines[2].get_color()
    with pytest.raises(ConfigError, match="steps"):
        training_curves([steps], [[1, 2]])
    with pytest.raises(ConfigError, match="labels"):
        training_curves([steps], [[1, 2, 3]], labels=[])


@pytest.mark.parametrize("damage, phrase", [
    ("missing", "no such folder"),
    ("no manifest", "no manifest.json"),
    ("truncated manifest", "manifest.json cannot be read"),
    ("flipped npz", "does not match its checksum"),
])
@pytest.mark.slow
def test_show_of_a_missing_or_corrupt_folder_is_one_line(folder, tmp_path, capsys, damage, phrase):
    target = folder
    if damage == "missing":
        target = tmp_path / "nowhere"
    elif damage == "no manifest":
        (folder / "manifest.json").unlink()
    elif damage == "truncated manifest":
        (folder / "manifest.json").write_text((folder / "manifest.json").read_text()[:50])
    else:
        p = folder / "chunks" / "g000-c0000.npz"
        raw = bytearray(p.read_bytes())
        raw[len(raw) // 2] ^= 0x01
        p.write_bytes(bytes(raw))
    assert main(["show", str(target)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("toylab show: error: ") and phrase in err and err.count("\n") == 1


def test_a_reader_that_leaves_early_gets_no_traceback():
    import subprocess
    import sys

    r = subprocess.run(f"{sys.executable} -m toylab fields dictionaries | head -1", shell=True, capture_output=True,
                       text=True, timeout=120)
    assert r.stdout.startswith("dictionaries:") and "Traceback" not in r.stderr and "BrokenPipe" not in r.stderr
