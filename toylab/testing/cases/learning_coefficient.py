"""Known answers for the learning coefficient: potentials whose λ (and, in one or two
dimensions, whose exact finite-nβ expectation) is known, and linear networks at their most
singular true parameter under the population loss.

Each case is an :class:`LLCCase`: the loss, the point w*, the data, the number of examples
the data stand for, the nβ it is meant at, λ with its multiplicity, and — where it can be
computed — the exact expectation of the estimator at finite nβ and γ.

    case = cases.reduced_rank_regression(M=3, N=2, H=2, r=1)
    res = learning_coefficient(case.loss, case.params, case.data, key, **case.settings)
    assert_estimate(res, case.truth())
"""

from __future__ import annotations

import dataclasses
import math
from fractions import Fraction
from typing import Any, Callable

import jax.numpy as jnp
import numpy as np

from ...analysis import learning_coefficients as lc
from ...core.config import ConfigError

__all__ = ["LLCCase", "potential", "sum_of_powers", "normal_crossing", "reduced_rank_regression",
           "deep_linear_network", "second_moment_rows", "moment_rows"]

POTENTIAL_NBETA = 1000.0


@dataclasses.dataclass(frozen=True)
class LLCCase:
    """A learning-coefficient problem with its known answer.

    name: a label. loss: ``loss(params, batch)``. params: w* (a pytree). data: the batch
    (a leading example axis). n: the examples the data stand for. nbeta: the inverse
    temperature the case is meant at. value, multiplicity: λ and m (m None: not known).
    exact: ``exact(nbeta, localization) -> float``, the exact expectation of nβ(E[L] − L(w*))
    under the localized tempered posterior (None where it cannot be computed).
    """

    name: str
    loss: Callable
    params: Any
    data: Any
    n: int
    nbeta: float
    value: Fraction
    multiplicity: int | None
    exact: Callable | None = None

    @property
    def settings(self) -> dict:
        """Keywords for learning_coefficient (and calibrate): nβ and the examples' count."""
        return {"nbeta": self.nbeta, "n_examples": self.n}

    def truth(self, localization: float | None = None):
        """The :class:`~toylab.testing.assertions.Truth` to assert against: λ and m, and the
        exact finite-nβ value at ``localization`` where the case has one."""
        from ..assertions import Truth

        exact = None if self.exact is None or localization is None else self.exact(self.nbeta, localization)
        return Truth(value=float(self.value), multiplicity=self.multiplicity, exact=exact)


def _count(name, value, least=1):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < least:
        raise ConfigError(name, value, f"must be an integer >= {least}")
    return int(value)


def _nbeta(nbeta):
    if isinstance(nbeta, bool) or not isinstance(nbeta, (int, float)) or not math.isfinite(nbeta) or nbeta <= 1:
        raise ConfigError("nbeta", nbeta, "must be a finite number > 1")
    return float(nbeta)


def _placeholder_data():
    return jnp.zeros((2, 1))  # a potential ignores its batch; nβ is given


def potential(name: str, K: Callable, dim: int, value, multiplicity: int | None, *, nbeta: float = POTENTIAL_NBETA,
              exact: Callable | None = None) -> LLCCase:
    """A case whose loss is the potential ``K(w)`` itself at w* = 0 in ``dim`` dimensions."""
    dim = _count("dim", dim)
    return LLCCase(name=name, loss=lambda p, batch: K(p["w"]), params={"w": jnp.zeros(dim)}, data=_placeholder_data(),
                   n=2, nbeta=_nbeta(nbeta), value=Fraction(value), multiplicity=multiplicity, exact=exact)


def _integrate(f, *, scale):
    """∫_{-∞}^{∞} f (even f) by adaptive quadrature on [0, 40·scale], split near 0 where the
    tempered densities concentrate."""
    from scipy import integrate

    pts = [scale * x for x in (1e-4, 1e-3, 1e-2, 0.1, 1.0)]
    return 2 * integrate.quad(f, 0, 40 * scale, points=pts, limit=500, epsabs=0, epsrel=1e-10)[0]


def _exact_power(p: int):
    """E[nβ w^p] under exp(−nβ w^p − γw²/2): one-dimensional quadrature."""
    def exact(nbeta, gamma):
        scale = min(nbeta ** (-1 / p), 1 / math.sqrt(gamma) if gamma > 0 else math.inf)
        z = _integrate(lambda w: math.exp(-nbeta * w ** p - 0.5 * gamma * w * w), scale=scale)
        m = _integrate(lambda w: nbeta * w ** p * math.exp(-nbeta * w ** p - 0.5 * gamma * w * w), scale=scale)
        return m / z
    return exact


def sum_of_powers(r: int, p: int, *, nbeta: float = POTENTIAL_NBETA) -> LLCCase:
    """K(w) = Σ_{i≤r} w_i^p (p even) in r dimensions: λ = r/p, m = 1; exact finite-nβ value
    by quadrature (the coordinates are independent under the posterior)."""
    lam, m = lc.sum_of_powers(_count("r", r), _count("p", p, 2))
    one = _exact_power(p)
    return potential(f"sum of {r} powers w^{p}", lambda w: jnp.sum(w ** p), r, lam, m, nbeta=nbeta,
                     exact=lambda nb, g: r * one(nb, g))


def normal_crossing(ks, *, nbeta: float = POTENTIAL_NBETA) -> LLCCase:
    """K(w) = Π_i w_i^(2k_i): λ = min 1/(2k_i) over k_i > 0, m = how many attain it; exact
    finite-nβ value by quadrature in one or two dimensions."""
    ks = list(ks) if isinstance(ks, (list, tuple)) else ks
    lam, m = lc.normal_crossing(ks)
    powers = jnp.asarray([2 * k for k in ks], jnp.float32)
    exact = None
    if len(ks) == 1:
        exact = _exact_power(2 * ks[0])
    elif len(ks) == 2:
        exact = _exact_crossing(2 * ks[0], 2 * ks[1])
    name = "normal crossing " + "·".join(f"w{i + 1}^{2 * k}" for i, k in enumerate(ks))
    return potential(name, lambda w: jnp.prod(w ** powers), len(ks), lam, m, nbeta=nbeta, exact=exact)


def _exact_crossing(a: int, b: int):
    """E[nβ w1^a w2^b] under exp(−nβ w1^a w2^b − γ(w1² + w2²)/2): nested quadrature."""
    def exact(nbeta, gamma):
        if gamma <= 0:
            raise ConfigError("localization", gamma, "must be > 0 for a normal crossing (the posterior is improper "
                              "without it)")
        scale = 1 / math.sqrt(gamma)

        def inner(w2, moment):
            c = nbeta * w2 ** b
            s = min(scale, (c if c > 0 else 1e-300) ** (-1 / a))
            return _integrate(lambda w1: (c * w1 ** a) ** moment * math.exp(-c * w1 ** a - 0.5 * gamma * w1 * w1),
                              scale=s) * math.exp(-0.5 * gamma * w2 * w2)
        z = _integrate(lambda w2: inner(w2, 0), scale=scale)
        mom = _integrate(lambda w2: inner(w2, 1), scale=scale)
        return mom / z
    return exact


# ----------------------------------------------------------------------------- linear networks


def second_moment_rows(x, y) -> dict:
    """k = dim(x) + dim(y) rows {"x", "y"} whose second moments equal those of the n examples
    (x, y): any loss that is a quadratic form in (x, y), averaged over the rows, equals its
    average over the examples. Float32 arrays."""
    z = np.concatenate([np.asarray(x, np.float64), np.asarray(y, np.float64)], axis=1)
    return moment_rows(z.T @ z / z.shape[0], np.shape(x)[1])


def _linear_loss(p, batch):
    out = batch["x"]
    for W in p:
        out = out @ W.T
    return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1))


def deep_linear_network(widths, r: int, *, n: int = 100_000, seed: int = 0) -> LLCCase:
    """y = W_L ⋯ W_1 x + N(0, I), x ~ N(0, I), widths (input, hidden…, output), whose true
    product P* = UV has rank r (orthonormal U, V: singular values 1), at its most singular true
    parameter: W_1 = [V; 0], W_L = [U 0], identities on the first r hidden units, zeros
    elsewhere. The loss is the population one, ½·E‖y − W_L ⋯ W_1 x‖² = ½‖W_L ⋯ W_1 − P*‖²_F
    + const, so w* is an exact minimum (K(w*) = 0) and its learning coefficient is λ of
    Aoyagi (2024) with multiplicity m; ``n`` sets nβ = n/log n, the temperature of n examples.

    ``data`` holds dim(x) + dim(y) rows whose second moments are the population's (any loss
    quadratic in (x, y) averaged over them is its expectation); pass ``case.settings``."""
    if not isinstance(widths, (list, tuple)) or len(widths) < 2:
        raise ConfigError("widths", widths, "must be a list of at least two positive integers (input, ..., output)")
    widths = [_count("widths", w) for w in widths]
    r = _count("r", r, 0)
    if r > min(widths):
        raise ConfigError("r", r, f"must be at most the smallest width ({min(widths)})")
    n = _count("n", n, 3)
    lam, m = lc.deep_linear_network(widths, r)
    rng = np.random.default_rng(seed)
    h_in, h_out = widths[0], widths[-1]
    U = np.linalg.qr(rng.normal(size=(h_out, max(r, 1))))[0][:, :r]
    V = np.linalg.qr(rng.normal(size=(h_in, max(r, 1))))[0][:, :r].T
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        W = np.zeros((b, a))
        if i == 0:
            W[:r] = V
        elif i == len(widths) - 2:
            W[:, :r] = U
        else:
            W[:r, :r] = np.eye(r)
        layers.append(W)
    if len(layers) == 1:
        layers[0] = U @ V
    P = U @ V
    # population second moments of z = [x; y]: E xxᵀ = I, E yxᵀ = P, E yyᵀ = PPᵀ + I
    moments = np.block([[np.eye(h_in), P.T], [P, P @ P.T + np.eye(h_out)]])
    params = [jnp.asarray(W, jnp.float32) for W in layers]
    label = ("RRR M={} H={} N={}".format(widths[0], widths[1], widths[2]) if len(widths) == 3
             else "DLN " + "-".join(map(str, widths)))
    return LLCCase(name=f"{label} r={r}", loss=_linear_loss, params=params, data=moment_rows(moments, h_in), n=n,
                   nbeta=n / math.log(n), value=lam, multiplicity=m)


def moment_rows(moments, d_x: int) -> dict:
    """k rows {"x", "y"} (the first ``d_x`` coordinates x) with rowsᵀrows / k = ``moments`` (a
    (k, k) positive-definite second-moment matrix). Float32."""
    M = np.asarray(moments, np.float64)
    rows = np.sqrt(M.shape[0]) * np.linalg.cholesky(M).T
    return {"x": jnp.asarray(rows[:, :d_x], jnp.float32), "y": jnp.asarray(rows[:, d_x:], jnp.float32)}


def reduced_rank_regression(M: int, N: int, H: int, r: int, **kwargs) -> LLCCase:
    """Reduced-rank regression y = B A x (x ∈ R^M, y ∈ R^N, H hidden): the two-layer
    :func:`deep_linear_network` of widths (M, H, N); λ and m from Aoyagi & Watanabe (2005)."""
    return deep_linear_network([M, H, N], r, **kwargs)
