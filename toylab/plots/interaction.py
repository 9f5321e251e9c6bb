"""Figures of the interaction basis: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["interaction_graph_plot", "ablation_curves_plot", "edge_counts_plot", "fourier_labels_plot"]


def _wrapped(title: str, width: int) -> str:
    return textwrap.fill(title, width) if title else title


def interaction_graph_plot(edges, names, importances=None, modules=None, top: int = 24, ax=None, title: str = ""):
    """The interaction graph: node layers left to right, each layer's ``top`` most important
    features top to bottom (marker area ∝ importance), edges as lines whose width and
    opacity follow their weight relative to the block's largest. ``modules`` (one label
    array per layer, from graph_modules) colours the features; -1 grey.

    edges: one 2-D array per pair of neighbouring layers, edges[l] of shape (n_{l+1}, n_l):
        the non-negative weight from feature i of layer l to feature j of layer l+1 at [j, i].
    names: one label per node layer (len(edges) + 1).
    importances: optional, one 1-D array of feature importances per layer (n_l of them, or
        at least the min(top, n_l) drawn).
    modules: optional, one 1-D array of integer module labels per layer (-1: none), as long
        as the importances.
    top: how many features of each layer to draw (a positive integer).
    ax: optional matplotlib Axes to draw into (default: a new figure); the Axes' figure is
        returned.
    title: optional axes title.
    """
    what = "a non-empty list of 2-D arrays, edges[l] of shape (n_{l+1}, n_l)"
    if edges is None or isinstance(edges, (str, bytes)) or not hasattr(edges, "__len__") or len(edges) == 0:
        raise ConfigError("edges", check.shown(edges), f"must be {what}")
    edges = [check.array("edges", e, what, ndim=2) for e in edges]
    for l in range(1, len(edges)):
        if edges[l].shape[1] != edges[l - 1].shape[0]:
            raise ConfigError("edges", described(f"shapes {[e.shape for e in edges]}"),
                              f"must chain: edges[{l}].shape[1] == edges[{l - 1}].shape[0]")
    n_layers = len(edges) + 1
    sizes = [edges[0].shape[1]] + [e.shape[0] for e in edges]
    names = check.labels("names", names, n_layers)
    per_layer = {}
    for arg, value, dtype in (("importances", importances, np.float64), ("modules", modules, np.int64)):
        if value is None:
            continue
        if isinstance(value, (str, bytes)) or not hasattr(value, "__len__") or len(value) != n_layers:
            raise ConfigError(arg, check.shown(value), f"must give one 1-D array per layer ({n_layers})")
        per_layer[arg] = [check.vector(arg, v, dtype=dtype, nonempty=False, what="one 1-D array per layer")
                          for v in value]
    importances, modules = per_layer.get("importances"), per_layer.get("modules")
    top = check.integer("top", top, "a positive integer", lo=1)
    for arg, arrays in per_layer.items():
        for l, a in enumerate(arrays):
            if a.size < min(top, sizes[l]):
                raise ConfigError(arg, described(f"{a.size} entries for layer {l}"),
                                  f"must cover the {min(top, sizes[l])} features drawn of that layer ({sizes[l]} dims)")
    ax = check.axes("ax", ax)
    title = check.title("title", title)
    shown = [min(top, s) for s in sizes]
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(2.2 * n_layers + 1, 6))
    y = [-np.arange(n) for n in shown]
    for l, e in enumerate(edges):
        e = e[:shown[l + 1], :shown[l]]
        scale = e.max() if e.size and e.max() > 0 else 1.0
        js, is_ = np.nonzero(e > 1e-3 * scale)
        order = np.argsort(e[js, is_])
        for j, i in zip(js[order], is_[order]):
            w = e[j, i] / scale
            ax.plot([l, l + 1], [y[l][i], y[l + 1][j]], color="C0", lw=0.3 + 2.5 * w, alpha=0.15 + 0.75 * w, zorder=1)
    cmap = plt.get_cmap("tab10")
    for l in range(n_layers):
        imp = None if importances is None else importances[l][:shown[l]]
        area = 30 if imp is None or imp.size == 0 or imp.max() <= 0 else 10 + 90 * np.sqrt(imp / imp.max())
        if modules is None:
            colours = "k"
        else:
            lab = modules[l][:shown[l]]
            colours = [cmap(int(c) % 10) if c >= 0 else (0.6, 0.6, 0.6, 1.0) for c in lab]
        ax.scatter(np.full(shown[l], l), y[l], s=area, c=colours, zorder=3, edgecolors="white", linewidths=0.5)
    if importances is None:
        ticks = [f"{n}\n({sizes[l]} dims)" for l, n in enumerate(names)]
    else:
        ticks = [f"{n}\n({int(np.sum(importances[l] > 0))} features of {sizes[l]} dims)"
                 for l, n in enumerate(names)]
    ax.set_xticks(range(n_layers), ticks, fontsize=8)
    ax.set_yticks([])
    ax.set_xlim(-0.4, n_layers - 0.6)
    for side in ("top", "right", "left"):
        ax.spines[side].set_visible(False)
    if title:
        ax.set_title(_wrapped(title, 70), fontsize=9)
    return fig if fig is not None else ax.figure


def ablation_curves_plot(curves: dict, names, full_accuracy: float | None = None, target: float | None = None,
                         title: str = ""):
    """Accuracy when only the top-k features of one node layer are kept, one panel per node
    layer: ``curves[kind][layer] = (ks, accuracy)`` for kind "LIB" and "PCA"; the full
    model's accuracy and the target dashed.

    curves: dict of kind -> one (ks, accuracy) pair per node layer, ks and accuracy 1-D of
        the same length.
    names: one label per node layer.
    full_accuracy, target: optional numbers (accuracies) drawn as horizontal lines.
    title: optional figure title.
    """
    names = check.labels("names", names)
    if not names:
        raise ConfigError("names", [], "must name at least one node layer")
    what = f"kind -> one (ks, accuracy) pair per node layer ({len(names)})"
    curves = check.mapping("curves", curves, what)
    for kind, per_layer in curves.items():
        if isinstance(per_layer, (str, bytes)) or not hasattr(per_layer, "__len__") or len(per_layer) != len(names):
            raise ConfigError("curves", check.shown(per_layer), f"must be {what} ({kind!r} is not)")
        pairs = []
        for l, pair in enumerate(per_layer):
            if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
                raise ConfigError("curves", check.shown(pair), f"must be {what} ({kind!r}, layer {l})")
            ks = check.vector("curves", pair[0], what=f"{kind!r}, layer {l}: ks, a 1-D array")
            acc = check.vector("curves", pair[1], ks.size, what=f"{kind!r}, layer {l}: one accuracy per k")
            pairs.append((ks, acc))
        curves[kind] = pairs
    full_accuracy = check.number("full_accuracy", full_accuracy, "a number (an accuracy)", optional=True)
    target = check.number("target", target, "a number (an accuracy)", optional=True)
    title = check.title("title", title)
    fig, axes = plt.subplots(1, len(names), figsize=(3.2 * len(names), 3.2), squeeze=False)
    for l, (ax, name) in enumerate(zip(axes[0], names)):
        for c, (kind, per_layer) in enumerate(curves.items()):
            ks, acc = per_layer[l]
            ax.plot(ks, acc, marker=".", color=f"C{c}", label=kind)
        if full_accuracy is not None:
            ax.axhline(full_accuracy, color="0.5", lw=0.8, ls=":", label="full model")
        if target is not None:
            ax.axhline(target, color="C3", lw=0.8, ls="--", label=f"target {target:.3g}")
        ax.set(xlabel="features kept (k)", title=name, ylim=(-0.02, 1.02))
        ax.set_xscale("symlog", linthresh=10)
    axes[0][0].set_ylabel("accuracy")
    axes[0][0].legend(fontsize=7)
    fig.suptitle(_wrapped(title, 120), fontsize=9)
    fig.tight_layout()
    return fig


def edge_counts_plot(blocks, counts: dict, totals=None, ylabel: str = "edges", title: str = ""):
    """Grouped bars per block (e.g. "resid_pre.0 → resid_mid.0"): ``counts[kind]`` one number
    per block for each basis; ``totals`` the block's possible edges, written above.

    blocks: one label per block.
    counts: dict of kind -> (len(blocks),) counts (log axis: zeros are not shown).
    totals: optional (len(blocks),) possible edges per block, written under each label.
    ylabel: the y-axis label; title: optional axes title.
    """
    blocks = [str(b) for b in check.labels("blocks", blocks)]
    if not blocks:
        raise ConfigError("blocks", [], "must name at least one block")
    counts = {k: check.vector("counts", v, len(blocks), what=f"{k!r}: one count per block ({len(blocks)})")
              for k, v in check.mapping("counts", counts, "kind -> one count per block").items()}
    totals = check.vector("totals", totals, len(blocks), optional=True, what=f"one total per block ({len(blocks)})")
    ylabel = check.title("ylabel", ylabel)
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(2.4 * len(blocks) + 1.5, 3.6))
    x = np.arange(len(blocks))
    width = 0.8 / max(len(counts), 1)
    for c, (kind, values) in enumerate(counts.items()):
        bars = ax.bar(x + (c - (len(counts) - 1) / 2) * width, values, width, color=f"C{c}", label=kind)
        ax.bar_label(bars, [f"{v:g}" for v in values], fontsize=7)
    ax.set_xticks(x, blocks if totals is None else [f"{b}\n(of {check.fmt(t)})" for b, t in zip(blocks, totals)], fontsize=8)
    ax.set(ylabel=ylabel, yscale="log")
    ax.legend(fontsize=8)
    ax.set_title(_wrapped(title, 90), fontsize=9)
    fig.tight_layout()
    return fig


def fourier_labels_plot(labels: dict, importance, key_freqs, names=None, top: int = 16, title: str = ""):
    """Each of the ``top`` most important directions' Fourier power split into const, unary
    (cos ka + cos kb), cos k(a+b) at the key frequencies, cos k(a+b) at the others,
    cos k(a−b) and other products; stacked bars, importance above.

    labels: dict (as :func:`toylab.analysis.interaction.fourier_labels` returns) with
        "const" (dirs,), "unary" (n_freq, dirs), "sum" (n_freq, dirs), "difference"
        (n_freq, dirs) and "product" (dirs,): each direction's share of power per term.
    importance: (dirs,) importance of each direction (log axis: zeros not shown), most important first;
        the first min(top, dirs) directions are drawn (each term's last axis covers them).
    key_freqs: the key frequencies, integers in 1..n_freq; or a bool mask over frequencies
        0..n_freq (entry 0 the constant) as ``fourier.key_frequencies`` returns.
    names: optional, one tick label per direction.
    top: how many directions to draw (a positive integer).
    title: optional figure title.
    """
    what = "a dict of const (dirs,), unary, sum, difference (n_freq, dirs) and product (dirs,)"
    imp = check.vector("importance", importance)
    top = check.integer("top", top, "a positive integer", lo=1)
    n = min(top, imp.size)
    check.mapping("labels", labels, what)
    s = {}
    for k, ndim in (("const", 1), ("unary", 2), ("sum", 2), ("difference", 2), ("product", 1)):
        a = check.array("labels", check.entry("labels", labels, k, what), f"{what}: {k!r} is not", ndim=ndim)
        if a.shape[-1] < n or (ndim == 2 and "unary" in s and a.shape[0] != s["unary"].shape[0]):
            raise ConfigError("labels", described(f"{k!r} of shape {a.shape}"),
                              f"must be {what}, with dirs ≥ the {n} directions drawn and one n_freq for every term")
        s[k] = a
    n_freq = s["sum"].shape[0]
    key_what = f"integers in 1..{n_freq} or a bool mask of length {n_freq + 1}"
    key_arr = check.array("key_freqs", key_freqs, key_what, ndim=(0, 1), dtype=None)
    if key_arr.dtype == bool:
        if key_arr.shape != (n_freq + 1,):
            raise ConfigError("key_freqs", described(f"a bool mask of shape {key_arr.shape}"), f"must be {key_what}")
        key = key_arr[1:].copy()
    else:
        key_arr = np.atleast_1d(key_arr)
        if key_arr.size and (not np.issubdtype(key_arr.dtype, np.number) or np.any(key_arr != np.round(key_arr))
                             or key_arr.min() < 1 or key_arr.max() > n_freq):
            raise ConfigError("key_freqs", check.shown(key_freqs), f"must be {key_what}")
        key = np.zeros(n_freq, bool)
        key[key_arr.astype(int) - 1] = True
    names = check.labels("names", names, optional=True)
    if names is not None and len(names) < n:
        raise ConfigError("names", check.shown(names), f"must give a label for each of the {n} directions drawn")
    title = check.title("title", title)
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
