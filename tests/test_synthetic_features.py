"""The synthetic activation generator with planted features (toylab.tasks.synthetic_features)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.core.config import ConfigError
from toylab.testing import strategies as tst
from toylab.tasks.synthetic_features import (
    Correlation,
    Hierarchy,
    SyntheticFeatures,
    feature_directions,
    firing_probabilities,
    marginal_probabilities,
    sample_features,
    synthetic_activations,
)


def binomial_tolerance(p, n, sigmas=5.0):
    """``sigmas`` standard errors of a frequency of n draws, with a floor for p near 0 or 1."""
    p = np.asarray(p, np.float64)
    return sigmas * np.sqrt(p * (1 - p) / n) + 1e-6


# ----------------------------------------------------------------------------- firing probabilities


# Compiled once per size; the numbers are traced (as in a sweep).
firing_probabilities_jit = jax.jit(firing_probabilities, static_argnums=0)


@settings(max_examples=60)
@given(n=st.sampled_from([1, 2, 7, 64, 300]), frac=st.floats(0.0, 1.0), exponent=st.floats(0.0, 8.0))
def test_firing_probabilities_sum_to_mean_active_and_decrease(n, frac, exponent):
    m = frac * n
    p = np.asarray(firing_probabilities_jit(n, m, exponent), np.float64)
    assert p.shape == (n,)
    assert np.all(p >= 0) and np.all(p <= 1)
    np.testing.assert_allclose(p.sum(), m, rtol=1e-4, atol=1e-5)
    assert np.all(np.diff(p) <= 1e-7)
    # The water-filling form: unclipped probabilities are s·(i+1)^(-a) with one s.
    free = (p < 1) & (p > 1e-30)
    if free.sum() >= 2:
        s = p[free] * np.arange(1, n + 1)[free] ** exponent
        np.testing.assert_allclose(s, s[0], rtol=1e-4)


def test_zero_exponent_is_uniform():
    p = np.asarray(firing_probabilities(37, 4.5, 0.0))
    np.testing.assert_allclose(p, 4.5 / 37, rtol=1e-6)
    assert np.ptp(p) == 0


@pytest.mark.slow
@pytest.mark.parametrize("n,m,a", [(50, 49.0, 6.0), (20, 19.5, 3.0), (1000, 999.5, 30.0), (64, 10.0, 20.0)])
def test_clipped_probabilities_still_sum_to_mean_active(n, m, a):
    p = np.asarray(firing_probabilities(n, m, a), np.float64)
    assert (p == 1).sum() >= 1  # the clip is active
    np.testing.assert_allclose(p.sum(), m, rtol=1e-4)
    assert np.all(np.diff(p) <= 0) and p.min() >= 0


def test_zipf_without_clipping_has_the_exact_ratio():
    p = np.asarray(firing_probabilities(100, 2.0, 1.0), np.float64)
    assert p.max() < 1
    np.testing.assert_allclose(p, 2.0 / np.sum(1 / np.arange(1, 101)) / np.arange(1, 101), rtol=1e-5)


# ----------------------------------------------------------------------------- presence


B = 100_000
# The sampler compiled (a Hierarchy is hashable, so static); numbers and factors are traced.
sample_jit = jax.jit(sample_features, static_argnums=1, static_argnames="hierarchy")


def presence_correlation(on, i, j):
    return np.corrcoef(on[:, i].astype(np.float64), on[:, j].astype(np.float64))[0, 1]


def test_independent_marginals_match_probabilities():
    p = firing_probabilities(24, 5.0, 1.2)
    c = np.asarray(sample_jit(jax.random.key(0), B, p))
    freq = (c > 0).mean(0)
    p = np.asarray(p)
    assert np.all(np.abs(freq - p) <= binomial_tolerance(p, B)), np.abs(freq - p) / binomial_tolerance(p, B)
    # Independent features: presence correlations are at noise level.
    assert abs(presence_correlation(c > 0, 3, 4)) < 5 / np.sqrt(B)


def block_factor(n, groups):
    """Features 0..n-1 in `groups` contiguous blocks, each block on its own factor column."""
    f = np.zeros((n, groups), np.float32)
    for i in range(n):
        f[i, i * groups // n] = 1.0
    return jnp.asarray(f)


@pytest.mark.slow
@pytest.mark.parametrize("strength", [0.0, 0.6, 1.0])
def test_copula_keeps_marginals_and_correlates_features_sharing_a_factor(strength):
    n = 12
    p = firing_probabilities(n, 3.0, 0.8)
    factor = block_factor(n, 2)  # features 0-5 share column 0, 6-11 column 1
    c = np.asarray(sample_jit(jax.random.key(1), B, p, correlation=Correlation(factor, strength)))
    on = c > 0
    pn = np.asarray(p)
    assert np.all(np.abs(on.mean(0) - pn) <= binomial_tolerance(pn, B)), np.abs(on.mean(0) - pn) / binomial_tolerance(pn, B)
    same = presence_correlation(on, 1, 2)
    other = presence_correlation(on, 1, 8)
    noise = 5 / np.sqrt(B)
    assert abs(other) < noise  # orthogonal factor rows: independent
    if strength == 0:
        assert abs(same) < noise
    else:
        assert same > 0.1 + noise
    if strength == 1.0:
        # Fully comonotone: the rarer of two features sharing a factor implies the commoner one.
        assert pn[2] <= pn[1] and not np.any(on[:, 2] & ~on[:, 1])


def test_copula_with_a_zero_factor_row_keeps_that_marginal():
    p = jnp.full((4,), 0.3)
    factor = jnp.asarray([[1.0], [1.0], [0.0], [1.0]])
    on = np.asarray(sample_jit(jax.random.key(2), B, p, correlation=(factor, 0.9))) > 0
    assert np.all(np.abs(on.mean(0) - 0.3) <= binomial_tolerance(0.3, B))
    assert abs(presence_correlation(on, 0, 2)) < 5 / np.sqrt(B)
    assert presence_correlation(on, 0, 1) > 0.5


@pytest.mark.slow
def test_probabilities_zero_and_one_are_never_and_always():
    p = jnp.asarray([0.0, 1.0, 0.5])
    for corr in (None, (jnp.ones((3, 1)), 0.5)):
        on = np.asarray(sample_features(jax.random.key(3), 5000, p, correlation=corr)) > 0
        assert not on[:, 0].any() and on[:, 1].all()


# ----------------------------------------------------------------------------- hierarchy


@pytest.mark.slow
@pytest.mark.parametrize("child_probability,correlated", [(1.0, False), (0.6, False), (0.6, True)])
def test_hierarchy_children_need_their_parent_and_exclude_each_other(child_probability, correlated):
    h = Hierarchy(n_parents=3, children_per_parent=3)
    n = 16  # 3 parents, 9 children, 4 outside the hierarchy
    p = firing_probabilities(n, 4.0, 0.7)
    corr = (block_factor(n, 2), 0.5) if correlated else None
    c = np.asarray(sample_jit(jax.random.key(4), B, p, hierarchy=h, child_probability=child_probability,
                                   correlation=corr))
    on = c > 0
    children = on[:, 3:12].reshape(B, 3, 3)
    parents = on[:, :3]
    assert not np.any(children.any(axis=2) & ~parents)  # never without the parent
    assert children.sum(axis=2).max() <= 1  # at most one child per parent
    if child_probability == 1.0:
        np.testing.assert_array_equal(children.sum(axis=2), parents)  # exactly one under a present parent
    marg = np.asarray(marginal_probabilities(p, hierarchy=h, child_probability=child_probability), np.float64)
    pn = np.asarray(p, np.float64)
    np.testing.assert_allclose(marg[:3], pn[:3])
    np.testing.assert_allclose(marg[12:], pn[12:])
    # The children's marginals differ from their own p and are what the sampler produces.
    expected = pn[:3, None] * child_probability * pn[3:12].reshape(3, 3) / pn[3:12].reshape(3, 3).sum(1, keepdims=True)
    np.testing.assert_allclose(marg[3:12], expected.reshape(-1), rtol=1e-5)
    assert np.all(np.abs(on.mean(0) - marg) <= binomial_tolerance(marg, B)), np.abs(on.mean(0) - marg) / binomial_tolerance(marg, B)


def test_hierarchy_with_zero_probability_children_picks_uniformly():
    h = Hierarchy(1, 2)
    p = jnp.asarray([0.5, 0.0, 0.0])
    marg = np.asarray(marginal_probabilities(p, hierarchy=h, child_probability=0.8))
    np.testing.assert_allclose(marg, [0.5, 0.2, 0.2], rtol=1e-6)
    on = np.asarray(sample_jit(jax.random.key(5), B, p, hierarchy=h, child_probability=0.8)) > 0
    assert np.all(np.abs(on.mean(0) - marg) <= binomial_tolerance(marg, B))


# ----------------------------------------------------------------------------- magnitudes


@pytest.mark.slow
def test_zero_std_gives_exactly_the_mean_on_present_features():
    p = jnp.full((8,), 0.4)
    for std in (0.0, jnp.float32(0.0)):  # a concrete zero and an array zero
        c = np.asarray(sample_features(jax.random.key(6), 2000, p, magnitude_mean=1.7, magnitude_std=std))
        assert np.all(c[c > 0] == np.float32(1.7)) and (c > 0).any()
        assert np.all((c == 0) | (c == np.float32(1.7)))


def test_magnitudes_are_folded_normal():
    mu, sd = 0.5, 1.0
    c = np.asarray(sample_jit(jax.random.key(7), B, jnp.ones((4,)), magnitude_mean=mu, magnitude_std=sd))
    assert c.min() >= 0
    from math import erf, exp, pi, sqrt
    folded_mean = sd * sqrt(2 / pi) * exp(-mu ** 2 / (2 * sd ** 2)) + mu * erf(mu / sqrt(2 * sd ** 2))
    np.testing.assert_allclose(c.mean(), folded_mean, atol=5 * sd / np.sqrt(c.size))
    np.testing.assert_allclose((c ** 2).mean(), mu ** 2 + sd ** 2, rtol=0.01)


# ----------------------------------------------------------------------------- directions and activations


directions_jit = jax.jit(feature_directions, static_argnums=(1, 2), static_argnames="orthogonal")


@pytest.mark.slow
@settings(max_examples=25)
@given(shape=st.sampled_from([(1, 1), (1, 6), (3, 5), (16, 16), (40, 17), (17, 40)]), seed=st.integers(0, 2**16))
def test_directions_have_unit_norm_and_orthogonal_ones_are_orthonormal(shape, seed):
    n, d = shape
    key = jax.random.key(seed)
    w = np.asarray(directions_jit(key, n, d), np.float64)
    assert w.shape == (n, d)
    np.testing.assert_allclose(np.linalg.norm(w, axis=1), 1.0, rtol=1e-5)
    if n <= d:
        q = np.asarray(directions_jit(key, n, d, orthogonal=True), np.float64)
        np.testing.assert_allclose(q @ q.T, np.eye(n), atol=2e-5)
    else:
        with pytest.raises(ConfigError) as e:
            feature_directions(key, n, d, orthogonal=True)
        assert e.value.field == "orthogonal"


def test_directions_dtype_and_random_directions_are_not_orthogonal():
    w = feature_directions(jax.random.key(0), 30, 10, dtype=jnp.bfloat16)
    assert w.dtype == jnp.bfloat16
    w = np.asarray(feature_directions(jax.random.key(0), 8, 64), np.float64)
    assert np.abs(w @ w.T - np.eye(8)).max() > 0.05


@pytest.mark.slow
def test_activations_are_the_feature_sum_and_noise_has_its_std():
    key = jax.random.key(8)
    w = feature_directions(key, 20, 12)
    c = sample_features(jax.random.key(9), 4000, firing_probabilities(20, 4.0, 1.0), magnitude_std=0.5)
    bias = jnp.linspace(-1, 1, 12)
    expected = np.asarray(c, np.float64) @ np.asarray(w, np.float64)
    x = np.asarray(synthetic_activations(key, w, c))
    np.testing.assert_allclose(x, expected, atol=2e-6)
    np.testing.assert_allclose(np.asarray(synthetic_activations(key, w, c, bias=bias)), expected + np.asarray(bias), atol=2e-6)
    x = np.asarray(synthetic_activations(key, w, c, noise_std=0.3, bias=bias), np.float64)
    resid = x - expected - np.asarray(bias)
    n = resid.size
    np.testing.assert_allclose(resid.std(), 0.3, rtol=5 / np.sqrt(2 * n))
    assert abs(resid.mean()) < 5 * 0.3 / np.sqrt(n)


# ----------------------------------------------------------------------------- the bundled generator


@pytest.mark.slow
def test_generator_sample_is_consistent_and_directions_are_fixed_by_seed():
    cfg = SyntheticFeatures(n_features=30, dim=10, mean_active=4.0, zipf_exponent=1.0, n_parents=2,
                            children_per_parent=3, child_probability=0.5, correlation_rank=3,
                            correlation_strength=0.4, magnitude_std=0.2)
    sample = jax.jit(SyntheticFeatures.sample, static_argnums=2)
    x, c = sample(cfg, jax.random.key(0), 500)
    assert x.shape == (500, 10) and c.shape == (500, 30) and x.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(x), np.asarray(c, np.float64) @ np.asarray(cfg.directions(), np.float64), atol=2e-6)
    np.testing.assert_array_equal(cfg.directions(), cfg.replace(mean_active=2.0).directions())
    assert not np.allclose(cfg.directions(), cfg.replace(seed=1).directions())
    x2, c2 = cfg.sample(jax.random.key(0), 500)  # eager gives the same
    np.testing.assert_allclose(x, x2, rtol=1e-6, atol=1e-6)
    # The expected count of present features is the sum of the true marginals.
    _, c = sample(cfg, jax.random.key(1), 20_000)
    np.testing.assert_allclose((np.asarray(c) > 0).sum(1).mean(), float(cfg.marginal_probabilities().sum()), rtol=0.03)
    assert float(cfg.marginal_probabilities().sum()) < 4.0  # children subsampled: below mean_active


# One size and structure (the testing kit's planted data sets): the examples, which differ in
# their numbers and seeds, share every compiled operation.
@pytest.mark.slow
@settings(max_examples=5, deadline=None)
@given(tst.planted_features(batch_size=32, min_features=6, max_features=6, min_dim=4, max_dim=4, hierarchy=False,
                            correlation=False, noise=False, orthogonal=False))
def test_planted_data_are_the_sum_of_their_features(data):
    assert data.x.shape == (32, 4) and data.c.shape == (32, 6) and data.directions.shape == (6, 4)
    assert np.all(data.c >= 0)
    np.testing.assert_allclose(np.linalg.norm(data.directions, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(data.x, data.c.astype(np.float64) @ data.directions, atol=1e-5)
    if float(data.generator.magnitude_std) == 0:  # present features carry exactly the mean magnitude
        assert np.all((data.c == 0) | np.isclose(data.c, float(data.generator.magnitude_mean), rtol=1e-6))


@pytest.mark.slow
def test_noise_of_the_generator():
    cfg = SyntheticFeatures(n_features=10, dim=50, mean_active=2.0, noise_std=0.25, orthogonal_directions=True)
    x, c = jax.jit(SyntheticFeatures.sample, static_argnums=2)(cfg, jax.random.key(2), 4000)
    resid = np.asarray(x, np.float64) - np.asarray(c, np.float64) @ np.asarray(cfg.directions(), np.float64)
    np.testing.assert_allclose(resid.std(), 0.25, rtol=0.01)


@pytest.mark.slow
def test_jit_and_vmap_over_traced_mean_active_match_separate_calls():
    cfg = SyntheticFeatures(n_features=16, dim=8, mean_active=1.0, zipf_exponent=0.5, n_parents=2,
                            children_per_parent=2, correlation_rank=2, correlation_strength=0.3,
                            magnitude_std=0.1, noise_std=0.05)
    key = jax.random.key(3)
    grid = jnp.asarray([0.5, 2.0, 5.0, 11.0])
    traces = []

    def run(m, noise):
        traces.append(1)
        return cfg.replace(mean_active=m, noise_std=noise).sample(key, 256)

    xs, cs = jax.jit(jax.vmap(run))(grid, grid / 100)
    assert len(traces) == 1
    for i, m in enumerate(grid.tolist()):
        x, c = cfg.replace(mean_active=m, noise_std=m / 100).sample(key, 256)
        np.testing.assert_array_equal(np.asarray(cs[i]) > 0, np.asarray(c) > 0)
        np.testing.assert_allclose(cs[i], c, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(xs[i], x, rtol=1e-5, atol=1e-5)
    # Different grid values give different data (the traced value is used, not a constant).
    assert (np.asarray(cs[3]) > 0).sum() > 3 * (np.asarray(cs[0]) > 0).sum()


@pytest.mark.slow
def test_config_is_a_pytree_with_static_shapes_and_traced_numbers():
    cfg = SyntheticFeatures(n_features=12, dim=6, mean_active=3.0)
    stacked = jax.tree.map(lambda v: jnp.stack([jnp.asarray(v, jnp.float32)] * 3) * jnp.asarray([1.0, 2.0, 3.0]),
                           cfg)
    assert stacked.n_features == 12
    p = jax.vmap(SyntheticFeatures.probabilities)(stacked)
    np.testing.assert_allclose(np.asarray(p).sum(1), [3.0, 6.0, 9.0], rtol=1e-5)
    traces = []

    def sample(c, k):
        traces.append(1)
        return c.sample(k, 64)

    compiled = jax.jit(sample)
    x1, _ = compiled(cfg, jax.random.key(0))
    x2, _ = compiled(cfg.replace(mean_active=6.0, magnitude_std=0.5), jax.random.key(0))
    assert len(traces) == 1  # one program for both values
    assert not np.array_equal(x1, x2)


BAD_FIELDS = [
    ("n_features", 0), ("n_features", 2.5), ("n_features", True), ("dim", -1),
    ("mean_active", 31.0), ("mean_active", -0.5), ("mean_active", float("nan")), ("mean_active", "many"),
    ("mean_active", np.asarray([1.0, 40.0])),
    ("zipf_exponent", -1.0), ("zipf_exponent", float("inf")),
    ("n_parents", -1), ("n_parents", 31), ("children_per_parent", 30), ("children_per_parent", -2),
    ("child_probability", 1.5), ("child_probability", -0.1),
    ("correlation_rank", 31), ("correlation_rank", -1), ("correlation_strength", 1.2), ("correlation_strength", -0.1),
    ("magnitude_mean", -1.0), ("magnitude_std", -0.1), ("noise_std", -0.01), ("noise_std", None),
    ("orthogonal_directions", "yes"), ("seed", -3),
]


@pytest.mark.parametrize("field,value", BAD_FIELDS)
def test_every_bad_field_raises_config_error_naming_it(field, value):
    base = dict(n_features=30, dim=40, correlation_rank=2, n_parents=2, children_per_parent=3)
    if field == "n_parents" and value > 30:
        base["children_per_parent"] = 1
    if field == "children_per_parent" and value > 0:
        base["n_parents"] = 1  # 1 + 30 features: more than there are
    base[field] = value
    with pytest.raises(ConfigError) as e:
        SyntheticFeatures(**base)
    assert e.value.field == field, str(e.value)


def test_cross_field_rules():
    for kwargs, field in [
        (dict(n_features=5, mean_active=5.5), "mean_active"),
        (dict(n_parents=2), "children_per_parent"),  # parents without children
        (dict(children_per_parent=2), "n_parents"),
        (dict(n_features=10, n_parents=4, children_per_parent=2), "children_per_parent"),  # 12 > 10
        (dict(correlation_strength=0.5), "correlation_strength"),  # no factor
        (dict(n_features=20, dim=10, orthogonal_directions=True), "orthogonal_directions"),
    ]:
        with pytest.raises(ConfigError) as e:
            SyntheticFeatures(**{"mean_active": 1.0, **kwargs})
        assert e.value.field == field
    # The edges are allowed.
    SyntheticFeatures(n_features=10, mean_active=10.0, n_parents=2, children_per_parent=4, correlation_rank=10,
                      correlation_strength=1.0, child_probability=0.0, dim=10, orthogonal_directions=True)
    SyntheticFeatures(n_features=10, mean_active=0.0)


def test_functions_refuse_bad_static_arguments():
    with pytest.raises(ConfigError, match="n_features"):
        firing_probabilities(0, 1.0, 1.0)
    with pytest.raises(ConfigError) as e:
        sample_features(jax.random.key(0), 4, jnp.full((5,), 0.2), hierarchy=Hierarchy(2, 2))
    assert e.value.field == "children_per_parent"
    with pytest.raises(ConfigError) as e:
        sample_features(jax.random.key(0), 4, jnp.full((5,), 0.2), correlation=(jnp.ones((4, 2)), 0.5))
    assert e.value.field == "correlation"
