"""Non-trainable state: returned by a family's loss, carried by the loop, stored with the run,
and never seen by the optimizer, the gradients or an LLC chain."""

import dataclasses
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toylab
from toylab.analysis.llc import family_llc_inputs
from toylab.core.config import ConfigError
from toylab.core.config import TrainConfig, positive_int, static
from toylab.core.family import Family
from toylab.core.train import Trainer, make_key
from toylab.families.dictionaries import DictionaryConfig
from toylab.models import merge_state, split_state
from toylab.models.dictionaries import STATE_FIELDS


class Tracker(eqx.Module):
    """w is trained towards the running mean; the running mean and a step count are state."""

    w: jax.Array  # (3,)
    running: jax.Array  # (5,) state
    count: jax.Array  # () state
    state_fields: ClassVar[tuple] = ("running", "count")


@dataclasses.dataclass(frozen=True)
class TrackerConfig(TrainConfig):
    width: int = static(5, check=positive_int, help="state width")
    steps: int = static(30, check=positive_int, help="optimizer steps")


def _init(cfg, hp, key):
    return Tracker(jax.random.normal(key, (3,)), jnp.zeros(cfg.width), jnp.zeros(()))


def _batch(cfg, hp, key):
    return jnp.full((cfg.width,), 2.0)


def _loss(model, batch, cfg, hp):
    # The loss depends on the state differentiably: had the state a gradient step, it would
    # drift from the running mean computed below.
    loss = jnp.sum((model.w - model.running[:3]) ** 2) + jnp.sum(model.running ** 2)
    new = {"running": 0.9 * model.running + 0.1 * batch, "count": model.count + 1}
    return loss, ({"w_norm": jnp.linalg.norm(model.w)}, new)


TRACKER = Family(name="test-tracker", config=TrackerConfig, init=_init, batch=_batch, loss=_loss)
CFG = TrackerConfig(steps=30, log_every=10, snapshot_steps=(10, 30), lr=0.05)


def _float_shapes(tree):
    return {tuple(x.shape) for x in jax.tree.leaves(tree) if jnp.issubdtype(x.dtype, jnp.inexact)}


def test_the_optimizer_has_no_entries_for_the_state():
    trainer = Trainer(TRACKER, CFG)
    state = trainer.init(CFG.hparams(), make_key(0))
    assert state.params.running is None and state.params.count is None
    assert set(state.model_state) == {"running", "count"}
    # Adam's moments exist for w (3,) alone; nothing shaped like the running mean (5,).
    assert (5,) not in _float_shapes(state.opt_state) and (3,) in _float_shapes(state.opt_state)


def test_the_state_follows_the_loss_output_not_a_gradient():
    result = toylab.make_train(TRACKER, CFG)(CFG.hparams(), make_key(0))
    expected = 2.0 * (1 - 0.9 ** 30)
    np.testing.assert_allclose(np.asarray(result.model.running), expected, rtol=1e-5)
    assert float(result.model.count) == 30.0
    # w was trained (towards the running mean) by the optimizer.
    assert not np.allclose(np.asarray(result.model.w), np.asarray(_init(CFG, None, jax.random.split(make_key(0))[0]).w))
    # Snapshots hold the state as it was at their step.
    np.testing.assert_allclose(np.asarray(result.snapshots.count), [10.0, 30.0])


def test_the_state_is_stored_with_the_run_and_loads_back(tmp_path):
    res = toylab.run_sweep(TRACKER, CFG, seeds=2, out=tmp_path / "run", quiet=True)
    loaded = toylab.load_results(tmp_path / "run", family=TRACKER)
    for a, b in zip(res, loaded):
        assert float(b.model.count) == 30.0
        np.testing.assert_allclose(np.asarray(b.model.running), 2.0 * (1 - 0.9 ** 30), rtol=1e-5)
        np.testing.assert_array_equal(np.asarray(a.model.w), np.asarray(b.model.w))
        np.testing.assert_array_equal(np.asarray(b.snapshots.count), [10.0, 30.0])


def test_an_llc_chain_does_not_move_the_state():
    model = toylab.make_train(TRACKER, CFG)(CFG.hparams(), make_key(0)).model
    loss, params, data, _ = family_llc_inputs(model, family=TRACKER, config=CFG, n_batches=2)
    assert params.running is None and params.count is None
    assert _float_shapes(params) == {(3,)}
    # The loss the chain samples holds the state where training left it.
    expected = float(jnp.sum((model.w - model.running[:3]) ** 2) + jnp.sum(model.running ** 2))
    assert float(loss(params, data)) == pytest.approx(expected, rel=1e-6)


def test_a_stateful_loss_that_returns_no_state_is_refused():
    bad = Family(name="test-tracker-bad", config=TrackerConfig, init=_init, batch=_batch,
                 loss=lambda m, b, c, h: (jnp.sum(m.w ** 2), {}))
    with pytest.raises(ConfigError, match="new_state"):
        toylab.make_train(bad, CFG)(CFG.hparams(), make_key(0))


def test_split_and_merge_state_are_inverse():
    model = _init(CFG, None, jax.random.key(1))
    trained, state = split_state(model)
    assert trained.running is None and set(state) == {"running", "count"}
    back = merge_state(trained, state)
    assert jax.tree.structure(back) == jax.tree.structure(model)
    plain = eqx.nn.Linear(2, 2, key=jax.random.key(0))
    assert split_state(plain) == (plain, {})


@pytest.mark.slow
def test_dictionary_state_is_not_trained():
    cfg = DictionaryConfig(kind="batchtopk", n_features=8, dim=8, n_latents=8, k=2.0, batch_size=64, steps=20,
                           log_every=10, eval_size=64)
    trainer = Trainer("dictionaries", cfg)
    state = trainer.init(cfg.hparams(), make_key(0))
    assert set(state.model_state) == set(STATE_FIELDS)
    for name in STATE_FIELDS:
        assert getattr(state.params, name) is None
    for path, _ in jax.tree_util.tree_leaves_with_path(state.opt_state):
        names = {getattr(p, "name", None) for p in path}
        assert not names & set(STATE_FIELDS), jax.tree_util.keystr(path)
    result = trainer.train(cfg.hparams(), make_key(0))
    assert float(result.model.k) == 2.0 and float(result.model.threshold) > 0
    assert np.all(np.asarray(result.model.since_fired) >= 0)


@pytest.mark.slow
def test_a_stopped_dictionary_sweep_resumes_with_its_state_exactly(tmp_path, monkeypatch):
    from toylab.core.store import Store

    class Stop(Exception):
        pass

    cfg = {"kind": "batchtopk", "n_features": 8, "dim": 8, "n_latents": 8, "k": 2, "batch_size": 64, "steps": 60,
           "log_every": 10, "eval_size": 64, "dead_steps": 5}
    reference = toylab.run_sweep("dictionaries", cfg, seeds=2, segments=6, quiet=True)
    real = Store.save_checkpoint

    def save(self, chunk_id, tree, header):
        real(self, chunk_id, tree, header)
        raise Stop  # as a kill right after the first checkpoint would
    out = tmp_path / "sae"
    with monkeypatch.context() as m:
        m.setattr(Store, "save_checkpoint", save)
        with pytest.raises(Stop):
            toylab.run_sweep("dictionaries", cfg, seeds=2, out=out, segments=6, quiet=True)
    resumed = toylab.run_sweep("dictionaries", cfg, seeds=2, out=out, segments=6, resume=True, quiet=True)
    for a, b in zip(resumed, reference):
        for name in ("W_dec", "since_fired", "threshold", "k"):
            np.testing.assert_array_equal(np.asarray(getattr(a.model, name)), np.asarray(getattr(b.model, name)))
        np.testing.assert_array_equal(a.metrics["dead_fraction"], b.metrics["dead_fraction"])
