"""Synthetic activations with planted features, for sparse-dictionary (SAE) training.

N true features live in D dimensions as unit directions (the rows of a (N, D) matrix); an
activation is x = c @ directions + bias + noise, where c (B, N) ≥ 0 are the true feature
activations, as in SAELens' SynthSAEBench. The generator has four parts, each a pure
function that jit and vmap take as they are:

- **firing probabilities** p_i = min(1, s·(i+1)^(−zipf_exponent)), the scale s chosen so that
  Σ p_i = mean_active (:func:`firing_probabilities`);
- **presence**: feature i is present with probability p_i, independently or, with a low-rank
  correlation, through a Gaussian copula that keeps every marginal at p_i
  (:func:`sample_features`);
- **hierarchy**: parents and mutually exclusive children that fire only under their parent;
  this changes the children's marginals (:func:`marginal_probabilities` gives the true ones);
- **magnitudes**: a present feature takes |N(magnitude_mean, magnitude_std²)|.

:class:`SyntheticFeatures` bundles the parameters as a frozen, validated dataclass that is
also a pytree: its *static* fields (n_features, dim, n_parents, children_per_parent,
correlation_rank, orthogonal_directions, seed) pick the compiled program and are pytree
metadata; its *sweepable* fields (mean_active, zipf_exponent, child_probability,
correlation_strength, magnitude_mean, magnitude_std, noise_std) are pytree leaves, so they
may be traced and a grid over them is one program (``jax.vmap`` over a config whose
sweepable fields are stacked arrays, or over a function that builds one from traced values).
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

from ..core.config import (ConfigError, described, in_interval, nonnegative, nonnegative_int, positive, positive_int,
                           static, sweepable)
from .sparse_features import uniform01

__all__ = [
    "Hierarchy",
    "Correlation",
    "feature_directions",
    "low_rank_factor",
    "firing_probabilities",
    "marginal_probabilities",
    "sample_features",
    "synthetic_activations",
    "SyntheticFeatures",
    "SyntheticFeatureFields",
]


# ----------------------------------------------------------------------------- structure


@dataclasses.dataclass(frozen=True)
class Hierarchy:
    """A one-level feature hierarchy (static: it fixes the code path).

    Features ``0 .. n_parents-1`` are parents; parent j's children are features
    ``n_parents + j·children_per_parent + (0 .. children_per_parent-1)``. Features after
    ``n_parents·(1 + children_per_parent)`` are outside the hierarchy.
    """

    n_parents: int
    children_per_parent: int

    def __post_init__(self):
        _check_int("n_parents", self.n_parents, 0)
        _check_int("children_per_parent", self.children_per_parent, 0)

    @property
    def size(self) -> int:
        """How many features the hierarchy lays out (parents and children)."""
        return self.n_parents * (1 + self.children_per_parent)

    def check_fits(self, n_features: int):
        if self.n_parents > n_features:
            raise ConfigError("n_parents", self.n_parents, f"must be <= n_features={n_features}")
        if self.size > n_features:
            raise ConfigError("children_per_parent", self.children_per_parent,
                              f"the hierarchy lays out n_parents·(1 + children_per_parent) = {self.size} "
                              f"features; it must be <= n_features={n_features}")


class Correlation(NamedTuple):
    """A low-rank correlation of presence: ``factor`` (N, R), ``strength`` in [0, 1] (traceable).

    The latent score of feature i is z_i = √strength·(F_i·g)/‖F_i‖ + √(1 − strength)·ε_i with
    g ~ N(0, I_R) shared by all features of a sample and ε_i ~ N(0, 1) its own, so z_i has unit
    variance and corr(z_i, z_j) = strength·cos(F_i, F_j). A feature whose factor row is zero
    keeps z_i = ε_i (it is independent). A plain ``(factor, strength)`` tuple works as well.
    """

    factor: Any
    strength: Any


# ----------------------------------------------------------------------------- checks of static arguments


def _check_int(name: str, value, minimum: int):
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise ConfigError(name, value, f"must be an integer >= {minimum}")
    if value < minimum:
        raise ConfigError(name, value, f"must be an integer >= {minimum}")


def _concrete(value):
    """The value as a float64 numpy array, or None when it is traced (it cannot be checked)."""
    if isinstance(value, (bool, np.bool_, str, bytes)) or value is None:
        raise TypeError
    try:
        arr = np.asarray(value)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        return None
    if arr.dtype == bool or not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError
    return arr.astype(np.float64)


def _check_number(name: str, value, lo: float, hi: float = math.inf, *, lo_open=False, hi_text=None):
    """Check a sweepable field: a real number or array of them in [lo, hi] (or (lo, hi]);
    traced values pass (they are checked where they were made concrete)."""
    left = "(" if lo_open else "["
    allowed = hi_text or (f"must be a finite number >= {lo}" if hi == math.inf and not lo_open
                          else f"must be a finite number in {left}{lo}, {hi}]")
    try:
        arr = _concrete(value)
    except TypeError:
        raise ConfigError(name, value, "must be a number (or an array of numbers)") from None
    if arr is None:
        return
    ok = np.isfinite(arr) & ((arr > lo) if lo_open else (arr >= lo)) & (arr <= hi)
    if not np.all(ok):
        shown = value if arr.size == 1 else described(f"an array of shape {arr.shape} with values {arr[~ok][:3].tolist()}")
        raise ConfigError(name, shown, allowed)


# ----------------------------------------------------------------------------- directions


def feature_directions(key, n_features: int, dim: int, *, orthogonal: bool = False, dtype=jnp.float32):
    """The (n_features, dim) matrix of unit-norm feature directions.

    Args:
        key: a PRNG key.
        n_features, dim: static sizes.
        orthogonal: False: independent Gaussian directions, normalised (uniform on the
            sphere). True: orthonormal rows (QR of a Gaussian matrix, uniform on the Stiefel
            manifold); needs n_features <= dim.
        dtype: the floating dtype of the result.

    Returns:
        (n_features, dim) array whose rows have norm 1.
    """
    _check_int("n_features", n_features, 1)
    _check_int("dim", dim, 1)
    if orthogonal and n_features > dim:
        raise ConfigError("orthogonal", orthogonal,
                          f"orthonormal directions need n_features <= dim (got n_features={n_features}, dim={dim})")
    if orthogonal:
        g = jax.random.normal(key, (dim, n_features), jnp.float32)
        q, r = jnp.linalg.qr(g)  # q: (dim, n_features), orthonormal columns
        # Signs from R's diagonal make the distribution Haar, not QR-algorithm dependent.
        q = q * jnp.where(jnp.diagonal(r) < 0, -1.0, 1.0)
        return q.T.astype(dtype)
    g = jax.random.normal(key, (n_features, dim), jnp.float32)
    return (g / jnp.linalg.norm(g, axis=1, keepdims=True)).astype(dtype)


def low_rank_factor(key, n_features: int, rank: int):
    """A (n_features, rank) standard Gaussian factor for :class:`Correlation`: random
    positive and negative correlations whose pattern has rank ``rank``."""
    _check_int("n_features", n_features, 1)
    _check_int("rank", rank, 1)
    return jax.random.normal(key, (n_features, rank), jnp.float32)


# ----------------------------------------------------------------------------- probabilities


def firing_probabilities(n_features: int, mean_active, zipf_exponent):
    """Zipf-distributed firing probabilities that sum to ``mean_active``.

    p_i = min(1, s·(i+1)^(−zipf_exponent)), with s chosen so that Σ p_i = mean_active. The
    clip at 1 makes this water-filling; s is found exactly (not by iteration), in log space so
    that steep exponents do not underflow: with the weights sorted, the number k of clipped
    features is the smallest k with mean_active <= k + Σ_{i>=k} w_i/w_k, and then
    s = (mean_active − k) / Σ_{i>=k} w_i.

    Args:
        n_features: static.
        mean_active: the expected number of present features, traceable; clipped to
            [0, n_features] (validate it with :class:`SyntheticFeatures`).
        zipf_exponent: traceable; 0 gives uniform p_i = mean_active / n_features, > 0 makes
            p non-increasing in i (negative exponents work too and make it non-decreasing).

    Returns:
        (n_features,) float32 probabilities in [0, 1].
    """
    _check_int("n_features", n_features, 1)
    m = jnp.clip(jnp.asarray(mean_active, jnp.float32), 0.0, float(n_features))
    a = jnp.asarray(zipf_exponent, jnp.float32)
    log_w = -a * jnp.log(jnp.arange(1, n_features + 1, dtype=jnp.float32))
    lw = jnp.sort(log_w)[::-1]  # descending (already so when a >= 0)
    log_tail = jax.lax.cumlogsumexp(lw, reverse=True)  # log Σ_{i>=k} w_i
    k = jnp.arange(n_features, dtype=jnp.float32)
    fits = m <= k + jnp.exp(log_tail - lw)  # Σ_i min(1, w_i / w_k) >= m: at most k clipped
    fits = fits.at[-1].set(True)  # exact in real numbers for m <= n; guards rounding
    kstar = jnp.argmax(fits)
    log_s = jnp.log(jnp.maximum(m - kstar.astype(jnp.float32), 0.0)) - log_tail[kstar]
    return jnp.minimum(1.0, jnp.exp(log_s + log_w))


def _child_shares(probabilities, hierarchy: Hierarchy):
    """(n_parents, children_per_parent): which child fires, given that one does — proportional
    to the children's own probabilities (uniform for a parent whose children all have p = 0).
    Each row sums to 1, the last cumulative share exactly."""
    n_p, n_c = hierarchy.n_parents, hierarchy.children_per_parent
    w = probabilities[n_p:hierarchy.size].reshape(n_p, n_c)
    total = w.sum(axis=1, keepdims=True)
    return jnp.where(total > 0, w / jnp.where(total > 0, total, 1.0), 1.0 / n_c)


def marginal_probabilities(probabilities, *, hierarchy: Hierarchy | None = None, child_probability=1.0):
    """The true probability that each feature is present under :func:`sample_features`.

    Without a hierarchy these are the given probabilities (a correlation never changes them).
    With one, parents and features outside the hierarchy keep p_i, and child k of parent j is
    present with probability p_parent · child_probability · p_k / Σ_{children c of j} p_c
    (p_parent · child_probability / children_per_parent when the children all have p = 0).

    Args:
        probabilities: (N,) the p_i given to :func:`sample_features`.
        hierarchy: static, or None.
        child_probability: traceable, in [0, 1].

    Returns:
        (N,) float32.
    """
    p = jnp.asarray(probabilities, jnp.float32)
    if hierarchy is None or hierarchy.n_parents == 0 or hierarchy.children_per_parent == 0:
        return p
    hierarchy.check_fits(p.shape[-1])
    n_p = hierarchy.n_parents
    cp = jnp.asarray(child_probability, jnp.float32)
    child = p[:n_p, None] * cp * _child_shares(p, hierarchy)
    return jnp.concatenate([p[:n_p], child.reshape(-1), p[hierarchy.size:]])


# ----------------------------------------------------------------------------- sampling


def _is_zero(value) -> bool:
    """True for a concrete Python/numpy zero (a traced value is never known to be zero)."""
    return isinstance(value, (int, float, np.integer, np.floating)) and not isinstance(value, bool) and value == 0


def sample_features(key, batch_size: int, probabilities, *, hierarchy: Hierarchy | None = None,
                    child_probability=1.0, correlation=None, magnitude_mean=1.0, magnitude_std=0.0):
    """True feature activations c (batch_size, N) >= 0.

    Args:
        key: a PRNG key.
        batch_size: static.
        probabilities: (N,) firing probabilities p_i in [0, 1], traceable.
        hierarchy: a static :class:`Hierarchy`, or None. Each child's own presence draw is
            replaced: when its parent is present, with probability ``child_probability``
            exactly one of the parent's children fires, child k chosen with probability
            p_k / Σ_children p (uniformly if they are all 0); otherwise none does. Children
            are therefore mutually exclusive, never fire without their parent, and have the
            marginals of :func:`marginal_probabilities` (not p_k).
        child_probability: traceable, in [0, 1].
        correlation: None (independent presence) or a :class:`Correlation` / ``(factor,
            strength)`` with factor (N, R) and strength traceable in [0, 1]: feature i is
            present iff z_i < Φ⁻¹(p_i) (equivalently Φ(z_i) < p_i) for the unit-variance
            latent z of :class:`Correlation`, so every marginal stays exactly p_i and strength
            0 gives independence.
        magnitude_mean, magnitude_std: traceable (scalars or (N,) arrays); a present feature
            takes |N(magnitude_mean, magnitude_std²)| (folded normal), so magnitude_std = 0
            gives exactly |magnitude_mean|.

    Returns:
        (batch_size, N) float32, zero where a feature is absent.
    """
    _check_int("batch_size", batch_size, 1)
    p = jnp.asarray(probabilities, jnp.float32)
    if p.ndim != 1:
        raise ConfigError("probabilities", described(f"shape {p.shape}"), "must be a vector (N,)")
    n = p.shape[0]
    k_present, k_latent, k_child, k_mag = jax.random.split(key, 4)

    if correlation is None:
        present = uniform01(k_present, (batch_size, n)) < p
    else:
        factor, strength = correlation
        factor = jnp.asarray(factor, jnp.float32)
        if factor.ndim != 2 or factor.shape[0] != n:
            raise ConfigError("correlation", described(f"a factor of shape {factor.shape}"),
                              f"the factor must have shape (n_features={n}, rank)")
        rho = jnp.asarray(strength, jnp.float32)
        norm = jnp.linalg.norm(factor, axis=1)
        has_factor = norm > 0
        unit = factor / jnp.where(has_factor, norm, 1.0)[:, None]
        g = jax.random.normal(k_latent, (batch_size, factor.shape[1]), jnp.float32)
        shared = jnp.matmul(g, unit.T, precision=jax.lax.Precision.HIGHEST)
        eps = jax.random.normal(k_present, (batch_size, n), jnp.float32)
        own = jnp.sqrt(jnp.maximum(1.0 - rho * has_factor, 0.0))
        z = jnp.sqrt(rho) * shared + own * eps
        present = z < ndtri(p)  # Φ(z) < p; -inf for p = 0 (never), +inf for p = 1 (always)

    if hierarchy is not None and hierarchy.n_parents and hierarchy.children_per_parent:
        hierarchy.check_fits(n)
        n_p, n_c = hierarchy.n_parents, hierarchy.children_per_parent
        shares = _child_shares(p, hierarchy)
        upper = jnp.cumsum(shares, axis=1)
        upper = upper / upper[:, -1:]  # the last bound exactly 1
        upper = jnp.asarray(child_probability, jnp.float32) * upper
        lower = jnp.concatenate([jnp.zeros((n_p, 1), jnp.float32), upper[:, :-1]], axis=1)
        v = uniform01(k_child, (batch_size, n_p, 1))  # one draw per parent picks its child
        children = present[:, :n_p, None] & (v >= lower) & (v < upper)
        present = jnp.concatenate([present[:, :n_p], children.reshape(batch_size, n_p * n_c),
                                   present[:, hierarchy.size:]], axis=1)

    mean = jnp.asarray(magnitude_mean, jnp.float32)

    def spread(std):
        return jnp.abs(mean + std * jax.random.normal(k_mag, (batch_size, n), jnp.float32))

    magnitude = _unless_zero(magnitude_std, spread, jnp.broadcast_to(jnp.abs(mean), (batch_size, n)))
    return jnp.where(present, magnitude, 0.0)


def _unless_zero(scale, draw, otherwise):
    """``draw(scale)``, or ``otherwise`` where ``scale`` is 0. A traced scale takes a
    ``lax.cond``, so the random draw is skipped at run time when it is 0 (unless vmap has
    batched the scale, when both sides are computed and selected)."""
    if _is_zero(scale):
        return otherwise
    if isinstance(scale, (int, float, np.integer, np.floating)):
        return draw(jnp.float32(scale))
    scale = jnp.asarray(scale, jnp.float32)  # an array, traced or not
    return jax.lax.cond(scale == 0, lambda s: otherwise, draw, scale)


def synthetic_activations(key, directions, c, *, noise_std=0.0, bias=None):
    """x = c @ directions + bias + noise, noise ~ N(0, noise_std²) per entry.

    Args:
        key: a PRNG key (used only for the noise).
        directions: (N, D) feature directions.
        c: (B, N) feature activations.
        noise_std: traceable, >= 0.
        bias: None or (D,) (traceable).

    Returns:
        (B, D) float32. The product is taken at full float32 precision (no TF32 on GPUs).
    """
    directions = jnp.asarray(directions, jnp.float32)
    c = jnp.asarray(c, jnp.float32)
    x = jnp.matmul(c, directions, precision=jax.lax.Precision.HIGHEST)
    if bias is not None:
        x = x + jnp.asarray(bias, jnp.float32)
    return _unless_zero(noise_std, lambda std: x + std * jax.random.normal(key, x.shape, jnp.float32), x)


# ----------------------------------------------------------------------------- the bundled generator

_STATIC_FIELDS = ("n_features", "dim", "n_parents", "children_per_parent", "correlation_rank",
                  "orthogonal_directions", "seed")
_SWEEPABLE_FIELDS = ("mean_active", "zipf_exponent", "child_probability", "correlation_strength",
                     "magnitude_mean", "magnitude_std", "noise_std")


@jax.tree_util.register_pytree_node_class
@dataclasses.dataclass(frozen=True)
class SyntheticFeatures:
    """A synthetic activation generator with planted features, validated at construction.

    Static fields (pick the compiled program; pytree metadata): n_features, dim, n_parents,
    children_per_parent, correlation_rank, orthogonal_directions, seed. Sweepable fields
    (traceable; pytree leaves): mean_active, zipf_exponent, child_probability,
    correlation_strength, magnitude_mean, magnitude_std, noise_std. A sweepable field may hold
    an array (a stacked grid to ``jax.vmap`` over) or a tracer; traced values cannot be checked
    and pass validation.

    The directions and the correlation factor are deterministic functions of ``seed`` (two
    independent streams of ``jax.random.key(seed)``); ``sample`` draws everything else from its
    key. ``mean_active`` is Σ p_i before the hierarchy; the expected number of present
    features is ``marginal_probabilities().sum()``, smaller when children are subsampled.
    """

    n_features: int = 1024
    dim: int = 256
    mean_active: Any = 5.0
    zipf_exponent: Any = 1.0
    n_parents: int = 0
    children_per_parent: int = 0
    child_probability: Any = 1.0
    correlation_rank: int = 0
    correlation_strength: Any = 0.0
    magnitude_mean: Any = 1.0
    magnitude_std: Any = 0.0
    noise_std: Any = 0.0
    orthogonal_directions: bool = False
    seed: int = 0

    def __post_init__(self):
        self.validate()

    def validate(self):
        """Raise :class:`ConfigError` naming the first bad field, its value and what is allowed."""
        _check_int("n_features", self.n_features, 1)
        _check_int("dim", self.dim, 1)
        _check_int("n_parents", self.n_parents, 0)
        _check_int("children_per_parent", self.children_per_parent, 0)
        _check_int("correlation_rank", self.correlation_rank, 0)
        _check_int("seed", self.seed, 0)
        if not isinstance(self.orthogonal_directions, (bool, np.bool_)):
            raise ConfigError("orthogonal_directions", self.orthogonal_directions, "must be true or false")
        n = self.n_features
        _check_number("mean_active", self.mean_active, 0.0, float(n),
                      hi_text=f"must be a finite number in [0, n_features={n}] (a generator with more "
                              f"active features than features is impossible)")
        _check_number("zipf_exponent", self.zipf_exponent, 0.0)
        _check_number("child_probability", self.child_probability, 0.0, 1.0)
        _check_number("correlation_strength", self.correlation_strength, 0.0, 1.0)
        _check_number("magnitude_mean", self.magnitude_mean, 0.0)
        _check_number("magnitude_std", self.magnitude_std, 0.0)
        _check_number("noise_std", self.noise_std, 0.0)
        if (self.n_parents == 0) != (self.children_per_parent == 0):
            name = "children_per_parent" if self.n_parents else "n_parents"
            raise ConfigError(name, getattr(self, name),
                              "n_parents and children_per_parent must both be 0 (no hierarchy) or both be >= 1")
        if self.n_parents:
            self.hierarchy().check_fits(n)
        if self.correlation_rank > n:
            raise ConfigError("correlation_rank", self.correlation_rank, f"must be <= n_features={n}")
        if self.correlation_rank == 0:
            strength = _concrete(self.correlation_strength)
            if strength is not None and np.any(strength != 0):
                raise ConfigError("correlation_strength", self.correlation_strength,
                                  "must be 0 when correlation_rank=0 (there is no factor to correlate through)")
        if self.orthogonal_directions and n > self.dim:
            raise ConfigError("orthogonal_directions", self.orthogonal_directions,
                              f"orthonormal directions need n_features <= dim (n_features={n}, dim={self.dim})")

    # -- pytree: static fields are metadata, sweepable fields are leaves (no validation on unflatten)
    def tree_flatten(self):
        return tuple(getattr(self, f) for f in _SWEEPABLE_FIELDS), tuple(getattr(self, f) for f in _STATIC_FIELDS)

    @classmethod
    def tree_unflatten(cls, aux, children):
        obj = object.__new__(cls)
        for name, value in zip(_STATIC_FIELDS + _SWEEPABLE_FIELDS, tuple(aux) + tuple(children)):
            object.__setattr__(obj, name, value)
        return obj

    def replace(self, **changes) -> "SyntheticFeatures":
        """A copy with some fields changed (validated)."""
        return dataclasses.replace(self, **changes)

    def hierarchy(self) -> Hierarchy | None:
        return Hierarchy(self.n_parents, self.children_per_parent) if self.n_parents else None

    def directions(self):
        """(n_features, dim) unit feature directions, fixed by ``seed``."""
        key = jax.random.fold_in(jax.random.key(self.seed), 0)
        return feature_directions(key, self.n_features, self.dim, orthogonal=self.orthogonal_directions)

    def correlation_factor(self):
        """(n_features, correlation_rank) Gaussian factor fixed by ``seed``, or None for rank 0."""
        if self.correlation_rank == 0:
            return None
        key = jax.random.fold_in(jax.random.key(self.seed), 1)
        return low_rank_factor(key, self.n_features, self.correlation_rank)

    def probabilities(self):
        """(n_features,) firing probabilities p_i (before the hierarchy)."""
        return firing_probabilities(self.n_features, self.mean_active, self.zipf_exponent)

    def marginal_probabilities(self):
        """(n_features,) the true probability that each feature is present."""
        return marginal_probabilities(self.probabilities(), hierarchy=self.hierarchy(),
                                      child_probability=self.child_probability)

    def sample(self, key, batch_size: int):
        """(x, c): activations (batch_size, dim) and true feature activations (batch_size, n_features)."""
        k_features, k_noise = jax.random.split(key)
        factor = self.correlation_factor()
        correlation = None if factor is None else Correlation(factor, self.correlation_strength)
        c = sample_features(k_features, batch_size, self.probabilities(), hierarchy=self.hierarchy(),
                            child_probability=self.child_probability, correlation=correlation,
                            magnitude_mean=self.magnitude_mean, magnitude_std=self.magnitude_std)
        x = synthetic_activations(k_noise, self.directions(), c, noise_std=self.noise_std)
        return x, c


# ----------------------------------------------------------------------------- as config fields


@dataclasses.dataclass(frozen=True)
class SyntheticFeatureFields:
    """The generator's settings as fields of a family's config (mixed into it, so they are
    plain ``name=value`` fields on the command line): the sizes and seed are static, the
    numbers sweepable. :meth:`synthetic_generator` builds the :class:`SyntheticFeatures`."""

    n_features: int = static(32, check=positive_int, help="synthetic: planted features N")
    dim: int = static(16, check=positive_int, help="synthetic: dimensions D")
    n_parents: int = static(0, check=nonnegative_int, help="synthetic: parent features (the first ones)")
    children_per_parent: int = static(0, check=nonnegative_int, help="synthetic: mutually exclusive children per parent")
    correlation_rank: int = static(0, check=nonnegative_int, help="synthetic: rank of the presence correlations")
    feature_seed: int = static(0, check=nonnegative_int, help="synthetic: seed of the feature directions and correlations")
    mean_active: float = sweepable(3.0, check=positive, help="synthetic: expected active features per example")
    zipf_exponent: float = sweepable(0.5, check=nonnegative, help="synthetic: firing probability ∝ rank^-exponent")
    child_probability: float = sweepable(0.5, check=in_interval(0, 1), help="synthetic: a child fires given its parent")
    correlation_strength: float = sweepable(0.0, check=in_interval(0, 1, hi_open=True),
                                            help="synthetic: share of presence variance from the low-rank factors")
    magnitude_mean: float = sweepable(1.0, check=positive, help="synthetic: mean magnitude of a present feature")
    magnitude_std: float = sweepable(0.0, check=nonnegative, help="synthetic: magnitude std (folded normal)")
    noise_std: float = sweepable(0.0, check=nonnegative, help="synthetic: Gaussian noise std per dimension")

    def synthetic_generator(self, hparams=None) -> SyntheticFeatures:
        """The generator; its numbers from ``hparams`` (traced inside a sweep) or, without
        them, the config's own values. Refuses settings the generator cannot meet."""
        h = self.hparams() if hparams is None else hparams
        return SyntheticFeatures(
            n_features=self.n_features, dim=self.dim, n_parents=self.n_parents,
            children_per_parent=self.children_per_parent, correlation_rank=self.correlation_rank,
            seed=self.feature_seed, **{name: h[name] for name in _SWEEPABLE_FIELDS})
