"""The local interaction basis and its PCA baseline, per node layer (see the package docstring)."""

from __future__ import annotations

import contextlib

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching

from ...core.config import ConfigError, described
from ...core.precision import precision_scope
from ...tasks.losses import x64_scope
from .._validate import _refuse_non_finite, _refuse_non_finite_tree
from .sections import Sections

__all__ = ["Basis", "interaction_basis", "pca_basis", "PRECISIONS"]

PRECISIONS = ("float64", "float32")
# Every matrix product of the basis is HIGHEST whatever ``precision`` says (that names the
# dtype of the Grams): a TF32 or one-pass-bfloat16 Gram would put rounding-level eigenvalues
# far above the 1e-6 truncation. The products are explicit, and the model's own (activations,
# Jacobians) are traced under the "float32" policy (toylab.core.precision).
_HI = jax.lax.Precision.HIGHEST


def _mm(a, b):
    return jnp.matmul(a, b, precision=_HI)


class Basis(eqx.Module):
    """Per node layer: ``mean`` μ (d,), ``C`` (d, d) whose columns are the features
    (f̂ = Cᵀ(a − μ)), ``C_pinv`` (d, d) (a = μ + C⁺ᵀ f̂), ``importance`` Λ (d,), ``kept``
    (d,) bool. Features are sorted by importance, largest first; dropped ones are zero
    columns with importance 0 and kept False. ``kind`` is "lib" or "pca"."""

    mean: list
    C: list
    C_pinv: list
    importance: list
    kept: list
    names: tuple = eqx.field(static=True)
    kind: str = eqx.field(static=True)

    def n_features(self):
        """How many features each layer keeps (a list of int arrays)."""
        return [k.sum() for k in self.kept]

    def features(self, layer: int, activations):
        """f̂ (n, d) of layer ``layer`` from its activations (n, d)."""
        return self._features(layer, _refuse_non_finite(activations, "activations"))

    def reconstruct(self, layer: int, features):
        """Activations (n, d) from features (n, d): μ + f̂ C⁺."""
        return self._reconstruct(layer, _refuse_non_finite(features, "features"))

    # Unchecked, for this module: what it passes are its own intermediate values, not arguments.
    def _features(self, layer, activations):
        return _mm(activations - self.mean[layer], self.C[layer])

    def _reconstruct(self, layer, features):
        return self.mean[layer] + _mm(features, self.C_pinv[layer])


def _check_truncation(truncation):
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float, np.integer, np.floating)) \
            or not 0 <= float(truncation) < 1:
        raise ConfigError("truncation", truncation, "must be a number in [0, 1): eigenvalues at or below "
                          "truncation × the largest are dropped")
    return float(truncation)


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    return precision


def _check_batch(batch_size):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ConfigError("batch_size", batch_size, "must be a positive integer or None (all examples at once)")


@custom_batching.custom_vmap
def _eigh(S):
    w, v = jnp.linalg.eigh(S)
    return w, v


@_eigh.def_vmap
def _eigh_one_at_a_time(axis_size, in_batched, S):
    # Under vmap, eigh becomes one batched LAPACK call, which in jaxlib 0.10 on CPU can
    # deadlock XLA's thread pool (every pool thread waits on batch tasks none is free to
    # run: a vmapped basis of the p = 113 transformer hung for good). The eigendecompositions
    # are ~2% of a basis, so they run one after another instead.
    if not in_batched[0]:
        return _eigh(S), (False, False)
    return jax.lax.map(_eigh, S), (True, True)


def _desc_eigh(S):
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix; all NaN when
    S is not finite (a traced NaN or inf reached it)."""
    finite = jnp.all(jnp.isfinite(S))
    # eigh of a non-finite matrix is undefined; decompose zeros instead and mark the result.
    w, v = _eigh(jnp.where(finite, (S + S.T) / 2, 0.0))
    return jnp.where(finite, w[::-1], jnp.nan), jnp.where(finite, v[:, ::-1], jnp.nan)


def _poisoned(values, *arrays):
    """arrays, each NaN throughout when ``values`` (eigenvalues) hold NaN: the layer's masks
    would otherwise turn a NaN basis into zero columns and zero importances."""
    bad = jnp.any(jnp.isnan(values))
    return tuple(jnp.where(bad, jnp.nan, a) for a in arrays)


def _keep(values, truncation):
    top = jnp.maximum(values[0], 0.0)
    return (values > truncation * top) & (values > 0)


def _gram(acts, wide):
    mean = jnp.mean(acts.astype(wide), axis=0)
    X = acts.astype(wide) - mean
    return mean, _mm(X.T, X) / acts.shape[0]


@contextlib.contextmanager
def _scope(precision):
    with precision_scope("float32"), (x64_scope(True) if precision == "float64" else contextlib.nullcontext()):
        yield


def _pca_layer(acts, truncation, precision, dtype):
    wide = jnp.float64 if precision == "float64" else jnp.float32
    with _scope(precision):
        mean, G = _gram(acts, wide)
        D, U = _desc_eigh(G)
        kept = _keep(D, truncation)
        U, importance = _poisoned(D, jnp.where(kept[None, :], U, 0.0), jnp.where(kept, D, 0.0))
        out = (mean.astype(dtype), U.astype(dtype), U.T.astype(dtype), importance.astype(dtype), kept)
    return out


def _chunked_mean(fn, xs, batch_size):
    """mean over the rows x of ``xs`` of ``fn(x)`` (an array), ``batch_size`` rows vmapped at
    a time and summed in a scan, so memory holds one chunk of per-example results."""
    n = xs.shape[0]
    b = n if batch_size is None else min(int(batch_size), n)
    chunks = -(-n // b)
    pad = chunks * b - n
    padded = jnp.concatenate([xs, jnp.repeat(xs[:1], pad, axis=0)]) if pad else xs
    weight = (jnp.arange(chunks * b) < n).astype(xs.dtype).reshape(chunks, b)

    def body(total, chunk):
        x, w = chunk
        out = jax.vmap(fn)(x)
        return total + jnp.tensordot(w, out, axes=1, precision=_HI), None
    shape = jax.eval_shape(fn, xs[0])
    total, _ = jax.lax.scan(body, jnp.zeros(shape.shape, shape.dtype),
                            (padded.reshape(chunks, b, *xs.shape[1:]), weight))
    return total / n


def _jacobian_gram(fn, acts, batch_size, precision):
    """E[JᵀJ] over the rows of ``acts`` for J = jacrev(fn) at each row. With float64 the
    products and their sum are float64 (the lab's models keep their own dtype inside the
    scope; a model of your own that mixes in integer divisions may run in float64 there): a
    float32 sum of rank-deficient JᵀJ leaves rounding-level eigenvalues near 1e-6 of the
    largest, which a relative truncation could take for features."""
    jac = jax.jacrev(fn)
    wide = jnp.float64 if precision == "float64" else jnp.float32

    def one(a):
        J = jac(a).astype(wide)
        return _mm(J.T, J)
    with _scope(precision):
        return _chunked_mean(one, acts, batch_size)


def interaction_basis(sections: Sections, model, inputs, *, truncation: float = 1e-6, precision: str = "float64",
                      batch_size: int | None = 256) -> Basis:
    """The local interaction basis of every node layer of ``sections`` on ``inputs`` (n, ...).

    Args:
        sections: the model cut at its node layers (:func:`cut`).
        model: the model (or one of a vmapped stack).
        inputs: the examples the basis is built on (e.g. the training set).
        truncation: in [0, 1): Gram eigenvalues and importances at or below ``truncation`` ×
            the layer's largest are dropped (their features are zero columns).
        precision: "float64" (Grams and eigendecompositions in a scoped enable_x64) or "float32";
            the matrix products are HIGHEST either way (toylab.core.precision).
        batch_size: examples per chunk for the per-example Jacobians (None: all at once).
    Returns a :class:`Basis` (kind "lib")."""
    truncation = _check_truncation(truncation)
    precision = _check_precision(precision)
    _check_batch(batch_size)
    with precision_scope("float32"):
        acts = sections.activations(model, inputs, batch_size)
    dtype = acts[-1].dtype
    L = len(acts)
    layers = [None] * L
    layers[-1] = _pca_layer(acts[-1], truncation, precision, dtype)
    wide = jnp.float64 if precision == "float64" else jnp.float32
    for i in range(L - 2, -1, -1):
        mean_n, C_n = layers[i + 1][0], layers[i + 1][1]
        f = sections.maps[i]
        Mp = _jacobian_gram(lambda a, f=f, mean_n=mean_n, C_n=C_n: _mm(f(model, a) - mean_n, C_n), acts[i], batch_size,
                             precision)
        with _scope(precision):
            mean, G = _gram(acts[i], wide)
            D, U = _desc_eigh(G)
            kept_g = _keep(D, truncation)
            sqrtD = jnp.where(kept_g, jnp.sqrt(jnp.where(kept_g, D, 1.0)), 0.0)
            inv_sqrtD = jnp.where(kept_g, 1.0 / jnp.where(kept_g, sqrtD, 1.0), 0.0)
            Us = U * sqrtD[None, :]  # U D^½: whitened coordinates → activations
            M = _mm(_mm(Us.T, Mp.astype(wide)), Us)
            lam, V = _desc_eigh(M)
            kept = _keep(lam, truncation)
            root = jnp.where(kept, jnp.sqrt(jnp.where(kept, lam, 1.0)), 0.0)
            inv_root = jnp.where(kept, 1.0 / jnp.where(kept, root, 1.0), 0.0)
            C = _mm(U * inv_sqrtD[None, :], V) * root[None, :]
            C_pinv = _mm(inv_root[:, None] * V.T, Us.T)
            # NaN in G's eigenvalues reaches M's through Us, so lam carries both layers' poison.
            C, C_pinv, importance = _poisoned(lam, C, C_pinv, jnp.where(kept, lam, 0.0))
            layers[i] = (mean.astype(dtype), C.astype(dtype), C_pinv.astype(dtype), importance.astype(dtype), kept)
    return Basis(*[list(x) for x in zip(*layers)], names=sections.names, kind="lib")


def pca_basis(sections: Sections, model, inputs, *, truncation: float = 1e-6, precision: str = "float64",
              batch_size: int | None = None) -> Basis:
    """The PCA baseline on the same configuration as :func:`interaction_basis`: per node
    layer the eigenvectors of the centred Gram matrix, importances its eigenvalues (the
    variances), no whitening and no Jacobians. Returns a :class:`Basis` (kind "pca")."""
    truncation = _check_truncation(truncation)
    precision = _check_precision(precision)
    _check_batch(batch_size)
    with precision_scope("float32"):
        acts = sections.activations(model, inputs, batch_size)
    dtype = acts[-1].dtype
    layers = [_pca_layer(a, truncation, precision, dtype) for a in acts]
    return Basis(*[list(x) for x in zip(*layers)], names=sections.names, kind="pca")


def _check_basis(sections, basis):
    if not isinstance(basis, Basis):
        raise ConfigError("basis", described(f"a {type(basis).__name__}"), "must be a Basis (interaction_basis, pca_basis)")
    if tuple(basis.names) != tuple(sections.names):
        raise ConfigError("basis", described(f"node layers {basis.names}"),
                          f"must be built on the same node layers as sections: {sections.names}")
    _refuse_non_finite_tree(basis, "basis")
