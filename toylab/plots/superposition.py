"""Figures of the toy models of superposition: arrays in, matplotlib Figure out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..analysis.superposition import FRACTION_LINES, PHASE_NAMES
from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["gram_grid", "dimensions_per_feature_plot", "feature_dimensionality_plot", "phase_diagram",
           "feature_geometry", "abs_computation_plot"]


def gram_grid(grams, biases, row_labels, col_labels, title=""):
    """WᵀW heatmaps (rows × columns) with the bias vector drawn as a strip under each.

    grams: rows × columns of (n, n) matrices (a nested list, or an array of shape
        (rows, columns, n, n)); n may differ between cells.
    biases: rows × columns of (n,) bias vectors, n as in the matching gram.
    row_labels, col_labels: one label per row / per column.
    title: optional figure title.
    """
    row_labels = check.labels("row_labels", row_labels)
    col_labels = check.labels("col_labels", col_labels)
    rows, cols = len(row_labels), len(col_labels)
    if rows == 0 or cols == 0:
        raise ConfigError("row_labels" if rows == 0 else "col_labels", [], "must name at least one row / column")
    title = check.title("title", title)
    grams = _cells("grams", grams, rows, cols, 2, "an (n, n) matrix")
    biases = _cells("biases", biases, rows, cols, 1, "an (n,) vector")
    for r in range(rows):
        for c in range(cols):
            g, b = grams[r][c], biases[r][c]
            if g.shape[0] != g.shape[1]:
                raise ConfigError("grams", described(f"shape {g.shape} at row {r}, column {c}"),
                                  "must be square (n, n)")
            if b.shape[0] != g.shape[0]:
                raise ConfigError("biases", described(f"shape {b.shape} at row {r}, column {c}"),
                                  f"must have one entry per feature of its gram ({g.shape[0]})")
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.5 * cols + 0.6, 2.1 * rows + 0.4),
                             gridspec_kw={"height_ratios": [8, 1] * rows}, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax, bx = axes[2 * r, c], axes[2 * r + 1, c]
            ax.imshow(grams[r][c], cmap="RdBu", vmin=-1, vmax=1)
            bx.imshow(biases[r][c][None, :], cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
            for a in (ax, bx):
                a.set_xticks([]), a.set_yticks([])
            if r == 0:
                ax.set_title(col_labels[c], fontsize=8)
            if c == 0:
                ax.set_ylabel(row_labels[r], fontsize=9)
                bx.set_ylabel("b", fontsize=8, rotation=0, labelpad=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def _cells(name, value, rows, cols, ndim, what):
    """rows × cols arrays of rank ``ndim`` from a nested list or one stacked array."""
    what_all = f"{rows} rows of {cols} entries, each {what}"
    if value is None or isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != rows:
        raise ConfigError(name, check.shown(value), f"must be {what_all}")
    out = []
    for r, row in enumerate(value):
        if row is None or isinstance(row, (str, bytes)) or not hasattr(row, "__len__") or len(row) != cols:
            raise ConfigError(name, check.shown(value), f"must be {what_all} (row {r} is not)")
        out.append([check.array(name, cell, f"{what_all} (row {r}, column {c} is not)", ndim=ndim, nonempty=True)
                    for c, cell in enumerate(row)])
    return out


def _reference_lines(ax, lines, x, dx, dy, color, ls, lw):
    """Horizontal reference lines, each labelled at x·dx, y+dy."""
    for name, y in lines:
        ax.axhline(y, color=color, lw=lw, ls=ls)
        ax.text(x * dx, y + dy, name, color=color, fontsize=7, va="center" if dy == 0 else "baseline")


def dimensions_per_feature_plot(inverse_density, dstar):
    """D* = m/‖W‖_F² against 1/(1−S) on a log axis, with the sticky values 1 and 1/2.

    inverse_density: (k,) values of 1/(1−S), each > 0 (log axis).
    dstar: (k,) dimensions per feature D*, one per density.
    """
    inverse_density = check.positive("inverse_density", check.vector("inverse_density", inverse_density))
    dstar = check.vector("dstar", dstar, inverse_density.size)
    fig, ax = plt.subplots(figsize=(5, 3.2))
    ax.plot(inverse_density, dstar, "o-", color="k", ms=4)
    _reference_lines(ax, (("1", 1.0), ("1/2", 0.5)), inverse_density[0], 1.0, 0.02, "tab:red", "--", 0.8)
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 − S)")
    ax.set_ylabel("dimensions per feature D*")
    ax.set_ylim(0, 1.1)
    fig.tight_layout()
    return fig


def feature_dimensionality_plot(inverse_density, dims, dstar=None):
    """Each feature's D_i against 1/(1−S), with the fraction lines (1, 3/4, 2/3, 1/2, 2/5, 3/8).

    inverse_density: (k,) values of 1/(1−S), each > 0 (log axis).
    dims: one 1-D array of feature dimensionalities D_i per density (a list, or a (k, n)
        array); features with D_i = 0 (not learned) are not drawn.
    dstar: optional (k,) D* per density, drawn as a line.
    """
    inverse_density = check.positive("inverse_density", check.vector("inverse_density", inverse_density))
    k = inverse_density.size
    if dims is None or isinstance(dims, (str, bytes)) or not hasattr(dims, "__len__") or len(dims) != k:
        raise ConfigError("dims", check.shown(dims), f"must give one 1-D array of D_i per density ({k})")
    dims = [check.vector("dims", d, nonempty=False, what=f"one 1-D array of D_i per density ({k})") for d in dims]
    dstar = check.vector("dstar", dstar, k, optional=True)
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for x, d in zip(inverse_density, dims):
        d = d[d > 0]  # features not learned are not drawn
        jitter = np.exp(np.random.default_rng(0).uniform(-0.06, 0.06, d.shape))
        ax.scatter(x * jitter, d, s=6, alpha=0.5, color="tab:blue")
    if dstar is not None:
        ax.plot(inverse_density, dstar, color="k", lw=1, label="D*")
        ax.legend(fontsize=8, loc="upper right")
    _reference_lines(ax, FRACTION_LINES[:-1], inverse_density[-1], 1.15, 0.0, "gray", ":", 0.6)
    ax.set_xscale("log")
    ax.set_xlabel("1 / (1 − S)")
    ax.set_ylabel("feature dimensionality D_i")
    ax.set_ylim(0, 1.05)
    fig.tight_layout()
    return fig


def phase_diagram(phases, densities, importances):
    """The n=2, m=1 phase diagram: phases[i, j] at relative importance i, density j.

    phases: (len(importances), len(densities)) phase indices 0, 1, 2 (the order of
        ``PHASE_NAMES``).
    densities: (j,) feature densities 1 − S, each > 0 (drawn as log10).
    importances: (i,) relative importances of the extra feature, each > 0 (log10).
    """
    from matplotlib.colors import ListedColormap

    densities = check.positive("densities", check.vector("densities", densities), "it is drawn as log10")
    importances = check.positive("importances", check.vector("importances", importances), "it is drawn as log10")
    phases = check.array("phases", phases, ndim=2)
    if phases.shape != (importances.size, densities.size):
        raise ConfigError("phases", described(f"shape {phases.shape}"),
                          f"must be (len(importances), len(densities)) = {(importances.size, densities.size)}")

    fig, ax = plt.subplots(figsize=(5, 4))
    cmap = ListedColormap(["#d9d9d9", "#4c72b0", "#dd8452"])
    x = np.log10(densities)
    y = np.log10(importances)
    ax.pcolormesh(_edges(x), _edges(y), phases, cmap=cmap, vmin=-0.5, vmax=2.5)
    ax.set_xlabel("feature density 1 − S (log10)")
    ax.set_ylabel("relative importance of extra feature (log10)")
    ax.invert_xaxis()
    handles = [plt.Rectangle((0, 0), 1, 1, color=cmap(i)) for i in range(3)]
    ax.legend(handles, PHASE_NAMES, fontsize=7, loc="lower left")
    fig.tight_layout()
    return fig


def _edges(c):
    c = np.asarray(c, float)
    if c.size == 1:
        return np.array([c[0] - 0.5, c[0] + 0.5])
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def feature_geometry(weights, titles, importance=None):
    """Columns of 2-D W matrices drawn as arrows from the origin, one panel per model.

    weights: one (2, n) matrix W per model (a list, or a (models, 2, n) array); n may differ
        between models.
    titles: one panel title per model.
    importance: optional (n,) feature importances, shared by every model with that many
        features, that set the colours (default: colour by feature index, which is the
        importance order in these toys).
    """
    if weights is None or isinstance(weights, (str, bytes)) or not hasattr(weights, "__len__") or len(weights) == 0:
        raise ConfigError("weights", check.shown(weights), "must be a non-empty list of (2, n) matrices")
    weights = [check.array("weights", W, "a list of (2, n) matrices", ndim=2) for W in weights]
    for W in weights:
        if W.shape[0] != 2:
            raise ConfigError("weights", described(f"a matrix of shape {W.shape}"), "must be a list of (2, n) matrices")
    titles = check.labels("titles", titles, len(weights))
    importance = check.vector("importance", importance, optional=True)
    if importance is not None and any(W.shape[1] != importance.size for W in weights):
        raise ConfigError("importance", described(f"shape {importance.shape}"),
                          "must give one importance per feature (column of each W)")
    fig, axes = plt.subplots(1, len(weights), figsize=(2.1 * len(weights), 2.8), squeeze=False)
    for ax, W, title in zip(axes[0], weights, titles):
        if importance is None:
            colors = plt.cm.viridis(np.linspace(0, 0.9, W.shape[1]))
        else:
            span = np.ptp(importance) or 1.0
            colors = plt.cm.viridis(0.9 * (importance.max() - importance) / span)
        for i in range(W.shape[1]):
            ax.plot([0, W[0, i]], [0, W[1, i]], color=colors[i], lw=2)
            ax.plot(W[0, i], W[1, i], "o", color=colors[i], ms=4)
        ax.set_xlim(-1.5, 1.5), ax.set_ylim(-1.5, 1.5), ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def abs_computation_plot(densities, n_computed, n_hidden, per_feature_error):
    """Features whose |x| is computed against density, and each feature's relative error.

    densities: (k,) feature densities 1 − S, each > 0 (log axis).
    n_computed: (k,) number of features computed (Σ R²) at each density.
    n_hidden: the number of hidden neurons m (a number), drawn as a reference line.
    per_feature_error: one 1-D array of per-feature fractions of variance unexplained per
        density (a list, or a (k, n) array).
    """
    densities = check.positive("densities", check.vector("densities", densities))
    k = densities.size
    n_computed = check.vector("n_computed", n_computed, k)
    n_hidden = check.number("n_hidden", n_hidden, "the number of hidden neurons (a number)")
    if per_feature_error is None or isinstance(per_feature_error, (str, bytes)) or \
            not hasattr(per_feature_error, "__len__") or len(per_feature_error) != k:
        raise ConfigError("per_feature_error", check.shown(per_feature_error),
                          f"must give one 1-D array of errors per density ({k})")
    per_feature_error = [check.vector("per_feature_error", e, what=f"one 1-D array of errors per density ({k})")
                         for e in per_feature_error]
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.plot(densities, n_computed, "o-", color="k")
    a.axhline(n_hidden, color="tab:red", ls="--", lw=0.8)
    a.text(densities[0], n_hidden + 0.3, f"hidden neurons m = {check.fmt(n_hidden)}", color="tab:red", fontsize=8)
    a.set_xscale("log"), a.invert_xaxis()
    a.set_xlabel("feature density 1 − S"), a.set_ylabel("features computed (Σ R²)")
    for d, err in zip(densities, per_feature_error):
        b.plot(np.sort(err), "o-", ms=3, label=f"1−S={d:g}")
        b.set_xlabel("feature (sorted)"), b.set_ylabel("fraction of variance unexplained")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig
