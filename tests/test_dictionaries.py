"""Sparse dictionaries: the kinds' activations and losses, training as a family, sources, bad input."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings, strategies as st

import toylab
from toylab.analysis import dictionaries as M
from toylab.core.config import ConfigError
from toylab.core.train import stack_hparams
from toylab.families.dictionaries import DictionaryConfig, source_data, synthetic_generator
from toylab.models import merge_state, split_state
from toylab.models.dictionaries import (Dictionary, batch_topk_mask, dictionary_loss, init_dictionary, jumprelu,
                                        step_ste, topk_mask)
from toylab.testing import cases

topk_jit = jax.jit(topk_mask)
batch_topk_jit = jax.jit(batch_topk_mask)


# ----------------------------------------------------------------------------- activations


@pytest.mark.slow
@settings(max_examples=40)
@given(seed=st.integers(0, 2**16), rows=st.integers(1, 6), width=st.sampled_from([4, 16]), k=st.integers(1, 16))
def test_topk_keeps_exactly_k_and_the_largest(seed, rows, width, k):
    k = min(k, width)
    pre = np.asarray(jax.random.normal(jax.random.key(seed), (rows, width)))
    mask = np.asarray(topk_jit(pre, jnp.float32(k)))  # k traced: a sweep over k is one program
    assert (mask.sum(axis=1) == k).all()
    # Every kept entry is at least every dropped one of its row.
    kept_min = np.where(mask, pre, np.inf).min(axis=1)
    dropped_max = np.where(mask, -np.inf, pre).max(axis=1)
    assert (kept_min >= dropped_max).all()


@pytest.mark.slow
def test_topk_dictionary_l0_is_exactly_k_when_k_pre_activations_are_positive():
    model = init_dictionary(jax.random.key(0), 8, 32, "topk", k=5.0)
    # b_enc > 0 makes every pre-activation positive, so exactly k latents fire.
    model = Dictionary(**{**_fields(model), "b_enc": jnp.full((32,), 10.0)})
    x = jax.random.normal(jax.random.key(1), (64, 8))
    codes = np.asarray(model.encode(x))
    assert ((codes > 0).sum(axis=1) == 5).all()
    assert float(M.l0(codes)) == 5.0


@settings(max_examples=20)
@given(seed=st.integers(0, 2**16), k=st.sampled_from([0.5, 1.0, 2.5, 4.0]))
def test_batch_topk_keeps_k_per_example_on_average(seed, k):
    pre = np.abs(np.asarray(jax.random.normal(jax.random.key(seed), (8, 16)))) + 1e-3  # all positive, distinct
    mask = np.asarray(batch_topk_jit(pre, jnp.float32(k)))
    assert mask.sum() == round(k * 8)
    assert np.where(mask, pre, np.inf).min() >= np.where(mask, -np.inf, pre).max()
    # Negative pre-activations never fire, however large k is.
    assert not np.asarray(batch_topk_jit(-pre, jnp.float32(k))).any()


def test_jumprelu_forward_and_straight_through_gradients():
    pre = jnp.asarray([[0.05, 0.12, 0.3], [0.2, 0.09, -1.0]])
    log_theta = jnp.log(jnp.asarray([0.1, 0.1, 0.25]))
    eps = jnp.float32(0.05)
    out = np.asarray(jumprelu(pre, log_theta, eps))
    np.testing.assert_allclose(out, [[0.0, 0.12, 0.3], [0.2, 0.0, 0.0]], rtol=1e-6)
    g_pre, g_log = jax.grad(lambda p, t: jnp.sum(jumprelu(p, t, eps)), argnums=(0, 1))(pre, log_theta)
    np.testing.assert_array_equal(np.asarray(g_pre), out > 0)
    # d/dθ = −(θ/ε)·K((pre − θ)/ε), K the rectangle on (−½, ½); d/dlogθ = θ·d/dθ.
    theta = np.exp(np.asarray(log_theta))
    inside = np.abs((np.asarray(pre) - theta) / 0.05) < 0.5
    expected = (-(theta / 0.05) * inside * theta).sum(axis=0)
    np.testing.assert_allclose(np.asarray(g_log), expected, rtol=1e-5)
    g_step = jax.grad(lambda t: jnp.sum(step_ste(pre, t, eps)))(log_theta)
    np.testing.assert_allclose(np.asarray(g_step), (-(1 / 0.05) * inside * theta).sum(axis=0), rtol=1e-5)
    assert float(jnp.sum(step_ste(pre, log_theta, eps))) == 3.0


def test_unit_norm_kinds_decode_with_unit_rows_and_relu_keeps_free_norms():
    for kind, unit in (("relu", False), ("topk", True), ("jumprelu", True)):
        model = init_dictionary(jax.random.key(2), 6, 10, kind, decoder_norm=0.3)
        norms = np.linalg.norm(np.asarray(model.directions()), axis=1)
        np.testing.assert_allclose(norms, 1.0 if unit else 0.3, rtol=1e-5)


# ----------------------------------------------------------------------------- the loss and its state


def _fields(model):
    return {f.name: getattr(model, f.name) for f in dataclasses.fields(Dictionary)}


def _one_step(model, x, **kw):
    """One step as the training loop takes it: gradients in the trained arrays, the state
    from the loss's output."""
    trained, state = split_state(model)
    opt = optax.adam(1e-3)
    grads, (metrics, new_state) = jax.grad(lambda m: dictionary_loss(merge_state(m, state), x, x, **kw),
                                           has_aux=True)(trained)
    updates, _ = opt.update(grads, opt.init(trained), trained)
    return merge_state(optax.apply_updates(trained, updates), new_state), metrics


@pytest.mark.slow
def test_state_fields_are_set_to_their_targets_by_one_step():
    model = init_dictionary(jax.random.key(3), 4, 6, "batchtopk", k=1.0)
    model = Dictionary(**{**_fields(model), "since_fired": jnp.arange(6.0), "threshold": jnp.float32(0.5),
                          # latent 5 can never fire: its pre-activation is very negative
                          "b_enc": jnp.asarray([0.0, 0.0, 0.0, 0.0, 0.0, -100.0])})
    x = jax.random.normal(jax.random.key(4), (16, 4))
    new, metrics = _one_step(model, x, k=2.0, dead_steps=3)
    pre = np.asarray(model.pre_activations(x))
    mask = np.asarray(batch_topk_mask(pre, 2.0))
    fired = mask.any(axis=0)
    np.testing.assert_allclose(np.asarray(new.since_fired), np.where(fired, 0.0, np.arange(6.0) + 1), atol=1e-6)
    assert not fired[5] and float(new.since_fired[5]) == 6.0
    smallest = pre[mask].min()
    np.testing.assert_allclose(float(new.threshold), 0.99 * 0.5 + 0.01 * smallest, rtol=1e-5)
    assert float(new.k) == 2.0
    # Latents 3.. were dead (since_fired >= 3) before the step, so AuxK was on.
    assert float(metrics["aux_loss"]) > 0


@pytest.mark.slow
def test_matryoshka_loss_sums_the_prefix_errors():
    model = init_dictionary(jax.random.key(5), 4, 8, "matryoshka", prefixes=(2, 8), k=3.0)
    x = jax.random.normal(jax.random.key(6), (10, 4))
    _, (metrics, _) = dictionary_loss(model, x, x, k=3.0)
    pre = model.pre_activations(x)
    f = jnp.where(batch_topk_mask(pre, 3.0), pre, 0.0)
    d = model.directions()
    err = lambda m: float(jnp.mean(jnp.sum((x - f[:, :m] @ d[:m] - model.b_dec) ** 2, axis=1)))
    np.testing.assert_allclose(float(metrics["reconstruction"]), err(2) + err(8), rtol=1e-5)


# ----------------------------------------------------------------------------- known answers through the family


@pytest.mark.slow
def test_dictionary_at_the_true_features_scores_one():
    # The testing kit's planted dictionary of the config's generator: decoder rows the true
    # features, encoder their inverse (N = D), JumpReLU thresholds far above rounding error.
    cfg = DictionaryConfig(n_features=6, dim=6, mean_active=2.0, n_latents=6, eval_size=512)
    model = cases.planted_dictionary(generator=synthetic_generator(cfg), batch_size=cfg.eval_size).dictionary
    scores = toylab.get_family("dictionaries").summary(model, cfg, cfg.hparams())
    for name in ("mcc", "mmcs", "uniqueness", "explained_variance", "precision", "recall", "f1", "shrinkage"):
        np.testing.assert_allclose(float(scores[name]), 1.0, atol=1e-5, err_msg=name)
    # Permuting the latents changes nothing the metrics measure; nor does rescaling decoder rows.
    perm = np.random.default_rng(0).permutation(6)
    shuffled = Dictionary(**{**_fields(model), "W_dec": model.W_dec[perm], "W_enc": model.W_enc[:, perm]})
    again = toylab.get_family("dictionaries").summary(shuffled, cfg, cfg.hparams())
    for name in ("mcc", "uniqueness", "explained_variance", "f1"):
        np.testing.assert_allclose(float(again[name]), 1.0, atol=1e-5, err_msg=name)
    scaled = model.W_dec[perm] * jnp.linspace(0.5, 2.0, 6)[:, None]
    np.testing.assert_allclose(float(M.mcc(synthetic_generator(cfg).directions(), scaled)), 1.0, atol=1e-6)


_SMALL = DictionaryConfig(n_features=8, dim=8, n_latents=8, mean_active=1.5, zipf_exponent=0.0, batch_size=256,
                          steps=60, log_every=20, lr=3e-3, eval_size=256, sparsity=0.1)


@pytest.mark.slow
def test_vmapped_dictionaries_equal_single_runs():
    cfgs = [_SMALL.replace(sparsity=s, mean_active=m) for s, m in ((0.05, 1.0), (0.3, 2.0))]
    train = toylab.make_train("dictionaries", _SMALL)
    keys = jax.vmap(toylab.make_key)(jnp.arange(2, dtype=jnp.uint32))
    together = jax.jit(jax.vmap(train))(stack_hparams(cfgs), keys)
    for i, c in enumerate(cfgs):
        alone = jax.jit(train)(c.hparams(), toylab.make_key(i))
        np.testing.assert_allclose(together.model.W_dec[i], alone.model.W_dec, rtol=1e-4, atol=1e-5)
        np.testing.assert_allclose(together.metrics["loss"][i], alone.metrics["loss"], rtol=1e-4, atol=1e-6)
    # Different sparsity coefficients gave different dictionaries (the traced value is used).
    assert not np.allclose(together.model.W_dec[0], together.model.W_dec[1])


@pytest.mark.slow
def test_a_relu_sae_recovers_sparse_planted_features():
    cfg = _SMALL.replace(steps=1500, log_every=500, sparsity=0.05, n_latents=16)
    res = toylab.run_sweep("dictionaries", cfg, seeds=1, quiet=True)
    (run,) = list(res)
    assert run.summary["mcc"] > 0.9, run.summary
    assert run.summary["explained_variance"] > 0.9, run.summary


# ----------------------------------------------------------------------------- sources


@pytest.fixture(scope="module")
def toy_run(tmp_path_factory):
    out = tmp_path_factory.mktemp("toy") / "run"
    toylab.run_sweep("superposition", {"n_features": 6, "n_hidden": 3, "steps": 200, "log_every": 100,
                                       "feature_probability": 0.1}, seeds=1, out=out, quiet=True)
    return out


@pytest.mark.slow
def test_a_toy_run_is_a_source_with_its_features_known(toy_run):
    cfg = DictionaryConfig(source=str(toy_run), node="hidden", n_latents=12, eval_size=64)
    assert cfg.derived["d_in"] == 3 and cfg.derived["d_out"] == 3
    x, target, (features, c) = source_data(cfg, cfg.hparams(), jax.random.key(0), 32)
    (run,) = list(toylab.load_results(toy_run))
    assert x.shape == (32, 3) and target is x and features.shape == (6, 3) and c.shape == (32, 6)
    # The hidden activations are W applied to the features the toy was fed.
    np.testing.assert_allclose(np.asarray(x), np.asarray(c @ features), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(np.asarray(features), np.asarray(run.model.W.T), rtol=1e-6)
    tc = DictionaryConfig(source=str(toy_run), node="hidden", target_node="output", n_latents=12)
    assert tc.derived == {**tc.derived, "d_in": 3, "d_out": 6}
    x, target, (features, c) = source_data(tc, tc.hparams(), jax.random.key(0), 32)
    assert target.shape == (32, 6)
    np.testing.assert_array_equal(np.asarray(features), np.eye(6))


@pytest.mark.parametrize("fields, name", [
    (dict(kind="topk", k=65.0, n_latents=64), "k"),
    (dict(sparsity=-0.1), "sparsity"),
    (dict(n_features=5, dim=4, mean_active=6.0), "mean_active"),
    (dict(n_parents=2, children_per_parent=0), "children_per_parent"),
    (dict(kind="matryoshka", n_latents=16, prefixes=(4, 8)), "prefixes"),
    (dict(kind="relu", prefixes=(4, 64)), "prefixes"),
    (dict(kind="sparse"), "kind"),
    (dict(target_node="output"), "target_node"),
    (dict(source="/no/such/folder"), "source"),
])
def test_bad_dictionary_config_names_the_field(fields, name):
    with pytest.raises(ConfigError) as err:
        DictionaryConfig(**fields)
    assert err.value.field == name, str(err.value)


@pytest.mark.parametrize("args, kwargs, name", [
    ((8, 0), {}, "n_latents"), ((0, 8), {}, "d_in"), ((8, 8.5), {}, "n_latents"), ((8, 8), {"kind": "gated"}, "kind"),
    ((8, 8), {"d_out": 4}, "d_out"), ((8, 8), {"decoder_norm": 0.0}, "decoder_norm"),
    ((8, 8), {"kind": "matryoshka", "prefixes": (4,)}, "prefixes"),
])
def test_bad_init_dictionary_names_the_argument(args, kwargs, name):
    with pytest.raises(ConfigError) as err:
        init_dictionary(jax.random.key(0), *args, **kwargs)
    assert err.value.field == name, str(err.value)


def test_bad_source_nodes_name_the_field(toy_run):
    for fields, name in ((dict(node="resid_mid.0"), "node"), (dict(node="output"), "node"),
                         (dict(target_node="input"), "target_node"), (dict(source_index=3), "source_index")):
        with pytest.raises(ConfigError) as err:
            DictionaryConfig(source=str(toy_run), **{"node": "hidden", **fields})
        assert err.value.field == name, str(err.value)


@pytest.mark.slow
def test_a_source_folder_rewritten_is_read_again(tmp_path):
    """The source cache follows the folder: trained again into the same path with another
    hidden width, a new dictionary config reads the new model, not the one read before."""
    import shutil

    out = tmp_path / "toy"
    toy = {"n_features": 5, "n_hidden": 2, "steps": 20, "log_every": 10}
    toylab.run_sweep("superposition", toy, seeds=1, out=out, quiet=True)
    assert DictionaryConfig(source=str(out), n_latents=8).derived["d_in"] == 2
    shutil.rmtree(out)
    toylab.run_sweep("superposition", {**toy, "n_hidden": 4}, seeds=1, out=out, quiet=True)
    cfg = DictionaryConfig(source=str(out), n_latents=8)
    assert cfg.derived["d_in"] == 4
    x, _, (features, _) = source_data(cfg, cfg.hparams(), jax.random.key(0), 16)
    assert x.shape == (16, 4) and features.shape == (5, 4)
    from toylab.tasks.activations import _folder_stamp
    assert all(entry[1] is not None for entry in _folder_stamp(str(out)))  # the files it watches exist
