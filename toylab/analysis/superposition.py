"""Geometry of superposition in a Toy Models of Superposition weight matrix.

Every function takes ONE model's weight matrix ``W`` of shape (m, n): m hidden dimensions,
n features, column ``W[:, i]`` the embedding of feature i. They are pure jax.numpy, jittable,
and vmappable over a sweep's leading axis (``jax.vmap(feature_dimensionality)(W_stack)``).
Shape checks read only static shapes, so they work under jit and vmap alike.

Measures (Elhage et al. 2022):
    feature norm            ‖W_i‖
    interference            Σ_{j≠i} (Ŵ_i·W_j)²,  Ŵ_i = W_i/‖W_i‖
    dimensions per feature  D* = m/‖W‖_F²
    feature dimensionality  D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)²   (j = i included), in [0, 1]
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.tracing import is_traced

__all__ = [
    "gram",
    "feature_norms",
    "interference",
    "dimensions_per_feature",
    "feature_dimensionality",
    "FRACTION_LINES",
    "fraction_line_counts",
    "detect_fraction_lines",
    "PHASE_NAMES",
    "classify_phase",
    "superposition_summary",
    "relative_feature_error",
]

# The fractions at which feature dimensionalities cluster: a dedicated dimension, tetrahedron,
# triangle, antipodal pair, pentagon, square antiprism, and features not learned.
FRACTION_LINES: tuple[tuple[str, float], ...] = (
    ("1", 1.0),
    ("3/4", 0.75),
    ("2/3", 2.0 / 3.0),
    ("1/2", 0.5),
    ("2/5", 0.4),
    ("3/8", 0.375),
    ("0", 0.0),
)
# numpy, not jnp: building a jax array at import would start a backend.
_LINE_VALUES = np.array([v for _, v in FRACTION_LINES])

# Outcomes of the n=2, m=1 phase-change model, indexed by classify_phase's result.
PHASE_NAMES: tuple[str, ...] = ("not represented", "dedicated", "superposed")

# A column whose norm is at most this fraction of the largest column's norm counts as zero in
# feature_dimensionality. Relative, so D stays exactly scale-invariant.
_ZERO_COLUMN_RTOL = 1e-6
# Columns with a norm at most this are treated as zero where we divide by a norm (interference).
_NORM_EPS = 1e-12


# ----------------------------------------------------------------------------- validation


def _as_weights(W, name: str = "W", *, min_ndim: int = 2, max_ndim: int = 2):
    """W as a float jax array (ints and bools are promoted), or ValueError naming it."""
    shape = getattr(W, "shape", None)
    if shape is None:  # a nested list or a scalar
        W = jnp.asarray(W)
        shape = W.shape
    if not (min_ndim <= len(shape) <= max_ndim) or any(d == 0 for d in shape[-2:]):
        raise ConfigError(name, described(f"shape {tuple(shape)}"), "must be a 2-D (n_hidden, n_features) array "
                          "with n_hidden >= 1 and n_features >= 1 (one model; use jax.vmap for a stack)")
    return _as_real(jnp.asarray(W), name)


def _check_positive(name: str, value) -> None:
    """Reject a concrete non-positive value; traced values (jit/vmap arguments) pass through."""
    if is_traced(value):
        return
    v = float(value)
    if not (math.isfinite(v) and v > 0):
        raise ConfigError(name, value, "must be a finite number > 0")


def _check_count(name: str, value) -> None:
    if is_traced(value):
        return
    if int(value) != value or value < 1:
        raise ConfigError(name, value, "must be an integer >= 1")


def _as_dimensionalities(D):
    D = jnp.asarray(D)
    if D.ndim != 1:
        raise ConfigError("D", described(f"shape {D.shape}"), "must be a 1-D array of feature dimensionalities "
                          "(one model, or all models' values flattened)")
    return _as_real(D, "D")


def _as_real(x, name: str):
    """x cast to a float dtype of at least 32 bits, or ConfigError naming it."""
    # Chosen by hand, not by jnp.promote_types, which refuses int -> float under strict promotion.
    if jnp.issubdtype(x.dtype, jnp.floating):
        # float16/bfloat16 would lose the cancellations D relies on.
        return x if jnp.finfo(x.dtype).bits >= 32 else x.astype(jnp.float32)
    if jnp.issubdtype(x.dtype, jnp.integer) or jnp.issubdtype(x.dtype, jnp.bool_):
        return x.astype(jnp.result_type(float))  # float32, or float64 under jax_enable_x64
    raise ConfigError(name, described(f"dtype {x.dtype}"), "must be a real (float) array")


# ----------------------------------------------------------------------------- helpers


def _safe_sqrt(x):
    """sqrt with a finite (zero) gradient at 0, where plain sqrt's is infinite."""
    positive = x > 0
    return jnp.where(positive, jnp.sqrt(jnp.where(positive, x, 1.0)), 0.0)


def _gram(W):
    # HIGHEST: on GPUs the default matmul may use TF32, which would cost D its exact fractions.
    return jnp.matmul(W.T, W, precision=jax.lax.Precision.HIGHEST)


# ----------------------------------------------------------------------------- measures


def gram(W):
    """Gram matrix of the feature embeddings.

    Args:
        W: (m, n) weights, column i the embedding of feature i.
    Returns:
        (n, n) array WᵀW; entry (i, j) is W_i·W_j.
    """
    return _gram(_as_weights(W))


def feature_norms(W):
    """Norm of each feature's embedding.

    Args:
        W: (m, n) weights.
    Returns:
        (n,) array of ‖W_i‖ (gradient 0, not NaN, at a zero column).
    """
    W = _as_weights(W)
    return _safe_sqrt(jnp.sum(W * W, axis=0))


def interference(W):
    """How much of the other features leaks onto each feature's direction.

    Args:
        W: (m, n) weights.
    Returns:
        (n,) array of Σ_{j≠i} (Ŵ_i·W_j)² with Ŵ_i = W_i/‖W_i‖; 0 for a zero column.
    """
    W = _as_weights(W)
    norms = _safe_sqrt(jnp.sum(W * W, axis=0))
    live = norms > _NORM_EPS
    # Divide by 1 where the column is (numerically) zero: Ŵ_i is then 0 and gradients stay finite.
    W_hat = W * jnp.where(live, 1.0 / jnp.where(live, norms, 1.0), 0.0)[None, :]
    proj = jnp.matmul(W_hat.T, W, precision=jax.lax.Precision.HIGHEST)  # (i, j) = Ŵ_i·W_j
    off_diagonal = 1.0 - jnp.eye(W.shape[1], dtype=W.dtype)
    # Sum the off-diagonal terms directly rather than subtracting ‖W_i‖² from the full sum,
    # which would cancel catastrophically when interference is small.
    return jnp.sum(jnp.square(proj) * off_diagonal, axis=1)


def dimensions_per_feature(W):
    """Dimensions per feature D* = m/‖W‖_F² (1 for dedicated dimensions, 1/2 for antipodal pairs).

    Args:
        W: (m, n) weights.
    Returns:
        scalar D*; +inf for an all-zero W (no feature learned), never NaN.
    """
    W = _as_weights(W)
    frob2 = jnp.sum(W * W)
    positive = frob2 > 0
    return jnp.where(positive, W.shape[0] / jnp.where(positive, frob2, 1.0), jnp.inf)


def feature_dimensionality(W):
    """Fraction of a hidden dimension each feature gets, D_i = ‖W_i‖² / Σ_j (Ŵ_i·W_j)².

    Args:
        W: (m, n) weights.
    Returns:
        (n,) array in [0, 1]: 1 for a dedicated dimension, 1/k for k features sharing one
        direction, 1/2 antipodal pair, 2/5 pentagon, 3/4 tetrahedron; 0 for a column whose norm
        is at most 1e-6 of the largest column's (a feature not learned). Invariant to rotations
        of the hidden space and to rescaling W.
    """
    W = _as_weights(W)
    # D is scale-invariant, so scale the largest column to unit norm first: the fourth powers
    # below then neither underflow nor overflow in float32.
    col_sq = jnp.sum(W * W, axis=0)
    largest = _safe_sqrt(jnp.max(col_sq))
    W = W / jnp.where(largest > 0, largest, 1.0)
    G = _gram(W)
    g = jnp.diagonal(G)  # ‖W_i‖²
    # Σ_j (Ŵ_i·W_j)² = Σ_j G_ij² / ‖W_i‖², so D_i = G_ii² / Σ_j G_ij². Written this way the
    # denominator is a sum of non-negative terms that includes the numerator, so D_i ≤ 1 even
    # after rounding.
    denom = jnp.sum(jnp.square(G), axis=1)
    live = g > _ZERO_COLUMN_RTOL**2
    return jnp.where(live, jnp.square(g) / jnp.where(live, denom, 1.0), 0.0)


# ----------------------------------------------------------------------------- fraction lines


def fraction_line_counts(D, tol=0.02):
    """How many feature dimensionalities sit on each of the FRACTION_LINES.

    Args:
        D: (n,) feature dimensionalities (one model, or several models' values flattened).
        tol: half-width of the band around each line; > 0.
    Returns:
        (7,) int32 counts of values with |D - line| <= tol, in FRACTION_LINES order.
    """
    D = _as_dimensionalities(D)
    _check_positive("tol", tol)
    distance = jnp.abs(D[:, None] - jnp.asarray(_LINE_VALUES, dtype=D.dtype)[None, :])
    return jnp.sum(distance <= tol, axis=0, dtype=jnp.int32)


def detect_fraction_lines(D, tol=0.02, min_count=3, contrast=2.0):
    """Which FRACTION_LINES the values cluster on.

    A line counts as detected when it is a peak, not just background: at least ``min_count``
    values lie within ±tol of it, and their density there is more than ``contrast`` times that in the flanking bands
    tol < |D - line| <= 3 tol (which are twice as wide, hence 2 count_in > contrast × count_flank). Flanks
    may reach into a neighbouring line (2/5 and 3/8 are 0.025 apart): a cluster on one line then
    raises the other's background, which keeps it from being reported twice.

    Args:
        D: (n,) feature dimensionalities; a value exactly 0 counts toward line "0".
        tol: half-width of the band around each line; > 0.
        min_count: fewest values on a line for it to count; >= 1.
        contrast: how many times denser than its flanks a line must be; > 0.
    Returns:
        (7,) bool, in FRACTION_LINES order.
    """
    D = _as_dimensionalities(D)
    _check_positive("tol", tol)
    _check_count("min_count", min_count)
    _check_positive("contrast", contrast)
    distance = jnp.abs(D[:, None] - jnp.asarray(_LINE_VALUES, dtype=D.dtype)[None, :])
    count_in = jnp.sum(distance <= tol, axis=0, dtype=jnp.int32)
    count_flank = jnp.sum((distance > tol) & (distance <= 3 * tol), axis=0, dtype=jnp.int32)
    # Density on the line must exceed ``contrast`` × the flanks' density (flanks are twice as
    # wide). contrast=1 lets uniform noise pass about half the time once there are a few dozen
    # values; the default 2 makes a false line in uniform noise rare.
    return (count_in >= min_count) & (2 * count_in > contrast * count_flank)


# ----------------------------------------------------------------------------- phase change


def classify_phase(W, threshold=0.5):
    """Which phase an n=2, m=1 model is in: how it treats the extra feature (index 1).

    Args:
        W: (1, 2) weights of one model (vmap for a stack).
        threshold: a feature is represented when its norm is >= threshold; > 0.
    Returns:
        int32 scalar indexing PHASE_NAMES: 0 feature 1 not represented, 1 feature 1 has the
        dimension to itself (feature 0 not represented), 2 both represented (superposed).
    """
    shape = getattr(W, "shape", None)
    if shape is None:
        W = jnp.asarray(W)
        shape = W.shape
    # Only the last two dims: under jax.vmap W is (1, 2); called directly on a stack it still works.
    if len(shape) < 2 or tuple(shape[-2:]) != (1, 2):
        raise ConfigError("W", described(f"shape {tuple(shape)}"), "classify_phase needs shape (1, 2) "
                          "(one hidden dimension, two features; use jax.vmap for a stack)")
    W = _as_weights(W, max_ndim=len(shape))
    _check_positive("threshold", threshold)
    norms = jnp.abs(W[..., 0, :])  # with one hidden dim, ‖W_i‖ = |W_0i|
    represented = norms >= threshold
    extra, main = represented[..., 1], represented[..., 0]
    return jnp.where(extra, jnp.where(main, 2, 1), 0).astype(jnp.int32)


# ----------------------------------------------------------------------------- summary


def superposition_summary(W):
    """Final measures of one model, for the family's summary.

    Args:
        W: (m, n) weights.
    Returns:
        dict of scalars: "dimensions_per_feature" (D*), "n_represented" (number of features
        with ‖W_i‖ > 0.5, as float32), "mean_feature_dimensionality" (mean of D_i over all n
        features, unlearned ones counting 0).
    """
    W = _as_weights(W)
    return {
        "dimensions_per_feature": dimensions_per_feature(W),
        "n_represented": jnp.sum(feature_norms(W) > 0.5).astype(jnp.float32),
        "mean_feature_dimensionality": jnp.mean(feature_dimensionality(W)),
    }


# ----------------------------------------------------------------------------- computation


def relative_feature_error(prediction, target):
    """Each output feature's fraction of variance unexplained.

    Args:
        prediction, target: (batch, n) model outputs and targets (e.g. |x| for the abs model).
    Returns:
        (n,) E[(target − prediction)²] / Var[target]: 0 for a perfect feature, 1 for the best
        constant output (a bias alone); a feature counts as computed well below 1.
    """
    prediction, target = jnp.asarray(prediction), jnp.asarray(target)
    if prediction.ndim != 2 or prediction.shape != target.shape:
        raise ConfigError("prediction", described(f"shape {prediction.shape} (target {target.shape})"),
                          "both must be the same (batch, n_features) shape")
    baseline = jnp.var(target, axis=0)
    return jnp.mean(jnp.square(target - prediction), axis=0) / jnp.maximum(baseline, 1e-12)
