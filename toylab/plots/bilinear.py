"""Figures for bilinear MLPs read by eigendecomposition (Pearce et al. 2024)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["eigenvector_grid", "spectra_plot", "truncation_plot", "regularisation_plot", "consistency_plot",
           "adversarial_plot"]


def _image_vector(name, v, shape, what):
    """A 1-D vector with at least h·w entries (the first h·w are the image's pixels)."""
    v = check.vector(name, v, what=what)
    if v.size < shape[0] * shape[1]:
        raise ConfigError(name, described(f"{v.size} entries"), f"must have at least h·w = {shape[0] * shape[1]} "
                          f"entries for the image shape {shape}")
    return v


def _settings(name, value, what, length=None, ndim=(1, 2)):
    """A dict of setting -> array, each of rank in ``ndim`` (last axis ``length`` when given)."""
    value = check.mapping(name, value, what)
    out = {}
    for k, v in value.items():
        a = check.array(name, v, f"{k!r}: {what}", ndim=ndim)
        if length is not None and (a.ndim == 0 or a.shape[-1] != length):
            raise ConfigError(name, described(f"{k!r} of shape {a.shape}"), f"must be {what}")
        out[k] = a
    return out


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
    ones (lower rows).

    positive, negative: (classes, k, d) eigenvectors, d ≥ h·w (the first h·w entries are
        drawn as the image; extra entries, e.g. a bias, are ignored).
    shape: the image's (h, w).
    values_pos, values_neg: (classes, k) their eigenvalues.
    title: optional figure title.
    """
    shape = check.shape2("shape", shape)
    positive = check.array("positive", positive, "a (classes, k, d) array of eigenvectors", ndim=3, nonempty=True)
    negative = check.array("negative", negative, "a (classes, k, d) array of eigenvectors", ndim=3)
    if negative.shape != positive.shape:
        raise ConfigError("negative", described(f"shape {negative.shape}"),
                          f"must have the shape of positive {positive.shape}")
    if positive.shape[2] < shape[0] * shape[1]:
        raise ConfigError("positive", described(f"shape {positive.shape}"),
                          f"must have d ≥ h·w = {shape[0] * shape[1]} for the image shape {shape}")
    n_cls, k = positive.shape[:2]
    values_pos = check.array("values_pos", values_pos, f"a ({n_cls}, {k}) array of eigenvalues", ndim=2)
    values_neg = check.array("values_neg", values_neg, f"a ({n_cls}, {k}) array of eigenvalues", ndim=2)
    for name, a in (("values_pos", values_pos), ("values_neg", values_neg)):
        if a.shape != (n_cls, k):
            raise ConfigError(name, described(f"shape {a.shape}"), f"must be (classes, k) = {(n_cls, k)}")
    title = check.title("title", title)
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
    the cumulative share of Σλ² in the top-k, per class.

    values: (classes, d) eigenvalues, each row sorted by |λ| descending (a 1-D (d,) array is
        one class).
    share_top: (classes, d) cumulative shares of Σλ² in the top k, the shape of ``values``.
    title: optional figure title.
    """
    values = check.array("values", values, "a (classes, d) array of eigenvalues", ndim=(1, 2), nonempty=True)
    values = values[None, :] if values.ndim == 1 else values
    share_top = check.array("share_top", share_top, "a (classes, d) array of shares", ndim=(1, 2))
    share_top = share_top[None, :] if share_top.ndim == 1 else share_top
    if share_top.shape != values.shape:
        raise ConfigError("share_top", described(f"shape {share_top.shape}"),
                          f"must have the shape of values {values.shape}")
    title = check.title("title", title)
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


def truncation_plot(ks, accuracy, full_accuracy=None, title=""):
    """Test accuracy when each class keeps only its top-k eigenvectors, per setting.

    ks: (K,) numbers of eigenvectors kept (> 0: log axis).
    accuracy: dict of setting -> (seeds, K) accuracies (a 1-D (K,) array is one seed); the
        median line and the min–max band are drawn.
    full_accuracy: optional dict of setting -> (seeds,) accuracies (or one number) of the
        full model, drawn dotted (its median); settings missing from it get no line.
    title: optional axes title.
    """
    ks = check.positive("ks", check.vector("ks", ks))
    accuracy = _settings("accuracy", accuracy, f"setting -> (seeds, {ks.size}) accuracies, one per k", ks.size)
    accuracy = {k: a[None, :] if a.ndim == 1 else a for k, a in accuracy.items()}
    full_accuracy = {} if full_accuracy is None else {
        k: check.vector("full_accuracy", v, what=f"{k!r}: (seeds,) accuracies of the full model")
        for k, v in check.mapping("full_accuracy", full_accuracy, "setting -> (seeds,) accuracies").items()}
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for (name, acc), color in zip(accuracy.items(), plt.cm.tab10.colors):
        ax.plot(ks, np.median(acc, 0), "o-", color=color, ms=3, label=name)
        ax.fill_between(ks, acc.min(0), acc.max(0), color=color, alpha=0.15)
        if name in full_accuracy:
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
    classes and seeds).

    vectors: dict of setting -> (seeds, d) top positive eigenvectors, d ≥ h·w (a 1-D (d,)
        array is one seed; with one seed it is drawn twice).
    shape: the image's (h, w).
    digit: the class the eigenvectors belong to (a label, shown in the title).
    ranks, edge: dicts of setting -> array of values (any shape, flattened), with the
        settings of ``vectors``.
    title: optional figure title.
    """
    shape = check.shape2("shape", shape)
    if digit is None or isinstance(digit, (dict, list, tuple, set)) or getattr(digit, "ndim", 0) != 0:
        raise ConfigError("digit", check.shown(digit), "must be one class label (a number or a string)")
    vectors = _settings("vectors", vectors, "setting -> (seeds, d) eigenvectors")
    for k, v in vectors.items():
        v = v[None, :] if v.ndim == 1 else v
        if v.shape[0] == 0 or v.shape[1] < shape[0] * shape[1]:
            raise ConfigError("vectors", described(f"{k!r} of shape {v.shape}"),
                              f"must be (seeds ≥ 1, d ≥ h·w = {shape[0] * shape[1]})")
        vectors[k] = v
    ranks = _settings("ranks", ranks, "setting -> array of effective ranks", ndim=None)
    edge = _settings("edge", edge, "setting -> array of edge-pixel masses", ndim=None)
    for arg, d in (("ranks", ranks), ("edge", edge)):
        missing = [k for k in vectors if k not in d]
        if missing:
            raise ConfigError(arg, described(f"keys {sorted(map(str, d))}"), f"needs every setting of vectors: "
                              f"missing {missing}")
    title = check.title("title", title)
    names = list(vectors)
    fig = plt.figure(figsize=(2.2 * len(names) + 4.5, 4.2))
    grid = fig.add_gridspec(2, len(names) + 2)
    for j, name in enumerate(names):
        for i in range(2):
            ax = fig.add_subplot(grid[i, j])
            v = vectors[name]
            _image(ax, v[i % len(v)], shape, f"{name}\nseed {i}" if i == 0 else f"seed {i}")
    for col, (values, label) in enumerate(((ranks, "effective rank (Σλ²)²/Σλ⁴"), (edge, "eigenvector mass on edge pixels"))):
        ax = fig.add_subplot(grid[:, len(names) + col])
        data = [values[n].ravel() for n in names]
        ax.boxplot(data, showfliers=False)
        ax.set_xticks(np.arange(1, len(names) + 1), names, rotation=30, fontsize=7)
        ax.set_title(label, fontsize=8)
    fig.suptitle(f"{title} (images: top positive eigenvector of digit {digit})", fontsize=10)
    fig.tight_layout()
    return fig


def consistency_plot(similarity, title=""):
    """Cosine similarity (after sign alignment) of matching top eigenvectors across seeds:
    one box per eigenvector index over classes, per setting.

    similarity: dict of setting -> (classes, k) similarities in [0, 1], every setting with
        the same k.
    title: optional axes title.
    """
    similarity = _settings("similarity", similarity, "setting -> (classes, k) similarities", ndim=2)
    names = list(similarity)
    k = similarity[names[0]].shape[1]
    for name, sim in similarity.items():
        if sim.shape[1] != k or sim.shape[0] == 0 or k == 0:
            raise ConfigError("similarity", described(f"{name!r} of shape {sim.shape}"),
                              f"must be (classes ≥ 1, k) with the same k ≥ 1 for every setting (first: {k})")
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(2.2 * k + 3, 3.6))
    width = 0.8 / len(names)
    for j, (name, color) in enumerate(zip(names, plt.cm.tab10.colors)):
        sim = similarity[name]
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
    mask kind in ``curves`` (name -> (len(strengths),)).

    image, mask, adversarial: 1-D vectors of at least h·w entries (the first h·w are drawn as
        the (h, w) image).
    shape: the image's (h, w).
    strengths: (s,) mask strengths (L2 norms).
    curves: dict of name -> (s,) accuracies, one line each.
    labels: the two predicted classes (clean, masked), shown in the titles.
    title: optional figure title.
    """
    shape = check.shape2("shape", shape)
    image = _image_vector("image", image, shape, "the clean image, a 1-D vector")
    mask = _image_vector("mask", mask, shape, "the eigenvector mask, a 1-D vector")
    adversarial = _image_vector("adversarial", adversarial, shape, "the masked image, a 1-D vector")
    strengths = check.vector("strengths", strengths)
    curves = {k: check.vector("curves", v, strengths.size, what=f"{k!r}: one accuracy per strength ({strengths.size})")
              for k, v in check.mapping("curves", curves, "name -> accuracy per strength").items()}
    labels = check.labels("labels", labels, 2)
    title = check.title("title", title)
    hw = shape[0] * shape[1]
    fig = plt.figure(figsize=(11, 3.2))
    grid = fig.add_gridspec(1, 5)
    for j, (v, name) in enumerate(((image, f"clean: predicted {labels[0]}"), (mask, "eigenvector mask"),
                                   (adversarial, f"masked: predicted {labels[1]}"))):
        ax = fig.add_subplot(grid[0, j])
        if j == 1:
            _image(ax, v, shape, name)
        else:
            ax.imshow(v[:hw].reshape(shape), cmap="gray_r")
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
