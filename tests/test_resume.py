"""Resume that cannot go wrong: a sweep stopped after any segment and resumed with other
segments continues bit for bit; other chunk or block sizes are refused with the folder
untouched; the progress count after a resume is exact."""

import hashlib

import numpy as np
import pytest

from toylab.cli import main
from toylab.core import progress as progress_mod
from toylab.core.config import ConfigError
from toylab.core.store import Store
from toylab.core.sweep import load_results, run_sweep

BASE = dict(n_features=5, n_hidden=2, batch_size=32, steps=240, log_every=20, snapshot_steps=(0, 100, 240))
GRID = {"feature_probability": [0.3, 0.05]}


def _folder_digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


class _Stop(Exception):
    pass


def _stopped_after(monkeypatch, n_checkpoints):
    """Make the n-th checkpoint save the last thing the sweep does (as a kill would)."""
    saved = []
    real = Store.save_checkpoint

    def save(self, chunk_id, tree, header):
        real(self, chunk_id, tree, header)
        saved.append(header)
        if len(saved) == n_checkpoints:
            raise _Stop
    monkeypatch.setattr(Store, "save_checkpoint", save)
    return saved


def _counting_progress(monkeypatch):
    seen = {"total": 0, "done": 0}
    real_init, real_update = progress_mod.Progress.__init__, progress_mod.Progress.update

    def init(self, total, *a, **k):
        real_init(self, total, *a, **k)
        seen["total"] += int(total)

    def update(self, units, note=""):
        seen["done"] += int(units)
        real_update(self, units, note)
    monkeypatch.setattr(progress_mod.Progress, "__init__", init)
    monkeypatch.setattr(progress_mod.Progress, "update", update)
    return seen


@pytest.mark.slow
@pytest.mark.parametrize("first, then", [(6, 4), (4, 6), (12, 5), (3, 12)])
def test_resume_with_other_segments_continues_exactly(tmp_path, monkeypatch, first, then):
    reference = run_sweep("superposition", BASE, GRID, seeds=2, quiet=True, segments=first)
    out = tmp_path / "sweep"
    with monkeypatch.context() as m:
        saved = _stopped_after(m, 2)
        with pytest.raises(_Stop):
            run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=first, quiet=True)
    head = saved[-1]
    assert head["steps_done"] % BASE["log_every"] == 0 and 0 < head["steps_done"] < BASE["steps"]
    with monkeypatch.context() as m:
        seen = _counting_progress(m)
        resumed = run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=then, resume=True, quiet=True)
    # Progress: the resumed count plus the new segments add up to exactly the whole job.
    assert seen["done"] == seen["total"] == 4 * BASE["steps"]
    assert len(resumed) == len(reference) == 4
    for a, b in zip(resumed, reference):
        np.testing.assert_array_equal(a.metrics["loss"], b.metrics["loss"])
        np.testing.assert_array_equal(a.model.W, b.model.W)
        np.testing.assert_array_equal(a.snapshots.W, b.snapshots.W)
    np.testing.assert_array_equal(resumed[0].steps, np.arange(20, 241, 20))


@pytest.mark.slow
def test_snapshots_are_the_params_at_their_steps(tmp_path):
    """Each snapshot slot holds the params at its step (checked against shorter runs), and
    steps that are not snapshot steps write nothing."""
    full = run_sweep("superposition", BASE, seeds=1, quiet=True)[0]
    at_100 = run_sweep("superposition", {**BASE, "steps": 100, "snapshot_steps": ()}, seeds=1, quiet=True)[0]
    at_0 = run_sweep("superposition", {**BASE, "steps": 20, "snapshot_steps": (0,)}, seeds=1, quiet=True)[0]
    assert full.snapshots.W.shape[0] == 3
    np.testing.assert_array_equal(full.snapshots.W[1], at_100.model.W)
    np.testing.assert_array_equal(full.snapshots.W[2], full.model.W)
    np.testing.assert_array_equal(full.snapshots.W[0], at_0.snapshots.W[0])
    assert not np.array_equal(full.snapshots.W[0], full.snapshots.W[1])


@pytest.mark.slow
def test_resume_with_other_chunk_size_or_block_size_is_refused_untouched(tmp_path, monkeypatch):
    out = tmp_path / "sweep"
    with monkeypatch.context() as m:
        _stopped_after(m, 1)
        with pytest.raises(_Stop):
            run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=6, block_size=2, quiet=True)
    before = _folder_digest(out)
    with pytest.raises(ConfigError, match="chunk_size"):
        run_sweep("superposition", BASE, GRID, seeds=2, out=out, resume=True, chunk_size=3, quiet=True)
    with pytest.raises(ConfigError, match=r"block_size=1: the checkpoint of chunk g000-c0000 .* block_size=2"):
        run_sweep("superposition", BASE, GRID, seeds=2, out=out, resume=True, block_size=1, quiet=True)
    assert _folder_digest(out) == before
    # "auto" continues with the block size the checkpoint was trained with.
    done = run_sweep("superposition", BASE, GRID, seeds=2, out=out, resume=True, quiet=True)
    ref = run_sweep("superposition", BASE, GRID, seeds=2, block_size=2, quiet=True)
    for a, b in zip(done, ref):
        np.testing.assert_array_equal(a.model.W, b.model.W)


def test_cli_resume_with_other_chunk_size_exits_2(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["run", "superposition", "--set", "n_features=4", "--set", "n_hidden=2", "--set", "steps=40",
            "--set", "log_every=20", "--quiet", "--out", str(out)]
    assert main(args) == 0
    before = _folder_digest(out)
    assert main(args + ["--resume", "--chunk-size", "7"]) == 2
    assert "chunk_size" in capsys.readouterr().err
    assert _folder_digest(out) == before


@pytest.mark.slow
def test_default_log_every_adapts_to_steps_and_says_so(tmp_path, capsys):
    out = tmp_path / "g"
    rc = main(["run", "grokking", "--set", "p=7", "--set", "steps=50", "--set", "d_model=8", "--set", "n_heads=2",
               "--set", "d_mlp=8", "--quiet", "--out", str(out)])
    assert rc == 0
    err = capsys.readouterr().err
    assert "log_every not given; using 50" in err
    r = load_results(out)[0]
    assert r.config.log_every == 50 and list(r.steps) == [50]
    # A log_every the user gives is never changed.
    assert main(["run", "grokking", "--set", "steps=50", "--set", "log_every=100", "--out", str(tmp_path / "h")]) == 2
    assert "log_every=100: must divide steps=50" in capsys.readouterr().err
