"""The LLC's own account of its reliability: predicted bias, step_size="auto", the exact
sampler, the localization share, mixing, w* off a minimum, non-finite input — each against a
value computed here by other means."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.analysis import degeneracy as dg
from toylab.analysis import learning_coefficients as lc
from toylab.analysis import llc
from toylab.core.config import ConfigError
from toylab.testing import cases
from toylab.testing.assertions import Truth, assert_estimate, compare_estimate

DATA = jnp.zeros((2, 1))  # the potentials below ignore their batch


def _quadratic(a, centre=None):
    a = jnp.asarray(a, jnp.float32)
    c = jnp.zeros_like(a) if centre is None else jnp.asarray(centre, jnp.float32)
    return lambda p, batch: 0.5 * jnp.sum(a * (p["w"] - c) ** 2)


def _sgld_expectation(a, nbeta, gamma, eps):
    """nβ/2·Σ aᵢ vᵢ, vᵢ = 1/(kᵢ(1 − εkᵢ/4)), kᵢ = nβaᵢ + γ (eps = 0: the exact value)."""
    a = np.asarray(a, np.float64)
    k = nbeta * a + gamma
    return nbeta * 0.5 * np.sum(a / (k * (1 - eps * k / 4)))


@pytest.mark.slow
def test_auto_step_aims_the_predicted_bias_at_its_share_of_the_threshold_and_chooses_enough_draws():
    a, nbeta, gamma = [1.0, 2.0, 4.0], 100.0, 1.0
    res = dg.learning_coefficient(_quadratic(a), {"w": jnp.zeros(3)}, DATA, jax.random.key(0), nbeta=nbeta,
                                  localization=gamma, chains=16)
    eps = float(res.step_size)
    exact_eps, exact_0 = _sgld_expectation(a, nbeta, gamma, eps), _sgld_expectation(a, nbeta, gamma, 0.0)
    # the chosen ε is the one at which the (here exact) predicted bias is AUTO_SHARE of the threshold
    assert exact_eps / exact_0 - 1 == pytest.approx(res.threshold * llc.AUTO_SHARE, rel=2e-3)
    assert float(res.step_bias) == pytest.approx(exact_eps / exact_0 - 1, rel=1e-3)
    assert float(res.fill) >= 1 - res.threshold / 2 and res.draws >= dg.MIN_AUTO_DRAWS
    assert float(np.min(res.ess)) >= dg.MIN_ESS and res.warnings == []
    assert_estimate(res, Truth(value=exact_eps))  # the finite-ε value, within the result's own spread
    assert any("step size chosen by rule" in n for n in res.notes) and any("draws chosen" in n for n in res.notes)


def test_a_biased_setting_warns_and_fails_the_assertion_naming_its_settings():
    # the curvature 50·nβ makes ε = 2e-4 take a +16% step-size bias
    a, nbeta, eps = [50.0, 1.0], 100.0, 2e-4
    res = dg.learning_coefficient(_quadratic(a), {"w": jnp.zeros(2)}, DATA, jax.random.key(1), nbeta=nbeta,
                                  localization=0.0, step_size=eps, chains=32, draws=3000)
    predicted = _sgld_expectation(a, nbeta, 0.0, eps) / _sgld_expectation(a, nbeta, 0.0, 0.0) - 1
    assert float(res.step_bias) == pytest.approx(predicted, rel=1e-3) and predicted > 0.1
    assert any("step-size bias" in w for w in res.warnings)
    with pytest.raises(AssertionError, match=r"ε = 0\.0002 .*predicted step-size bias \+\d+\.\d%"):
        assert_estimate(res, Truth(value=1.0))


@pytest.mark.slow
def test_hmc_samples_the_localized_posterior_exactly():
    """NUTS against the exact finite-nβ value of a potential and λ of a reduced-rank
    regression at its most singular point (m = 2 there: the shifted value)."""
    pytest.importorskip("blackjax")
    for case in (cases.sum_of_powers(1, 4), cases.reduced_rank_regression(M=3, N=3, H=2, r=1, n=1000)):
        res = dg.learning_coefficient(case.loss, case.params, case.data, jax.random.key(2), **case.settings,
                                      sampler=dg.hmc(), chains=8, draws=800)
        assert res.sampler == "hmc" and float(res.step_bias) == 0.0 and 0.8 < float(res.acceptance) <= 1.0
        assert_estimate(res, case.truth(float(res.localization)))
    assert case.multiplicity == 2 and case.exact is None


@pytest.mark.slow
def test_sgld_auto_agrees_with_hmc_on_potentials_and_linear_networks():
    """SGLD at step_size="auto" against NUTS on the same posterior: |difference| within the
    t-interval of both spreads plus SGLD's own predicted bias (the stated tolerance)."""
    pytest.importorskip("blackjax")
    problems = [(cases.sum_of_powers(2, 4), {}),
                (cases.reduced_rank_regression(M=3, N=2, H=2, r=1, n=10_000), {}),
                # a deep linear network's rescaling directions: at γ = 1 the chains reach curvature
                # SGLD cannot follow in 10⁵ draws (it warns); γ = 10 keeps both samplers local
                (cases.deep_linear_network([2, 2, 2, 2], 0, n=10_000), {"localization": 10.0})]
    for i, (case, extra) in enumerate(problems):
        key = jax.random.key(10 + i)
        sgld = dg.learning_coefficient(case.loss, case.params, case.data, key, **case.settings, chains=8, **extra)
        hmc = dg.learning_coefficient(case.loss, case.params, case.data, key, **case.settings, chains=8, draws=1000,
                                      sampler=dg.hmc(warmup=300), **extra)
        assert not any("step-size bias" in w or "diverged" in w for w in sgld.warnings), (case.name, sgld.warnings)
        se = math.hypot(float(sgld.std), float(hmc.std)) / math.sqrt(8 - 1)
        tol = 5.4 * se + abs(float(sgld.predicted_bias)) * abs(float(hmc.mean))  # t(7) at 99.9%
        assert abs(float(sgld.mean) - float(hmc.mean)) <= tol, (case.name, float(sgld.mean), float(hmc.mean), tol)


def test_localization_share_is_gamma_over_k_on_a_quadratic():
    a, nbeta, gamma = np.array([1.0, 0.05]), 100.0, 5.0
    res = dg.learning_coefficient(_quadratic(a), {"w": jnp.zeros(2)}, DATA, jax.random.key(3), nbeta=nbeta,
                                  localization=gamma, step_size=1e-3, chains=256, draws=4000)
    k = nbeta * a + gamma
    lam = nbeta * a / (2 * k)
    want = float(np.sum(lam * gamma / k) / np.sum(lam))  # −d log λ/d log γ of the exact expectation
    assert float(res.localization_share) == pytest.approx(want, abs=4 * float(res.localization_share_se) + 0.01)
    assert want > res.threshold and any("localization" in w for w in res.warnings)


def test_gradient_at_w_star_predicts_the_shift_and_warns():
    h, nbeta, gamma, c = 2.0, 100.0, 1.0, 0.05
    loss = _quadratic([h], centre=[c])  # w* = 0 is c away from the minimum
    res = dg.learning_coefficient(loss, {"w": jnp.zeros(1)}, DATA, jax.random.key(4), nbeta=nbeta, localization=gamma,
                                  step_size=1e-3, chains=32, draws=2000)
    g, k = h * c, nbeta * h + gamma
    assert float(res.grad_norm) == pytest.approx(g, rel=1e-5)
    assert float(res.gradient_shift) == pytest.approx(-(nbeta * g) ** 2 / k * (1 - nbeta * h / (2 * k)), rel=1e-4)
    assert any("not a local minimum" in w for w in res.warnings)
    # and the sampler agrees: the chains centre at nβ·h·c/k with SGLD's variance at this ε, so
    # nβ·E[L − L(w*)] = nβ·½h((μ − c)² + v) − nβ·½hc² = (quadratic part) + (that shift)
    eps = 1e-3
    mu, v = nbeta * h * c / k, 1 / (k * (1 - eps * k / 4))
    want = nbeta * 0.5 * h * ((mu - c) ** 2 + v) - nbeta * 0.5 * h * c ** 2
    se = float(res.per_chain.std()) / np.sqrt(res.chains)
    assert float(res.mean) == pytest.approx(want, abs=6 * se), (float(res.mean), want, se)
    assert want == pytest.approx(nbeta * h * v / 2 + float(res.gradient_shift), rel=0.02)


@pytest.mark.slow
def test_effective_sample_size_of_an_ar1_series():
    from scipy.signal import lfilter

    rng = np.random.default_rng(0)
    rho, n = 0.9, 100_000
    x = lfilter([1.0], [1.0, -rho], rng.normal(size=(4, n)), axis=-1)  # x_t = ρ x_{t−1} + ξ_t
    want = n * (1 - rho) / (1 + rho)  # the AR(1) integrated autocorrelation time (1 + ρ)/(1 − ρ)
    ess = np.asarray(dg.effective_sample_size(jnp.asarray(x, jnp.float32)))
    # the estimate's own spread at this length is about 6% (a window of ~4τ lags)
    assert ess.shape == (4,) and np.all(np.abs(ess / want - 1) < 0.2) and abs(ess.mean() / want - 1) < 0.1, (ess, want)
    bj = pytest.importorskip("blackjax")
    theirs = float(bj.diagnostics.effective_sample_size(jnp.asarray(x[:1], jnp.float32)))
    assert ess[0] == pytest.approx(theirs, rel=0.05)
    assert float(dg.effective_sample_size(jnp.asarray(rng.normal(size=5000), jnp.float32))) == pytest.approx(5000, rel=0.1)


def test_non_finite_input_is_refused_or_flagged():
    quad = _quadratic([1.0, 1.0])
    with pytest.raises(ConfigError, match=r"^params has 1 non-finite value"):
        dg.learning_coefficient(quad, {"w": jnp.asarray([0.0, jnp.nan])}, DATA, jax.random.key(0), step_size=1e-3,
                                draws=10)
    with pytest.raises(ConfigError, match=r"^data has 1 non-finite"):
        dg.learning_coefficient(quad, {"w": jnp.zeros(2)}, DATA.at[0, 0].set(jnp.inf), jax.random.key(0))
    for fn in (lambda p: dg.top_eigenvalues(quad, p, DATA, jax.random.key(0), k=1),
               lambda p: dg.hessian_trace(quad, p, DATA, jax.random.key(0)), lambda p: dg.hessian(quad, p, DATA)):
        with pytest.raises(ConfigError, match="^params"):
            fn({"w": jnp.asarray([jnp.nan, 0.0])})
    # inside a trace: flagged in the result, the estimate NaN (never a finite-looking number)
    traced = jax.jit(lambda p: dg.learning_coefficient(quad, p, DATA, jax.random.key(0), step_size=1e-3, draws=10))(
        {"w": jnp.asarray([jnp.nan, 0.0])})
    assert not bool(traced.finite_inputs) and np.isnan(float(traced.mean))
    assert traced.warnings[0].startswith("w* or L(w*) is not finite") and not any("diverged" in w for w in
                                                                                 traced.warnings)


@pytest.mark.parametrize("kwargs, field", [
    (dict(draws=1), "draws"), (dict(draws=10, burnin=9), "burnin"), (dict(step_size="fast"), "step_size"),
    (dict(localization="big"), "localization"), (dict(sampler="hmc", batch_size=4), "batch_size"),
    (dict(mask={"w": jnp.zeros(2, bool)}), "mask"), (dict(bias_threshold=0.0), "bias_threshold"),
    (dict(n_examples=1), "n_examples"),
])
def test_bad_settings_are_one_clear_error(kwargs, field):
    with pytest.raises(ConfigError, match=rf"^{field}"):
        dg.learning_coefficient(_quadratic([1.0, 1.0]), {"w": jnp.zeros(2)}, DATA, jax.random.key(0), **kwargs)


def test_auto_step_refuses_a_w_star_where_the_potential_is_not_convex():
    # a saddle: nβ·h_min + γ < 0, so the quadratic model has no stationary distribution
    saddle = lambda p, b: 0.5 * (p["w"][0] ** 2 - p["w"][1] ** 2)  # noqa: E731
    with pytest.raises(ConfigError, match=r"^step_size='auto': needs w\* at a local minimum"):
        dg.learning_coefficient(saddle, {"w": jnp.zeros(2)}, DATA, jax.random.key(0), nbeta=100.0)


def test_one_chain_warns_and_cannot_be_asserted():
    res = dg.learning_coefficient(_quadratic([1.0]), {"w": jnp.zeros(1)}, DATA, jax.random.key(0), nbeta=10.0,
                                  step_size=1e-2, chains=1, draws=200)
    assert any("one chain" in w for w in res.warnings)
    with pytest.raises(ConfigError, match="^result has an estimate from 1 chain"):
        assert_estimate(res, Truth(value=0.5))


# ----------------------------------------------------------------------------- multiplicity


def test_finite_nbeta_expectation_is_exact_for_a_normal_crossing_on_the_unit_box():
    """K = (w₁w₂)² with a uniform prior on [0, 1]²: v(t) = ¼ t^{−1/2}(−log t), λ = ½, m = 2,
    with no lower-order term, so E[nβK] is the formula's value up to e^{−nβ}."""
    from scipy import integrate

    for nbeta in (100.0, 1000.0, 10_000.0):
        # u = w₁w₂ has density −log u on [0, 1]; K = u²
        weight = lambda u: -math.log(u) * math.exp(-nbeta * u * u)  # noqa: E731
        pts = [x / math.sqrt(nbeta) for x in (0.1, 1, 3)]
        z = integrate.quad(weight, 0, 1, points=pts, limit=200, epsrel=1e-12)[0]
        m = integrate.quad(lambda u: nbeta * u * u * weight(u), 0, 1, points=pts, limit=200, epsrel=1e-12)[0]
        assert m / z == pytest.approx(lc.finite_nbeta_expectation(0.5, 2, nbeta), rel=1e-8)
    # m = 2: λ − 1/(log nβ − ψ(λ)); m = 1: λ
    L, psi_half = math.log(1000.0), -0.5772156649015329 - 2 * math.log(2)
    assert lc.finite_nbeta_expectation(0.5, 2, 1000.0) == pytest.approx(0.5 - 1 / (L - psi_half), rel=1e-10)
    assert lc.finite_nbeta_expectation(1.5, 1, 1000.0) == 1.5
    # every m: λ − (m − 1)/log nβ to leading order
    for m in (2, 3, 4):
        big = 1e12
        shift = lc.finite_nbeta_expectation(1.0, m, big) - 1.0
        assert shift * math.log(big) == pytest.approx(-(m - 1), rel=0.15)


def test_gaussian_localized_crossing_is_within_the_remainder_of_the_formula():
    case = cases.normal_crossing([1, 1])
    for nbeta in (1000.0, 10_000.0):
        exact = case.exact(nbeta, 1.0)
        assert abs(exact - lc.finite_nbeta_expectation(0.5, 2, nbeta)) <= lc.finite_nbeta_remainder(2, nbeta)
        assert exact < 0.5 - 0.5 / math.log(nbeta)  # the shift is real: far below λ at these nβ


def test_deep_linear_multiplicity():
    assert lc.deep_linear_network([2, 2, 2, 2], 0) == (3 / 2, 3)
    for depth in (2, 3, 5):  # K = (Π wᵢ)²: the normal crossing of `depth` squares
        assert lc.deep_linear_network([1] * (depth + 1), 0) == lc.normal_crossing([1] * depth)
    assert lc.deep_linear_network([3, 2, 2, 3], 1)[1] == 1 and lc.deep_linear_network([4, 3, 3, 3, 4], 1)[1] == 1


def test_cases_refuse_inconsistent_shapes():
    with pytest.raises(ConfigError, match="^r=3"):
        cases.reduced_rank_regression(M=4, N=2, H=5, r=3)
    with pytest.raises(ConfigError, match="^widths"):
        cases.deep_linear_network([3], 0)
    with pytest.raises(ConfigError, match="^value"):
        Truth(value=-1.0)
    with pytest.raises(ConfigError, match="^truth"):
        compare_estimate(dg.learning_coefficient(_quadratic([1.0]), {"w": jnp.zeros(1)}, DATA, jax.random.key(0),
                                                 nbeta=10.0, step_size=1e-2, chains=2, draws=20), 0.5)


@pytest.mark.end_to_end
def test_bench_llc_plumbing(tmp_path, capsys):
    import json

    from toylab.experiments.benchmarks import llc as bench

    out = tmp_path / "llc.json"
    assert bench.main(["--cases", "powers", "--chains", "2", "--hmc-draws", "50", "--cost-draws", "100", "--rrr", "1",
                       "--n", "1000", "--json", str(out)]) in (0, 1)
    data = json.loads(out.read_text())
    assert [r["case"] for r in data["validation"]] == ["sum of 1 powers w^4", "sum of 2 powers w^2"]
    assert all(r["hmc"]["draws"] == 50 for r in data["validation"])
    assert all(c["chains_s"] > 0 and c["draws"] == 100 for c in data["costs"]) and len(data["rrr"]["examples"]) == 1
    assert "diagnostics" in capsys.readouterr().out
    with pytest.raises(SystemExit) as bad:
        bench.main(["--cases", "nope"])
    assert bad.value.code == 2 and "--cases='nope'" in capsys.readouterr().err
