"""Figures for bilinear MLPs read by eigendecomposition (Pearce et al. 2024)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["eigenvector_grid", "spectra_plot", "truncation_plot", "regularisation_plot", "consistency_plot",
           "adversarial_plot"]


def _image(ax, v, shape, title="", scale=None):
    """One eigenvector as an image on a diverging map centred at 0 (sign is arbitrary: the
    output is λ(v·x)², so v and −v are the same feature)."""
    v = np.asarray(v)[: shape[0] * shape[1]].reshape(shape)
    s = float(np.max(np.abs(v))) if scale is None else scale
    ax.imshow(v, cmap="RdBu", vmin=-s, vmax=s)
    ax.set_xticks([])
    ax.set_yticks([])
    if title:
        ax.set_title(title, fontsize=7)


def eigenvector_grid(positive, negative, shape, values_pos, values_neg, title=""):
    """Per class (columns) the top positive eigenvectors (upper rows) and the top negative
    ones (lower rows). ``positive``/``negative``: (classes, k, d) vectors, ``values_*``:
    (classes, k) eigenvalues, ``shape``: the image's (h, w)."""
    positive, negative = np.asarray(positive), np.asarray(negative)
    n_cls, k = positive.shape[:2]
    fig, axes = plt.subplots(2 * k, n_cls, figsize=(1.25 * n_cls, 1.35 * 2 * k), squeeze=False)
    for c in range(n_cls):
        for i in range(k):
            _image(axes[i, c], positive[c, i], shape, f"{c}: λ={values_pos[c, i]:+.2f}")
            _image(axes[k + i, c], negative[c, i], shape, f"{c}: λ={values_neg[c, i]:+.2f}")
    axes[0, 0].set_ylabel("top +", fontsize=8)
    axes[k, 0].set_ylabel("top −", fontsize=8)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def spectra_plot(values, share_top, title=""):
    """Left: each class's eigenvalues sorted by magnitude (signed, one line per class); right:
    the cumulative share of Σλ² in the top-k, per class. ``values``: (classes, d) sorted by
    |λ| descending; ``share_top``: (classes, d) cumulative shares."""
    values, share_top = np.asarray(values), np.asarray(share_top)
    fig, (ax0, ax1) = plt.subplots(1, 2, figsize=(10, 3.6))
    ranks = np.arange(1, values.shape[1] + 1)
    colors = plt.cm.tab10(np.arange(values.shape[0]) % 10)
    for c, color in enumerate(colors):
        ax0.plot(ranks, values[c], ".-", color=color, lw=0.8, ms=3, label=str(c))
        ax1.plot(ranks, share_top[c], color=color, lw=1)
    ax0.axhline(0, color="k", lw=0.5)
    ax0.set_xscale("log")
    ax0.set_xlabel("eigenvalue rank (by |λ|)")
    ax0.set_ylabel("λ")
    ax0.legend(fontsize=6, ncol=2, title="class", title_fontsize=7)
    ax0.set_title("eigenvalues of each class's interaction matrix", fontsize=9)
    ax1.set_xscale("log")
    ax1.set_xlabel("k")
    ax1.set_ylabel("share of Σλ² in the top k")
    ax1.set_ylim(0, 1.02)
    ax1.set_title("low rank: a few eigenvalues carry most of the spectrum", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def truncation_plot(ks, accuracy, full_accuracy, title=""):
    """Test accuracy when each class keeps only its top-k eigenvectors, per setting.
    ``accuracy``: setting -> (seeds, len(ks)); ``full_accuracy``: setting -> (seeds,)."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (name, acc), color in zip(accuracy.items(), plt.cm.tab10.colors):
        acc = np.asarray(acc)
        ax.plot(ks, np.median(acc, 0), "o-", color=color, ms=3, label=name)
        ax.fill_between(ks, acc.min(0), acc.max(0), color=color, alpha=0.15)
        ax.axhline(np.median(full_accuracy[name]), color=color, ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("eigenvectors kept per class (k)")
    ax.set_ylabel("test accuracy")
    ax.legend(fontsize=7, title="dotted: full model", title_fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def regularisation_plot(vectors, shape, digit, ranks, edge, title=""):
    """One column per regularisation setting: the top positive eigenvector of ``digit`` for
    two seeds, then the effective rank and the edge-pixel mass of the top eigenvectors (all
    classes and seeds). ``vectors``: setting -> (seeds, d); ``ranks``/``edge``: setting ->
    array of values."""
    names = list(vectors)
    fig = plt.figure(figsize=(2.2 * len(names) + 4.5, 4.2))
    grid = fig.add_gridspec(2, len(names) + 2)
    for j, name in enumerate(names):
        for i in range(2):
            ax = fig.add_subplot(grid[i, j])
            v = np.asarray(vectors[name])
            _image(ax, v[i % len(v)], shape, f"{name}\nseed {i}" if i == 0 else f"seed {i}")
    for col, (values, label) in enumerate(((ranks, "effective rank (Σλ²)²/Σλ⁴"), (edge, "eigenvector mass on edge pixels"))):
        ax = fig.add_subplot(grid[:, len(names) + col])
        data = [np.asarray(values[n]).ravel() for n in names]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=30, fontsize=7)
        ax.set_title(label, fontsize=8)
    fig.suptitle(f"{title} (images: top positive eigenvector of digit {digit})", fontsize=10)
    fig.tight_layout()
    return fig


def consistency_plot(similarity, title=""):
    """Cosine similarity (after sign alignment) of matching top eigenvectors across seeds:
    one box per eigenvector index over classes, per setting. ``similarity``: setting ->
    (classes, k)."""
    names = list(similarity)
    k = np.asarray(similarity[names[0]]).shape[1]
    fig, ax = plt.subplots(figsize=(2.2 * k + 3, 3.6))
    width = 0.8 / len(names)
    for j, (name, color) in enumerate(zip(names, plt.cm.tab10.colors)):
        sim = np.asarray(similarity[name])
        pos = np.arange(k) + (j - (len(names) - 1) / 2) * width
        bp = ax.boxplot([sim[:, i] for i in range(k)], positions=pos, widths=width * 0.9, patch_artist=True,
                        showfliers=False)
        for box in bp["boxes"]:
            box.set_facecolor(color)
            box.set_alpha(0.5)
        ax.plot([], [], color=color, lw=6, alpha=0.5, label=name)
    ax.set_xticks(np.arange(k), [f"top {i + 1}" for i in range(k)])
    ax.set_ylim(0, 1.02)
    ax.set_ylabel("|cos| between seeds (mean over pairs)")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def adversarial_plot(image, mask, adversarial, shape, strengths, curves, labels, title=""):
    """An image, the eigenvector mask and the masked image (with the model's predictions in
    ``labels``: (clean, masked)), then the accuracy against the mask's strength for each
    mask kind in ``curves`` (name -> (len(strengths),))."""
    fig = plt.figure(figsize=(11, 3.2))
    grid = fig.add_gridspec(1, 5)
    for j, (v, name) in enumerate(((image, f"clean: predicted {labels[0]}"), (mask, "eigenvector mask"),
                                   (adversarial, f"masked: predicted {labels[1]}"))):
        ax = fig.add_subplot(grid[0, j])
        if j == 1:
            _image(ax, v, shape, name)
        else:
            ax.imshow(np.asarray(v).reshape(shape), cmap="gray_r")
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(name, fontsize=8)
    ax = fig.add_subplot(grid[0, 3:])
    for name, acc in curves.items():
        ax.plot(strengths, acc, "o-", ms=3, label=name)
    ax.set_xlabel("mask strength (L2 norm)")
    ax.set_ylabel("accuracy")
    ax.set_ylim(0, 1.02)
    ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
