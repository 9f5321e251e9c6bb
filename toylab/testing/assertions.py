"""Assertions that know statistics: an estimate against a theoretical value, with the
estimate's own spread, its predicted bias at the settings used and, for a learning
coefficient, the finite-nβ shift its multiplicity causes.

    res = learning_coefficient(case.loss, case.params, case.data, key, **case.settings)
    assert_estimate(res, case.truth())

The tolerance is a sum of named parts, each bounded by what the estimate itself reports and
each on the side its bias lies: the spread (a Student-t interval over the chains, both
sides); the predicted step-size bias (above) and the predicted shortfall of short chains
(below), each times ``llc.UNDER_PREDICTION`` (the quadratic model under-predicts a singular
direction's bias by up to that factor, measured against NUTS); the localization's share of
the restoring force (below, when the truth is the γ → 0 value); and the size of the term the
finite-nβ formula leaves out (both sides). An estimate whose settings make it unreliable
(``result.warnings``) fails with those warnings, so a biased estimate cannot pass inside a
wide tolerance.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ..analysis import learning_coefficients as lc
from ..core.config import ConfigError, described

__all__ = ["Truth", "Comparison", "expected_estimate", "compare_estimate", "assert_estimate"]


@dataclasses.dataclass(frozen=True)
class Truth:
    """A theoretical value: ``value`` (λ), its ``multiplicity`` m (None: unknown, taken as 1),
    and ``exact`` — the exact expectation of the estimator at the settings used, where it can
    be computed (then no asymptotic shift or localization allowance applies)."""

    value: float
    multiplicity: int | None = 1
    exact: float | None = None

    def __post_init__(self):
        v = self.value
        if isinstance(v, bool) or not isinstance(v, numbers.Real) or not math.isfinite(float(v)) or float(v) <= 0:
            raise ConfigError("value", v, "must be a finite number > 0")
        object.__setattr__(self, "value", float(v))  # a closed form's Fraction, a numpy scalar: a float
        m = self.multiplicity
        if m is not None and (isinstance(m, bool) or not isinstance(m, numbers.Integral) or m < 1):
            raise ConfigError("multiplicity", m, "must be a positive integer or None")
        e = self.exact
        if e is not None and (isinstance(e, bool) or not isinstance(e, numbers.Real) or not math.isfinite(float(e))):
            raise ConfigError("exact", e, "must be a finite number or None")


@dataclasses.dataclass(frozen=True)
class Comparison:
    """The outcome of :func:`compare_estimate`: ``ok``, the estimate, the expected value, the
    tolerance and its parts (dict), the result's warnings, and a message naming the settings."""

    ok: bool
    estimate: float
    expected: float
    tolerance: float
    parts: dict
    warnings: list
    message: str


def expected_estimate(truth: Truth, nbeta: float) -> tuple[float, float]:
    """(what the estimator measures at nβ, the allowance for the term that formula leaves
    out): ``truth.exact`` with no allowance when given; else λ shifted by the multiplicity
    (:func:`~toylab.analysis.learning_coefficients.finite_nbeta_expectation`) with the
    remainder's size (:func:`~toylab.analysis.learning_coefficients.finite_nbeta_remainder`)."""
    if not isinstance(truth, Truth):
        raise ConfigError("truth", described(f"a {type(truth).__name__}"), "must be a toylab.testing.Truth")
    if truth.exact is not None:
        return float(truth.exact), 0.0
    m = truth.multiplicity or 1
    return lc.finite_nbeta_expectation(truth.value, m, float(nbeta)), lc.finite_nbeta_remainder(m, float(nbeta))


def _t_quantile(p: float, dof: int) -> float:
    from scipy import stats

    return float(stats.t.ppf(p, dof))


def compare_estimate(result, truth: Truth, *, confidence: float = 0.999, allow_warnings=()) -> Comparison:
    """Compare an LLCResult (one estimate, at least 2 chains) with ``truth``; see the module
    docstring for the tolerance. ``allow_warnings``: substrings of warnings that do not fail
    the comparison (e.g. ("effective draws",) for a check that accepts few effective draws)."""
    for name in ("mean", "std", "per_chain", "nbeta"):
        if not hasattr(result, name):
            raise ConfigError("result", described(f"a {type(result).__name__}"), "must be an LLCResult")
    mean = np.asarray(result.mean, np.float64)
    if mean.ndim:
        raise ConfigError("result", described(f"a stack of {mean.size} estimates"),
                          "must be one estimate (index the stack: jax.tree.map(lambda x: x[i], result))")
    chains = int(np.shape(result.per_chain)[-1])
    if chains < 2:
        raise ConfigError("result", described(f"an estimate from {chains} chain"),
                          "must have a spread: run at least 2 chains")
    if isinstance(confidence, bool) or not isinstance(confidence, (int, float)) or not 0.5 < confidence < 1:
        raise ConfigError("confidence", confidence, "must be in (0.5, 1)")
    if isinstance(allow_warnings, str):
        allow_warnings = (allow_warnings,)
    nbeta = float(np.asarray(result.nbeta))
    expected, remainder = expected_estimate(truth, nbeta)
    estimate = float(mean)
    std = float(np.asarray(result.std, np.float64)) * math.sqrt(chains / (chains - 1))  # unbiased variance
    spread = _t_quantile(0.5 + confidence / 2, chains - 1) * std / math.sqrt(chains)
    # Each systematic part has a known sign: the step size inflates the estimate, short chains
    # (fill < 1) and the localization deflate it. An allowance widens only its own side.
    up = {"spread": spread}
    down = {"spread": spread}
    if getattr(result, "quadratic", None) is not None:
        from ..analysis.llc import UNDER_PREDICTION

        step = float(np.nan_to_num(np.asarray(result.step_bias, np.float64), nan=np.inf))
        fill = float(np.asarray(result.fill, np.float64))
        up["predicted step-size bias"] = UNDER_PREDICTION * max(step, 0.0) * abs(expected)
        down["predicted fill"] = UNDER_PREDICTION * max(1 - fill, 0.0) * abs(expected)
    share = getattr(result, "localization_share", None)
    if truth.exact is None and share is not None and np.isfinite(float(np.asarray(share))):
        down["localization"] = max(0.0, float(np.asarray(share))) * abs(expected)
    if remainder:
        up["finite-nβ remainder"] = down["finite-nβ remainder"] = remainder
    parts = up if estimate >= expected else down
    tolerance = sum(parts.values())
    warnings = [w for w in getattr(result, "warnings", []) if not any(a in w for a in allow_warnings)]
    ok = abs(estimate - expected) <= tolerance and not warnings
    m = truth.multiplicity
    what = (f"exact finite-nβ value {expected:.4g}" if truth.exact is not None else
            f"{expected:.4g} (λ = {truth.value:.4g}, m = {m if m is not None else '?'}, at nβ = {nbeta:.4g})")
    settings = _settings(result)
    message = (f"LLC estimate {estimate:.4g} ± {std / math.sqrt(chains):.2g} (standard error, {chains} chains) against "
               f"{what}: off by {estimate - expected:+.3g}, tolerance on that side {tolerance:.3g} = "
               + " + ".join(f"{v:.3g} {k}" for k, v in parts.items())
               + f". Settings: {settings}."
               + (f" Warnings: {'; '.join(warnings)}." if warnings else ""))
    return Comparison(ok=bool(ok), estimate=estimate, expected=expected, tolerance=tolerance, parts=parts,
                      warnings=warnings, message=message)


def _settings(result) -> str:
    def f(name):
        v = getattr(result, name, None)
        return None if v is None else float(np.asarray(v))

    eps, gamma, nbeta = f("step_size"), f("localization"), f("nbeta")
    h = max(x for x in (f("h_max"), f("h_max_chain"), 0.0) if x is not None and np.isfinite(x))
    bits = [f"sampler {getattr(result, 'sampler', '?')}"]
    if eps is not None:
        bits.append(f"ε = {eps:.3g} (ε·nβ·h_max = {eps * nbeta * h:.3g})" if np.isfinite(eps) else "ε adapted")
    bits += [f"γ = {gamma:.3g}" if gamma is not None else "γ ?", f"nβ = {nbeta:.4g}",
             f"{int(np.shape(result.per_chain)[-1])} chains × {int(np.shape(result.traces)[-1])} draws "
             f"(burn-in {result.burnin})"]
    for name, label in (("step_bias", "predicted step-size bias"), ("fill", "fill"),
                        ("localization_share", "localization share")):
        v = f(name)
        if v is not None:
            bits.append(f"{label} {v:+.1%}" if name == "step_bias" else f"{label} {v:.0%}")
    if getattr(result, "quadratic", None) is not None:
        bits.append(f"predicted bias {float(np.asarray(result.predicted_bias)):+.1%} (quadratic model "
                    f"{f('quadratic'):.4g} at these settings, {f('quadratic_exact'):.4g} exact)")
    return ", ".join(bits)


def assert_estimate(result, truth: Truth, *, confidence: float = 0.999, allow_warnings=()) -> Comparison:
    """Assert that an LLCResult matches ``truth`` (see :func:`compare_estimate`); raises
    AssertionError with a message naming the settings and the predicted bias; returns the
    :class:`Comparison` when it holds."""
    comparison = compare_estimate(result, truth, confidence=confidence, allow_warnings=allow_warnings)
    if not comparison.ok:
        raise AssertionError(comparison.message)
    return comparison
