"""The local learning coefficient estimator against what can be computed exactly, and the
closed-form learning coefficients against hand-checked cases and their symmetries."""

from fractions import Fraction

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.analysis import learning_coefficients as lc
from toylab.analysis.degeneracy import default_nbeta, learning_coefficient, rhat, sgld
from toylab.core.config import ConfigError

DATA = {"x": jnp.zeros((50, 1))}  # the quadratic losses below ignore their batch


def _quadratic(a, centre):
    a, centre = jnp.asarray(a), jnp.asarray(centre)
    return lambda w, batch: 0.5 * jnp.sum(a * (w["w"] - centre) ** 2)


def _exact_sgld_llc(a, nbeta, gamma, eps):
    """nβ·½Σ aᵢvᵢ: SGLD's stationary variance on kᵢ(w−w*)²/2 is vᵢ = 1/(kᵢ(1 − εkᵢ/4)),
    kᵢ = nβaᵢ + γ (the linear recursion w' = (1 − εk/2)w + √ε ξ)."""
    a = np.asarray(a, np.float64)
    k = nbeta * a + gamma
    return nbeta * 0.5 * np.sum(a / (k * (1 - eps * k / 4)))


@pytest.mark.slow
@settings(max_examples=4, deadline=None)
@given(a=st.lists(st.sampled_from([0.5, 1.0, 2.0, 4.0]), min_size=2, max_size=3),
       gamma=st.sampled_from([0.0, 1.0, 10.0]), eps=st.sampled_from([0.005, 0.02]))
def test_sgld_on_a_quadratic_matches_its_exact_finite_step_value(a, gamma, eps):
    nbeta = 10.0
    centre = np.linspace(-1, 1, len(a))
    res = learning_coefficient(_quadratic(a, centre), {"w": jnp.asarray(centre, jnp.float32)}, DATA,
                               jax.random.key(0), chains=256, draws=1500, burnin=300, step_size=eps,
                               nbeta=nbeta, localization=gamma)
    exact = _exact_sgld_llc(a, nbeta, gamma, eps)
    standard_error = float(res.per_chain.std()) / np.sqrt(256)
    assert abs(float(res.mean) - exact) < 5 * standard_error + 1e-3 * exact, (float(res.mean), exact, standard_error)
    assert float(res.init_loss) == 0.0
    # the predicted step-size bias is this exact inflation over the ε → 0 value (d/2 at γ = 0)
    at_zero = _exact_sgld_llc(a, nbeta, gamma, 0.0)
    assert float(res.step_bias) == pytest.approx(exact / at_zero - 1, rel=1e-3, abs=1e-6)
    assert float(res.quadratic_exact) == pytest.approx(at_zero, rel=1e-5)
    warned = any("step-size bias" in w for w in res.warnings)
    assert warned == (exact / at_zero - 1 > res.threshold), res.warnings
    assert not any("diverged" in w or "minimum" in w for w in res.warnings)


def test_regular_quadratic_gives_d_over_2_at_small_step():
    a = [1.0, 3.0, 2.0, 0.5]
    res = learning_coefficient(_quadratic(a, np.zeros(4)), {"w": jnp.zeros(4)}, DATA, jax.random.key(1),
                               chains=128, draws=2000, burnin=400, step_size=1e-3, nbeta=100.0, localization=0.0)
    assert float(res.mean) == pytest.approx(2.0, rel=0.05)  # d/2 = lc.regular(4)
    assert lc.regular(4) == (Fraction(2), 1)
    assert float(res.rhat) < 1.05


@pytest.mark.slow
def test_noise_off_sgld_at_step_2eta_is_gradient_descent_at_eta():
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(40, 3)), jnp.float32)
    y = x @ jnp.asarray([1.0, -2.0, 0.5]) + 0.1 * jnp.asarray(rng.normal(size=40), jnp.float32)
    loss = lambda p, b: jnp.mean((b["x"] @ p["w"] + p["b"] - b["y"]) ** 2)  # noqa: E731
    w0 = {"w": jnp.zeros(3), "b": jnp.asarray(0.3)}
    eta, steps = 0.01, 25
    res = learning_coefficient(loss, w0, {"x": x, "y": y}, jax.random.key(0), chains=2, draws=steps, burnin=0,
                               step_size=2 * eta, nbeta=1.0, localization=0.0, sampler=sgld(noise=False))
    w = w0
    for _ in range(steps):
        g = jax.grad(loss)(w, {"x": x, "y": y})
        w = jax.tree.map(lambda p, gp: p - eta * gp, w, g)
    for chain in range(2):
        np.testing.assert_allclose(res.final["w"][chain], w["w"], rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(res.final["b"][chain], w["b"], rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_restricted_llc_with_frozen_coordinates_is_the_smaller_models():
    a, nbeta, gamma, eps = [1.0, 2.0, 4.0], 10.0, 1.0, 0.01
    full = {"w": jnp.zeros(3)}
    mask = {"w": jnp.asarray([True, False, True])}
    restricted = learning_coefficient(_quadratic(a, np.zeros(3)), full, DATA, jax.random.key(2), chains=256,
                                      draws=1500, burnin=300, step_size=eps, nbeta=nbeta, localization=gamma, mask=mask)
    smaller = learning_coefficient(_quadratic([1.0, 4.0], np.zeros(2)), {"w": jnp.zeros(2)}, DATA, jax.random.key(3),
                                   chains=256, draws=1500, burnin=300, step_size=eps, nbeta=nbeta, localization=gamma)
    exact = _exact_sgld_llc([1.0, 4.0], nbeta, gamma, eps)
    for res in (restricted, smaller):
        se = float(res.per_chain.std()) / np.sqrt(256)
        assert abs(float(res.mean) - exact) < 5 * se, (float(res.mean), exact, se)
    np.testing.assert_array_equal(restricted.final["w"][:, 1], 0.0)  # the frozen coordinate never moved


@pytest.mark.slow
def test_same_key_same_numbers_and_minibatches():
    x = jnp.asarray(np.random.default_rng(1).normal(size=(64, 2)), jnp.float32)
    loss = lambda p, b: jnp.mean((b["x"] @ p) ** 2)  # noqa: E731
    kw = dict(chains=3, draws=50, step_size=1e-3, batch_size=8)
    one = learning_coefficient(loss, jnp.zeros(2), {"x": x}, jax.random.key(5), **kw)
    two = learning_coefficient(loss, jnp.zeros(2), {"x": x}, jax.random.key(5), **kw)
    other = learning_coefficient(loss, jnp.zeros(2), {"x": x}, jax.random.key(6), **kw)
    np.testing.assert_array_equal(one.traces, two.traces)
    assert not np.array_equal(one.traces, other.traces)
    assert one.traces.shape == (3, 50) and one.n == 64
    assert float(one.nbeta) == pytest.approx(default_nbeta(64)) == pytest.approx(64 / np.log(64))


@pytest.mark.slow
def test_vmaps_over_snapshots():
    a = [1.0, 2.0]
    centres = jnp.asarray([[0.0, 0.0], [1.0, -1.0], [2.0, 0.5]])

    def llc(c):
        return learning_coefficient(lambda w, b: 0.5 * jnp.sum(jnp.asarray(a) * (w - c) ** 2), c, DATA,
                                    jax.random.key(0), chains=8, draws=100, step_size=1e-3, nbeta=10.0)
    stacked = jax.vmap(llc)(centres)
    assert stacked.mean.shape == (3,) and stacked.traces.shape == (3, 8, 100)
    for i in range(3):  # the loss is translation invariant: every snapshot gives the same numbers
        np.testing.assert_allclose(stacked.mean[i], llc(centres[i]).mean, rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_diagnostics_mala_acceptance_divergence_and_negative_estimates():
    quad = _quadratic([1.0, 2.0], np.zeros(2))
    small = learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=4, draws=200,
                                 step_size=1e-4, nbeta=10.0, sampler="sgld_mala")
    large = learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=4, draws=200,
                                 step_size=0.15, nbeta=10.0, sampler="sgld_mala")
    assert float(small.acceptance) > 0.99 and float(large.acceptance) < float(small.acceptance)
    assert np.isnan(float(learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=2,
                                               draws=20).acceptance))
    blown = learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=2, draws=200,
                                 step_size=5.0, nbeta=10.0)
    assert bool(np.all(blown.diverged)) and any("diverged" in w for w in blown.warnings)
    # Started away from the minimum: the chains fall below L(w*) and the estimate is negative.
    off = learning_coefficient(quad, {"w": jnp.asarray([3.0, 3.0])}, DATA, jax.random.key(0), chains=4, draws=400,
                               step_size=1e-2, nbeta=10.0, localization=0.0)
    assert float(off.mean) < 0 and np.all(off.below_init > 0.9)
    assert any("negative" in w for w in off.warnings) and any("below L(w*)" in w for w in off.warnings)


@pytest.mark.slow
def test_rmsprop_sgld_estimates_a_badly_scaled_quadratic():
    a = [100.0, 0.01]  # curvatures four decades apart
    res = learning_coefficient(_quadratic(a, np.zeros(2)), {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=64,
                               draws=3000, burnin=1000, step_size=1e-3, nbeta=100.0, localization=0.0,
                               sampler="rmsprop_sgld")
    assert np.isfinite(float(res.mean)) and float(res.mean) == pytest.approx(1.0, rel=0.25)


def test_rhat_is_one_for_agreeing_chains_and_large_for_disagreeing():
    rng = np.random.default_rng(0)
    same = rng.normal(size=(4, 2000))
    assert float(rhat(same)) == pytest.approx(1.0, abs=0.01)
    apart = same + np.arange(4)[:, None] * 3.0
    assert float(rhat(apart)) > 2


@pytest.mark.parametrize("kwargs, field", [
    (dict(step_size=0.0), "step_size"), (dict(step_size=-1e-3), "step_size"), (dict(nbeta=0.0), "nbeta"),
    (dict(draws=0), "draws"), (dict(chains=0), "chains"), (dict(draws=10, burnin=10), "burnin"),
    (dict(localization=-1.0), "localization"), (dict(sampler="nuts"), "sampler"), (dict(batch_size=0), "batch_size"),
    (dict(mask={"v": jnp.ones(2, bool)}), "mask"), (dict(mask={"w": jnp.ones(3, bool)}), "mask"),
])
def test_bad_arguments_are_one_clear_error(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}"):
        learning_coefficient(_quadratic([1.0, 1.0], np.zeros(2)), {"w": jnp.zeros(2)}, DATA, jax.random.key(0),
                             **kwargs)


def test_bad_data_and_loss_are_one_clear_error():
    quad = _quadratic([1.0, 1.0], np.zeros(2))
    with pytest.raises(ConfigError, match="^data has arrays without a leading example axis"):
        learning_coefficient(quad, {"w": jnp.zeros(2)}, {"x": jnp.asarray(1.0)}, jax.random.key(0))
    with pytest.raises(ConfigError, match="^data"):
        learning_coefficient(quad, {"w": jnp.zeros(2)}, {"x": jnp.zeros(5), "y": jnp.zeros(6)}, jax.random.key(0))
    with pytest.raises(ConfigError, match="^loss .* must return a scalar"):
        learning_coefficient(lambda w, b: w["w"], {"w": jnp.zeros(2)}, DATA, jax.random.key(0))
    with pytest.raises(ConfigError, match="^params"):
        learning_coefficient(quad, {"w": jnp.zeros(2, jnp.int32)}, DATA, jax.random.key(0))


# ----------------------------------------------------------------------------- closed forms


def test_closed_forms_of_hand_checked_cases():
    assert lc.normal_crossing([1, 2, 0]) == (Fraction(1, 4), 1)  # x·y² : min(1/2, 1/4)
    assert lc.normal_crossing([1, 1]) == (Fraction(1, 2), 2)  # (xy)²: 1/2 twice
    assert lc.sum_of_powers(3, 4) == (Fraction(3, 4), 1)
    # y = a·b·x with the true product 0: K = (ab)², the normal crossing (1/2, multiplicity 2)
    assert lc.reduced_rank_regression(1, 1, 1, 0) == lc.normal_crossing([1, 1])
    # full rank k everywhere: the product matrix's k² coordinates are regular
    for k in (1, 2, 3):
        assert lc.reduced_rank_regression(k, k, k, k) == (Fraction(k * k, 2), 1)
    # a wide bottleneck (M + N < H + r): the product's MN coordinates
    assert lc.reduced_rank_regression(2, 1, 5, 0) == (Fraction(1), 1)
    # case 3 (N + H < M + r): (HN − Hr + Mr)/2
    assert lc.reduced_rank_regression(6, 1, 1, 1) == (Fraction(6, 2), 1)


@settings(max_examples=200, deadline=None)
@given(M=st.integers(1, 8), N=st.integers(1, 8), H=st.integers(1, 8), data=st.data())
def test_reduced_rank_regression_symmetry_and_bounds(M, N, H, data):
    r = data.draw(st.integers(0, min(M, N, H)))
    lam, m = lc.reduced_rank_regression(M, N, H, r)
    assert (lam, m) == lc.reduced_rank_regression(N, M, H, r)  # swapping input and output
    assert 0 < lam <= Fraction(H * (M + N), 2)  # never above the regular count of its parameters
    assert m in (1, 2)
    if r < min(M, N, H):  # more true rank never lowers the coefficient
        assert lc.reduced_rank_regression(M, N, H, r + 1)[0] >= lam


@settings(max_examples=200, deadline=None)
@given(M=st.integers(1, 9), H=st.integers(1, 9), N=st.integers(1, 9), data=st.data())
def test_deep_linear_network_with_two_layers_is_reduced_rank_regression(M, H, N, data):
    r = data.draw(st.integers(0, min(M, N, H)))
    # computed by Aoyagi's subset formula, not by calling reduced_rank_regression
    assert lc.deep_linear_network([M, H, N], r) == lc.reduced_rank_regression(M, N, H, r)


@settings(max_examples=150, deadline=None)
@given(widths=st.lists(st.integers(1, 10), min_size=2, max_size=7), data=st.data())
def test_deep_linear_network_invariances_and_bounds(widths, data):
    r = data.draw(st.integers(0, min(widths)))
    lam, m = lc.deep_linear_network(widths, r)
    hidden = data.draw(st.permutations(widths[1:-1]))
    assert lc.deep_linear_network([widths[0], *hidden, widths[-1]], r)[0] == lam  # hidden widths: a multiset
    assert lc.deep_linear_network(widths[::-1], r)[0] == lam  # transposing the network
    params = sum(a * b for a, b in zip(widths, widths[1:]))
    assert 0 < lam <= Fraction(params, 2)
    # at least the count of the rank-r product's own coordinates (the function space)
    assert lam >= Fraction(r * (widths[0] + widths[-1]) - r * r, 2)
    if len(widths) == 2:
        assert (lam, m) == (Fraction(widths[0] * widths[1], 2), 1)  # one layer is regular


def test_deep_linear_network_hand_checked_cases():
    for depth in (2, 3, 5):  # y = w_L ⋯ w_1 x, true map 0: K = (Π w_i)², the crossing 1/2
        assert lc.deep_linear_network([1] * (depth + 1), 0)[0] == Fraction(1, 2)
    assert lc.deep_linear_network([1, 1, 1], 0) == lc.normal_crossing([1, 1])
    for r in (1, 2, 3):  # every width r, full rank: the r×r product is regular
        assert lc.deep_linear_network([r] * 5, r)[0] == Fraction(r * r, 2)
    with pytest.raises(ConfigError, match="^widths"):
        lc.deep_linear_network([3], 0)
    with pytest.raises(ConfigError, match="^r=3"):
        lc.deep_linear_network([4, 2, 5], 3)


def test_closed_form_bad_input():
    with pytest.raises(ConfigError, match="^r=4"):
        lc.reduced_rank_regression(3, 3, 3, 4)
    with pytest.raises(ConfigError, match="^p=3"):
        lc.sum_of_powers(2, 3)
    with pytest.raises(ConfigError, match="^ks"):
        lc.normal_crossing([0, 0])
    with pytest.raises(ConfigError, match="^d=0"):
        lc.regular(0)


# ----------------------------------------------------------------------------- the Hessian

from toylab.analysis import degeneracy as dg  # noqa: E402


def _random_quadratic(d, rank, seed=0):
    rng = np.random.default_rng(seed)
    B = rng.normal(size=(rank, d))
    A = (B.T @ B).astype(np.float32)  # PSD of the given rank
    return A, (lambda p, batch: 0.5 * p["w"] @ (jnp.asarray(A) @ p["w"]))


@pytest.mark.slow
def test_exact_hessian_of_a_quadratic_is_its_matrix_and_counts_its_null_space():
    A, loss = _random_quadratic(12, 7)
    H = dg.hessian(loss, {"w": jnp.ones(12)}, DATA)
    np.testing.assert_allclose(H, A, rtol=1e-5, atol=1e-5)
    ev = np.linalg.eigvalsh(np.asarray(H))
    assert int(dg.near_zero_count(ev, tol=1e-5)) == 12 - 7


def _mlp_loss():
    rng = np.random.default_rng(3)
    x = jnp.asarray(rng.normal(size=(30, 4)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(30, 2)), jnp.float32)
    params = {"W1": jnp.asarray(rng.normal(size=(4, 6)) / 2, jnp.float32), "W2": jnp.asarray(rng.normal(size=(6, 2)) / 2, jnp.float32)}
    loss = lambda p, b: jnp.mean((jnp.tanh(b["x"] @ p["W1"]) @ p["W2"] - b["y"]) ** 2)  # noqa: E731
    return loss, params, {"x": x, "y": y}


@pytest.mark.slow
def test_lanczos_top_k_equals_eigh_on_a_small_model():
    loss, params, data = _mlp_loss()
    exact = np.sort(np.linalg.eigvalsh(np.asarray(dg.hessian(loss, params, data))))[::-1]
    by_lanczos = dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=5, iters=36)  # d = 36: all of it
    np.testing.assert_allclose(by_lanczos, exact[:5], rtol=1e-3, atol=1e-5)
    fewer = dg.top_eigenvalues(loss, params, data, jax.random.key(1), k=3, iters=24)
    np.testing.assert_allclose(fewer, exact[:3], rtol=1e-3, atol=1e-4)  # extremes converge first
    np.testing.assert_allclose(dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=5), exact[:5], rtol=1e-5)
    # to a tolerance: stops once the top Ritz values' residuals are small, not after all d steps
    tight, n_tight = dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=3, tol=1e-6, return_steps=True)
    loose, n_loose = dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=3, tol=0.3, return_steps=True)
    np.testing.assert_allclose(tight, exact[:3], rtol=1e-4)
    assert 3 <= n_loose < n_tight <= 36
    assert np.all(np.abs(np.asarray(loose) - exact[:3]) <= 0.3 * np.abs(exact[:3]) + 1e-3)
    with pytest.raises(ConfigError, match="^tol"):
        dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=3, tol=0.0)


@pytest.mark.slow
def test_hutchinson_trace_and_the_spectral_density():
    loss, params, data = _mlp_loss()
    ev = np.linalg.eigvalsh(np.asarray(dg.hessian(loss, params, data)))
    estimate, se = dg.hessian_trace(loss, params, data, jax.random.key(0), probes=256)
    assert abs(float(estimate) - ev.sum()) < 4 * float(se) + 1e-6, (float(estimate), ev.sum(), float(se))
    grid = np.linspace(ev.min() - 1, ev.max() + 1, 2000)
    density, nodes, weights = dg.spectral_density(loss, params, data, jax.random.key(1), grid, probes=16, iters=36)
    step = grid[1] - grid[0]
    assert float(np.sum(density) * step) == pytest.approx(1.0, abs=1e-2)
    np.testing.assert_allclose(np.sum(weights, axis=-1), 1.0, rtol=1e-4)
    # its mean is tr H / d, in expectation over the probes
    mean = float(np.sum(grid * density) * step)
    assert mean == pytest.approx(ev.mean(), abs=float(3 * ev.std() / np.sqrt(16)))


def test_hessian_bad_input():
    loss, params, data = _mlp_loss()
    with pytest.raises(ConfigError, match="^k=100"):
        dg.top_eigenvalues(loss, params, data, jax.random.key(0), k=100)
    with pytest.raises(ConfigError, match="^probes=0"):
        dg.hessian_trace(loss, params, data, jax.random.key(0), probes=0)
    with pytest.raises(ConfigError, match="^params has 20000 parameters"):
        dg.hessian(lambda p, b: jnp.sum(p ** 2), jnp.zeros(20_000), data)
    with pytest.raises(ConfigError, match="^grid"):
        dg.spectral_density(loss, params, data, jax.random.key(0), [1.0])


# ----------------------------------------------------------------------------- calibration and runs


@pytest.mark.slow
def test_calibration_picks_the_largest_stable_step():
    quad = _quadratic([1.0, 2.0], np.zeros(2))
    cal = dg.calibrate(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), step_sizes=[1e-3, 1e-2, 0.05, 1.0],
                       nbetas=[10.0, 20.0], localizations=[0.0, 5.0], chains=8, draws=2000)
    assert cal.results.mean.shape == (4, 2, 2) and cal.stable.shape == (4, 2, 2)
    # stable: the chains are, and the exactly known step-size bias ε·k/4/(1 − ε·k/4) per
    # direction (k = nβ·a + γ) pooled over the two curvatures stays under the threshold
    E, B, G = np.meshgrid([1e-3, 1e-2, 0.05, 1.0], [10.0, 20.0], [0.0, 5.0], indexing="ij")
    bias = np.vectorize(lambda e, b, g: _exact_sgld_llc([1.0, 2.0], b, g, e) / _exact_sgld_llc([1.0, 2.0], b, g, 0.0)
                        - 1 if e * (2 * b + g) < 4 else np.inf)(E, B, G)
    np.testing.assert_array_equal(np.asarray(cal.stable), bias <= cal.results.threshold)
    assert not np.any(np.asarray(cal.stable)[3])  # ε·k >= 4: SGLD is unstable
    chosen = np.asarray(cal.chosen)
    assert chosen.shape == (2, 2)
    np.testing.assert_allclose(chosen, np.max(np.where(bias <= 0.05, E, -np.inf), axis=0), rtol=1e-6)
    # each cell is the single call with those settings
    single = learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), chains=8, draws=2000,
                                  step_size=1e-2, nbeta=20.0, localization=5.0)
    np.testing.assert_allclose(cal.results.mean[1, 1, 1], single.mean, rtol=1e-4)
    with pytest.raises(ConfigError, match="^step_sizes"):
        dg.calibrate(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), step_sizes=[])


@pytest.mark.slow
def test_family_learning_coefficient_of_toylab_runs(tmp_path):
    from toylab.core.sweep import run_sweep

    sup = run_sweep("superposition", {"n_features": 5, "n_hidden": 2, "batch_size": 64, "steps": 200,
                                      "log_every": 100, "lr": 1e-2}, seeds=1, quiet=True)[0]
    res = dg.family_learning_coefficient(sup, jax.random.key(0), chains=4, draws=200, step_size=1e-4,
                                         localization=100.0)
    assert res.n == 8 * 64 and float(res.nbeta) == pytest.approx(512 / np.log(512))
    assert np.isfinite(float(res.mean)) and res.traces.shape == (4, 200)
    grok = run_sweep("grokking", {"p": 7, "model": "mlp", "d_mlp": 16, "steps": 100, "log_every": 100,
                                  "train_fraction": 0.5}, seeds=1, quiet=True)[0]
    res = dg.family_learning_coefficient(grok, jax.random.key(0), chains=2, draws=100, step_size=1e-5, fine_tune=False)
    assert res.n == int(np.floor(0.5 * 49 + 1e-4))  # the table's training rows, full batch
    # the same numbers as the plain call with the family's loss on its training batch
    from toylab.families.grokking import GROKKING

    cfg, hp = grok.config, grok.config.hparams()
    params, static = eqx.partition(grok.model, eqx.is_inexact_array)
    batch = GROKKING.batch(cfg, hp, jax.random.key(0))
    plain = learning_coefficient(lambda p, b: GROKKING.loss(eqx.combine(p, static), batch, cfg, hp)[0],
                                 params, {"i": jnp.zeros(2)}, jax.random.key(0), chains=2, draws=100, step_size=1e-5,
                                 nbeta=default_nbeta(res.n))
    np.testing.assert_allclose(res.traces, plain.traces, rtol=1e-5)
    # rows the train-fraction mask leaves out (capacity above the fraction) are not examples,
    # and a minibatch draws training rows
    wide = run_sweep("grokking", {"p": 7, "model": "mlp", "d_mlp": 16, "steps": 100, "log_every": 100,
                                  "train_fraction": 0.5, "train_capacity": 0.8}, seeds=1, quiet=True)[0]
    loss, _, data, defaults = dg.family_llc_inputs(wide)
    assert defaults["n_examples"] == res.n and data["tokens"].shape[0] == res.n and bool(jnp.all(data["mask"]))
    np.testing.assert_array_equal(np.asarray(data["tokens"]), np.asarray(
        dg.family_llc_inputs(grok)[2]["tokens"]))  # the same training rows as without the spare capacity
    # the settings family_llc_inputs returns are accepted as they are by both entry points
    loss, params, data, settings = dg.family_llc_inputs(grok)
    assert set(settings) == {"batch_size", "nbeta", "n_examples"}
    one = dg.learning_coefficient(loss, params, data, jax.random.key(0), chains=2, draws=20, step_size=1e-5, **settings)
    cal = dg.calibrate(loss, params, data, jax.random.key(0), step_sizes=[1e-5], chains=2, draws=20, **settings)
    assert one.n == res.n and float(cal.results.nbeta[0, 0, 0]) == pytest.approx(settings["nbeta"])
    mini = dg.family_learning_coefficient(wide, jax.random.key(0), chains=2, draws=50, step_size=1e-5, batch_size=8)
    assert mini.traces.shape == (2, 50) and bool(jnp.all(jnp.isfinite(mini.traces)))
    with pytest.raises(ConfigError, match="^family"):
        dg.family_learning_coefficient(grok.model, jax.random.key(0))


# ----------------------------------------------------------------------------- the three degeneracies


def test_activation_and_jacobian_null_spaces_count_what_was_built_in():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(200, 4))
    x = np.concatenate([x, x[:, :1] - 2 * x[:, 1:2] + 3.0], axis=1)  # a 5th input, affine in two others
    n_act, ev = dg.activation_nullity(jnp.asarray(x, jnp.float32), tol=1e-6)
    assert int(n_act) == 1 and ev.shape == (6,)
    J = rng.normal(size=(200, 3, 6))
    J[:, :, 4] = 0.0  # the outputs never respond to unit 4
    J[:, :, 5] = J[:, :, 0] - J[:, :, 2]  # nor to unit 5 minus units 0 and 2... together
    assert int(dg.jacobian_nullity(jnp.asarray(J, jnp.float32))[0]) == 2


def test_synchronized_and_dead_relus():
    rng = np.random.default_rng(1)
    z = rng.normal(size=(100, 6))
    z[:, 1] = 2.5 * z[:, 0]  # fires exactly when neuron 0 does
    z[:, 2] = 0.3 * z[:, 0]
    z[:, 5] = -np.abs(z[:, 5]) - 0.1  # never fires
    groups, dead = dg.synchronized_relus(z)
    assert groups == [3] and dead == 1


def test_layer_degeneracy_totals_follow_the_counts():
    rng = np.random.default_rng(2)
    x = rng.normal(size=(300, 3))
    x = np.concatenate([x, x[:, :1]], axis=1)  # one duplicated input
    W = rng.normal(size=(5, 4))
    W[1] = 2 * W[0]  # neurons 0 and 1 fire together
    W[4] = -10.0 * np.abs(W[4])  # with inputs of both signs this one still fires sometimes
    z = x @ W.T
    J = np.repeat(rng.normal(size=(1, 2, 5)), 300, axis=0)
    J[:, :, 3] = 0.0
    out = dg.layer_degeneracy(jnp.asarray(x, jnp.float32), z, jnp.asarray(J, jnp.float32), fan_out=2)
    assert out["activation_nullity"] == 1 and out["freed_activation"] == 5
    # J has rank ≤ 2 over 5 units: 3 null directions; each frees d_in + 1 = 5, less the overlap 1·3
    assert out["jacobian_nullity"] == 3 and out["freed_jacobian"] == 3 * 5 - 3
    assert out["sync_groups"] == [2] and out["freed_sync"] == 2
    assert out["freed_total"] == 5 + 12 + 2 + out["freed_dead"] and out["parameters"] == 25


@pytest.mark.slow
def test_mlp_degeneracy_on_the_lab_models():
    from toylab.models.mlp import init_embed_mlp
    from toylab.models.transformer import init_transformer

    p = 5
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    tokens = jnp.asarray(np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], axis=1))
    mlp = init_embed_mlp(jax.random.key(0), n_in=p, n_out=p, d_hidden=8, embed="onehot", bias=True)
    out = dg.mlp_degeneracy(mlp, tokens)
    # one-hot a and one-hot b each sum to 1: with the bias, [x; 1] has 2 null directions
    assert out["activation_nullity"] == 2 and out["freed_activation"] == 2 * 8
    # J_n = W_out·diag(z_n > 0), built here by hand: its Gram's null space, counted by numpy
    x = np.concatenate([np.eye(p)[a.ravel()], np.eye(p)[b.ravel()]], axis=1)
    z = x @ np.asarray(mlp.W_in).T + np.asarray(mlp.b_in)
    gram = sum((np.asarray(mlp.W_out) * (zn > 0)).T @ (np.asarray(mlp.W_out) * (zn > 0)) for zn in z) / len(z)
    ev = np.linalg.eigvalsh(gram)
    assert out["jacobian_nullity"] == int(np.sum(ev <= 1e-6 * ev.max()))
    assert out["dead"] == int(np.sum(~(z > 0).any(axis=0)))
    tr = init_transformer(jax.random.key(1), d_vocab=p + 1, d_vocab_out=p, d_model=8, n_heads=2, d_mlp=12)
    out = dg.mlp_degeneracy(tr, tokens, tol=1e-6)  # numpy below counts at the same tolerance
    assert out["parameters"] == 12 * 9
    # the inputs: the residual stream at the answer position, and its Gram's null space by numpy
    blk = tr.blocks[-1]
    resid = np.asarray(jax.vmap(lambda t: tr(t, return_activations=True)[1][-1]["resid_mid"][-1])(tokens))
    ra = np.concatenate([resid, np.ones((len(resid), 1))], axis=1)
    ev = np.linalg.eigvalsh(ra.T @ ra / len(ra))
    assert out["activation_nullity"] == int(np.sum(ev <= 1e-6 * ev.max()))
    z = resid @ np.asarray(blk.W_in).T + np.asarray(blk.b_in)
    L = np.asarray(tr.W_U).T @ np.asarray(blk.W_out)  # (p, d_mlp)
    gram = sum((L * (zn > 0)).T @ (L * (zn > 0)) for zn in z) / len(z)
    ev = np.linalg.eigvalsh(gram)
    assert out["jacobian_nullity"] == int(np.sum(ev <= 1e-6 * ev.max()))
    with pytest.raises(ConfigError, match="^model"):
        dg.mlp_degeneracy(object(), tokens)


def _fake_peer(tmp_path, fail=""):
    """An executable standing in for the peer environment's python, run by the main python
    (numpy only): for devinterp_llc.py it recomputes the superposition loss at w* from the
    .npz by numpy and echoes the sampler settings it was given; for pyhessian_top.py the
    one-hot MLP's loss, with made-up timings; the script named in ``fail`` fails."""
    import sys

    body = f'''#!{sys.executable}
import json, sys
import numpy as np
script, npz = sys.argv[1], sys.argv[2]
if script.endswith({fail!r}) and {fail!r}:
    print("Traceback (most recent call last):", file=sys.stderr)
    print("RuntimeError: boom in the peer", file=sys.stderr)
    sys.exit(3)
z = np.load(npz)
s = json.loads(str(z["settings"]))
w = {{k[2:]: z[k].astype(np.float64) for k in z.files if k.startswith("w:")}}
d = {{k[2:]: z[k] for k in z.files if k.startswith("d:")}}
out = {{"init_loss_jax": s["init_loss_jax"], "torch": "fake", "threads": int(sys.argv[sys.argv.index("--threads") + 1])}}
if script.endswith("devinterp_llc.py"):
    x = d["x"].astype(np.float64)
    recon = np.maximum(x @ w["W"].T @ w["W"] + w["b"], 0)
    out["init_loss"] = float(np.mean(np.mean(np.asarray(s["model"]["importance"]) * (x - recon) ** 2, axis=(1, 2))))
    out.update(devinterp="fake", chains=s["sampler"]["chains"], draws=s["sampler"]["draws"], seconds=2.0,
               ms_per_chain_step=100.0, chain_steps_per_s=10.0, steady_ms_per_chain_step=50.0, llc_mean=1.0,
               llc_mean_burnin=1.0, llc_std_burnin=0.1, sampler=s["sampler"])
else:
    a, b, p = d["tokens"][:, 0], d["tokens"][:, 1], s["model"]["n_classes"]
    logits = np.maximum(w["W_in"][:, a].T + w["W_in"][:, p + b].T + w["b_in"], 0) @ w["W_out"].T + w["b_out"]
    logits -= logits.max(axis=1, keepdims=True)
    nll = np.log(np.exp(logits).sum(axis=1)) - logits[np.arange(len(a)), d["labels"]]
    out.update(init_loss=float(nll.mean()), pyhessian="fake", seconds=10.0, top=[1.0] * 5, hvps=7,
               max_iter=s["hessian"]["iters"], tol=s["hessian"]["tol"],
               density={{"ok": False, "iter": 3, "seconds": 0.5, "error": "AttributeError: no torch.eig"}})
print("progress noise on stdout")
print(json.dumps(out))
'''
    path = tmp_path / ("fake-python-" + (fail or "ok"))
    path.write_text(body)
    path.chmod(0o755)
    return path


@pytest.mark.end_to_end
def test_bench_degeneracy_plumbing(tmp_path, capsys, monkeypatch):
    import json

    from toylab.experiments.benchmarks import degeneracy as bench

    monkeypatch.delenv("TOYLAB_PEER_PYTHON", raising=False)
    monkeypatch.setattr(bench, "REPO_ROOT", tmp_path)  # no .peers there: the comparison is skipped
    out = tmp_path / "b.json"
    tiny = ["--chains", "1", "--draws", "2", "--models", "superposition", "--hessian-neurons", "0"]
    assert bench.main([*tiny, "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "python3 -m venv .peers && .peers/bin/pip install devinterp==2.0.1 pyhessian==0.1" in printed
    data = json.loads(out.read_text())
    assert data["peers"]["python"] is None and "skipped" in data["peers"]["skipped"]
    assert "speedup_vs_devinterp" not in data["llc"]["superposition"][0]
    assert bench.main(["--models", "nope"]) == 2 and "--models='nope'" in capsys.readouterr().err
    # a given peer python that is not there is bad input: one line, exit 2, nothing run
    missing = str(tmp_path / "nope" / "python")
    assert bench.main(["--peer-python", missing]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.count("\n") == 1 and f"--peer-python={missing!r}" in captured.err
    monkeypatch.setenv("TOYLAB_PEER_PYTHON", missing)
    assert bench.main([]) == 2 and "TOYLAB_PEER_PYTHON=" in capsys.readouterr().err
    assert bench.main(["--peer-python", "none", "--models", "nope"]) == 2  # options are checked first
    monkeypatch.delenv("TOYLAB_PEER_PYTHON")

    # a peer that answers: its figures in the table, the ratios, our sampler settings handed over
    # unchanged, and the .npz it read reproduces our loss at w* (recomputed by numpy)
    small = ["--chains", "1,2", "--draws", "5", "--models", "superposition", "--hessian-neurons", "4", "--p", "5"]
    assert bench.main([*small, "--peer-python", str(_fake_peer(tmp_path)), "--peer-chains", "3", "--peer-draws", "4",
                       "--peer-threads", "1", "--json", str(out)]) == 0
    printed = capsys.readouterr().out
    data = json.loads(out.read_text())
    assert [pt["chains"] for pt in data["llc"]["superposition"]] == [1, 2]
    assert all(pt["chain_steps_per_s"] > 0 for pt in data["llc"]["superposition"])
    assert data["hessian"]["parameters"] == 4 * 10 + 4 + 5 * 4 + 5 and len(data["hessian"]["top5"]) == 5
    dev = data["peers"]["devinterp"]["superposition"]
    assert dev["sampler"] == {**data["sampler"]["superposition"], "chains": 3, "draws": 4, "burnin": 0}
    assert dev["sampler"]["step_size"] == bench.STEP_SIZE and dev["sampler"]["batch_size"] == 1 and dev["threads"] == 1
    assert abs(dev["init_loss"] - dev["init_loss_jax"]) <= 1e-6 * dev["init_loss_jax"]
    for pt in data["llc"]["superposition"]:
        assert pt["speedup_vs_devinterp"] == pytest.approx(100.0 / pt["ms_per_chain_step"])
        assert pt["speedup_vs_devinterp_steady"] == pytest.approx(50.0 / pt["ms_per_chain_step"])
    theirs = data["peers"]["pyhessian"]
    assert abs(theirs["init_loss"] - theirs["init_loss_jax"]) <= 1e-5 * theirs["init_loss_jax"]
    assert theirs["max_iter"] == bench.HESSIAN_ITERS and theirs["tol"] == bench.PYHESSIAN_TOL
    assert data["hessian"]["speedup_vs_pyhessian"] == pytest.approx(10.0 / data["hessian"]["seconds"])
    assert "devinterp" in printed and "crashes after 0.50 s: AttributeError: no torch.eig" in printed
    assert "does not reproduce" not in printed
    # a peer that crashes: one line naming it and its last error line, no traceback here, exit 1
    assert bench.main([*tiny, "--peer-python", str(_fake_peer(tmp_path, fail="devinterp_llc.py")),
                       "--json", str(out)]) == 1
    captured = capsys.readouterr()
    line = "devinterp: devinterp_llc.py failed (exit 3): RuntimeError: boom in the peer"
    assert line in captured.out and "Traceback" not in captured.out + captured.err
    assert json.loads(out.read_text())["peers"]["devinterp"]["superposition"]["error"] == line.split(": ", 1)[1]


def _peer_python():
    import os
    from pathlib import Path

    from toylab.experiments.benchmarks import degeneracy as bench

    python = os.environ.get("TOYLAB_PEER_PYTHON") or str(bench.REPO_ROOT / ".peers" / "bin" / "python")
    if not Path(python).is_file():
        pytest.skip(f"no peer environment ({python}); create it with: {bench.VENV_HINT}")
    return python


@pytest.mark.slow
def test_bench_degeneracy_torch_ports_reproduce_the_jax_losses(tmp_path):
    # the .npz this side writes, rebuilt as torch modules by the peer scripts' port: the same
    # loss at w* for the superposition toy, the grokking transformer and the one-hot MLP
    import json
    import subprocess

    from toylab.experiments.benchmarks import degeneracy as bench

    python = _peer_python()
    files = [bench.write_llc_npz(tmp_path / "tms.npz", bench.llc_inputs(*bench._superposition()), 2, 3),
             bench.write_llc_npz(tmp_path / "grok.npz", bench.llc_inputs(*bench._grokking(13)), 2, 3),
             bench.write_hessian_npz(tmp_path / "mlp.npz", bench.hessian_inputs(13, 16))]
    proc = subprocess.run([python, str(bench.PEERS_DIR / "devinterp_llc.py"), "--check", *map(str, files)],
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]
    lines = [json.loads(ln) for ln in proc.stdout.splitlines() if ln.startswith("{")]
    assert len(lines) == 3
    for f, res in zip(files, lines):
        assert abs(res["init_loss"] - res["init_loss_jax"]) <= 1e-5 * abs(res["init_loss_jax"]), (f.name, res)
    assert lines[2]["parameters"] == 16 * 26 + 16 + 13 * 16 + 13


@pytest.mark.slow
def test_bench_degeneracy_devinterp_runs_our_update_rule(tmp_path):
    # devinterp's llc() without noise, on the full batch, against ours without noise: the same
    # loss trace step for step, so ε, nβ and γ enter its update exactly as ours (twice any of
    # them would move the trace by about half its range)
    from toylab.experiments.benchmarks import degeneracy as bench

    python = _peer_python()
    inputs = bench.llc_inputs(*bench._superposition())
    inputs["sampler"].update(step_size=1e-3, localization=1000.0, batch_size=None)
    s = inputs["sampler"]
    npz = bench.write_llc_npz(tmp_path / "rule.npz", inputs, 1, 6)
    theirs, why = bench.run_peer(python, "devinterp_llc.py", npz, "--noise-level", "0", "--trace", timeout=300)
    assert why is None, why

    def ours(eps, nbeta, gamma):
        # devinterp records the loss each step computes its gradient at (w_0 = w*, …, w_5); ours
        # records the loss after each step (w_1, …, w_6): the same positions, shifted by one
        res = learning_coefficient(inputs["loss"], inputs["params"], inputs["data"], jax.random.key(0), chains=1,
                                   draws=6, step_size=eps, nbeta=nbeta, localization=gamma, batch_size=None,
                                   sampler=sgld(noise=False))
        return np.concatenate([[float(res.init_loss)], np.asarray(res.traces[0], np.float64)[:-1]])
    mine = ours(s["step_size"], s["nbeta"], s["localization"])
    trace = np.asarray(theirs["trace"][0])
    scale = np.max(np.abs(mine - mine[0]))
    np.testing.assert_allclose(trace - mine[0], mine - mine[0], rtol=0, atol=1e-3 * scale)
    for eps, nbeta, gamma in ((2 * s["step_size"], s["nbeta"], s["localization"]),
                              (s["step_size"], 2 * s["nbeta"], s["localization"]),
                              (s["step_size"], s["nbeta"], 2 * s["localization"])):
        assert np.max(np.abs(ours(eps, nbeta, gamma) - mine)) > 0.1 * scale


def test_calibration_plot_draws_every_step_and_marks_the_chosen_one():
    import matplotlib

    from toylab.plots.degeneracy import calibration_plot

    quad = _quadratic([1.0, 2.0], np.zeros(2))
    cal = dg.calibrate(quad, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), step_sizes=[1e-2, 0.05, 1.0],
                       nbetas=[10.0], localizations=[1.0], chains=4, draws=300)
    fig = calibration_plot(cal)
    left, right = fig.axes[:2]
    assert len(left.get_lines()) == 3  # one trace per step size
    chosen = [ln for ln in right.get_lines() if ln.get_label().startswith("chosen")]
    assert len(chosen) == 1 and chosen[0].get_xdata()[0] == pytest.approx(float(cal.chosen[0, 0]))
    assert isinstance(fig, matplotlib.figure.Figure)
    matplotlib.pyplot.close(fig)


@pytest.mark.slow
def test_behavioural_loss_and_effective_parameter_count_see_only_what_the_inputs_span():
    # f(W, x) = W x with inputs confined to a 2-dim subspace of R^4: L_B is a quadratic of
    # rank 3·2 in W's 12 coordinates, so N_eff = 2·λ ≈ 6 — the other 6 directions are free
    # (the activation degeneracy). The exact finite-step expectation of the estimate is
    # nβ·Σ a_i v_i over the Hessian's eigenvalues a_i (v_i as in the quadratic test above).
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(400, 2)) @ rng.normal(size=(2, 4)), jnp.float32)
    full = jnp.asarray(rng.normal(size=(400, 4)), jnp.float32)  # inputs spanning R^4: all 12 count
    W = jnp.asarray(rng.normal(size=(3, 4)), jnp.float32)
    apply = lambda w, xi: w @ xi  # noqa: E731
    nbeta, gamma, eps = 200.0, 1.0, 1e-4
    for inputs, rank in ((x, 6), (full, 12)):
        loss = dg.behavioural_loss(apply, W)
        assert float(loss(W, inputs)) == 0.0 and float(jnp.max(jnp.abs(jax.grad(loss)(W, inputs)))) == 0.0
        assert float(loss(W + 1.0, inputs)) > 0
        a = np.linalg.eigvalsh(np.asarray(dg.hessian(loss, W, inputs), np.float64))
        assert int(np.sum(a > 1e-4 * a.max())) == rank
        k = nbeta * np.clip(a, 0, None) + gamma
        expected = 2 * nbeta * 0.5 * np.sum(np.clip(a, 0, None) / (k * (1 - eps * k / 4)))
        assert rank - 1 < expected < rank + 1
        count, res = dg.effective_parameter_count(apply, W, inputs, jax.random.key(0), chains=64, draws=800,
                                                  step_size=eps, nbeta=nbeta, localization=gamma)
        assert abs(float(count) - expected) < 0.05 * expected + 3 * 2 * float(res.std) / 8, (float(count), expected)
    with pytest.raises(ConfigError, match="^apply"):
        dg.behavioural_loss("not a function", W)
