"""The LLC over training (toylab.analysis.development) and its refinements: per-point masks in
one program agree with one mask at a time, the groups and lead axes come back in order, the
held settings are refused as 'auto', and the induction family's data-refined inputs select
the sub-distributions they name."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.analysis.development import llc_over_training, point_warnings, weighted_mean
from toylab.analysis.heads import position_losses
from toylab.analysis.llc import learning_coefficients
from toylab.core.config import ConfigError
from toylab.core.family import get_family
from toylab.families import induction as ind

FIXED = dict(step_size=1e-3, localization=1.0, chains=2, draws=40, nbeta=50.0)


def _quadratic_stack():
    """Two points of the loss ½ Σ c_i w_i² with known curvatures c = (1, 4, 9)."""
    def loss(p, batch):
        return 0.5 * jnp.sum(batch["c"][0] * p["w"] ** 2)
    params = {"w": jnp.zeros((2, 3))}
    data = {"c": jnp.tile(jnp.asarray([[1.0, 4.0, 9.0]]), (4, 1))}
    return loss, params, data


@pytest.mark.slow
def test_per_point_masks_match_one_mask_at_a_time():
    loss, params, data = _quadratic_stack()
    first, second = {"w": jnp.asarray([True, False, False])}, {"w": jnp.asarray([False, True, True])}
    key = jax.random.key(3)
    both = learning_coefficients(loss, params, data, key, mask={"w": jnp.stack([first["w"], second["w"]])}, **FIXED)
    only_first = learning_coefficients(loss, params, data, key, mask=first, **FIXED)
    only_second = learning_coefficients(loss, params, data, key, mask=second, **FIXED)
    np.testing.assert_allclose(np.asarray(both.mean)[0], np.asarray(only_first.mean)[0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(both.mean)[1], np.asarray(only_second.mean)[1], rtol=1e-6)
    # the frozen coordinates did not move in either chain
    final = np.asarray(both.final["w"])
    assert np.all(final[0, :, 1:] == 0) and np.all(final[1, :, 0] == 0)
    assert not np.all(final[0, :, 0] == 0)


@pytest.mark.slow
def test_chunks_of_points_give_what_one_vmap_gives():
    loss, _, data = _quadratic_stack()
    params = {"w": jnp.zeros((5, 3))}
    key = jax.random.key(4)
    whole = learning_coefficients(loss, params, data, key, **FIXED)
    chunked = learning_coefficients(loss, params, data, key, chunk_size=2, **FIXED)
    np.testing.assert_allclose(np.asarray(chunked.mean), np.asarray(whole.mean), rtol=1e-5)
    np.testing.assert_allclose(np.asarray(chunked.traces), np.asarray(whole.traces), rtol=1e-5, atol=1e-7)
    with pytest.raises(ConfigError) as err:
        learning_coefficients(loss, params, data, key, chunk_size=0, **FIXED)
    assert err.value.field == "chunk_size"


def test_per_point_masks_are_checked_point_by_point():
    loss, params, data = _quadratic_stack()
    empty = {"w": jnp.asarray([[True, False, False], [False, False, False]])}
    with pytest.raises(ConfigError) as err:
        learning_coefficients(loss, params, data, jax.random.key(0), mask=empty, **FIXED)
    assert err.value.field == "mask" and "point 1" in str(err.value)
    with pytest.raises(ConfigError) as err:
        learning_coefficients(loss, params, data, jax.random.key(0), sampler="hmc", localization=1.0, chains=2,
                              draws=10, mask={"w": jnp.ones((2, 3), bool)})
    assert err.value.field == "mask"


@pytest.mark.slow
def test_llc_over_training_leads_with_groups_then_the_stack():
    loss, _, data = _quadratic_stack()
    snaps = {"w": jnp.zeros((2, 3, 3))}  # 2 seeds × 3 snapshots
    groups = {"one": {"w": jnp.asarray([True, False, False])}, "rest": {"w": jnp.asarray([False, True, True])}}
    res = llc_over_training(loss, snaps, data, jax.random.key(1), lead=2, groups=groups, **FIXED)
    assert np.shape(res.mean) == (2, 2, 3) and np.shape(res.traces) == (2, 2, 3, 2, 40)
    # a quadratic's LLC is half the moving dimensions (γ small against nβ·c): the group of two
    # directions sits near twice the group of one at every point
    m = np.asarray(res.mean)
    assert np.all(m[1] > 1.4 * m[0])
    assert isinstance(point_warnings(res, (0, 1, 2)), list)
    whole = llc_over_training(loss, snaps, data, jax.random.key(1), lead=2, **FIXED)
    assert np.shape(whole.mean) == (2, 3)


@pytest.mark.parametrize("field,kwargs", [
    ("step_size", dict(step_size="auto", localization=1.0)),
    ("localization", dict(step_size=1e-3, localization="auto")),
    ("step_size", dict(step_size=-1.0, localization=1.0)),
    ("lead", dict(step_size=1e-3, localization=1.0, lead=0)),
    ("snapshots", dict(step_size=1e-3, localization=1.0, lead=4)),
    ("groups", dict(step_size=1e-3, localization=1.0, groups={"bad": {"v": jnp.ones(3, bool)}})),
    ("groups", dict(step_size=1e-3, localization=1.0, groups={})),
    ("mask", dict(step_size=1e-3, localization=1.0, groups={"two": {"w": jnp.asarray([2.0, 0.0, 0.0])}})),
])
def test_llc_over_training_refuses_bad_settings(field, kwargs):
    loss, _, data = _quadratic_stack()
    with pytest.raises(ConfigError) as err:
        llc_over_training(loss, {"w": jnp.zeros((2, 3, 3))}, data, jax.random.key(1), **{"lead": 2, **kwargs})
    assert err.value.field == field


def test_weighted_mean_reads_only_the_weighted_values():
    v = jnp.asarray([[1.0, 5.0], [3.0, 7.0]])
    assert float(weighted_mean(v, jnp.asarray([[1, 0], [1, 0]]))) == 2.0
    assert float(weighted_mean(v, jnp.ones((2, 2)))) == 4.0
    assert float(weighted_mean(v, jnp.zeros((2, 2)))) == 0.0
    with pytest.raises(ConfigError) as err:
        weighted_mean(v, jnp.ones((2,)))
    assert err.value.field == "weights"


@pytest.mark.slow
def test_point_warnings_take_one_index_per_leading_axis():
    loss, _, data = _quadratic_stack()
    res = llc_over_training(loss, {"w": jnp.zeros((2, 3))}, data, jax.random.key(2), **FIXED)
    assert point_warnings(res, 1) == jax.tree.map(lambda x: x[1], res).warnings
    for bad in (2, (0, 0), -1, True, "0"):
        with pytest.raises(ConfigError) as err:
            point_warnings(res, bad)
        assert err.value.field == "index"
    with pytest.raises(ConfigError) as err:
        point_warnings({"mean": 1.0}, 0)
    assert err.value.field == "res"


def _small_config(**kw):
    return get_family("induction").config(**{"d_vocab": 8, "n_ctx": 12, "span": 4, "d_model": 8, "n_heads": 2,
                                             "batch_size": 4, "eval_size": 4, **kw})


@pytest.mark.slow
def test_induction_subsets_partition_the_predicted_tokens():
    cfg = _small_config()
    hp = cfg.hparams()
    every, copied, other = (ind.llc_data(cfg, hp, 16, s) for s in ind.SUBSETS)
    np.testing.assert_array_equal(every["tokens"], copied["tokens"])  # the same sequences
    np.testing.assert_array_equal(np.asarray(copied["weights"]) + np.asarray(other["weights"]), 1.0)
    w = np.asarray(copied["weights"], bool)
    tokens = np.asarray(copied["tokens"])
    # weight j is the loss of predicting token t = j + 1; a selected t is a copy whose predecessor
    # is one too: the pair (token t − 1, token t) occurred earlier in the sequence
    for row, cols in zip(tokens, w):
        for t in np.flatnonzero(cols) + 1:
            assert any(row[t] == row[i] and row[t - 1] == row[i - 1] for i in range(1, t))
    assert w[:, : cfg.n_ctx - cfg.span].sum() == 0 and w.sum() == 16 * (cfg.span - 1)


def test_a_subset_that_selects_nothing_is_refused():
    cfg = _small_config(repeat_probability=0.0)
    with pytest.raises(ConfigError) as err:
        ind.llc_data(cfg, cfg.hparams(), 8, "copied")
    assert err.value.field == "subset" and "no token" in str(err.value)
    for field, args in (("subset", (8, "induction")), ("n", (0, "all"))):
        with pytest.raises(ConfigError) as err:
            ind.llc_data(cfg, cfg.hparams(), *args)
        assert err.value.field == field


@pytest.mark.slow
def test_induction_llc_loss_and_head_groups():
    cfg = _small_config()
    fam = get_family("induction")
    model = fam.init(cfg, cfg.hparams(), jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    data = ind.llc_data(cfg, cfg.hparams(), 8, "all")
    loss = ind.llc_loss(static)
    expected = jnp.mean(position_losses(jax.vmap(model)(data["tokens"]), data["tokens"]))
    np.testing.assert_allclose(float(loss(params, data)), float(expected), rtol=1e-5)
    groups = ind.head_groups(model, params)
    assert list(groups) == ["L0H0", "L0H1", "L1H0", "L1H1"]
    counts = [sum(int(np.sum(m)) for m in jax.tree.leaves(g)) for g in groups.values()]
    assert len(set(counts)) == 1 and counts[0] == 4 * (8 // 2) * 8
    total = jax.tree.map(lambda *ms: sum(np.asarray(m, int) for m in ms), *groups.values())
    assert max(int(np.max(t)) for t in jax.tree.leaves(total)) == 1  # disjoint
    with pytest.raises(ConfigError) as err:
        ind.head_groups({"w": jnp.ones(3)}, params)  # not a model with heads
    assert err.value.field == "model"
