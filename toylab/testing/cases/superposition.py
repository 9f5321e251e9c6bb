"""The toy model of superposition with n = 2 features and m = 1 hidden dimension at its
phases, with closed-form expected losses (Elhage et al. 2022, the phase-change section).

The model is the ReLU-output one, x' = ReLU(WᵀW x + b) with W (1, 2); the loss the lab's,
L = ½ Σᵢ Iᵢ E[(xᵢ − x'ᵢ)²] with importances I = (1, r) (``importance_decay = r``, so r is
the relative importance of the extra feature 1); each feature is 0 with probability 1 − p,
else Uniform[0, 1], independently. The three phases are how the model treats feature 1:

- **not represented** (phase 0): W = (1, 0), b = (0, p/2): feature 0 is copied exactly and
  feature 1 is replaced by its mean, so L = r·v/2 with v = Var(xᵢ) = p/3 − p²/4;
- **dedicated** (phase 1): W = (0, 1), b = (p/2, 0): the other way round, L = v/2;
- **superposed** (phase 2): the antipodal pair W = (a, −c), a, c > 0, biases free, at its
  local minimum (where one exists: for dense or very unequal features the pair collapses
  into one of the other phases).

Every loss here is exact: :func:`superposition_loss` integrates the piecewise-quadratic
error of any (W, b) over the four presence patterns (neither, one, the other, both present)
— ReLU(·)² on an interval by Simpson's rule on its pieces, and on the unit square by the
edge-midpoint rule on the triangles of the region where the ReLU is active, both exact for
the polynomials involved. The superposed phase's parameters come from minimising that
closed form (Nelder–Mead); its loss is the closed form at them.
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ...core.config import ConfigError, described

__all__ = ["PHASES", "SuperpositionPhase", "superposition_loss", "superposition_phase", "superposition_phases",
           "lowest_loss_phase"]

PHASES = ("not represented", "dedicated", "superposed")  # = toylab.analysis.superposition.PHASE_NAMES


# ----------------------------------------------------------------------------- exact integrals


def _simpson_pieces(f, breaks) -> float:
    """∫₀¹ f for f quadratic on each piece between the sorted breaks in (0, 1) (exact)."""
    points = [0.0, *sorted(b for b in breaks if 0.0 < b < 1.0), 1.0]
    return sum((hi - lo) / 6.0 * (f(lo) + 4.0 * f((lo + hi) / 2.0) + f(hi)) for lo, hi in zip(points, points[1:]))


def _root(slope: float, offset: float) -> list[float]:
    return [-offset / slope] if slope != 0.0 else []


def _own_error(own: float, bias: float) -> float:
    """E[(u − ReLU(own·u + bias))²], u ~ U[0, 1]."""
    return _simpson_pieces(lambda u: (u - max(own * u + bias, 0.0)) ** 2, _root(own, bias))


def _cross_error(cross: float, bias: float) -> float:
    """E[ReLU(cross·v + bias)²], v ~ U[0, 1]: the output of an absent feature."""
    return _simpson_pieces(lambda v: max(cross * v + bias, 0.0) ** 2, _root(cross, bias))


def _clip(polygon, a: float, b: float, c: float):
    """The part of a convex polygon where a·u + b·v + c >= 0 (Sutherland–Hodgman)."""
    out = []
    for (u0, v0), (u1, v1) in zip(polygon, polygon[1:] + polygon[:1]):
        f0, f1 = a * u0 + b * v0 + c, a * u1 + b * v1 + c
        if f0 >= 0:
            out.append((u0, v0))
        if (f0 >= 0) != (f1 >= 0):
            t = f0 / (f0 - f1)
            out.append((u0 + t * (u1 - u0), v0 + t * (v1 - v0)))
    return out


def _both_error(own: float, cross: float, bias: float) -> float:
    """E[(u − ReLU(own·u + cross·v + bias))²], (u, v) ~ U[0, 1]²."""
    def gain(u, v):  # u² − (u − g)², the error the active ReLU removes
        g = own * u + cross * v + bias
        return 2.0 * u * g - g * g

    region = _clip([(0.0, 0.0), (1.0, 0.0), (1.0, 1.0), (0.0, 1.0)], own, cross, bias)
    total = 0.0
    for B, C in zip(region[1:-1], region[2:]):  # a fan of triangles from the first vertex
        A = region[0]
        area = abs((B[0] - A[0]) * (C[1] - A[1]) - (C[0] - A[0]) * (B[1] - A[1])) / 2.0
        mids = [((P[0] + Q[0]) / 2.0, (P[1] + Q[1]) / 2.0) for P, Q in ((A, B), (B, C), (C, A))]
        total += area / 3.0 * sum(gain(u, v) for u, v in mids)  # exact for quadratics
    return 1.0 / 3.0 - total


def _feature_error(own: float, cross: float, bias: float, p: float) -> float:
    """E[(xᵢ − ReLU(own·xᵢ + cross·xⱼ + bias))²] over the four presence patterns."""
    return ((1 - p) ** 2 * max(bias, 0.0) ** 2
            + p * (1 - p) * (_own_error(own, bias) + _cross_error(cross, bias))
            + p * p * _both_error(own, cross, bias))


# ----------------------------------------------------------------------------- checks


def _positive(name, value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (math.isfinite(value) and value > 0):
        raise ConfigError(name, value, "must be a finite number > 0")
    return float(value)


def _probability(value) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (0.0 < value <= 1.0):
        raise ConfigError("feature_probability", value, "must be a number in (0, 1]")
    return float(value)


def _phase_index(phase) -> int:
    if isinstance(phase, str) and phase in PHASES:
        return PHASES.index(phase)
    if isinstance(phase, numbers.Integral) and not isinstance(phase, bool) and 0 <= phase < len(PHASES):
        return int(phase)
    raise ConfigError("phase", phase, f"must be 0, 1, 2 or one of {', '.join(PHASES)}")


def _vector(name, value, shapes) -> np.ndarray:
    """A finite float64 array of one of the allowed shapes."""
    allowed = " or ".join(str(s) for s in shapes)
    try:
        arr = np.asarray(value, np.float64)
    except (TypeError, ValueError):
        raise ConfigError(name, value, f"must be an array of numbers of shape {allowed}") from None
    if arr.shape not in shapes:
        raise ConfigError(name, described(f"shape {arr.shape}"), f"must have shape {allowed}")
    if not np.all(np.isfinite(arr)):
        raise ConfigError(name, value, "must be finite")
    return arr


# ----------------------------------------------------------------------------- the loss


def superposition_loss(W, b, importance, feature_probability) -> float:
    """The exact expected loss of the n = 2, m = 1 ReLU-output model.

    Args:
        W: (1, 2) or (2,) weights; b: (2,) output bias.
        importance: r > 0, the importance of feature 1 (feature 0 has 1).
        feature_probability: p in (0, 1].

    Returns:
        ½ (E[(x₀ − x'₀)²] + r·E[(x₁ − x'₁)²]) as a float, what the lab's
        ``reconstruction_loss`` estimates on batches of the family's data.
    """
    W = np.ravel(_vector("W", W, ((1, 2), (2,))))
    b = _vector("b", b, ((2,),))
    r, p = _positive("importance", importance), _probability(feature_probability)
    w0, w1 = float(W[0]), float(W[1])
    e0 = _feature_error(w0 * w0, w0 * w1, float(b[0]), p)
    e1 = _feature_error(w1 * w1, w0 * w1, float(b[1]), p)
    return 0.5 * (e0 + r * e1)


# ----------------------------------------------------------------------------- the phases


@dataclasses.dataclass(frozen=True)
class SuperpositionPhase:
    """One phase of the n = 2, m = 1 toy model at a relative importance and a density.

    Attributes:
        phase: its index in :data:`PHASES` (as ``classify_phase`` numbers them).
        name: its name.
        W: (1, 2) weights; b: (2,) output bias (float64).
        importance: r, the importance of feature 1 (``importance_decay``).
        feature_probability: p, the probability that a feature is present.
        expected_loss: the exact expected loss of (W, b) on that data.
    """

    phase: int
    name: str
    W: np.ndarray
    b: np.ndarray
    importance: float
    feature_probability: float
    expected_loss: float

    def model(self):
        """The lab's :class:`~toylab.models.superposition.ToyModel` at these parameters (float32)."""
        import jax.numpy as jnp

        from ...models.superposition import ToyModel

        return ToyModel(jnp.asarray(self.W, jnp.float32), jnp.asarray(self.b, jnp.float32), None, "relu_output")

    def config(self, **fields):
        """The superposition family's config with this phase's data settings (n = 2, m = 1,
        ReLU output); ``fields`` change others (steps, batch_size, ...)."""
        from ...families.superposition import SuperpositionConfig

        return SuperpositionConfig(**{"n_features": 2, "n_hidden": 1, "model": "relu_output",
                                      "importance_decay": self.importance,
                                      "feature_probability": self.feature_probability, **fields})


def _antipodal_minimum(r: float, p: float):
    """(W, b, loss) at the antipodal pair's local minimum, or None when there is none."""
    from scipy.optimize import minimize

    def loss(x):
        a, c, b0, b1 = x
        return superposition_loss((a, -c), (b0, b1), r, p)

    found = minimize(loss, np.array([1.0, 1.0, 0.0, 0.0]), method="Nelder-Mead",
                     options=dict(xatol=1e-10, fatol=1e-16, maxiter=20_000, maxfev=40_000))
    a, c, b0, b1 = found.x
    # Both features must stay represented (classify_phase's norm threshold 0.5) with opposite
    # signs; otherwise the descent left the antipodal family for another phase.
    if not (found.success and a >= 0.5 and c >= 0.5):
        return None
    return np.array([[a, -c]]), np.array([b0, b1]), float(found.fun)


def superposition_phase(phase, importance: float, feature_probability: float) -> SuperpositionPhase:
    """The model of one phase at relative importance r and feature probability p.

    Args:
        phase: 0, 1, 2 or a name of :data:`PHASES`.
        importance: r > 0.
        feature_probability: p in (0, 1].

    Returns:
        a :class:`SuperpositionPhase`. The superposed phase raises ConfigError (naming
        ``phase``) where the antipodal pair has no local minimum.
    """
    k = _phase_index(phase)
    r, p = _positive("importance", importance), _probability(feature_probability)
    v = p / 3.0 - p * p / 4.0  # the variance of one feature
    if k == 0:
        W, b, loss = np.array([[1.0, 0.0]]), np.array([0.0, p / 2.0]), r * v / 2.0
    elif k == 1:
        W, b, loss = np.array([[0.0, 1.0]]), np.array([p / 2.0, 0.0]), v / 2.0
    else:
        found = _antipodal_minimum(r, p)
        if found is None:
            raise ConfigError("phase", phase, f"the antipodal pair has no local minimum at importance={r}, "
                                              f"feature_probability={p} (it collapses into one feature); "
                                              "sparser or more equally important features superpose")
        W, b, loss = found
    return SuperpositionPhase(k, PHASES[k], W, b, r, p, float(loss))


def superposition_phases(importance: float, feature_probability: float) -> tuple[SuperpositionPhase, ...]:
    """Every phase that exists at (r, p): not represented, dedicated, and superposed where
    the antipodal pair has a local minimum."""
    r, p = _positive("importance", importance), _probability(feature_probability)
    found = [superposition_phase(k, r, p) for k in (0, 1)]
    try:
        found.append(superposition_phase(2, r, p))
    except ConfigError:
        pass
    return tuple(found)


def lowest_loss_phase(importance: float, feature_probability: float) -> int:
    """The index in :data:`PHASES` of the phase with the lowest closed-form loss at (r, p):
    the phase diagram of the n = 2, m = 1 model."""
    phases = superposition_phases(importance, feature_probability)
    return min(phases, key=lambda c: c.expected_loss).phase
