"""Figures of the interaction basis: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["interaction_graph_plot", "ablation_curves_plot", "edge_counts_plot", "fourier_labels_plot"]


def _wrapped(title: str, width: int) -> str:
    return textwrap.fill(title, width) if title else title


def interaction_graph_plot(edges, names, importances=None, modules=None, top: int = 24, ax=None, title: str = ""):
    """The interaction graph: node layers left to right, each layer's ``top`` most important
    features top to bottom (marker area ∝ importance), edges as lines whose width and
    opacity follow their weight relative to the block's largest. ``modules`` (one label
    array per layer, from graph_modules) colours the features; -1 grey."""
    n_layers = len(edges) + 1
    sizes = [np.asarray(edges[0]).shape[1]] + [np.asarray(e).shape[0] for e in edges]
    shown = [min(top, s) for s in sizes]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 * n_layers + 1, 6))
    y = [-np.arange(n) for n in shown]
    for l, e in enumerate(edges):
        e = np.asarray(e, np.float64)[:shown[l + 1], :shown[l]]
        scale = e.max() if e.size and e.max() > 0 else 1.0
        js, is_ = np.nonzero(e > 1e-3 * scale)
        order = np.argsort(e[js, is_])
        for j, i in zip(js[order], is_[order]):
            w = e[j, i] / scale
            ax.plot([l, l + 1], [y[l][i], y[l + 1][j]], color="C0", lw=0.3 + 2.5 * w, alpha=0.15 + 0.75 * w, zorder=1)
    cmap = plt.get_cmap("tab10")
    for l in range(n_layers):
        imp = None if importances is None else np.asarray(importances[l], np.float64)[:shown[l]]
        area = 30 if imp is None or imp.max() <= 0 else 10 + 90 * np.sqrt(imp / imp.max())
        if modules is None:
            colours = "k"
        else:
            lab = np.asarray(modules[l])[:shown[l]]
            colours = [cmap(int(c) % 10) if c >= 0 else (0.6, 0.6, 0.6, 1.0) for c in lab]
        ax.scatter(np.full(shown[l], l), y[l], s=area, c=colours, zorder=3, edgecolors="white", linewidths=0.5)
    if importances is None:
        ticks = [f"{n}\n({sizes[l]} dims)" for l, n in enumerate(names)]
    else:
        ticks = [f"{n}\n({int(np.sum(np.asarray(importances[l]) > 0))} features of {sizes[l]} dims)"
                 for l, n in enumerate(names)]
    ax.set_xticks(range(n_layers), ticks, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.4, n_layers - 0.6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(_wrapped(title, 70), fontsize=9)
    return fig if fig is not None else ax.figure


def ablation_curves_plot(curves: dict, names, full_accuracy: float, target: float, title: str = ""):
    """Accuracy when only the top-k features of one node layer are kept, one panel per node
    layer: ``curves[kind][layer] = (ks, accuracy)`` for kind "LIB" and "PCA"; the full
    model's accuracy and the target dashed."""
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for l, (ax, name) in enumerate(zip(axes[0], names)):
        for c, (kind, per_layer) in enumerate(curves.items()):
            ks, acc = per_layer[l]
            ax.plot(ks, acc, marker=".", color=f"C{c}", label=kind)
        ax.axhline(full_accuracy, color="0.5", lw=0.8, ls=":", label="full model")
        ax.axhline(target, color="C3", lw=0.8, ls="--", label=f"target {target:.3g}")
        ax.set(xlabel="features kept (k)", title=name, ylim=(-0.02, 1.02))
        ax.set_xscale("symlog", linthresh=10)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(_wrapped(title, 120), fontsize=9)
    fig.tight_layout()
    return fig


def edge_counts_plot(blocks, counts: dict, totals, ylabel: str, title: str = ""):
    """Grouped bars per block (e.g. "resid_pre.0 → resid_mid.0"): ``counts[kind]`` one number
    per block for each basis; ``totals`` the block's possible edges, written above."""
    fig, ax = plt.subplots(figsize=(2.4 * len(blocks) + 1.5, 3.6))
    x = np.arange(len(blocks))
    width = 0.8 / max(len(counts), 1)
    for c, (kind, values) in enumerate(counts.items()):
        bars = ax.bar(x + (c - (len(counts) - 1) / 2) * width, values, width, color=f"C{c}", label=kind)
        ax.bar_label(bars, [f"{v:g}" for v in values], fontsize=7)
    ax.set_xticks(x, [f"{b}\n(of {t})" for b, t in zip(blocks, totals)], fontsize=8)
    ax.set(ylabel=ylabel, yscale="log")
    ax.legend(fontsize=8)
    ax.set_title(_wrapped(title, 90), fontsize=9)
    fig.tight_layout()
    return fig


def fourier_labels_plot(labels: dict, importance, key_freqs, names=None, top: int = 16, title: str = ""):
    """Each of the ``top`` most important directions' Fourier power split into const, unary
    (cos ka + cos kb), cos k(a+b) at the key frequencies, cos k(a+b) at the others,
    cos k(a−b) and other products; stacked bars, importance above."""
    imp = np.asarray(importance, np.float64)
    n = min(top, imp.size)
    key = np.zeros(np.asarray(labels["sum"]).shape[0], bool)
    key[np.asarray(key_freqs, int) - 1] = True
    s = {k: np.asarray(v, np.float64) for k, v in labels.items()}
    parts = {"const": s["const"][:n], "cos ka + cos kb": s["unary"][:, :n].sum(0),
             "cos k(a+b), key k": s["sum"][key, :n].sum(0), "cos k(a+b), other k": s["sum"][~key, :n].sum(0),
             "cos k(a−b)": s["difference"][:, :n].sum(0), "other products": s["product"][:n]}
    fig, (top_ax, ax) = plt.subplots(2, 1, figsize=(max(6, 0.45 * n + 2), 5), sharex=True,
                                     gridspec_kw={"height_ratios": [1, 3]})
    top_ax.bar(np.arange(n), imp[:n], color="0.4")
    top_ax.set(ylabel="importance Λ", yscale="log")
    bottom = np.zeros(n)
    colours = ["0.7", "C1", "C2", "C9", "C4", "C3"]
    for (name, v), c in zip(parts.items(), colours):
        ax.bar(np.arange(n), v, bottom=bottom, color=c, label=name)
        bottom += v
    ax.set(ylabel="share of power", xlabel="direction (by importance)", ylim=(0, 1.02))
    if names is not None:
        ax.set_xticks(np.arange(n), [str(x) for x in names[:n]], rotation=60, fontsize=6, ha="right")
    ax.legend(fontsize=7, ncol=3, loc="lower left")
    fig.suptitle(_wrapped(title, 100), fontsize=9)
    fig.tight_layout()
    return fig
