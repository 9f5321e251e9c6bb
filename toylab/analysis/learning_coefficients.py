"""Closed-form learning coefficients (real log canonical thresholds) of models whose value
singular learning theory knows: the targets the LLC estimator is validated against.

Each function returns ``(λ, m)``: the learning coefficient and its multiplicity (the order
of the largest pole of the zeta function), as exact :class:`fractions.Fraction` values.

- a regular model with d parameters: d/2, m = 1;
- a normal-crossing monomial K(w) = Π w_i^{2k_i}: min over k_i > 0 of 1/(2k_i), m = the
  number of i that attain it;
- a sum of powers K(w) = Σ_{i≤r} w_i^p (p even): r/p, m = 1;
- reduced-rank regression (Aoyagi & Watanabe 2005): y = BAx, A (H×M), B (N×H), true
  product of rank r — four cases, m = 2 only in the central case with M+N+H+r odd;
- deep linear networks (Aoyagi 2024, "Consideration on the learning efficiency of
  multiple-layered neural networks with linear units"): y = W_L ⋯ W_1 x with widths
  H_1 (input), …, H_{L+1} (output) and a true product of rank r, with its multiplicity
  a(ℓ − a) + 1 (two layers: reduced-rank regression's).

A multiplicity m > 1 lowers what the estimator measures at finite nβ:
:func:`finite_nbeta_expectation` gives E[nβ·K] for a density of states c·t^{λ−1}(−log t)^{m−1}.
"""

from __future__ import annotations

import math
import numbers
from fractions import Fraction

from ..core.config import ConfigError

__all__ = ["regular", "normal_crossing", "sum_of_powers", "reduced_rank_regression", "deep_linear_network",
           "finite_nbeta_expectation", "finite_nbeta_remainder"]


def _count(name: str, value, least: int = 1) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < least:
        raise ConfigError(name, value, f"must be an integer >= {least}")
    return value


def regular(d: int) -> tuple[Fraction, int]:
    """A regular (non-degenerate) model with d parameters: (d/2, 1)."""
    return Fraction(_count("d", d), 2), 1


def normal_crossing(ks) -> tuple[Fraction, int]:
    """K(w) = Π_i w_i^(2 k_i) near 0 (k_i >= 0, at least one > 0): (min_{k_i>0} 1/(2k_i),
    how many k_i attain that minimum)."""
    ks = list(ks)
    if not ks or any(isinstance(k, bool) or not isinstance(k, int) or k < 0 for k in ks) or not any(ks):
        raise ConfigError("ks", ks, "must be non-negative integer powers, at least one positive")
    top = max(ks)
    return Fraction(1, 2 * top), ks.count(top)


def sum_of_powers(r: int, p: int) -> tuple[Fraction, int]:
    """K(w) = Σ_{i≤r} w_i^p with p even: (r/p, 1)."""
    _count("r", r)
    if _count("p", p, 2) % 2:
        raise ConfigError("p", p, "must be even (an odd power is not a non-negative loss)")
    return Fraction(r, p), 1


def reduced_rank_regression(M: int, N: int, H: int, r: int) -> tuple[Fraction, int]:
    """Reduced-rank regression y = B A x with x ∈ R^M, y ∈ R^N, H hidden units (A is H×M,
    B is N×H) and a true map of rank r <= min(M, N, H): (λ, m) from Aoyagi & Watanabe
    (2005, Theorem 1)."""
    for name, v in (("M", M), ("N", N), ("H", H)):
        _count(name, v)
    _count("r", r, 0)
    if r > min(M, N, H):
        raise ConfigError("r", r, f"must be at most min(M, N, H) = {min(M, N, H)}")
    if N + r <= M + H and M + r <= N + H and H + r <= M + N:  # the central case
        total = 2 * (H + r) * (M + N) - (M - N) ** 2 - (H + r) ** 2
        if (M + N + H + r) % 2 == 0:
            return Fraction(total, 8), 1
        return Fraction(total + 1, 8), 2
    if M + H < N + r:
        return Fraction(H * M - H * r + N * r, 2), 1
    if N + H < M + r:
        return Fraction(H * N - H * r + M * r, 2), 1
    return Fraction(M * N, 2), 1  # M + N < H + r


def deep_linear_network(widths, r: int) -> tuple[Fraction, int]:
    """A deep linear network y = W_L ⋯ W_1 x, ``widths = (H_1, …, H_{L+1})`` from input to
    output (W_i is H_{i+1}×H_i), whose true product has rank r <= min(widths):
    (λ, m) from Aoyagi (2024, Theorem 1).

    With M_i = H_i − r, the theorem takes the subset S of the M_i (ℓ+1 of them) with
    max S < min(rest), ΣS >= ℓ·max S and ΣS < ℓ·min(rest) — the smallest M_i, so only
    prefixes of the sorted list are candidates — and, with M̄ = ⌈ΣS/ℓ⌉ and
    a = ΣS − (M̄−1)ℓ,

        λ = (r(H_1 + H_{L+1}) − r²)/2 + a(ℓ−a)/(4ℓ) − ℓ(ℓ−1)/4·(ΣS/ℓ)² + ½Σ_{i<j∈S} M_i M_j.

    λ depends on the hidden widths only as a multiset. The multiplicity (the order of the
    pole) is m = a(ℓ − a) + 1: 1 when a = ℓ; for two layers (ℓ = 2) it is reduced-rank
    regression's 2 in the odd central case; for depth L with every width 1 (K = (Πw)²) it
    is L, the normal crossing of L squares.
    """
    widths = list(widths) if isinstance(widths, (list, tuple)) else widths
    if not isinstance(widths, list) or len(widths) < 2 or any(
            isinstance(h, bool) or not isinstance(h, int) or h < 1 for h in widths):
        raise ConfigError("widths", widths, "must be a list of at least two positive integers "
                          "(input, hidden..., output)")
    _count("r", r, 0)
    if r > min(widths):
        raise ConfigError("r", r, f"must be at most min(widths) = {min(widths)}")
    ms = sorted(h - r for h in widths)
    for size in range(2, len(ms) + 1):
        chosen, rest, ell = ms[:size], ms[size:], size - 1
        total = sum(chosen)
        if rest and chosen[-1] == rest[0]:
            continue  # S may not split equal values (max S < min rest)
        if total < ell * chosen[-1] or (rest and total >= ell * rest[0]):
            continue
        top = -(-total // ell)
        a = total - (top - 1) * ell
        pairs = sum(chosen[i] * chosen[j] for i in range(size) for j in range(i + 1, size))
        lam = (Fraction(r * (widths[0] + widths[-1]) - r * r, 2) + Fraction(a * (ell - a), 4 * ell)
               - Fraction(ell * (ell - 1), 4) * Fraction(total, ell) ** 2 + Fraction(pairs, 2))
        return lam, a * (ell - a) + 1
    raise AssertionError(f"no subset satisfies Aoyagi's conditions for widths={widths}, r={r}")  # pragma: no cover


def _gamma_derivative_ratios(a: float, j_max: int) -> list[float]:
    """Γ⁽ʲ⁾(a)/Γ(a) for j = 0…j_max: the complete Bell polynomials of ψ(a), ψ′(a), …"""
    import jax.numpy as jnp
    from jax.scipy.special import polygamma

    from ..tasks.losses import x64_scope

    with x64_scope():  # float32 polygamma would cost the formula its seventh digit
        kappa = [float(polygamma(i, jnp.float64(a))) for i in range(j_max)]
    bell = [1.0]
    for q in range(j_max):
        bell.append(sum(math.comb(q, i) * bell[q - i] * kappa[i] for i in range(q + 1)))
    return bell


def finite_nbeta_expectation(value, multiplicity: int, nbeta: float) -> float:
    """E[nβ·K(w)] under the tempered posterior exp(−nβK)·φ when the density of states near
    the minimum is v(t) = c·t^{λ−1}(−log t)^{m−1} (exactly so for a normal crossing with a
    uniform prior on the unit box):

        E = [Σ_j C(m−1, j) L^{m−1−j} (−1)^j Γ⁽ʲ⁾(λ+1)] / [Σ_j C(m−1, j) L^{m−1−j} (−1)^j Γ⁽ʲ⁾(λ)],

    L = log nβ (substitute s = nβt in ∫ s e^{−s} v(s/nβ) ds / ∫ e^{−s} v(s/nβ) ds and expand
    (L − log s)^{m−1}; ∫ s^{a−1} e^{−s} (log s)^j ds = Γ⁽ʲ⁾(a)). m = 1 gives λ; m = 2 gives
    λ − 1/(L − ψ(λ)); every m gives λ − (m − 1)/L + O(1/L²). A general model's v(t) has lower
    powers of −log t too, which change the O(1/L²) term (see :func:`finite_nbeta_remainder`)."""
    lam = _real("value", value)
    if lam <= 0:
        raise ConfigError("value", value, "must be a finite number > 0")
    m = _count("multiplicity", multiplicity)
    _nbeta_above_e(nbeta)
    if m == 1:
        return lam
    L = math.log(nbeta)
    up, down = _gamma_derivative_ratios(lam + 1, m - 1), _gamma_derivative_ratios(lam, m - 1)
    # Γ(λ+1)/Γ(λ) = λ factors out of the ratio of sums of Γ-derivative ratios
    num = sum(math.comb(m - 1, j) * L ** (m - 1 - j) * (-1) ** j * up[j] for j in range(m))
    den = sum(math.comb(m - 1, j) * L ** (m - 1 - j) * (-1) ** j * down[j] for j in range(m))
    return lam * num / den


def finite_nbeta_remainder(multiplicity: int, nbeta: float) -> float:
    """The size of the term :func:`finite_nbeta_expectation` leaves out: v(t) = t^{λ−1}(c₀ℓ^{m−1}
    + c₁ℓ^{m−2} + …), ℓ = −log t, shifts log nβ by c₁/c₀ in the leading correction, which
    moves E by (m − 1)·(c₁/c₀)/L²; this is that for |c₁/c₀| = 1 (0 when m = 1). c₁/c₀ depends on
    the model and the prior's scale (γ): for the crossing w₁²w₂² with γ = 1 at nβ = 1000 the
    exact expectation is within 0.15·(m − 1)/L² of the formula."""
    m = _count("multiplicity", multiplicity)
    return (m - 1) / math.log(_nbeta_above_e(nbeta)) ** 2


def _real(name: str, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not math.isfinite(float(value)):
        raise ConfigError(name, value, "must be a finite number")
    return float(value)


def _nbeta_above_e(nbeta) -> float:
    value = _real("nbeta", nbeta)
    if value <= math.e:
        raise ConfigError("nbeta", nbeta, "must be a finite number > e (log nβ > 1)")
    return value

