"""Known-answer metrics for sparse dictionaries (sparse autoencoders) trained on toy data whose
true features are known.

Conventions (one dictionary; ``jax.vmap`` over a sweep's leading axis for a stack):
    features  (N, D)  true feature directions, one per row (not necessarily unit norm)
    decoder   (L, D)  the dictionary's decoder directions, one per latent
    c         (B, N)  true feature activations (>= 0); feature i is *active* when c[:, i] > 0
    codes     (B, L)  latent codes; latent l *fires* when codes[:, l] > 0
    x, x_hat  (B, D)  inputs and the dictionary's reconstructions

Measures:
    cosine similarities  cos(f_i, d_l), rows normalised; a zero row has cosine 0 with everything
    MMCS                 mean over features of the best |cosine| over latents (Sharkey et al. 2022);
                         many features may pick the same latent
    MCC                  mean |cosine| over the min(N, L) pairs of the one-to-one matching of
                         features to latents that maximises the total |cosine| (Hungarian
                         algorithm), as SAELens and SynthSAEBench compute it
    signed MCC           the same on signed cosines: a latent pointing against a feature counts
                         against it
    uniqueness           distinct features that are some latent's best match (by |cosine|), over L
    detection            precision / recall / F1 of "matched latent fires" for "feature active",
                         through the MCC matching
    explained variance   1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖²
    shrinkage            mean ‖x̂‖/‖x‖ (below 1 when an L1 penalty shrinks the codes)
    L0, dead latents     mean number of firing latents per example; fraction never firing

Every score but :func:`signed_mcc` (and :func:`matched_cosines` with ``signed=True``) reads
|cosine|, the field's convention, so numbers compare with published ones.

Everything except :func:`pareto_frontier` (numpy, on the host) is pure jax.numpy, jittable and
vmappable. Shape checks read only static shapes (and dtypes), so they hold under jit and vmap
alike; a bad input raises :class:`~toylab.core.config.ConfigError` naming the parameter. A
concrete input holding NaN or inf is refused the same way; a traced one cannot be inspected, so
every score it reaches comes out NaN (a matching: every feature unmatched, -1) instead of a
finite-looking number. The matchings (MCC and every score built on it) are the one exception to
"pure jax.numpy": a large concrete score matrix is matched by scipy on the host when scipy is
installed (:func:`assignment_path`, which says why); under jit or vmap they are pure JAX.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ._validate import _refuse_non_finite, _refuse_non_finite_tree  # noqa: F401  (interaction imports them here)
from ._validate import is_traced

__all__ = [
    "cosine_similarities",
    "linear_assignment",
    "assignment_path",
    "mmcs",
    "matched_cosines",
    "mcc",
    "signed_mcc",
    "uniqueness",
    "detection_scores",
    "explained_variance",
    "shrinkage",
    "l0",
    "dead_latents",
    "cross_seed_agreement",
    "dictionary_scores",
    "pareto_frontier",
]

_HI = jax.lax.Precision.HIGHEST
_STACK_HINT = "(one dictionary; use jax.vmap for a stack)"


# ----------------------------------------------------------------------------- validation


def _as_array(a, name: str):
    if hasattr(a, "shape") and hasattr(a, "dtype"):
        return a
    try:
        # numpy, not jnp: inside a jit trace jnp.asarray would trace a list's values too, and
        # they could no longer be checked.
        return np.asarray(a)
    except (TypeError, ValueError):
        pass
    try:
        return jnp.asarray(a)  # e.g. a list holding tracers
    except (TypeError, ValueError):
        raise ConfigError(name, described(f"a {type(a).__name__}"), "must be an array") from None


def _all_finite(*arrays):
    """Traced-safe flag: True when every entry of every array is finite."""
    return jnp.all(jnp.stack([jnp.all(jnp.isfinite(a)) for a in arrays]))


def _as_real(a, name: str):
    """a as a finite float jax array of at least 32 bits (ints and bools promoted), or
    ConfigError (finiteness is checked on concrete arrays only)."""
    dtype = np.dtype(a.dtype) if hasattr(a, "dtype") else jnp.asarray(a).dtype
    floating = jnp.issubdtype(dtype, jnp.floating)
    if not (floating or jnp.issubdtype(dtype, jnp.integer) or jnp.issubdtype(dtype, jnp.bool_)):
        raise ConfigError(name, described(f"dtype {dtype}"), "must be a real (float) array")
    # Before jnp.asarray, which inside a jit trace would trace a numpy array's values.
    _refuse_non_finite(a, name)
    a = jnp.asarray(a)
    if floating:
        # float16/bfloat16 would lose the sums of squares below.
        return a if jnp.finfo(a.dtype).bits >= 32 else a.astype(jnp.float32)
    return a.astype(jnp.result_type(float))  # float32, or float64 under jax_enable_x64


def _matrix(a, name: str, axes: str):
    """a as a 2-D float array with no empty axis, or ConfigError naming it."""
    a = _as_array(a, name)
    if a.ndim != 2 or 0 in a.shape:
        raise ConfigError(name, described(f"shape {tuple(a.shape)}"),
                          f"must be a 2-D {axes} array with no empty axis {_STACK_HINT}")
    return _as_real(a, name)


def _agree(name: str, a, axis: int, axis_name: str, ref_name: str, ref, ref_axis: int) -> None:
    """ConfigError unless a.shape[axis] == ref.shape[ref_axis]."""
    if a.shape[axis] != ref.shape[ref_axis]:
        raise ConfigError(name, described(f"shape {tuple(a.shape)}"),
                          f"must have {axis_name} = {ref.shape[ref_axis]}, as {ref_name} "
                          f"(shape {tuple(ref.shape)}) has")


def _dictionary_pair(features, decoder, names=("features", "decoder")):
    features = _matrix(features, names[0], "(N, D)")
    decoder = _matrix(decoder, names[1], "(L, D)")
    _agree(names[1], decoder, 1, "D (last axis)", names[0], features, 1)
    return features, decoder


def _match_vector(match, n: int):
    match = _as_array(match, "match")
    if match.ndim != 1 or match.shape[0] != n:
        raise ConfigError("match", described(f"shape {tuple(match.shape)}"),
                          f"must be a 1-D (N,) array with N = {n} (one latent index per true feature)")
    if not jnp.issubdtype(match.dtype, jnp.integer):
        raise ConfigError("match", described(f"dtype {match.dtype}"), "must be an integer array of latent indices")
    return jnp.asarray(match)


# ----------------------------------------------------------------------------- helpers


def _unit_rows(a):
    """Rows scaled to unit norm; a zero row stays zero (so its cosines are 0, not NaN); a row
    holding NaN or inf becomes all NaN (so nothing downstream mistakes it for a zero row)."""
    finite = jnp.all(jnp.isfinite(a), axis=1, keepdims=True)
    # Divide by the largest entry first: squares of entries beyond ~1e19 overflow float32 (and
    # below ~1e-19 underflow), which would turn a finite row into a zero one.
    peak = jnp.max(jnp.abs(a), axis=1, keepdims=True)
    live = finite & (peak > 0)
    b = a / jnp.where(live, peak, 1.0)
    sq = jnp.sum(b * b, axis=1, keepdims=True)
    unit = b * jnp.where(live, jax.lax.rsqrt(jnp.where(live, sq, 1.0)), 0.0)
    return jnp.where(finite, unit, jnp.nan)


def _cosines(features, decoder):
    """Signed cosines (N, L); NaN in the rows and columns of non-finite (traced) rows."""
    # HIGHEST: on GPUs the default float32 matmul may be TF32, which would cost "equal
    # dictionaries score 1" its exactness.
    cos = jnp.matmul(_unit_rows(features), _unit_rows(decoder).T, precision=_HI)
    # Rounding can put a parallel pair a hair above 1; clip so scores stay in [-1, 1].
    return jnp.clip(cos, -1.0, 1.0)


def _similarity(cos, signed: bool):
    """What the matching and the scores read: |cosine| (the field's convention) or signed."""
    if not isinstance(signed, bool):
        raise ConfigError("signed", described(f"a {type(signed).__name__}"),
                          "must be a Python bool (static: under jit, bind it with functools.partial)")
    return cos if signed else jnp.abs(cos)


def _nan_unless_finite(value, *arrays):
    """value, or NaN when any entry of ``arrays`` is not finite (traced non-finite input)."""
    return jnp.where(_all_finite(*arrays), value, jnp.nan)


def _ratio(num, den):
    """num/den with 0/0 (and anything/0) defined as 0."""
    ok = den > 0
    return jnp.where(ok, num / jnp.where(ok, den, 1), 0.0)


# ----------------------------------------------------------------------------- assignment


def _hungarian_min(cost):
    """Minimum-cost assignment of every row of a (n, m) cost matrix, n <= m, to distinct columns.

    The shortest-augmenting-path Hungarian algorithm with potentials (Jonker–Volgenant; the
    formulation of e-maxx.ru "Hungarian algorithm"), O(n² m): rows are added one at a time,
    each by a Dijkstra-like search over reduced costs a[i, j] − u[i] − v[j] ≥ 0 for a free
    column, then the alternating path back to the new row (``way``) is flipped. Index 0 of the
    column arrays is a virtual column that holds the row being added, so arrays are 1-based as
    in the original. Each search step is vectorised over the m columns.

    Returns:
        (n,) int32, the column (0-based) of each row.
    """
    n, m = cost.shape
    dtype = cost.dtype
    a = jnp.zeros((n + 1, m + 1), dtype).at[1:, 1:].set(cost)
    inf = jnp.asarray(jnp.inf, dtype)

    def search_step(state):
        u, v, p, way, minv, used, j0 = state
        used = used.at[j0].set(True)
        i0 = p[j0]
        reduced = a[i0] - u[i0] - v
        better = (~used) & (reduced < minv)
        minv = jnp.where(better, reduced, minv)
        way = jnp.where(better, j0, way)
        # Costs are finite, so every unused column has a finite minv after the first step and
        # argmin can never land on a used (infinite-key) column while a free one remains.
        key = jnp.where(used, inf, minv)
        j1 = jnp.argmin(key).astype(jnp.int32)
        delta = key[j1]
        # p[j] for used j are distinct rows (the current tree); unused columns add 0.
        u = u.at[p].add(jnp.where(used, delta, 0))
        v = jnp.where(used, v - delta, v)
        minv = jnp.where(used, minv, minv - delta)
        return u, v, p, way, minv, used, j1

    def add_row(i, state):
        u, v, p, way = state
        p = p.at[0].set(i)
        minv = jnp.full((m + 1,), inf)
        used = jnp.zeros((m + 1,), bool)
        u, v, p, way, minv, used, j0 = jax.lax.while_loop(
            lambda s: s[2][s[6]] != 0, search_step, (u, v, p, way, minv, used, jnp.int32(0)))

        def augment_step(aug):
            # Flip the alternating path from the free column j0 back to the virtual column 0.
            p, j0 = aug
            j1 = way[j0]
            return p.at[j0].set(p[j1]), j1

        p, _ = jax.lax.while_loop(lambda s: s[1] != 0, augment_step, (p, j0))
        return u, v, p, way

    state = (jnp.zeros((n + 1,), dtype), jnp.zeros((m + 1,), dtype),
             jnp.zeros((m + 1,), jnp.int32), jnp.zeros((m + 1,), jnp.int32))
    _, _, p, _ = jax.lax.fori_loop(1, n + 1, add_row, state)
    # p[j] is the 1-based row in column j (0: column free). Free columns scatter out of range.
    rows = jnp.where(p[1:] > 0, p[1:] - 1, n)
    return jnp.full((n,), -1, jnp.int32).at[rows].set(jnp.arange(m, dtype=jnp.int32), mode="drop")


# A concrete score matrix of at least this many entries is matched by scipy on the host when
# scipy is installed (see :func:`assignment_path`). Measured on a 2-core CPU (jax 0.10, scipy's
# ``linear_sum_assignment``, the |cosines| of random directions in 768 dimensions, the smaller
# side first): 256×1024 2 ms scipy / 13 ms JAX (+0.5 s compile); 1024×4096 0.09 / 0.07 s;
# 2048×8192 0.30 / 0.42 s; 4096×16384 (SynthSAEBench's 4 096 latents × 16 384 features)
# 1.9–2.1 / 0.95 s. On matrices with many near-ties the JAX loop falls behind by 4–5× (uniform
# square 2048×2048: 0.30 / 1.31 s; a rank-1 score 512×2048: 0.47 / 2.3 s), and on an
# accelerator each of its thousands of sequential search steps is a device loop iteration.
# scipy is never far behind and avoids both, so a large concrete matrix goes to scipy; a
# traced one (jit, vmap, grad) and a small one (where the two never differ by more than
# milliseconds, and hand cases keep the JAX tie-breaking) stay in JAX.
HOST_ASSIGNMENT_MIN_ENTRIES = 1 << 20


def _host_solver():
    """scipy's ``linear_sum_assignment``, or None when scipy is not installed (it is an optional
    dependency: the pure-JAX algorithm is the fallback)."""
    try:
        from scipy.optimize import linear_sum_assignment
    except ImportError:
        return None
    return linear_sum_assignment


def assignment_path(score) -> str:
    """Which algorithm :func:`linear_assignment` (and every matching score: :func:`mcc`,
    :func:`matched_cosines`, ...) uses for ``score``: ``"scipy"`` — concrete (not traced), at
    least ``HOST_ASSIGNMENT_MIN_ENTRIES`` entries, and scipy installed: scipy's
    ``linear_sum_assignment`` on the host — or ``"jax"``, the pure-JAX Hungarian (traced,
    small, or without scipy). Both are exact; they agree wherever the optimum is unique."""
    if is_traced(score) or math.prod(jnp.shape(score)) < HOST_ASSIGNMENT_MIN_ENTRIES:
        return "jax"
    return "scipy" if _host_solver() is not None else "jax"


def _assign_host(score):
    """:func:`_assign` by scipy on the host (a concrete score)."""
    s = np.asarray(score)
    match = np.full((s.shape[0],), -1, np.int32)
    if np.all(np.isfinite(s)):
        rows, cols = _host_solver()(s, maximize=True)
        match[rows] = cols
    return jnp.asarray(match)


def _assign(score):
    """Maximum-score one-to-one matching of a validated (N, L) score matrix; (N,) int32, every
    row -1 when the score holds NaN or inf (only possible when traced). Large concrete
    matrices go to scipy (:func:`assignment_path`)."""
    if assignment_path(score) == "scipy":
        return _assign_host(score)
    n_rows, n_cols = score.shape
    finite = _all_finite(score)
    # The algorithm assigns every row, so run it on the orientation with fewer rows (cheaper
    # than padding to square: O(min² max) rather than O(max³)).
    transposed = n_rows > n_cols
    # Non-finite costs could stall the search; run on zeros instead and discard the result.
    cost = jnp.where(finite, -(score.T if transposed else score), 0.0)
    # Every row is matched exactly once, so subtracting a row's minimum changes every matching's
    # total by the same amount; it keeps the potentials small, which helps float32.
    cost = cost - jnp.min(cost, axis=1, keepdims=True)
    cols = _hungarian_min(cost)
    if transposed:
        # cols[l] is the row matched to latent l; invert it, leaving the N − L unmatched rows -1.
        cols = jnp.full((n_rows,), -1, jnp.int32).at[cols].set(jnp.arange(n_cols, dtype=jnp.int32))
    return jnp.where(finite, cols, -1)


def linear_assignment(score):
    """One-to-one matching of rows to columns that maximises the total score (exact).

    Pure JAX (Hungarian / Jonker–Volgenant shortest augmenting paths with potentials), so it
    jits and vmaps; a large concrete score (at least ``HOST_ASSIGNMENT_MIN_ENTRIES`` entries,
    called outside jit/vmap) is matched by scipy on the host when scipy is installed, which
    scales better (:func:`assignment_path`). Agrees with ``scipy.optimize.linear_sum_assignment(score, maximize=True)``
    in total score (the matching itself may differ where there are ties).

    Args:
        score: (N, L) finite real matrix (NaN or inf: ConfigError when concrete).
    Returns:
        (N,) int32 ``match``: the column matched to each row, distinct; when N > L, exactly
        N − L rows are left unmatched and get -1. A traced score holding NaN or inf leaves
        every row unmatched (-1).
    """
    return _assign(_matrix(score, "score", "(N, L)"))


# ----------------------------------------------------------------------------- geometry


def cosine_similarities(features, decoder):
    """Signed cosine similarity of every true feature with every decoder direction.

    Args:
        features: (N, D) true feature directions (rows).
        decoder: (L, D) decoder directions (rows).
    Returns:
        (N, L) cosines in [-1, 1]; 0 (not NaN) where either row is zero.
    """
    return _cosines(*_dictionary_pair(features, decoder))


def _mmcs_from(cos):
    # jnp.max propagates NaN, so a non-finite row makes the mean NaN.
    return jnp.mean(jnp.max(jnp.abs(cos), axis=1))


def mmcs(features, decoder):
    """Mean max cosine similarity: how well each true feature is covered by its best latent.

    Args:
        features: (N, D); decoder: (L, D).
    Returns:
        scalar mean over the N features of max_l |cos(f_i, d_l)|; 1 when every feature has a
        latent along it (several features may share one latent).
    """
    return _mmcs_from(_cosines(*_dictionary_pair(features, decoder)))


def _matched(cos, signed=False):
    """(match, the matched pairs' similarities): -1 and NaN for unmatched features, and for
    every feature when cos holds NaN (a traced non-finite input)."""
    sim = _similarity(cos, signed)
    match = _assign(sim)
    picked = jnp.take_along_axis(sim, jnp.maximum(match, 0)[:, None], axis=1)[:, 0]
    return match, jnp.where(match >= 0, picked, jnp.nan)


def matched_cosines(features, decoder, signed: bool = False):
    """The one-to-one matching of features to latents that maximises the total |cosine| (the
    MCC matching), and the matched pairs' |cosine|.

    Args:
        features: (N, D); decoder: (L, D).
        signed: a Python bool; True matches on signed cosines and returns them (the
            :func:`signed_mcc` matching).
    Returns:
        (match, cosines): ``match`` (N,) int32, the latent matched to each feature (-1 for the
        N − L features left unmatched when N > L); ``cosines`` (N,) of the matched pairs, NaN
        for an unmatched feature (NaN rather than 0, which would read as "orthogonal"). A
        traced input holding NaN or inf leaves every feature unmatched.
    """
    return _matched(_cosines(*_dictionary_pair(features, decoder)), signed)


def _mcc_of(cos, match, matched):
    # Exactly min(N, L) features are matched, unless the input was not finite (none is).
    value = jnp.sum(jnp.where(match >= 0, matched, 0.0)) / min(cos.shape)
    return _nan_unless_finite(value, cos)


def _mcc_from_cos(cos, signed=False):
    return _mcc_of(cos, *_matched(cos, signed))


def mcc(features, decoder):
    """Mean correlation coefficient, as SAELens and SynthSAEBench define it: the mean |cosine|
    of the one-to-one feature–latent matching with the largest total |cosine| (Hungarian).

    Args:
        features: (N, D); decoder: (L, D).
    Returns:
        scalar in [0, 1], the mean over the min(N, L) matched pairs; 1 when the decoder is the
        features up to order and nonzero rescaling (sign included), invariant to all three.
    """
    return _mcc_from_cos(_cosines(*_dictionary_pair(features, decoder)))


def signed_mcc(features, decoder):
    """MCC on signed cosines: matching and mean both use cos, not |cos|.

    A decoder row pointing opposite a feature counts against it (cosine −1), not for it: with
    non-negative codes, as in a sparse autoencoder, such a latent cannot reconstruct the
    feature. Use it where that matters, e.g. where features have anti-aligned neighbours (the
    superposition toy's antipodal and obtuse arrangements), which |cos| would credit. At most
    :func:`mcc`.

    Args:
        features: (N, D); decoder: (L, D).
    Returns:
        scalar in [-1, 1]; 1 when the decoder is the features up to order and positive
        rescaling.
    """
    return _mcc_from_cos(_cosines(*_dictionary_pair(features, decoder)), signed=True)


def _uniqueness_from(cos, decoder):
    n = cos.shape[0]
    best = jnp.argmax(jnp.abs(cos), axis=0)  # (L,) each latent's best-matching feature
    # A zero decoder row has cosine 0 with everything, so no best match at all (argmax would
    # otherwise credit it to feature 0).
    live = jnp.any(decoder != 0, axis=1)
    hit = jnp.zeros((n,), bool).at[jnp.where(live, best, n)].set(True, mode="drop")
    return _nan_unless_finite(jnp.sum(hit) / cos.shape[1], cos)


def uniqueness(features, decoder):
    """How many different true features the latents point at, per latent.

    Args:
        features: (N, D); decoder: (L, D).
    Returns:
        scalar (number of distinct features that are some latent's best match, by argmax of
        |cosine| over features, as SAELens, lowest index on ties) / L. 1 for a
        dictionary equal to the features; at most min(N, L)/L. A zero decoder row has no
        best match.
    """
    features, decoder = _dictionary_pair(features, decoder)
    return _uniqueness_from(_cosines(features, decoder), decoder)


def cross_seed_agreement(decoder_a, decoder_b):
    """MCC between two dictionaries (e.g. two seeds): how much they learned the same directions.

    Args:
        decoder_a: (L_a, D); decoder_b: (L_b, D).
    Returns:
        scalar mean |cosine| of the best one-to-one matching of their rows (:func:`mcc`).
    """
    a, b = _dictionary_pair(decoder_a, decoder_b, names=("decoder_a", "decoder_b"))
    return _mcc_from_cos(_cosines(a, b))


# ----------------------------------------------------------------------------- detection


def _detection(c, codes, match):
    n_latents = codes.shape[1]
    matched = (match >= 0) & (match < n_latents)
    active = c > 0  # (B, N)
    latent_codes = jnp.take(codes, jnp.clip(match, 0, n_latents - 1), axis=1)  # (B, N), latent of each feature
    fires = latent_codes > 0
    tp = jnp.sum(fires & active, axis=0)
    fp = jnp.sum(fires & ~active, axis=0)
    fn = jnp.sum(~fires & active, axis=0)
    # NaN > 0 is False, so a non-finite (traced) activation would pass as "inactive": such a
    # feature's scores are NaN instead, and so are the means over features.
    finite = jnp.all(jnp.isfinite(c), axis=0) & jnp.all(jnp.isfinite(latent_codes), axis=0)
    per = {"precision": _ratio(tp, tp + fp), "recall": _ratio(tp, tp + fn), "f1": _ratio(2 * tp, 2 * tp + fp + fn)}
    per = {k: jnp.where(matched & finite, val, jnp.nan) for k, val in per.items()}
    n_matched = jnp.sum(matched)
    means = {f"mean_{k}": jnp.where(n_matched > 0, jnp.sum(jnp.where(matched, val, 0.0)) / jnp.maximum(n_matched, 1),
                                    jnp.nan)
             for k, val in per.items()}
    return {**per, **means}


def _batch_pair(c, codes, names=("c", "codes"), axes=("(B, N)", "(B, L)")):
    c = _matrix(c, names[0], axes[0])
    codes = _matrix(codes, names[1], axes[1])
    _agree(names[1], codes, 0, "B (first axis)", names[0], c, 0)
    return c, codes


def detection_scores(c, codes, match):
    """How well each feature's matched latent works as a detector of that feature.

    Over the batch, "latent match[i] fires" (code > 0) is scored as a prediction of "feature i
    is active" (c > 0). A ratio whose denominator is 0 is defined as 0 (e.g. recall of a feature
    never active in the batch, precision of a latent that never fires).

    Args:
        c: (B, N) true feature activations.
        codes: (B, L) latent codes.
        match: (N,) integer latent index per feature (e.g. from :func:`matched_cosines`, the
            |cosine| matching of :func:`mcc`); -1 or any index outside [0, L) means unmatched.
    Returns:
        dict: "precision", "recall", "f1" (N,) per true feature, NaN for an unmatched one (and,
        traced, for one whose activations or matched codes hold NaN or inf); and
        "mean_precision", "mean_recall", "mean_f1" their means over matched features (NaN
        when none is matched or any of theirs is NaN).
    """
    c, codes = _batch_pair(c, codes)
    return _detection(c, codes, _match_vector(match, c.shape[1]))


# ----------------------------------------------------------------------------- reconstruction


def _sq_rows(a):
    return jnp.sum(a * a, axis=1)


def _explained_variance(x, x_hat):
    residual = jnp.sum(jnp.square(x - x_hat))
    total = jnp.sum(jnp.square(x - jnp.mean(x, axis=0, keepdims=True)))
    value = jnp.where(total > 0, 1.0 - residual / jnp.where(total > 0, total, 1.0), jnp.nan)
    return _nan_unless_finite(value, x, x_hat)


def explained_variance(x, x_hat):
    """Fraction of the inputs' variance the reconstructions explain.

    Args:
        x: (B, D) inputs; x_hat: (B, D) reconstructions.
    Returns:
        scalar 1 − Σ‖x − x̂‖² / Σ‖x − mean(x)‖² (mean over the batch): 1 for a perfect
        reconstruction, 0 for the batch mean, negative when worse; NaN when x has no variance
        (e.g. B = 1), where the ratio is undefined.
    """
    x, x_hat = _batch_pair(x, x_hat, names=("x", "x_hat"), axes=("(B, D)", "(B, D)"))
    _agree("x_hat", x_hat, 1, "D (last axis)", "x", x, 1)
    return _explained_variance(x, x_hat)


def _shrinkage(x, x_hat):
    nx = _sq_rows(x)
    live = nx > 0
    ratio = jnp.sqrt(_sq_rows(x_hat)) / jnp.sqrt(jnp.where(live, nx, 1.0))
    n_live = jnp.sum(live)
    value = jnp.where(n_live > 0, jnp.sum(jnp.where(live, ratio, 0.0)) / jnp.maximum(n_live, 1), jnp.nan)
    # A NaN row of x has nx > 0 False and would be skipped like a zero row.
    return _nan_unless_finite(value, x, x_hat)


def shrinkage(x, x_hat):
    """How much the reconstructions shrink the inputs (an L1 penalty's signature).

    Args:
        x: (B, D) inputs; x_hat: (B, D) reconstructions.
    Returns:
        scalar mean of ‖x̂‖/‖x‖ over examples with ‖x‖ > 0 (NaN when there are none): 1 for no
        shrinkage, 0.5 for x̂ = x/2.
    """
    x, x_hat = _batch_pair(x, x_hat, names=("x", "x_hat"), axes=("(B, D)", "(B, D)"))
    _agree("x_hat", x_hat, 1, "D (last axis)", "x", x, 1)
    return _shrinkage(x, x_hat)


# ----------------------------------------------------------------------------- sparsity


# NaN > 0 is False: a non-finite (traced) code would pass as "not firing", so both are NaN then.
def _l0(codes):
    return _nan_unless_finite(jnp.mean(jnp.sum(codes > 0, axis=1).astype(codes.dtype)), codes)


def _dead_latents(codes):
    return _nan_unless_finite(jnp.mean((~jnp.any(codes > 0, axis=0)).astype(codes.dtype)), codes)


def l0(codes):
    """Mean number of latents firing (code > 0) per example.

    Args:
        codes: (B, L) latent codes.
    Returns:
        float scalar in [0, L].
    """
    return _l0(_matrix(codes, "codes", "(B, L)"))


def dead_latents(codes):
    """Fraction of latents that never fire (code > 0) anywhere in the batch.

    Args:
        codes: (B, L) latent codes.
    Returns:
        float scalar in [0, 1].
    """
    return _dead_latents(_matrix(codes, "codes", "(B, L)"))


# ----------------------------------------------------------------------------- all together


def dictionary_scores(features, decoder, x, x_hat, c, codes):
    """Every known-answer metric of one dictionary, for a sweep's summary (vmap over a stack).

    Args:
        features: (N, D) true features; decoder: (L, D) decoder directions;
        x: (B, D) inputs; x_hat: (B, D) reconstructions;
        c: (B, N) true activations of the same B examples; codes: (B, L) their latent codes.
    Returns:
        dict of scalars: "mmcs", "mcc", "uniqueness" (all on |cosine|, as :func:`mcc`);
        "precision", "recall", "f1" (means over the features matched by the MCC matching, see
        :func:`detection_scores`); "explained_variance", "shrinkage", "l0", "dead_latents".
        Each is NaN when a traced input it reads holds NaN or inf.
    """
    features, decoder = _dictionary_pair(features, decoder)
    x, x_hat = _batch_pair(x, x_hat, names=("x", "x_hat"), axes=("(B, D)", "(B, D)"))
    _agree("x", x, 1, "D (last axis)", "features", features, 1)
    _agree("x_hat", x_hat, 1, "D (last axis)", "features", features, 1)
    c = _matrix(c, "c", "(B, N)")
    codes = _matrix(codes, "codes", "(B, L)")
    _agree("c", c, 0, "B (first axis)", "x", x, 0)
    _agree("c", c, 1, "N (last axis)", "features", features, 0)
    _agree("codes", codes, 0, "B (first axis)", "x", x, 0)
    _agree("codes", codes, 1, "L (last axis)", "decoder", decoder, 0)

    cos = _cosines(features, decoder)
    match, matched = _matched(cos)  # one assignment shared by MCC and detection
    detection = _detection(c, codes, match)
    return {
        "mmcs": _mmcs_from(cos),
        "mcc": _mcc_of(cos, match, matched),
        "uniqueness": _uniqueness_from(cos, decoder),
        "precision": detection["mean_precision"],
        "recall": detection["mean_recall"],
        "f1": detection["mean_f1"],
        "explained_variance": _explained_variance(x, x_hat),
        "shrinkage": _shrinkage(x, x_hat),
        "l0": _l0(codes),
        "dead_latents": _dead_latents(codes),
    }


# ----------------------------------------------------------------------------- frontier


def pareto_frontier(l0, score):
    """Which points of a sweep are Pareto-optimal in sparsity against a score (numpy, host).

    A point is dominated when another has L0 <= its L0 and score >= its score, strictly better
    in at least one. Identical points do not dominate each other.

    Args:
        l0: array of L0 values (lower is better); score: array of the same shape (higher is
            better, e.g. explained variance or MCC).
    Returns:
        bool numpy array of that shape, True for points no other point dominates. A point with
        a NaN in either (a score undefined for that run, e.g. from a non-finite traced input)
        is never on the frontier and dominates nothing.
    """
    try:
        l0_arr = np.asarray(l0, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("l0", described(f"a {type(l0).__name__}"), "must be an array of real numbers") from None
    try:
        s_arr = np.asarray(score, dtype=np.float64)
    except (TypeError, ValueError):
        raise ConfigError("score", described(f"a {type(score).__name__}"), "must be an array of real numbers") from None
    if s_arr.shape != l0_arr.shape:
        raise ConfigError("score", described(f"shape {s_arr.shape}"),
                          f"must have the same shape as l0 ({l0_arr.shape})")
    flat_l0, flat_s = l0_arr.ravel(), s_arr.ravel()
    valid = ~(np.isnan(flat_l0) | np.isnan(flat_s))
    on_front = np.zeros(flat_l0.shape, bool)
    if valid.any():
        a, s = flat_l0[valid], flat_s[valid]
        # Group equal L0 values: a point is dominated by a point in a group of strictly lower L0
        # with score >= its own, or by one in its own group with a strictly higher score.
        levels, group = np.unique(a, return_inverse=True)
        group_best = np.full(levels.shape, -np.inf)
        np.maximum.at(group_best, group, s)
        best_before = np.maximum.accumulate(group_best)
        # The lowest-L0 group has nothing before it (a sentinel -inf would "dominate" score -inf).
        has_before = group > 0
        dominated = (has_before & (best_before[np.maximum(group - 1, 0)] >= s)) | (group_best[group] > s)
        on_front[valid] = ~dominated
    return on_front.reshape(l0_arr.shape)
