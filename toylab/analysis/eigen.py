"""Eigendecomposition of bilinear layers (Pearce, Dooms, Rigg, Oramas, Sharkey 2024).

A bilinear layer g(x) = P((W x̃) ⊙ (V x̃)) is the third-order tensor
B[a, i, j] = Σ_k P[a, k] W[k, i] V[k, j] over the augmented input x̃ (x with a 1 appended
when ``layer.bias``), g(x)_a = x̃ᵀ B[a] x̃. Only the part of B symmetric in (i, j) reaches
the output. Along an output direction u (a class e_c, a logit difference e_c − e_d) the
layer is one symmetric interaction matrix Q_u = Σ_a u_a B_sym[a] = sym(Wᵀ diag(Pᵀu) V), so

    u·g(x) = x̃ᵀ Q_u x̃ = Σ_i λ_i (v_iᵀ x̃)²,    Q_u = Σ_i λ_i v_i v_iᵀ.

Everything here is pure jax.numpy: jittable, and vmappable over a leading seed axis of the
layer pytree (``jax.vmap(class_eigendecomposition)(stacked_layers)``). Shape, rank and
index checks read static shapes and concrete Python values, so they hold under jit and vmap
(traced indices pass unchecked). Functions that take a layer also accept a
BilinearClassifier with one non-residual block (its ``as_layer()``).

Conventions: an :class:`Eigen` holds eigenvector i in column i (``vectors[..., :, i]``),
sorted by |λ| descending; ``d`` is the augmented width d_in + bias; sets of vectors
(eigenvectors, top-k eigenvectors) are always columns, (..., d, k). Contractions use
HIGHEST precision: on GPUs the default float32 matmul may be TF32, which would cost
"k = d reproduces the model" its exactness.
"""

from __future__ import annotations

from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..models.bilinear import BilinearLayer, augment
from ..core.tracing import is_traced

__all__ = [
    "bilinear_tensor", "symmetric_part", "antisymmetric_part",
    "interaction_matrix", "interaction_matrices", "output_directions", "logit_difference",
    "Eigen", "eigendecompose", "class_eigendecomposition", "top_positive", "top_negative",
    "eigenvalue_spectrum", "effective_rank", "spectrum_share",
    "truncated_outputs", "truncated_accuracy",
    "HOSVD", "hosvd", "reconstruct_hosvd", "TensorSVD", "tensor_svd", "reconstruct_tensor_svd",
    "sign_align", "eigenvector_similarity", "cross_seed_similarity", "matched_cross_seed_similarity",
    "eigenvector_mask", "random_mask", "masked_accuracy", "class_shift", "edge_mass",
]

_HI = jax.lax.Precision.HIGHEST
# Norms at most this count as zero where we divide by them.
_NORM_EPS = 1e-30


# ----------------------------------------------------------------------------- validation


def _as_layer(layer) -> BilinearLayer:
    if not isinstance(layer, BilinearLayer) and callable(getattr(layer, "as_layer", None)):
        layer = layer.as_layer()  # a model that folds itself into one bilinear layer (BilinearClassifier)
    if not isinstance(layer, BilinearLayer):
        raise ConfigError("layer", described(f"a {type(layer).__name__}"), "must be a BilinearLayer "
                          "(or a model with as_layer(), e.g. a one-block BilinearClassifier)")
    return layer


def _is_int(v) -> bool:
    return isinstance(v, (int, np.integer)) and not isinstance(v, (bool, np.bool_))


def _check_index(name: str, value, n: int, what: str) -> None:
    """value must be an integer in [0, n); traced values (jit/vmap arguments) pass through."""
    if is_traced(value):
        return
    if not _is_int(value) or not 0 <= value < n:
        raise ConfigError(name, value, f"must be an integer in [0, {n}), {what}")


def _check_k(k, d: int, name: str = "k", what: str = "") -> int:
    """1 <= k <= d (a static Python int); d is by default the rank of the interaction matrices."""
    what = what or f"the rank of the {d}x{d} interaction matrices (d_in + bias)"
    if not _is_int(k) or not 1 <= k <= d:
        raise ConfigError(name, k, f"must be a static integer with 1 <= {name} <= {d}, {what}")
    return int(k)


def _check_square(name: str, Q):
    Q = jnp.asarray(Q)
    if Q.ndim < 2 or Q.shape[-1] != Q.shape[-2]:
        raise ConfigError(name, described(f"shape {Q.shape}"), "must be (..., d, d), square in its last two axes")
    return Q


def _check_eigen(eig) -> "Eigen":
    if not isinstance(eig, Eigen):
        raise ConfigError("eig", described(f"a {type(eig).__name__}"), "must be an Eigen (from eigendecompose or "
                          "class_eigendecomposition)")
    return eig


def _check_input(x, d_in: int, name: str = "x"):
    x = jnp.asarray(x)
    if x.ndim < 1 or x.shape[-1] != d_in:
        raise ConfigError(name, described(f"shape {x.shape}"), f"must be (..., d_in) with d_in = {d_in}")
    return x


# ----------------------------------------------------------------------------- the tensor


def bilinear_tensor(layer):
    """B[a, i, j] = Σ_k P[a, k] W[k, i] V[k, j]: (d_out, d, d), d = d_in + bias. Not symmetric
    in (i, j); see :func:`symmetric_part`."""
    layer = _as_layer(layer)
    return jnp.einsum("ak,ki,kj->aij", layer.P, layer.W, layer.V, precision=_HI)


def symmetric_part(B):
    """(B + Bᵀ)/2 over the last two axes: the part of B that reaches the output."""
    B = _check_square("B", B)
    return 0.5 * (B + jnp.swapaxes(B, -1, -2))


def antisymmetric_part(B):
    """(B − Bᵀ)/2 over the last two axes: invisible to the output (x̃ᵀ A x̃ = 0)."""
    B = _check_square("B", B)
    return 0.5 * (B - jnp.swapaxes(B, -1, -2))


def _interaction(layer: BilinearLayer, U):
    # sym(Wᵀ diag(Pᵀu) V) per row u of U, without the (d_out, d, d) tensor: the hidden
    # weights Pᵀu are contracted first (d_out·d_hidden), then one (d_hidden, d) pass per row.
    h = jnp.matmul(U, layer.P, precision=_HI)  # (n, d_hidden)
    M = jnp.einsum("ki,nk,kj->nij", layer.W, h, layer.V, precision=_HI)
    return 0.5 * (M + jnp.swapaxes(M, -1, -2))


def interaction_matrix(layer, u):
    """Symmetric Q_u (d, d) with u·g(x) = x̃ᵀ Q_u x̃, for an output direction u (d_out,)."""
    layer = _as_layer(layer)
    u = jnp.asarray(u)
    if u.shape != (layer.d_out,):
        raise ConfigError("u", described(f"shape {u.shape}"), f"must be (d_out,) = ({layer.d_out},), one weight per output")
    return _interaction(layer, u[None].astype(layer.P.dtype))[0]


def interaction_matrices(layer, U):
    """Symmetric Q_u (n, d, d) for each row u of U (n, d_out); ``U = output_directions(d_out)``
    gives the symmetric tensor sym(B) itself."""
    layer = _as_layer(layer)
    U = jnp.asarray(U)
    if U.ndim != 2 or U.shape[1] != layer.d_out:
        raise ConfigError("U", described(f"shape {U.shape}"), f"must be (n, d_out) with d_out = {layer.d_out}, one direction per row")
    return _interaction(layer, U.astype(layer.P.dtype))


def output_directions(d_out: int):
    """(d_out, d_out) identity: one direction per output (class)."""
    if not _is_int(d_out) or d_out < 1:
        raise ConfigError("d_out", d_out, "must be a positive integer")
    return jnp.eye(d_out)


def logit_difference(d_out: int, a: int, b: int):
    """(d_out,) direction e_a − e_b: how the layer separates output a from output b."""
    output_directions(d_out)  # validates d_out
    _check_index("a", a, d_out, "an output index")
    _check_index("b", b, d_out, "an output index")
    if not is_traced(a) and not is_traced(b) and a == b:
        raise ConfigError("b", b, f"must differ from a={a!r} (e_a − e_a is zero)")
    return jnp.zeros(d_out).at[a].add(1.0).at[b].add(-1.0)


# ----------------------------------------------------------------------------- eigendecomposition


class Eigen(eqx.Module):
    """Eigenpairs of symmetric interaction matrices, sorted by |λ| descending.

    values (..., d); vectors (..., d, d), eigenvector i in column i (``vectors[..., :, i]``);
    bias: whether the last coordinate is the appended constant (then d = d_in + 1)."""

    values: jax.Array
    vectors: jax.Array
    bias: bool = eqx.field(static=True, default=False)

    @property
    def d(self) -> int:
        """Width of the (augmented) input, the rank of each matrix."""
        return self.values.shape[-1]

    @property
    def d_in(self) -> int:
        """Width of the input without the bias coordinate."""
        return self.d - int(self.bias)


def eigendecompose(Q, bias: bool = False) -> Eigen:
    """Eigenpairs of symmetric Q (..., d, d), batched over leading axes, sorted by |λ|
    descending (ties keep eigh's ascending order). ``bias``: Q is over the augmented input."""
    Q = _check_square("Q", Q)
    lam, vec = jnp.linalg.eigh(Q)
    order = jnp.argsort(-jnp.abs(lam), axis=-1, stable=True)
    values = jnp.take_along_axis(lam, order, axis=-1)
    vectors = jnp.take_along_axis(vec, order[..., None, :], axis=-1)
    return Eigen(values, vectors, bias=bool(bias))


def class_eigendecomposition(layer) -> Eigen:
    """Eigenpairs of every class's interaction matrix at once: values (n_classes, d), vectors
    (n_classes, d, d). For a classifier, pass ``model`` or ``model.as_layer()``."""
    layer = _as_layer(layer)
    return eigendecompose(interaction_matrices(layer, output_directions(layer.d_out)), bias=layer.bias)


def _top(eig: Eigen, k: int, sign: int):
    eig = _check_eigen(eig)
    k = _check_k(k, eig.d)
    order = jnp.argsort(-sign * eig.values, axis=-1, stable=True)[..., :k]
    return (jnp.take_along_axis(eig.values, order, axis=-1),
            jnp.take_along_axis(eig.vectors, order[..., None, :], axis=-1))


def top_positive(eig: Eigen, k: int):
    """The k most positive eigenpairs: (values (..., k) descending, vectors (..., d, k)). If
    fewer than k eigenvalues are positive, the rest are the least negative ones."""
    return _top(eig, k, +1)


def top_negative(eig: Eigen, k: int):
    """The k most negative eigenpairs: (values (..., k) ascending, vectors (..., d, k))."""
    return _top(eig, k, -1)


# ----------------------------------------------------------------------------- spectra


def eigenvalue_spectrum(eig):
    """|λ| sorted descending, (..., d), from an Eigen or an array of eigenvalues."""
    if isinstance(eig, Eigen):
        return jnp.abs(eig.values)  # already sorted by |λ|
    return -jnp.sort(-jnp.abs(jnp.asarray(eig)), axis=-1)


def effective_rank(values):
    """Participation ratio of the squared eigenvalues along the last axis,
    (Σ λ²)² / Σ λ⁴: 1 when one eigenvalue carries everything (rank one), d for a flat
    spectrum of d equal |λ|, in between otherwise; 0 for an all-zero spectrum."""
    sq = jnp.asarray(values) ** 2
    scale = jnp.max(sq, axis=-1, keepdims=True)  # rescale first: λ⁴ over- and underflows in float32
    ok = scale[..., 0] > 0
    q = sq / jnp.where(scale > 0, scale, 1.0)
    return jnp.where(ok, jnp.sum(q, -1) ** 2 / jnp.where(ok, jnp.sum(q * q, -1), 1.0), 0.0)


def spectrum_share(values, k: int):
    """Share of Σ λ² in the k largest |λ| along the last axis, in [0, 1]; 0 for an all-zero
    spectrum."""
    sq = jnp.asarray(values) ** 2
    k = _check_k(k, sq.shape[-1], what="the number of eigenvalues")
    sq = -jnp.sort(-sq, axis=-1)
    total = jnp.sum(sq, -1)
    return jnp.where(total > 0, jnp.sum(sq[..., :k], -1) / jnp.where(total > 0, total, 1.0), 0.0)


# ----------------------------------------------------------------------------- truncation


def _contributions(eig: Eigen, x, kmax: int):
    """λ_ci (v_ciᵀ x̃)² for the top kmax eigenpairs of each direction: (..., n_dir, kmax)."""
    if eig.values.ndim != 2:
        raise ConfigError("eig", described(f"values of shape {eig.values.shape}"), "must be (n_directions, d), one model's "
                          "decomposition (jax.vmap over seeds)")
    x = _check_input(x, eig.d_in)
    xa = augment(x, eig.bias).astype(eig.vectors.dtype)
    proj = jnp.einsum("...j,cjk->...ck", xa, eig.vectors[..., :kmax], precision=_HI)
    return eig.values[:, :kmax] * proj ** 2


def truncated_outputs(eig: Eigen, x, k: int):
    """Outputs along each decomposed direction keeping only its top-k eigenvectors by |λ|:
    y_c = Σ_{i<k} λ_ci (v_ciᵀ x̃)². ``eig`` from :func:`class_eigendecomposition` (or any
    (n_directions, d) decomposition); x (..., d_in) → (..., n_directions). k = d gives the
    layer's outputs."""
    eig = _check_eigen(eig)
    k = _check_k(k, eig.d)
    return jnp.sum(_contributions(eig, x, k), axis=-1)


def truncated_accuracy(eig: Eigen, x, labels, ks):
    """Accuracy of argmax over classes of :func:`truncated_outputs`, for each k in the static
    tuple ``ks``: x (n, d_in), labels (n,) → (len(ks),). One pass for all ks (the
    contributions are summed cumulatively)."""
    eig = _check_eigen(eig)
    ks = (ks,) if _is_int(ks) else tuple(ks)
    if not ks:
        raise ConfigError("ks", (), "must name at least one k")
    ks = tuple(_check_k(k, eig.d) for k in ks)
    x = _check_input(x, eig.d_in)
    labels = jnp.asarray(labels)
    if x.ndim != 2 or labels.shape != x.shape[:1]:
        raise ConfigError("labels", described(f"shape {labels.shape} for x of shape {x.shape}"), "must be (n,) for x (n, d_in)")
    cum = jnp.cumsum(_contributions(eig, x, max(ks)), axis=-1)  # (n, n_classes, kmax)
    out = cum[..., np.asarray(ks) - 1]  # (n, n_classes, len(ks))
    pred = jnp.argmax(out, axis=1)  # (n, len(ks))
    return jnp.mean(pred == labels[:, None], axis=0)


# ----------------------------------------------------------------------------- low rank of the tensor


class HOSVD(NamedTuple):
    """Higher-order SVD: B = core ×₁ U_out ×₂ U_in1 ×₃ U_in2."""

    core: jax.Array  # (r_out, r_1, r_2)
    factors: tuple  # (U_out (d_out, r_out), U_in1 (d, r_1), U_in2 (d, r_2)), orthonormal columns
    singular_values: tuple  # each mode's unfolding's singular values, descending


def _check_tensor(B):
    B = jnp.asarray(B)
    if B.ndim != 3:
        raise ConfigError("B", described(f"shape {B.shape}"), "must be a third-order (d_out, d, d) tensor")
    return B


def hosvd(B) -> HOSVD:
    """Higher-order SVD of B (d_out, d, d): each mode's factor is the left singular vectors of
    that mode's unfolding; core = B ×₁ U_outᵀ ×₂ U_in1ᵀ ×₃ U_in2ᵀ. Exact at full rank; a
    mode's singular values say how many of its directions matter."""
    B = _check_tensor(B)
    factors, svals = [], []
    for mode in range(3):
        unfolding = jnp.moveaxis(B, mode, 0).reshape(B.shape[mode], -1)
        U, s, _ = jnp.linalg.svd(unfolding, full_matrices=False)
        factors.append(U)
        svals.append(s)
    core = jnp.einsum("aij,ap,iq,jr->pqr", B, *factors, precision=_HI)
    return HOSVD(core, tuple(factors), tuple(svals))


def reconstruct_hosvd(core, factors, ranks=None):
    """B from an HOSVD's core and factors; ``ranks`` (r_out, r_1, r_2) keeps only each mode's
    leading directions (a low-rank approximation), None keeps all."""
    U0, U1, U2 = factors
    if ranks is not None:
        ranks = tuple(ranks)
        if len(ranks) != 3:
            raise ConfigError("ranks", ranks, "must be three integers (r_out, r_1, r_2) or None")
        for mode, (r, n) in enumerate(zip(ranks, core.shape)):
            _check_k(r, n, name="ranks", what=f"the number of directions of mode {mode}")
        core = core[: ranks[0], : ranks[1], : ranks[2]]
        U0, U1, U2 = U0[:, : ranks[0]], U1[:, : ranks[1]], U2[:, : ranks[2]]
    return jnp.einsum("pqr,ap,iq,jr->aij", core, U0, U1, U2, precision=_HI)


class TensorSVD(NamedTuple):
    """SVD of sym(B) flattened to (d_out, d·d): sym(B)[a] = Σ_r s_r out[a, r] inputs[r]."""

    values: jax.Array  # (r,) singular values, descending; r = min(d_out, d·d)
    outputs: jax.Array  # (d_out, r) orthonormal output directions
    inputs: jax.Array  # (r, d, d) symmetric, Frobenius-orthonormal interaction matrices


def tensor_svd(B) -> TensorSVD:
    """SVD of the symmetric part of B (d_out, d, d), flattened to (d_out, d·d): the output
    directions the layer uses most, each with its input interaction matrix (eigendecompose
    ``inputs`` to read them). ``interaction_matrices(layer, output_directions(d_out))`` is
    sym(B) without building B."""
    S = symmetric_part(_check_tensor(B))
    d_out, d = S.shape[0], S.shape[-1]
    U, s, Vt = jnp.linalg.svd(S.reshape(d_out, d * d), full_matrices=False)
    return TensorSVD(s, U, Vt.reshape(-1, d, d))


def reconstruct_tensor_svd(tsvd: TensorSVD, rank=None):
    """sym(B) from a :func:`tensor_svd`, keeping the leading ``rank`` terms (None: all)."""
    s, U, M = tsvd
    if rank is not None:
        r = _check_k(rank, s.shape[-1], name="rank", what="the number of singular values")
        s, U, M = s[:r], U[:, :r], M[:r]
    return jnp.einsum("r,ar,rij->aij", s, U, M, precision=_HI)


# ----------------------------------------------------------------------------- across seeds


def _unit_columns(v):
    norm = jnp.sqrt(jnp.sum(v * v, axis=-2, keepdims=True))
    return v / jnp.where(norm > _NORM_EPS, norm, 1.0)


def sign_align(vectors, reference):
    """``vectors`` (..., d, k) with each column flipped where its dot with the matching
    column of ``reference`` is negative (eigenvectors are defined up to sign)."""
    vectors, reference = jnp.asarray(vectors), jnp.asarray(reference)
    if vectors.shape[-2:] != reference.shape[-2:]:
        raise ConfigError("reference", described(f"shape {reference.shape}"), "its last two axes must match vectors' "
                          f"{vectors.shape[-2:]} (d, k)")
    dots = jnp.sum(vectors * reference, axis=-2, keepdims=True)
    return jnp.where(dots < 0, -vectors, vectors)


def eigenvector_similarity(vectors_a, vectors_b):
    """Cosine of matching columns after sign alignment, i.e. |cos|: (..., d, k) twice →
    (..., k) in [0, 1] (0 for a zero column)."""
    a, b = _unit_columns(jnp.asarray(vectors_a)), _unit_columns(jnp.asarray(vectors_b))
    if a.shape[-2:] != b.shape[-2:]:
        raise ConfigError("vectors_b", described(f"shape {b.shape}"), f"its last two axes must match vectors_a's {a.shape[-2:]}")
    return jnp.abs(jnp.sum(a * b, axis=-2))


def _seed_pairs_mean(sim):
    """Mean of sim (n_seeds, n_seeds, ...) over ordered pairs s ≠ t."""
    n = sim.shape[0]
    off = (1.0 - jnp.eye(n, dtype=sim.dtype)).reshape((n, n) + (1,) * (sim.ndim - 2))
    return jnp.sum(sim * off, axis=(0, 1)) / (n * (n - 1))


def _check_seeds(vectors):
    vectors = jnp.asarray(vectors)
    if vectors.ndim < 3 or vectors.shape[0] < 2:
        raise ConfigError("vectors", described(f"shape {vectors.shape}"), "must be (n_seeds, ..., d, k) with n_seeds >= 2")
    return _unit_columns(vectors)


def cross_seed_similarity(vectors):
    """Mean over seed pairs of the sign-aligned cosine of matching columns: vectors
    (n_seeds, ..., d, k) → (..., k); 1 where every seed found the same eigenvector."""
    v = _check_seeds(vectors)
    sim = jnp.abs(jnp.einsum("s...dk,t...dk->st...k", v, v, precision=_HI))
    return _seed_pairs_mean(sim)  # |cos| is symmetric: ordered pairs = pairs i < j


def matched_cross_seed_similarity(vectors):
    """As :func:`cross_seed_similarity`, but column i of one seed is matched to its best
    |cos| among all k columns of the other (eigenvalues close in size may swap order between
    seeds); averaged over both directions of each pair. (n_seeds, ..., d, k) → (..., k)."""
    v = _check_seeds(vectors)
    sim = jnp.abs(jnp.einsum("s...di,t...dj->st...ij", v, v, precision=_HI))
    return _seed_pairs_mean(jnp.max(sim, axis=-1))


# ----------------------------------------------------------------------------- adversarial masks


def eigenvector_mask(eig: Eigen, target_class, which: int = 0, sign: int = +1):
    """Unit input-space mask (..., d_in) from the target class's ``which``-th most positive
    (sign=+1) or most negative (sign=−1) eigenvector, the bias coordinate dropped. The sign
    of an eigenvector is arbitrary; the mask's is fixed so its largest-magnitude entry is
    positive (use a negative strength for the other)."""
    eig = _check_eigen(eig)
    if eig.values.ndim < 2:
        raise ConfigError("eig", described(f"values of shape {eig.values.shape}"), "must be (..., n_classes, d) "
                          "(from class_eigendecomposition)")
    n_classes = eig.values.shape[-2]
    _check_index("target_class", target_class, n_classes, f"one of the {n_classes} classes")
    _check_index("which", which, eig.d, "an eigenvector rank (0 = the most extreme)")
    if sign not in (1, -1) or isinstance(sign, bool):
        raise ConfigError("sign", sign, "must be +1 (positive eigenvalues) or -1 (negative)")
    values = jnp.take(eig.values, target_class, axis=-2)  # (..., d)
    vectors = jnp.take(eig.vectors, target_class, axis=-3)  # (..., d, d)
    i = jnp.argsort(-sign * values, axis=-1, stable=True)[..., which]
    v = jnp.take_along_axis(vectors, i[..., None, None], axis=-1)[..., 0][..., : eig.d_in]
    peak = jnp.take_along_axis(v, jnp.argmax(jnp.abs(v), axis=-1)[..., None], axis=-1)
    norm = jnp.sqrt(jnp.sum(v * v, axis=-1, keepdims=True))
    return v * jnp.where(peak < 0, -1.0, 1.0) / jnp.where(norm > _NORM_EPS, norm, 1.0)


def random_mask(key, d_in: int):
    """A unit Gaussian direction (d_in,): the control for an eigenvector mask."""
    if not _is_int(d_in) or d_in < 1:
        raise ConfigError("d_in", d_in, "must be a positive integer")
    v = jax.random.normal(key, (d_in,))
    return v / jnp.linalg.norm(v)


def _masked_predictions(model_fn, x, mask, strengths, clip):
    x = jnp.asarray(x)
    mask = jnp.asarray(mask)
    if x.ndim != 2:
        raise ConfigError("x", described(f"shape {x.shape}"), "must be (n, d_in)")
    if mask.shape != x.shape[-1:]:
        raise ConfigError("mask", described(f"shape {mask.shape}"), f"must be (d_in,) = ({x.shape[-1]},), one entry per input")
    strengths = jnp.atleast_1d(jnp.asarray(strengths, x.dtype if jnp.issubdtype(x.dtype, jnp.floating) else None))
    if strengths.ndim != 1:
        raise ConfigError("strengths", described(f"shape {strengths.shape}"), "must be a scalar or 1-D")
    if clip is not None:
        pair = isinstance(clip, (tuple, list)) and len(clip) == 2
        concrete = pair and not any(is_traced(c) for c in clip)
        if not pair or (concrete and not float(clip[0]) < float(clip[1])):
            raise ConfigError("clip", clip, "must be None or a range (lo, hi) with lo < hi")

    def predict(s):
        xs = x + s * mask
        if clip is not None:
            xs = jnp.clip(xs, clip[0], clip[1])
        return jnp.argmax(model_fn(xs), axis=-1)

    # lax.map, not vmap: one strength at a time keeps memory at one batch of inputs.
    return jax.lax.map(predict, strengths)  # (n_strengths, n)


def masked_accuracy(model_fn, x, labels, mask, strengths, clip=None):
    """Accuracy of ``model_fn`` (inputs (n, d_in) → logits (n, n_classes); a model works,
    jit it with eqx.filter_jit) on x + s·mask for each strength s, optionally clipped to
    ``clip`` = (lo, hi), e.g. the pixel range: → (n_strengths,)."""
    labels = jnp.asarray(labels)
    if labels.shape != jnp.shape(x)[:1]:
        raise ConfigError("labels", described(f"shape {labels.shape}"), f"must be (n,) for x of shape {jnp.shape(x)}")
    pred = _masked_predictions(model_fn, x, mask, strengths, clip)
    return jnp.mean(pred == labels[None, :], axis=-1)


def class_shift(model_fn, x, mask, strengths, target, clip=None):
    """Share of inputs x + s·mask that ``model_fn`` predicts as class ``target``, for each
    strength s: → (n_strengths,)."""
    x = jnp.asarray(x)
    n_classes = jax.eval_shape(model_fn, jax.ShapeDtypeStruct(x.shape, x.dtype)).shape[-1]
    _check_index("target", target, n_classes, f"one of the model's {n_classes} classes")
    pred = _masked_predictions(model_fn, x, mask, strengths, clip)
    return jnp.mean(pred == target, axis=-1)


# ----------------------------------------------------------------------------- edge pixels


def edge_mass(vectors, shape, border: int = 1):
    """Share of each column's squared mass (input part only) on the pixels within ``border``
    of the edge of an image of ``shape`` (h, w): vectors (..., d, k) with d = h·w, or h·w + 1
    (the bias row is dropped) → (..., k). A uniform vector gives the edge pixels' share of
    all pixels; the paper finds unregularised models' eigenvectors latch onto edge pixels."""
    if (not isinstance(shape, (tuple, list)) or len(shape) != 2 or
            not all(_is_int(s) and s >= 1 for s in shape)):
        raise ConfigError("shape", shape, "must be an image shape (h, w) of positive integers")
    h, w = (int(s) for s in shape)
    vectors = jnp.asarray(vectors)
    if vectors.ndim < 2 or vectors.shape[-2] not in (h * w, h * w + 1):
        raise ConfigError("vectors", described(f"shape {vectors.shape}"), f"must be (..., d, k) with d = h*w = {h * w} "
                          f"(or {h * w + 1} with the bias row), one vector per column")
    if not _is_int(border) or not 1 <= border or 2 * border >= min(h, w):
        raise ConfigError("border", border, "must be an integer with 1 <= border < min(h, w)/2 = "
                          f"{min(h, w) / 2:g}, so that some pixels are not edge")
    edge = np.ones((h, w), bool)
    edge[border:h - border, border:w - border] = False
    sq = vectors[..., : h * w, :] ** 2
    total = jnp.sum(sq, axis=-2)
    on_edge = jnp.sum(sq * jnp.asarray(edge.reshape(-1, 1), sq.dtype), axis=-2)
    return jnp.where(total > 0, on_edge / jnp.where(total > 0, total, 1.0), 0.0)
