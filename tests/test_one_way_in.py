"""One way in: a sweep in memory writes nothing and equals one written to a folder; a
finished folder is loaded, not retrained; run_sweep, load_results, make_train and fields take
a config or a dict alike, and every bad argument is one ConfigError naming it."""

import dataclasses
import hashlib
import tempfile

import jax
import numpy as np
import pytest

import toylab
from toylab.cli import main
from toylab.core import store as store_mod
from toylab.core.config import ConfigError, TrainConfig
from toylab.core.store import Store
from toylab.core.train import Trainer, ensemble_map, make_key

BASE = dict(n_features=5, n_hidden=2, batch_size=32, steps=60, log_every=20, snapshot_steps=(20, 60))
GRID = {"feature_probability": [0.5, 0.1]}


def _digest(root):
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(root.rglob("*")) if p.is_file()}


def test_in_memory_sweep_writes_nothing(tmp_path, monkeypatch):
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    monkeypatch.setenv("TMPDIR", str(scratch))
    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR

    def no_writes(*a, **k):
        raise AssertionError("a sweep in memory wrote a file")
    monkeypatch.setattr(store_mod, "atomic_write", no_writes)
    monkeypatch.setattr(Store, "open", no_writes)
    monkeypatch.setattr(Store, "save_checkpoint", no_writes)
    res = toylab.run_sweep("superposition", BASE, GRID, seeds=2, segments=3, quiet=True)
    assert len(res) == 4 and res.root is None and "in memory" in repr(res)
    assert list(scratch.iterdir()) == []
    assert res.work == {"trained": 4 * 60, "resumed": 0, "finished": 0}
    assert res[0].model.W.shape == (2, 5) and res[0].snapshots.W.shape == (2, 2, 5)


@pytest.mark.slow
def test_in_memory_equals_a_folder(tmp_path):
    memory = toylab.run_sweep("superposition", BASE, GRID, seeds=2, segments=3, quiet=True)
    folder = toylab.run_sweep("superposition", BASE, GRID, seeds=2, segments=3, quiet=True, out=tmp_path / "s")
    assert len(memory) == len(folder) == 4
    for a, b in zip(memory, folder):
        assert (a.index, a.seed, a.config) == (b.index, b.seed, b.config)
        np.testing.assert_array_equal(a.model.W, b.model.W)
        np.testing.assert_array_equal(a.model.b, b.model.b)
        np.testing.assert_array_equal(a.snapshots.W, b.snapshots.W)
        assert a.metrics.keys() == b.metrics.keys()
        for k in a.metrics:
            np.testing.assert_array_equal(a.metrics[k], b.metrics[k])
        assert a.summary == b.summary
    assert memory.summary == folder.summary and len(memory.summary) == 4
    assert memory.summary[0]["loss"] == float(memory[0].metrics["loss"][-1])
    # The loaded folder agrees too, and the in-memory stack is the same models.
    again = toylab.load_results(tmp_path / "s")
    assert again.summary == memory.summary
    np.testing.assert_array_equal(memory.stacked(feature_probability=0.1).model.W,
                                  again.stacked(feature_probability=0.1).model.W)


def test_rerunning_a_finished_folder_loads_it_and_trains_nothing(tmp_path, monkeypatch):
    out = tmp_path / "s"
    first = toylab.run_sweep("superposition", BASE, GRID, seeds=2, out=out, quiet=True)
    before = _digest(out)

    def no_training(*a, **k):
        raise AssertionError("a finished sweep was trained again")
    monkeypatch.setattr(Trainer, "run", no_training)
    again = toylab.run_sweep("superposition", BASE, GRID, seeds=2, out=out, quiet=True)
    assert again.work == {"trained": 0, "resumed": 0, "finished": 4 * 60}
    for a, b in zip(first, again):
        np.testing.assert_array_equal(a.model.W, b.model.W)
    assert again.summary == first.summary
    assert _digest(out) == before  # not even summary.json is rewritten
    # From the command line too: exit 0, the table, nothing trained.
    args = ["run", "superposition", "--quiet", "--out", str(out), "--seeds", "2",
            "--grid", "feature_probability=0.5,0.1"] + [x for k, v in BASE.items() for x in
                                                         ("--set", f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}")]
    assert main(args) == 0
    assert _digest(out) == before


class _Stop(Exception):
    pass


def test_unfinished_folder_asks_for_resume_in_the_callers_words(tmp_path, monkeypatch, capsys):
    out = tmp_path / "s"
    real = Store.save_checkpoint

    def stop(self, chunk_id, tree, header):
        real(self, chunk_id, tree, header)
        raise _Stop
    with monkeypatch.context() as m:
        m.setattr(Store, "save_checkpoint", stop)
        with pytest.raises(_Stop):
            toylab.run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=3, quiet=True)
    before = _digest(out)
    with pytest.raises(ConfigError, match=r"unfinished \(0 of 4 runs done\); pass resume=True") as e:
        toylab.run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=3, quiet=True)
    assert "--resume" not in str(e.value)
    args = ["run", "superposition", "--quiet", "--out", str(out), "--seeds", "2", "--segments", "3",
            "--grid", "feature_probability=0.5,0.1", "--set", "snapshot_steps=20,60"] + \
        [x for k, v in BASE.items() if k != "snapshot_steps" for x in ("--set", f"{k}={v}")]
    capsys.readouterr()
    assert main(args) == 2
    err = capsys.readouterr().err
    assert "pass --resume to finish it" in err and "resume=True" not in err and err.count("\n") == 1
    assert _digest(out) == before
    done = toylab.run_sweep("superposition", BASE, GRID, seeds=2, out=out, segments=3, resume=True, quiet=True)
    assert len(done) == 4 and done.work["resumed"] > 0


def test_make_train_takes_a_config_or_a_dict():
    cfg = toylab.get_family("superposition").config(**BASE)
    by_config = jax.jit(toylab.make_train("superposition", cfg))(cfg.hparams(), make_key(3))
    by_dict = jax.jit(toylab.make_train("superposition", BASE))(cfg.hparams(), make_key(3))
    np.testing.assert_array_equal(by_config.model.W, by_dict.model.W)
    np.testing.assert_array_equal(by_config.metrics["loss"], by_dict.metrics["loss"])
    grokking = toylab.get_family("grokking").config(p=7, steps=20, d_model=8, n_heads=2, d_mlp=8)
    with pytest.raises(ConfigError, match=r"config='GrokkingConfig': must be a SuperpositionConfig"):
        toylab.make_train("superposition", grokking)
    with pytest.raises(ConfigError, match="bogus=1: unknown field of family superposition"):
        toylab.make_train("superposition", {"bogus": 1})
    with pytest.raises(ConfigError, match="n_hidden=0: must be a positive integer"):
        toylab.make_train("superposition", {"n_hidden": 0})
    with pytest.raises(ConfigError, match="family=3"):
        toylab.make_train(3, BASE)


def test_run_sweep_takes_a_config_or_a_dict():
    cfg = toylab.get_family("superposition").config(**BASE)
    a = toylab.run_sweep("superposition", cfg, GRID, quiet=True)
    b = toylab.run_sweep("superposition", BASE, GRID, quiet=True)
    for x, y in zip(a, b):
        np.testing.assert_array_equal(x.model.W, y.model.W)


def test_fields_as_data_match_the_config_and_the_cli(capsys):
    info = toylab.fields("superposition")
    cfg_cls = toylab.get_family("superposition").config
    assert list(info) == list(cfg_cls.field_info())
    assert info["n_features"] == {"kind": "static", "type": "an integer", "default": 20, "help": "number of features n",
                                  "choices": None}
    assert info["feature_probability"]["kind"] == "sweepable" and info["feature_probability"]["default"] == 0.1
    assert info["model"]["choices"] == ("linear", "relu_output", "relu_hidden", "abs")
    assert info["seed"]["kind"] == "seed"
    assert toylab.fields(toylab.get_family("superposition")) == info == toylab.fields(cfg_cls)
    assert main(["fields", "superposition"]) == 0
    printed = capsys.readouterr().out
    for name, f in info.items():
        assert any(line.split()[:2] == [name, f["kind"]] for line in printed.splitlines())
    with pytest.raises(ConfigError, match="family='nope'"):
        toylab.fields("nope")
    with pytest.raises(ConfigError, match="family=7"):
        toylab.fields(7)


def test_static_and_sweepable_make_a_custom_config():
    @dataclasses.dataclass(frozen=True)
    class Custom(TrainConfig):
        width: int = toylab.static(3, help="hidden width")
        scale: float = toylab.sweepable(0.5, help="input scale")

    cfg = Custom(width=4, scale=2)
    assert dict(cfg.static_key())["width"] == 4 and cfg.hparams()["scale"] == np.float32(2.0)
    info = toylab.fields(Custom)
    assert info["width"]["kind"] == "static" and info["scale"] == {"kind": "sweepable", "type": "a number",
                                                                  "default": 0.5, "help": "input scale",
                                                                  "choices": None}
    assert {"static", "sweepable", "fields"} <= set(dir(toylab))


@pytest.mark.parametrize("call, field", [
    (lambda: toylab.run_sweep(3), "family"),
    (lambda: toylab.run_sweep("superposition", BASE, out=3), "out"),
    (lambda: toylab.run_sweep("superposition", BASE, resume="yes"), "resume"),
    (lambda: toylab.run_sweep("superposition", BASE, resume=True), "resume"),
    (lambda: toylab.run_sweep("superposition", BASE, progress="loud"), "progress"),
    (lambda: toylab.run_sweep("superposition", BASE, grid=[("lr", [1e-3])]), "grid"),
    (lambda: toylab.run_sweep("superposition", BASE, grid={"bogus": [1]}), "bogus"),
    (lambda: toylab.run_sweep("superposition", [1, 2]), "base"),
    (lambda: toylab.load_results(None), "path"),
    (lambda: toylab.load_results("/nonexistent/toylab-results"), "path"),
    (lambda: toylab.load_results(".", family=3), "family"),
    (lambda: toylab.load_results(".", eager="yes"), "eager"),
    (lambda: ensemble_map(lambda x: x, block_size=0), "block_size"),
    (lambda: ensemble_map(lambda x: x, groups=0), "groups"),
    (lambda: ensemble_map(lambda x: x, n_shared=-1), "n_shared"),
    (lambda: ensemble_map("not a function"), "fn"),
])
def test_bad_arguments_are_one_config_error_naming_them(call, field):
    with pytest.raises(ConfigError) as e:
        call()
    assert e.value.field == field and str(e.value).startswith(field)


def test_trainer_run_refuses_bad_arguments_by_name():
    cfg = toylab.get_family("superposition").config(**{**BASE, "snapshot_steps": ()})
    trainer = Trainer("superposition", cfg, block_size=None)
    hp = {k: np.full((2,), v) for k, v in cfg.hparams().items()}
    seeds = np.arange(2, dtype=np.uint32)
    for kwargs, field in [({"intervals_done": 4}, "intervals_done"), ({"intervals_done": -1}, "intervals_done"),
                          ({"segments": 0}, "segments"), ({"on_segment": 5}, "on_segment")]:
        with pytest.raises(ConfigError) as e:
            trainer.run(hp, seeds, **kwargs)
        assert e.value.field == field
    with pytest.raises(ConfigError, match=r"hparams=\['lr'\]: must be a dict of the sweepable fields"):
        trainer.run({"lr": hp["lr"]}, seeds)
    with pytest.raises(ConfigError, match=r"seeds has shape \(3,\): must be one seed per instance"):
        trainer.run(hp, np.arange(3, dtype=np.uint32))
    state, metrics = trainer.run(hp, seeds)  # and good arguments train
    assert metrics["loss"].shape == (2, 3) and np.all(np.isfinite(metrics["loss"]))
