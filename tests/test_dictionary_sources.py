"""A dictionaries run on a source folder: the source resolved once when the config is built
(absolute path, sizes, fingerprint); loading never reads it; another source is refused."""

import json
import os
import shutil

import jax
import numpy as np
import pytest

import toylab
from toylab.core.config import ConfigError
from toylab.families.dictionaries import DictionaryConfig, source_data, source_fingerprint

TOY = {"n_features": 6, "n_hidden": 3, "steps": 20, "log_every": 10, "feature_probability": 0.2}
DICT = {"node": "hidden", "n_latents": 8, "batch_size": 64, "steps": 20, "log_every": 10, "eval_size": 64}


def _toy(out, **changes):
    toylab.run_sweep("superposition", {**TOY, **changes}, seeds=1, out=out, quiet=True)
    return out


def _arrays(run):
    return [np.asarray(x) for x in jax.tree.leaves(run.model)]


@pytest.mark.slow
def test_the_source_is_resolved_when_the_config_is_built(tmp_path, monkeypatch):
    _toy(tmp_path / "toy")
    monkeypatch.chdir(tmp_path)
    cfg = DictionaryConfig(source="toy", **DICT)
    assert cfg.source == str((tmp_path / "toy").resolve())
    fp = source_fingerprint(tmp_path / "toy")
    assert len(fp) == 16 and cfg.source_fingerprint == fp
    assert cfg.derived == {"d_in": 3, "d_out": 3, "source_family": "superposition", "source_fingerprint": fp}
    assert cfg.replace(n_latents=16).source_fingerprint == fp  # carried over with the same source
    # Another source gets its own fingerprint, not the first one's.
    _toy(tmp_path / "toy2", seed=5)
    other = cfg.replace(source=str(tmp_path / "toy2"))
    assert other.source_fingerprint == source_fingerprint(tmp_path / "toy2") != fp


@pytest.mark.slow
def test_a_dictionaries_folder_loads_after_its_source_moved_or_was_deleted(tmp_path, monkeypatch):
    _toy(tmp_path / "runs" / "toy")
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "sae"
    toylab.run_sweep("dictionaries", {**DICT, "source": "runs/toy"}, seeds=1, out=out, quiet=True)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["base"]["source"] == str((tmp_path / "runs" / "toy").resolve())
    before = _arrays(toylab.load_results(out)[0])
    shutil.move(tmp_path / "runs" / "toy", tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path / "elsewhere")  # another working directory, too
    moved = toylab.load_results(out)[0]
    for a, b in zip(before, _arrays(moved)):
        np.testing.assert_array_equal(a, b)
    assert moved.config.derived["d_in"] == 3
    shutil.rmtree(tmp_path / "elsewhere")
    monkeypatch.chdir(tmp_path)
    for a, b in zip(before, _arrays(toylab.load_results(out)[0])):
        np.testing.assert_array_equal(a, b)


@pytest.mark.slow
def test_a_resume_against_a_rebuilt_source_is_refused(tmp_path):
    src = _toy(tmp_path / "toy")
    out = tmp_path / "sae"
    base = {**DICT, "source": str(src)}
    toylab.run_sweep("dictionaries", base, seeds=1, out=out, quiet=True)
    toylab.run_sweep("dictionaries", base, seeds=1, out=out, resume=True, quiet=True)  # the same source: fine
    shutil.rmtree(src)
    _toy(src, seed=3)  # the same path, other trained arrays
    with pytest.raises(ConfigError) as err:
        toylab.run_sweep("dictionaries", base, seeds=1, out=out, resume=True, quiet=True)
    assert err.value.field == "out" and "source_fingerprint" in str(err.value)


@pytest.mark.slow
def test_a_resume_whose_relative_source_resolves_elsewhere_is_refused(tmp_path, monkeypatch):
    for where in ("a", "b"):
        _toy(tmp_path / where / "toy", seed=0 if where == "a" else 1)
    out = tmp_path / "sae"
    monkeypatch.chdir(tmp_path / "a")
    toylab.run_sweep("dictionaries", {**DICT, "source": "toy"}, seeds=1, out=out, quiet=True)
    monkeypatch.chdir(tmp_path / "b")
    with pytest.raises(ConfigError) as err:
        toylab.run_sweep("dictionaries", {**DICT, "source": "toy"}, seeds=1, out=out, resume=True, quiet=True)
    assert err.value.field == "out" and os.path.join(str(tmp_path.resolve()), "b", "toy") in str(err.value)


@pytest.mark.slow
def test_a_source_rebuilt_after_the_config_is_refused_when_read(tmp_path):
    src = _toy(tmp_path / "toy")
    cfg = DictionaryConfig(source=str(src), **DICT)
    x, _, _ = source_data(cfg, cfg.hparams(), jax.random.key(0), 8)
    assert x.shape == (8, 3)
    shutil.rmtree(src)
    _toy(src, feature_probability=0.05)
    with pytest.raises(ConfigError) as err:
        source_data(cfg, cfg.hparams(), jax.random.key(0), 8)
    assert err.value.field == "source" and "fingerprint" in str(err.value)


def test_a_given_fingerprint_must_match(tmp_path):
    src = _toy(tmp_path / "toy")
    fp = source_fingerprint(src)
    assert DictionaryConfig(source=str(src), source_fingerprint=fp, **DICT).source_fingerprint == fp
    with pytest.raises(ConfigError) as err:
        DictionaryConfig(source=str(src), source_fingerprint="0" * 16, **DICT)
    assert err.value.field == "source_fingerprint"


@pytest.mark.slow
def test_the_same_training_repeated_has_the_same_fingerprint(tmp_path):
    a, b = _toy(tmp_path / "a"), _toy(tmp_path / "b")
    assert source_fingerprint(a) == source_fingerprint(b)


def test_bad_source_arguments_are_refused_by_name(tmp_path):
    from toylab.core.train import Trainer
    from toylab.tasks.activations import source_activations

    src = _toy(tmp_path / "toy")
    for index in (-1, 1.5, True):
        with pytest.raises(ConfigError) as err:
            source_fingerprint(src, index)
        assert err.value.field == "source_index"
    with pytest.raises(ConfigError) as err:
        source_activations(src, 0, "hidden", "", "", jax.random.key(0), 0)
    assert err.value.field == "n"
    with pytest.raises(ConfigError) as err:
        source_fingerprint(tmp_path / "nothing-here")
    assert err.value.field == "source"
    with pytest.raises(ConfigError) as err:
        Trainer("dictionaries", DictionaryConfig(**{**DICT, "node": "input"})).stored_shapes(0)
    assert err.value.field == "n"


@pytest.mark.slow
def test_source_overrides_change_the_data_or_are_refused_by_name(tmp_path):
    src = _toy(tmp_path / "toy")
    dense = DictionaryConfig(source=str(src), source_overrides="feature_probability=0.9", **DICT)
    sparse = DictionaryConfig(source=str(src), **DICT)
    x_dense, _, (_, c_dense) = source_data(dense, dense.hparams(), jax.random.key(0), 256)
    x_sparse, _, (_, c_sparse) = source_data(sparse, sparse.hparams(), jax.random.key(0), 256)
    assert float((c_dense > 0).mean()) > 0.7 > 0.35 > float((c_sparse > 0).mean())
    for overrides in ("n_features=7", "no_such_field=1", "feature_probability"):
        with pytest.raises(ConfigError) as err:
            DictionaryConfig(source=str(src), source_overrides=overrides, **DICT)
        assert err.value.field == "source_overrides", str(err.value)


@pytest.mark.slow
def test_layer_maps_read_named_layers_up_to_the_last_asked_for():
    from toylab.models.transformer import init_transformer

    tr = init_transformer(jax.random.key(1), d_vocab=6, d_vocab_out=5, d_model=8, n_heads=2, d_mlp=12)
    tokens = jax.random.randint(jax.random.key(2), (4, 3), 0, 6)
    acts = tr.layer_maps().activations(tr, tokens, ["resid_mid.0", "mlp_post.0"])
    _, cache = jax.vmap(lambda t: tr(t, return_activations=True))(tokens)
    np.testing.assert_allclose(np.asarray(acts["mlp_post.0"]), np.asarray(cache[0]["mlp_post"]).reshape(4, -1),
                               rtol=1e-5, atol=1e-6)
    assert acts["resid_mid.0"].shape == (4, 8)
    with pytest.raises(ConfigError, match="^names"):
        tr.layer_maps().activations(tr, tokens, ["mlp_post.3"])
    with pytest.raises(ConfigError, match=r"^inputs.*0\.\.5"):
        tr.layer_maps().activations(tr, tokens + 6, ["logits"])


@pytest.mark.slow
def test_a_source_read_again_while_its_dictionaries_train(tmp_path):
    """Another process reading the finished source sweep (resume into it) leaves its folder as it
    was; and a source folder rewritten with the same run while dictionaries compile (its
    summary replaced) is read again eagerly, not as traced arrays, and training goes on."""
    source = _toy(tmp_path / "toy")
    summary = source / "summary.json"
    before = summary.stat()
    again = toylab.run_sweep("superposition", TOY, seeds=1, out=source, resume=True, quiet=True)
    assert again.work["trained"] == 0
    after = summary.stat()
    assert (after.st_ino, after.st_mtime_ns) == (before.st_ino, before.st_mtime_ns)
    cfg = DictionaryConfig(source=str(source), **DICT)  # the source read and held
    eager = np.asarray(source_data(cfg, cfg.hparams(), jax.random.key(0), 8)[0])
    text = summary.read_text()
    summary.unlink()
    summary.write_text(text)  # the same rows in a new file: the folder looks rewritten
    traced = jax.jit(lambda k: source_data(cfg, cfg.hparams(), k, 8)[0])(jax.random.key(0))
    np.testing.assert_allclose(np.asarray(traced), eager, rtol=1e-6, atol=1e-7)
