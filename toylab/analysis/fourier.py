"""Fourier analysis of modular-arithmetic models (Nanda et al. 2023; Doshi et al. 2023).

The real orthonormal Fourier basis of Z_p has p rows: the constant, then cos k and sin k for
k = 1..⌊(p−1)/2⌋ (and the alternating cos(πx) when p is even). Measures here are pure
functions of arrays (or of a model and p), jittable and vmappable over a sweep or a run's
snapshots; frequencies are returned as masks or arrays, never as Python lists, so that
they vmap.

Conventions: cubes of logits are indexed [a, b, c] over the full grid of pairs in
row-major order (``grid_tokens(p)``); neurons are [a, b, neuron] at the last position. The
losses (restricted, excluded, ablations, progress measures) score the answers of
(a + b) mod p, the task whose algorithm they describe. Restricted and excluded losses
project the logits (Nanda et al. project the neurons' contribution; for an MLP, whose
logits are all neuron contribution, the two agree).
"""

from __future__ import annotations

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.precision import cast_compute, check_precision, precision_scope
from ..models import PairModel
from ..tasks.losses import weighted_cross_entropy

__all__ = [
    "fourier_basis", "basis_names", "basis_frequency", "n_frequencies", "fourier_2d", "fourier_2d_inverse",
    "frequency_power", "fourier_norms", "embedding_fourier_norms", "gini", "key_frequencies",
    "grid_tokens", "grid_logits", "sum_labels", "grid_neurons", "neuron_frequency_clusters",
    "logit_frequency_components", "restricted_logits", "excluded_logits", "cross_entropy",
    "restricted_loss", "excluded_loss", "embedding_ablation_loss", "neuron_ablation_loss",
    "inverse_participation_ratio", "embedding_matrix", "neuron_ipr", "prune_neurons", "weight_norm", "progress_measures",
]


# ----------------------------------------------------------------------------- the basis


@functools.lru_cache(maxsize=None)
def _basis_np(p: int) -> np.ndarray:
    x = np.arange(p)
    rows = [np.full(p, 1.0 / np.sqrt(p))]
    for k in range(1, (p - 1) // 2 + 1):
        rows.append(np.cos(2 * np.pi * k * x / p) * np.sqrt(2.0 / p))
        rows.append(np.sin(2 * np.pi * k * x / p) * np.sqrt(2.0 / p))
    if p % 2 == 0:
        rows.append(np.cos(np.pi * x) / np.sqrt(p))
    return np.stack(rows)


def _check_p(p) -> int:
    if not isinstance(p, (int, np.integer)) or isinstance(p, bool) or p < 2:
        raise ConfigError("p", p, "must be an integer >= 2")
    return int(p)


def fourier_basis(p: int) -> np.ndarray:
    """(p, p) real orthonormal Fourier basis of Z_p, one basis vector per row."""
    return _basis_np(_check_p(p)).copy()


def basis_names(p: int) -> list[str]:
    """Names of the basis rows: const, cos 1, sin 1, ..."""
    p = _check_p(p)
    names = ["const"]
    for k in range(1, (p - 1) // 2 + 1):
        names += [f"cos {k}", f"sin {k}"]
    if p % 2 == 0:
        names.append(f"cos {p // 2}")
    return names


def basis_frequency(p: int) -> np.ndarray:
    """(p,) the frequency k of each basis row (0 for the constant)."""
    p = _check_p(p)
    freq = [0] + [k for k in range(1, (p - 1) // 2 + 1) for _ in range(2)]
    if p % 2 == 0:
        freq.append(p // 2)
    return np.asarray(freq)


def n_frequencies(p: int) -> int:
    """Number of nonzero frequencies, ⌊p/2⌋."""
    return _check_p(p) // 2


def fourier_2d(values, p: int):
    """Coefficients of functions on Z_p × Z_p in the 2-D basis F[i, a]·F[j, b]: ``values``
    (p, p, ...) over (a, b) → (p, p, ...) over (basis row i, basis row j). Orthonormal, so
    ``fourier_2d_inverse`` undoes it and squared coefficients sum to the squared values."""
    values = jnp.asarray(values)
    if values.shape[:2] != (p, p):
        raise ConfigError("values", described(f"shape {values.shape}"), f"must start with (p, p) = ({p}, {p})")
    F = jnp.asarray(fourier_basis(p), values.dtype if jnp.issubdtype(values.dtype, jnp.floating) else jnp.float32)
    return jnp.einsum("ia,jb,ab...->ij...", F, F, values)


def fourier_2d_inverse(coeffs, p: int):
    """Values over (a, b) from 2-D basis coefficients (the inverse of :func:`fourier_2d`)."""
    coeffs = jnp.asarray(coeffs)
    if coeffs.shape[:2] != (p, p):
        raise ConfigError("coeffs", described(f"shape {coeffs.shape}"), f"must start with (p, p) = ({p}, {p})")
    F = jnp.asarray(fourier_basis(p), coeffs.dtype)
    return jnp.einsum("ia,jb,ij...->ab...", F, F, coeffs)


def _onehot_freq(p: int) -> np.ndarray:
    """(p, n_freq + 1) indicator of each basis row's frequency."""
    f = basis_frequency(p)
    return (f[:, None] == np.arange(n_frequencies(p) + 1)[None, :]).astype(np.float32)


def frequency_power(coeffs, p: int, axis: int = 0):
    """Sum of squared coefficients per frequency (index 0 is the constant) along ``axis``."""
    coeffs = jnp.moveaxis(jnp.asarray(coeffs), axis, -1)
    return (coeffs ** 2) @ jnp.asarray(_onehot_freq(p))


def fourier_norms(W, p: int, axis: int = -1):
    """Norm of W's component along each basis row, W's ``axis`` (length p) being Z_p."""
    W = jnp.moveaxis(jnp.asarray(W), axis, -1)
    if W.shape[-1] != p:
        raise ConfigError("W", described(f"axis {axis} has length {W.shape[-1]}"), f"must have length p={p}")
    coeffs = W @ jnp.asarray(fourier_basis(p)).T  # (..., p) in the basis
    return jnp.sqrt(jnp.sum(coeffs.reshape(-1, p) ** 2, axis=0))


def embedding_fourier_norms(W_E, p: int):
    """Fourier norms of the token embeddings of 0..p−1 (columns of W_E (d_model, d_vocab))."""
    return fourier_norms(jnp.asarray(W_E)[:, :p], p, axis=-1)


def gini(x):
    """Gini coefficient of the magnitudes |x| (norms, powers): 0 when all are equal, (n−1)/n
    when one is nonzero."""
    x = jnp.sort(jnp.abs(jnp.ravel(x)))
    n = x.shape[0]
    i = jnp.arange(1, n + 1)
    total = jnp.sum(x)
    return jnp.where(total > 0, jnp.sum((2 * i - n - 1) * x) / (n * jnp.where(total > 0, total, 1.0)), 0.0)


def key_frequencies(power, ratio: float = 10.0):
    """(⌊p/2⌋ + 1,) bool mask of the key frequencies, indexed like ``power`` (the output of
    :func:`frequency_power`): entry k is frequency k, entry 0 (the constant) is False, so
    ``np.flatnonzero(mask)`` are the frequencies themselves. Key: a frequency whose power is at
    least ``ratio`` times the median power of frequencies 1..⌊p/2⌋ and at least 1% of the
    largest (so rounding noise around an exactly sparse spectrum is not a peak), or more than
    half of all their power (which settles the tiny p where the median is itself a peak). A
    sparse spectrum gives its few peaks; a flat one gives none."""
    if not (isinstance(ratio, (int, float)) and ratio > 0):
        raise ConfigError("ratio", ratio, "must be a number > 0")
    power = jnp.asarray(power)[..., 1:]
    median = jnp.median(power, axis=-1, keepdims=True)
    top = jnp.max(power, axis=-1, keepdims=True)
    half = 0.5 * jnp.sum(power, axis=-1, keepdims=True)
    peak = (power >= ratio * median) & (power >= 0.01 * top) & (top > 0)
    key = peak | ((power > half) & (half > 0))
    return jnp.concatenate([jnp.zeros(key.shape[:-1] + (1,), bool), key], axis=-1)


# ----------------------------------------------------------------------------- model on the grid


def grid_tokens(p: int) -> np.ndarray:
    """(p², 3) tokens [a, b, =] for every pair in row-major order (a slow, b fast)."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], axis=1).astype(np.int32)


def _check_model_p(model, p: int):
    """The model must read tokens 0..p−1 (and '=' = p for a transformer): JAX would silently
    clamp out-of-range token indices."""
    p = _check_p(p)
    n_in = _pair_model(model).n_operands
    if n_in != p:
        raise ConfigError("p", p, f"the model reads {n_in} operand values; p must match it")


# Compiled once per model structure: analyses call these for many runs and snapshots.
@eqx.filter_jit
def _apply_logits(model, tokens, alpha):
    return jax.vmap(lambda t: model(t, alpha))(tokens)


@eqx.filter_jit
def _apply_neurons(model, tokens, alpha):
    return jax.vmap(lambda t: model(t, alpha, return_activations=True)[1][-1]["mlp_post"][-1])(tokens)


def grid_logits(model, p: int, alpha=1.0):
    """(p, p, n_out) logits over every pair."""
    _check_model_p(model, p)
    return _apply_logits(model, jnp.asarray(grid_tokens(p)), alpha).reshape(p, p, -1)


def grid_neurons(model, p: int, alpha=1.0):
    """(p, p, d_mlp) neuron activations (after the nonlinearity) at the last position."""
    _check_model_p(model, p)
    return _apply_neurons(model, jnp.asarray(grid_tokens(p)), alpha).reshape(p, p, -1)


# ----------------------------------------------------------------------------- structure


def neuron_frequency_clusters(neurons, p: int):
    """Each neuron's frequency and the share of its variance that frequency explains.

    ``neurons`` (p, p, d) over the grid. A function of (a, b) is written in the 2-D basis;
    frequency k explains the terms whose two basis rows are each of frequency k or constant
    (cos ka, sin kb, cos ka·sin kb, ...), the constant term itself excluded. Returns
    (frequency (d,) int in 1..⌊p/2⌋, fraction (d,), fractions (d, ⌊p/2⌋ + 1) indexed by
    frequency like :func:`frequency_power`, column 0 (the constant) zero)."""
    power = fourier_2d(neurons, p) ** 2
    f = basis_frequency(p)
    total = power.sum((0, 1)) - power[0, 0]
    ks = np.arange(1, n_frequencies(p) + 1)
    row_k = (f[None, :] == ks[:, None]) | (f[None, :] == 0)  # (n_freq, p): rows of freq k or const
    sel = (row_k[:, :, None] & row_k[:, None, :]).astype(np.float32)  # (n_freq, p, p)
    sel[:, 0, 0] = 0.0
    per_k = jnp.einsum("kij,ijn->nk", jnp.asarray(sel), power)
    frac = per_k / jnp.maximum(total, 1e-30)[:, None]
    frac = jnp.concatenate([jnp.zeros_like(frac[:, :1]), frac], axis=-1)  # indexed by frequency
    best = jnp.argmax(frac[:, 1:], axis=-1) + 1
    return best, jnp.take_along_axis(frac, best[:, None], axis=-1)[:, 0], frac


def _sum_directions(p: int) -> np.ndarray:
    """(n_freq, 2, p, p) unit vectors cos(w(a+b)) and sin(w(a+b)) over the (a, b) grid."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    ks = np.arange(1, n_frequencies(p) + 1)
    theta = 2 * np.pi * ks[:, None, None] * (a + b)[None] / p
    d = np.stack([np.cos(theta), np.sin(theta)], axis=1)
    d[2 * ks == p, 1] = 0.0  # sin(π(a+b)) vanishes on the grid (even p): no such direction
    norm = np.linalg.norm(d.reshape(len(ks), 2, -1), axis=-1)
    return d / np.where(norm > 0, norm, 1.0)[..., None, None]


def logit_frequency_components(logits, p: int):
    """How much of the logits is Σ_w α_w cos(w(a+b−c)).

    ``logits`` (p, p, p) over [a, b, c]. Returns (coefficients, fractions), each
    (⌊p/2⌋ + 1,) indexed by frequency w like :func:`frequency_power` (entry 0 zero: the
    logits are centred over c): the projection on each unit direction cos(w(a+b−c)) and the
    share of the variance of the logits it explains."""
    L = jnp.asarray(logits)
    if L.shape != (p, p, p):
        raise ConfigError("logits", described(f"shape {L.shape}"), f"must be (p, p, p) = ({p}, {p}, {p}) over [a, b, c]")
    L = L - L.mean(-1, keepdims=True)
    ks = np.arange(1, n_frequencies(p) + 1)
    C = jnp.asarray(np.cos(2 * np.pi * ks[:, None] * np.arange(p)[None] / p), jnp.float32)
    S = jnp.asarray(np.sin(2 * np.pi * ks[:, None] * np.arange(p)[None] / p), jnp.float32)
    # cos(w(a+b−c)) = CCC − SSC + SCS + CSS in the factors of a, b, c; contracted one axis at a time.
    term = lambda A, B, Cc: jnp.einsum("wc,wbc->w", Cc, jnp.einsum("wb,wabc->wbc", B, jnp.einsum("wa,abc->wabc", A, L)))  # noqa: E731
    coef = term(C, C, C) - term(S, S, C) + term(S, C, S) + term(C, S, S)
    norm2 = np.where(2 * ks == p, float(p) ** 3, float(p) ** 3 / 2)  # Σ cos² over the cube
    coef = coef / jnp.sqrt(jnp.asarray(norm2, jnp.float32))
    coef = jnp.concatenate([jnp.zeros(1, coef.dtype), coef])  # indexed by frequency
    return coef, coef ** 2 / jnp.maximum(jnp.sum(L ** 2), 1e-30)


def _key_part(key_mask, p: int):
    """Entries 1..⌊p/2⌋ of a key mask indexed by frequency (as :func:`key_frequencies` returns)."""
    n = n_frequencies(p)
    if jnp.shape(key_mask) != (n + 1,):
        raise ConfigError("key_mask", described(f"shape {jnp.shape(key_mask)}"),
                          f"must be ({n + 1},), indexed by frequency 0..{n} like frequency_power (entry 0, the "
                          "constant, is ignored); key_frequencies(power) returns one")
    return jnp.asarray(key_mask)[1:]


def _project_sum_directions(logits, p: int, mask, precision: str = "float32"):
    """The part of the logits along cos/sin(w(a+b)) for the frequencies in mask, per c, its
    products under the ``precision`` policy (bfloat16: operands rounded, sums in the logits'
    dtype)."""
    precision = check_precision(precision)
    if logits.shape[:2] != (p, p):
        raise ConfigError("logits", described(f"shape {logits.shape}"), f"must be (p, p, n_out) with p={p} over [a, b, c]")
    D = jnp.asarray(_sum_directions(p), jnp.float32) * jnp.asarray(_key_part(mask, p), jnp.float32)[:, None, None, None]
    out = jnp.result_type(logits, jnp.float32)
    with precision_scope(precision):
        D, x = cast_compute((D, logits), precision)
        coef = jnp.einsum("kdab,abc->kdc", D, x, preferred_element_type=out)
        return jnp.einsum("kdab,kdc->abc", D, cast_compute(coef, precision), preferred_element_type=out)


def restricted_logits(logits, p: int, key_mask, precision: str = "float32"):
    """Logits with only the key-frequency cos/sin(w(a+b)) directions (and the mean over
    pairs) kept, per answer c. ``precision``: the projection's matrix-product policy
    (:mod:`toylab.core.precision`; "float32", HIGHEST, by default — the restricted loss is a
    small difference of projected logits)."""
    logits = jnp.asarray(logits)
    return _project_sum_directions(logits, p, key_mask, precision) + logits.mean((0, 1), keepdims=True)


def excluded_logits(logits, p: int, key_mask, precision: str = "float32"):
    """Logits with the key-frequency cos/sin(w(a+b)) directions removed (``precision`` as
    :func:`restricted_logits`)."""
    logits = jnp.asarray(logits)
    return logits - _project_sum_directions(logits, p, key_mask, precision)


def cross_entropy(logits, labels, mask=None):
    """Mean cross-entropy over rows (where mask), computed in float64, returned as float32."""
    logits = jnp.asarray(logits)
    labels = jnp.asarray(labels)
    rows = None if mask is None else jnp.asarray(mask)
    return weighted_cross_entropy(logits.reshape(-1, logits.shape[-1]), labels.reshape(-1),
                                  None if rows is None else rows.reshape(-1))


def sum_labels(p: int) -> np.ndarray:
    """(p, p) answers (a + b) mod p over the grid."""
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    return (a + b) % p


def restricted_loss(logits, p: int, key_mask, precision: str = "float32"):
    """Loss on every pair of (a + b) mod p with only the key frequencies' logit directions
    (``precision`` as :func:`restricted_logits`)."""
    return cross_entropy(restricted_logits(logits, p, key_mask, precision), sum_labels(p))


def excluded_loss(logits, p: int, key_mask, train_mask, precision: str = "float32"):
    """Loss on the training pairs ((p, p) bool) with the key frequencies' directions removed
    (``precision`` as :func:`restricted_logits`)."""
    return cross_entropy(excluded_logits(logits, p, key_mask, precision), sum_labels(p), train_mask)


def _key_basis_rows(p: int, key_mask, keep_const: bool = True):
    """(p,) float mask of basis rows whose frequency is key (and the constant)."""
    f = basis_frequency(p)
    rows = jnp.concatenate([jnp.ones(1), jnp.asarray(_key_part(key_mask, p), jnp.float32)])[f]
    return rows if keep_const else rows.at[0].set(0.0)


def embedding_ablation_loss(model, p: int, key_mask, keep: bool, alpha=1.0):
    """Loss over all pairs after keeping only (keep=True) or removing (keep=False) the key
    frequencies of the token embeddings of 0..p−1 (the constant kept either way)."""
    F = jnp.asarray(fourier_basis(p))
    rows = _key_basis_rows(p, key_mask)
    if not keep:
        rows = 1.0 - rows + (jnp.arange(p) == 0)
    W_new = (model.W_E[:, :p] @ F.T * rows) @ F
    ablated = eqx.tree_at(lambda m: m.W_E, model, model.W_E.at[:, :p].set(W_new))
    return cross_entropy(grid_logits(ablated, p, alpha).reshape(p * p, -1), sum_labels(p).ravel())


def neuron_ablation_loss(model, p: int, key_mask, keep: bool, alpha=1.0):
    """Loss over all pairs after projecting every neuron's activation over (a, b) onto the
    key-frequency terms of the 2-D basis (keep=True) or removing them (keep=False). The rest
    of the network (the residual path around the MLP) is left as it is."""
    tokens = jnp.asarray(grid_tokens(p))
    logits, cache = jax.vmap(lambda t: model(t, alpha, return_activations=True))(tokens)
    post = cache[-1]["mlp_post"][:, -1].reshape(p, p, -1)
    rows = _key_basis_rows(p, key_mask)
    sel = rows[:, None] * rows[None, :]  # key-or-constant in both coordinates
    if not keep:
        sel = 1.0 - sel + jnp.zeros((p, p)).at[0, 0].set(1.0)
    new_post = fourier_2d_inverse(fourier_2d(post, p) * sel[:, :, None], p).reshape(p * p, -1)
    delta = (new_post - post.reshape(p * p, -1)) @ model.W_L.T
    return cross_entropy(logits + delta, sum_labels(p).ravel())


# ----------------------------------------------------------------------------- neurons and weights


def inverse_participation_ratio(power):
    """IPR Σ P_k² / (Σ P_k)² over the last axis of non-negative powers: 1 when all the power
    is in one entry, 1/n when it is spread evenly."""
    power = jnp.asarray(power)
    scale = jnp.max(power, axis=-1, keepdims=True)  # rescale first: squares of huge powers overflow
    ok = scale[..., 0] > 0
    q = power / jnp.where(scale > 0, scale, 1.0)
    total = q.sum(-1)
    return jnp.where(ok, (q ** 2).sum(-1) / jnp.where(ok, total, 1.0) ** 2, 0.0)


def _pair_model(model) -> PairModel:
    if not isinstance(model, PairModel):
        raise ConfigError("model", described(f"a {type(model).__name__}"), "must be a pair model (toylab.models."
                          "PairModel: the transformer, an embedding MLP, or a model with the same methods)")
    return model


def embedding_matrix(model):
    """The embedding of a (d, p) whose Fourier spectrum the progress measures use: the token
    embedding of a transformer; an MLP's input weights on a (its one-hot W_in block, or
    W_in·W_E_left)."""
    return _pair_model(model).operand_embeddings()[0]


def neuron_ipr(model, p: int):
    """(d,) IPR of each neuron's input weights on a and on b over the nonzero frequencies
    (powers of a's and b's weights added per frequency), for an embedding MLP, as Doshi et
    al. Memorising neurons have low IPR. (A transformer's neurons see a and b only through
    attention; use :func:`neuron_frequency_clusters` on its activations instead.)"""
    inputs = _pair_model(model).neuron_inputs()
    if inputs is None:
        raise ConfigError("model", described(f"a {type(model).__name__}"), "has no input weights on a and b; neuron_ipr "
                          "needs an embedding MLP (use neuron_frequency_clusters for a transformer)")
    left, right = inputs
    if left.shape[1] != p:
        raise ConfigError("p", p, f"the model's inputs have {left.shape[1]} values; must equal p")
    F = jnp.asarray(fourier_basis(p))
    power = frequency_power(left[:, :p] @ F.T, p, axis=-1) + frequency_power(right[:, :p] @ F.T, p, axis=-1)
    return inverse_participation_ratio(power[:, 1:])


def prune_neurons(model, keep):
    """The model with the neurons where ``keep`` (d,) is false removed (their output weights
    zeroed), for an embedding MLP or the last MLP layer of a transformer."""
    keep = jnp.asarray(keep, jnp.float32)
    d = _pair_model(model).n_neurons
    if keep.shape != (d,):
        raise ConfigError("keep", described(f"shape {keep.shape}"), f"must be ({d},), one entry per neuron")
    return model.without_neurons(keep)


def weight_norm(model):
    """Sum of squared weights over every array of the model."""
    leaves = jax.tree_util.tree_leaves(eqx.filter(model, eqx.is_inexact_array))
    return sum(jnp.sum(x.astype(jnp.float32) ** 2) for x in leaves)


def progress_measures(model, p: int, key_mask, train_mask, alpha=1.0, precision: str = "float32") -> dict:
    """Nanda et al.'s progress measures for (a + b) mod p: restricted loss (all pairs),
    excluded loss (training pairs), Gini of the Fourier norms of W_E and of W_L, and the sum
    of squared weights. ``key_mask`` (⌊p/2⌋ + 1,) bool indexed by frequency (as
    :func:`key_frequencies` returns), ``train_mask`` (p, p) bool. ``precision``: the matrix-product
    policy of the model's logits and of the projections (:mod:`toylab.core.precision`)."""
    precision = check_precision(precision)
    with precision_scope(precision):
        return _progress_measures(model, p, key_mask, train_mask, alpha, precision)


def _progress_measures(model, p, key_mask, train_mask, alpha, precision):
    logits = grid_logits(model, p, alpha)
    W_E = embedding_matrix(model)
    return {
        "restricted_loss": restricted_loss(logits, p, key_mask, precision),
        "excluded_loss": excluded_loss(logits, p, key_mask, train_mask, precision),
        "full_loss": cross_entropy(logits.reshape(p * p, -1), sum_labels(p).ravel()),
        "gini_W_E": gini(fourier_norms(W_E[:, :p], p)),
        "gini_W_L": gini(fourier_norms(model.W_L, p, axis=0)),
        "weight_norm": weight_norm(model),
    }
