"""The interaction graph between adjacent node layers' features, and ablations of features and edges."""

from __future__ import annotations

from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ...core.config import ConfigError, described
from ...core.tracing import is_traced
from .._validate import _refuse_non_finite
from .basis import Basis, _check_basis, _check_batch, _chunked_mean
from .sections import Sections, _map_examples

__all__ = ["interaction_graph", "edges_for_mass", "output_scores", "feature_ablation", "edge_ablation", "fewest_kept"]


def _check_n_alpha(n_alpha):
    if isinstance(n_alpha, bool) or not isinstance(n_alpha, (int, np.integer)) or not 1 <= n_alpha <= 64:
        raise ConfigError("n_alpha", n_alpha, "must be an integer in 1..64 (Gauss–Legendre nodes on [0, 1])")


def _feature_map(sections, model, basis, i):
    """f̂^{l+1} as a function of f̂^l (the section in the two layers' bases)."""
    f = sections.maps[i]
    mean, C_pinv = basis.mean[i], basis.C_pinv[i]
    mean_n, C_n = basis.mean[i + 1], basis.C[i + 1]
    return lambda feats: (f(model, mean + feats @ C_pinv) - mean_n) @ C_n


def interaction_graph(sections: Sections, model, inputs, basis: Basis, *, n_alpha: int = 8,
                      batch_size: int | None = 256) -> list:
    """Edges between adjacent node layers' features: a list of (d_{l+1}, d_l) arrays,
    ``edges[l][j, i]`` from feature i of layer l to feature j of layer l+1 (see the module
    docstring for the formula; ``n_alpha`` Gauss–Legendre nodes on [0, 1]). Non-negative;
    zero for dropped features. Works with either basis (LIB or PCA)."""
    _check_basis(sections, basis)
    _check_n_alpha(n_alpha)
    _check_batch(batch_size)
    acts = sections.activations(model, inputs, batch_size)
    nodes, weights = np.polynomial.legendre.leggauss(int(n_alpha))
    alphas = jnp.asarray((nodes + 1) / 2, acts[0].dtype)
    w = jnp.asarray(weights / 2, acts[0].dtype)
    edges = []
    for i in range(len(acts) - 1):
        F = _feature_map(sections, model, basis, i)
        jac = jax.jacrev(F)

        def attribution(feats, jac=jac):
            grads = jax.vmap(lambda a: jac(a * feats))(alphas)  # (n_alpha, d_next, d)
            A = jnp.tensordot(w, grads, axes=1) * feats[None, :]
            return A ** 2
        E = _chunked_mean(attribution, basis._features(i, acts[i]), batch_size)
        edges.append(E * basis.kept[i + 1][:, None] * basis.kept[i][None, :])
    return edges


def edges_for_mass(edges, share: float = 0.9):
    """How many of the largest edges of one block (any shape) carry ``share`` of its total.

    A float scalar (a whole number), so that edges holding NaN or inf under a trace can give
    NaN rather than a count; concrete ones are refused."""
    if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) or not 0 < share <= 1:
        raise ConfigError("share", share, "must be a number in (0, 1]")
    _refuse_non_finite(edges, "edges")
    e = jnp.sort(jnp.ravel(jnp.asarray(edges)))[::-1]
    total = e.sum()
    csum = jnp.cumsum(e)
    count = jnp.where(total > 0, jnp.sum(csum < share * total * (1 - 1e-7)) + 1, 0)
    out = jnp.result_type(e.dtype, jnp.float32)
    return jnp.where(jnp.all(jnp.isfinite(e)), count.astype(out), jnp.nan)




def output_scores(outputs, labels):
    """(accuracy, loss) of model outputs (n, c): integer labels (n,) → argmax accuracy and
    mean cross-entropy; float targets (n, c) → accuracy NaN and the mean squared error.
    Both NaN when traced outputs or targets hold NaN or inf (concrete ones are refused)."""
    _refuse_non_finite(outputs, "outputs")
    _refuse_non_finite(labels, "labels")
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        logp = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-1)
        loss = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
        # argmax picks a NaN entry as readily as the largest, which would look like an answer.
        finite = jnp.all(jnp.isfinite(outputs))
        accuracy = jnp.mean(jnp.argmax(outputs, axis=-1) == labels)
        return jnp.where(finite, accuracy, jnp.nan), jnp.where(finite, loss, jnp.nan)
    finite = jnp.all(jnp.isfinite(outputs)) & jnp.all(jnp.isfinite(labels))
    loss = jnp.mean(jnp.sum((outputs - labels) ** 2, axis=-1))
    return jnp.asarray(jnp.nan, jnp.float32), jnp.where(finite, loss, jnp.nan)


def _check_labels(labels, n, out_dim):
    _refuse_non_finite(labels, "labels")
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        ok = labels.shape == (n,)
    else:
        ok = labels.shape == (n, out_dim)
    if not ok:
        raise ConfigError("labels", described(f"shape {labels.shape}"),
                          f"must be integer class labels ({n},) or float targets ({n}, {out_dim})")
    return labels


def _check_layer(sections, layer, last_ok=False):
    top = len(sections) - (1 if last_ok else 2)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= top:
        raise ConfigError("layer", layer, f"must be a node layer index in 0..{top} ({', '.join(sections.names)})")
    return int(layer)


def _check_ks(ks, n):
    if is_traced(ks):  # traced (inside jit): only the shape can be checked
        if ks.ndim != 1:
            raise ConfigError("ks", described(f"shape {ks.shape}"), "must be a 1-D array of counts")
        return ks
    ks = np.atleast_1d(np.asarray(ks))
    if ks.ndim != 1 or not np.issubdtype(ks.dtype, np.integer) or ks.size == 0 or ks.min() < 0 or ks.max() > n:
        raise ConfigError("ks", described(f"{ks.size} value(s)"), f"must be integers in 0..{n}")
    return jnp.asarray(ks)


def feature_ablation(sections: Sections, model, inputs, labels, basis: Basis, layer: int, ks,
                     batch_size: int | None = None):
    """Keep the top-k features (by importance) of node layer ``layer`` and zero the rest
    (for centred features: the mean activation along them), for each k of ``ks``; run the
    rest of the model. Returns (accuracy, loss), each (len(ks),)."""
    _check_basis(sections, basis)
    layer = _check_layer(sections, layer, last_ok=True)
    inputs = sections._check(inputs)
    acts = sections.activations(model, inputs, batch_size)
    labels = _check_labels(labels, acts[0].shape[0], acts[-1].shape[-1])
    d = acts[layer].shape[-1]
    ks = _check_ks(ks, d)
    feats = basis._features(layer, acts[layer])

    def score(k):
        keep = (jnp.arange(d) < k) & basis.kept[layer]
        a = basis._reconstruct(layer, feats * keep)
        out = jax.vmap(lambda x: sections._forward(model, x, layer))(a)
        return output_scores(out, labels)
    return jax.lax.map(score, ks)


def edge_ablation(sections: Sections, model, inputs, labels, basis: Basis, edges, layer: int, ks,
                  batch_size: int | None = None):
    """Keep the k largest edges of the block from node layer ``layer`` to the next (``edges``
    from :func:`interaction_graph`, that block's (d_{l+1}, d_l) array), for each k of ``ks``:
    every feature j of layer l+1 is computed from the features i of layer l with a kept
    edge (i, j), the others at their baseline 0; the rest of the model runs as usual.
    Returns (accuracy, loss), each (len(ks),)."""
    _check_basis(sections, basis)
    layer = _check_layer(sections, layer)
    inputs = sections._check(inputs)
    acts = sections.activations(model, inputs, batch_size)
    labels = _check_labels(labels, acts[0].shape[0], acts[-1].shape[-1])
    edges = jnp.asarray(_refuse_non_finite(edges, "edges"))
    d, d_next = acts[layer].shape[-1], acts[layer + 1].shape[-1]
    if edges.shape != (d_next, d):
        raise ConfigError("edges", described(f"shape {edges.shape}"), f"must be the block's ({d_next}, {d}) edges")
    ks = _check_ks(ks, d * d_next)
    order = jnp.argsort(-edges.ravel())
    rank = jnp.empty_like(order).at[order].set(jnp.arange(order.size)).reshape(edges.shape)
    F = _feature_map(sections, model, basis, layer)
    feats = basis._features(layer, acts[layer])

    def next_features(x, keep):  # x (d,), keep (d_next, d) → (d_next,)
        return jax.vmap(lambda j, m: F(x * m)[j])(jnp.arange(d_next), keep)

    # NaN edges (traced) would leave which edges are kept arbitrary, yet the outputs finite.
    edges_finite = jnp.all(jnp.isfinite(edges))

    def score(k):
        keep = rank < k
        nf = _map_examples(lambda x: next_features(x, keep), feats, batch_size)
        a = basis._reconstruct(layer + 1, nf * basis.kept[layer + 1])
        out = jax.vmap(lambda x: sections._forward(model, x, layer + 1))(a)
        return tuple(jnp.where(edges_finite, v, jnp.nan) for v in output_scores(out, labels))
    return jax.lax.map(score, ks)


def fewest_kept(score: Callable, n: int, ok: Callable) -> int:
    """The smallest k in 0..n with ``ok(score(k))`` by bisection, assuming that keeping more
    never turns a pass into a fail (checked at n: if ``ok(score(n))`` fails, returns n + 1).
    ``score(k)`` may be any host function (e.g. one point of :func:`edge_ablation`)."""
    if not ok(score(n)):
        return n + 1
    lo, hi = -1, n  # ok fails at lo (or lo is below the range), holds at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(score(mid)):
            hi = mid
        else:
            lo = mid
    return hi
