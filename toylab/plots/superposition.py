"""Figures of the toy models of superposition: arrays in, matplotlib Figure out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..analysis.superposition import FRACTION_LINES, PHASE_NAMES

__all__ = ["gram_grid", "dimensions_per_feature_plot", "feature_dimensionality_plot", "phase_diagram",
           "feature_geometry", "abs_computation_plot"]


def gram_grid(grams, biases, row_labels, col_labels, title=""):
    """WᵀW heatmaps (rows × columns) with the bias vector drawn as a strip under each."""
    rows, cols = len(row_labels), len(col_labels)
    fig, axes = plt.subplots(2 * rows, cols, figsize=(1.5 * cols + 0.6, 2.1 * rows + 0.4),
                             gridspec_kw={"height_ratios": [8, 1] * rows}, squeeze=False)
    for r in range(rows):
        for c in range(cols):
            ax, bx = axes[2 * r, c], axes[2 * r + 1, c]
            ax.imshow(grams[r][c], cmap="RdBu", vmin=-1, vmax=1)
            bx.imshow(np.asarray(biases[r][c])[None, :], cmap="RdBu", vmin=-1, vmax=1, aspect="auto")
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


def _reference_lines(ax, lines, x, dx, dy, color, ls, lw):
    """Horizontal reference lines, each labelled at x·dx, y+dy."""
    for name, y in lines:
        ax.axhline(y, color=color, lw=lw, ls=ls)
        ax.text(x * dx, y + dy, name, color=color, fontsize=7, va="center" if dy == 0 else "baseline")


def dimensions_per_feature_plot(inverse_density, dstar):
    """D* = m/‖W‖_F² against 1/(1−S) on a log axis, with the sticky values 1 and 1/2."""
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
    """Each feature's D_i against 1/(1−S), with the fraction lines (1, 3/4, 2/3, 1/2, 2/5, 3/8)."""
    fig, ax = plt.subplots(figsize=(6, 3.6))
    for x, d in zip(inverse_density, dims):
        d = np.asarray(d)
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
    """The n=2, m=1 phase diagram: phases[i, j] at relative importance i, density j."""
    from matplotlib.colors import ListedColormap

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
    mid = (c[1:] + c[:-1]) / 2
    return np.concatenate([[c[0] - (mid[0] - c[0])], mid, [c[-1] + (c[-1] - mid[-1])]])


def feature_geometry(weights, titles, importance=None):
    """Columns of 2-D W matrices drawn as arrows from the origin, one panel per model."""
    fig, axes = plt.subplots(1, len(weights), figsize=(2.1 * len(weights), 2.8), squeeze=False)
    for ax, W, title in zip(axes[0], weights, titles):
        W = np.asarray(W)
        colors = plt.cm.viridis(np.linspace(0, 0.9, W.shape[1]))
        for i in range(W.shape[1]):
            ax.plot([0, W[0, i]], [0, W[1, i]], color=colors[i], lw=2)
            ax.plot(W[0, i], W[1, i], "o", color=colors[i], ms=4)
        ax.set_xlim(-1.5, 1.5), ax.set_ylim(-1.5, 1.5), ax.set_aspect("equal")
        ax.set_xticks([]), ax.set_yticks([])
        ax.set_title(title, fontsize=8)
    fig.tight_layout()
    return fig


def abs_computation_plot(densities, n_computed, n_hidden, per_feature_error):
    """Features whose |x| is computed against density, and each feature's relative error."""
    fig, (a, b) = plt.subplots(1, 2, figsize=(8, 3.2))
    a.plot(densities, n_computed, "o-", color="k")
    a.axhline(n_hidden, color="tab:red", ls="--", lw=0.8)
    a.text(densities[0], n_hidden + 0.3, f"hidden neurons m = {n_hidden}", color="tab:red", fontsize=8)
    a.set_xscale("log"), a.invert_xaxis()
    a.set_xlabel("feature density 1 − S"), a.set_ylabel("features computed (Σ R²)")
    for d, err in zip(densities, per_feature_error):
        b.plot(np.sort(err), "o-", ms=3, label=f"1−S={d:g}")
        b.set_xlabel("feature (sorted)"), b.set_ylabel("fraction of variance unexplained")
    b.legend(fontsize=7)
    fig.tight_layout()
    return fig
