"""Modules of the interaction graph: clustering, modularity, the share of cross-module weight."""

from __future__ import annotations

import numpy as np

from ...core.config import ConfigError, described
from .._validate import _refuse_non_finite_tree

__all__ = ["graph_modules", "modularity", "cross_module_share", "CLUSTER_METHODS"]

CLUSTER_METHODS = ("spectral", "leiden")


def _adjacency(edges):
    """The symmetric adjacency (N, N) of the whole graph, nodes layer by layer, and the
    offsets of each layer's block."""
    sizes = [np.asarray(edges[0]).shape[1]] + [np.asarray(e).shape[0] for e in edges]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    A = np.zeros((offsets[-1], offsets[-1]))
    for l, e in enumerate(edges):
        e = np.asarray(e, np.float64)
        A[offsets[l + 1]:offsets[l + 2], offsets[l]:offsets[l + 1]] = e
    return A + A.T, offsets


def _check_edges(edges):
    if not isinstance(edges, (list, tuple)) or not edges:
        raise ConfigError("edges", described(type(edges).__name__), "must be a non-empty list of per-block edge arrays")
    for l, (a, b) in enumerate(zip(edges, edges[1:])):
        if np.asarray(a).shape[0] != np.asarray(b).shape[1]:
            raise ConfigError("edges", described(f"blocks of shapes {[np.asarray(e).shape for e in edges]}"),
                              "must chain: block l's rows are block l+1's columns")
    _refuse_non_finite_tree({f"block {l}": np.asarray(e) for l, e in enumerate(edges)}, "edges")
    for e in edges:
        if np.asarray(e).ndim != 2 or np.any(np.asarray(e) < 0):
            raise ConfigError("edges", described("an entry that is negative or a block not 2-D"),
                              "must be non-negative finite 2-D arrays")


def _kmeans(X, k, seed, restarts=8, iters=100):
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        # k-means++ start
        centres = [X[rng.integers(len(X))]]
        for _ in range(1, k):
            d2 = np.min(((X[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else None
            centres.append(X[rng.choice(len(X), p=p)])
        centres = np.asarray(centres)
        for _ in range(iters):
            labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            new = np.asarray([X[labels == c].mean(0) if np.any(labels == c) else centres[c] for c in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        cost = ((X - centres[labels]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def graph_modules(edges, n_modules: int | None = None, *, method: str = "spectral", min_weight: float = 0.0,
                  seed: int = 0) -> list:
    """Modules of the interaction graph: a label per feature, one int array per node layer
    (-1 for a feature with no edge above ``min_weight``, which is left out).

    ``method="spectral"``: the ``n_modules`` leading eigenvectors of the normalised adjacency
    D^-½ A D^-½ (A symmetric, edge weights), rows normalised, k-means (k-means++, 8 restarts).
    ``method="leiden"``: Leiden community detection maximising weighted modularity
    (``pip install leidenalg``; ``n_modules`` is ignored)."""
    _check_edges(edges)
    if method not in CLUSTER_METHODS:
        raise ConfigError("method", method, f"must be one of {', '.join(CLUSTER_METHODS)}")
    if method == "spectral" and (isinstance(n_modules, bool) or not isinstance(n_modules, (int, np.integer))
                                 or n_modules < 1):
        raise ConfigError("n_modules", n_modules, "must be a positive integer (the modules to find)")
    A, offsets = _adjacency(edges)
    A = np.where(A > min_weight, A, 0.0)
    alive = A.sum(1) > 0
    idx = np.flatnonzero(alive)
    labels = np.full(A.shape[0], -1)
    if idx.size:
        sub = A[np.ix_(idx, idx)]
        if method == "spectral":
            if isinstance(n_modules, bool) or not isinstance(n_modules, (int, np.integer)) or not 1 <= n_modules <= idx.size:
                raise ConfigError("n_modules", n_modules, f"must be an integer in 1..{idx.size} (the connected features)")
            d = sub.sum(1)
            S = sub / np.sqrt(np.outer(d, d))
            w, v = np.linalg.eigh(S)
            X = v[:, -int(n_modules):]
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
            labels[idx] = _kmeans(X, int(n_modules), seed)
        else:
            try:
                import igraph
                import leidenalg
            except ImportError as e:
                raise ImportError("method='leiden' needs leidenalg: pip install leidenalg") from e
            rows, cols = np.nonzero(np.triu(sub))
            g = igraph.Graph(n=idx.size, edges=list(zip(rows.tolist(), cols.tolist())))
            part = leidenalg.find_partition(g, leidenalg.ModularityVertexPartition, weights=sub[rows, cols].tolist(),
                                            seed=seed)
            labels[idx] = np.asarray(part.membership)
    return [labels[offsets[l]:offsets[l + 1]] for l in range(len(offsets) - 1)]


def _flat_labels(edges, labels):
    _check_edges(edges)
    A, offsets = _adjacency(edges)
    if not isinstance(labels, (list, tuple)) or len(labels) != len(offsets) - 1 or any(
            np.asarray(lab).shape != (offsets[l + 1] - offsets[l],) for l, lab in enumerate(labels)):
        raise ConfigError("labels", described(f"{len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__}"),
                          "must be one label array per node layer, as graph_modules returns")
    # A NaN label compares False with everything, so it would be left out like -1.
    _refuse_non_finite_tree({f"layer {l}": np.asarray(lab) for l, lab in enumerate(labels)}, "labels")
    return A, np.concatenate([np.asarray(lab) for lab in labels])


def modularity(edges, labels) -> float:
    """Newman's weighted modularity Q = Σ_c [W_cc/W − (d_c/W)²] of the interaction graph
    under ``labels`` (W: total edge weight counted both ways; features labelled -1 left out):
    0 for a partition no better than chance, up to 1 − 1/k for k disconnected modules."""
    A, lab = _flat_labels(edges, labels)
    keep = lab >= 0
    A, lab = A[np.ix_(keep, keep)], lab[keep]
    W = A.sum()
    if W <= 0:
        return 0.0
    q = 0.0
    for c in np.unique(lab):
        m = lab == c
        q += A[np.ix_(m, m)].sum() / W - (A[m].sum() / W) ** 2
    return float(q)


def cross_module_share(edges, labels) -> float:
    """The share of the graph's edge weight between features of different modules (the
    quantity the degeneracy paper's modularity argument needs small: modules whose
    interactions are weak contribute their degeneracies independently)."""
    A, lab = _flat_labels(edges, labels)
    keep = lab >= 0
    A, lab = A[np.ix_(keep, keep)], lab[keep]
    W = A.sum()
    return float(A[lab[:, None] != lab[None, :]].sum() / W) if W > 0 else 0.0
