"""Figures of the grokking family: arrays in, matplotlib Figure out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["loss_curves", "progress_measures_plot", "fourier_structure_plot", "ablation_plot",
           "label_noise_plot", "phase_diagram_plot", "pruning_plot"]

_PHASE_COLORS = ("tab:orange", "tab:green", "tab:purple")
_PHASE_NAMES = ("memorization", "circuit formation", "cleanup")


def _shade_phases(ax, bounds):
    """bounds: (t_mem, t_cleanup, t_end) steps; shades the three phases."""
    edges = [1 if ax.get_xscale() == "log" else 0, *bounds]
    for (lo, hi), color, name in zip(zip(edges[:-1], edges[1:]), _PHASE_COLORS, _PHASE_NAMES):
        if hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.12, lw=0, label=name)


def loss_curves(steps, train_loss, test_loss, highlight: int = 0, title=""):
    """Train and test loss (seeds × logs) on log-log axes; the highlighted seed bold."""
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i in range(train_loss.shape[0]):
        lw, alpha = (1.8, 1.0) if i == highlight else (0.7, 0.35)
        ax.plot(steps, train_loss[i], color="tab:blue", lw=lw, alpha=alpha, label="train" if i == highlight else None)
        ax.plot(steps, test_loss[i], color="tab:red", lw=lw, alpha=alpha, label="test" if i == highlight else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step (full-batch epochs)")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def progress_measures_plot(steps, measures: dict, bounds, title=""):
    """Losses (train, test, restricted, excluded), Gini coefficients and weight norm over
    training, with the three phases shaded."""
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for name, color in (("train_loss", "tab:blue"), ("test_loss", "tab:red"),
                        ("restricted_loss", "tab:green"), ("excluded_loss", "tab:purple")):
        if name in measures:
            ax.plot(steps, measures[name], color=color, label=name.replace("_", " "))
    ax.set_yscale("log")
    ax.set_ylabel("loss")
    for name, color in (("gini_W_E", "tab:brown"), ("gini_W_L", "tab:olive")):
        axes[1].plot(steps, measures[name], color=color, label=name.replace("_", " "))
    axes[1].set_ylabel("Gini of Fourier norms")
    axes[2].plot(steps, measures["weight_norm"], color="k", label="sum of squared weights")
    axes[2].set_ylabel("sum of squared weights")
    for a in axes:
        a.set_xlabel("step")
        _shade_phases(a, bounds)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fourier_structure_plot(embed_norms, names, basis_freq, key_mask, cluster_freq, cluster_frac, logit_share,
                           title=""):
    """(1) Fourier norms of the embedding per basis vector (``basis_freq``: each one's
    frequency); (2) each neuron's frequency and
    the share of its variance that frequency explains; (3) the share of logit variance
    explained by cos(w(a+b−c)) for each w. ``key_mask`` and ``logit_share`` are indexed by
    frequency (entry 0 the constant), as :func:`toylab.analysis.fourier.key_frequencies` and
    :func:`~toylab.analysis.fourier.logit_frequency_components` return them."""
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    ax = axes[0]
    key_mask = np.asarray(key_mask, bool)
    n_freq = len(key_mask) - 1
    colors = ["tab:red" if f > 0 and key_mask[f] else "tab:gray" for f in basis_freq]
    ax.bar(np.arange(len(names)), embed_norms, color=colors)
    # One tick per frequency, at its cos bar (its sin bar is the next one).
    ticks = [0] + [i for i, name in enumerate(names) if name.startswith("cos")]
    labels = ["c"] + [name.split()[1] for name in names if name.startswith("cos")]
    every = max(1, len(ticks) // 16)
    ax.set_xticks(ticks[::every], labels[::every], fontsize=7)
    ax.set_xlabel("frequency k (bars: constant, then cos k, sin k)")
    ax.set_ylabel("norm of W_E component")
    ax.set_title("embedding in the Fourier basis (key in red)", fontsize=9)
    ax = axes[1]
    order = np.lexsort((-cluster_frac, cluster_freq))
    ax.scatter(np.arange(len(order)), cluster_frac[order], c=cluster_freq[order], cmap="tab20", s=6)
    ax.axhline(0.85, color="k", ls="--", lw=0.7)
    ax.set_xlabel("neuron (sorted by frequency)")
    ax.set_ylabel("variance explained by its frequency")
    ax.set_ylim(0, 1.02)
    ax.set_title("neurons cluster by frequency", fontsize=9)
    ax = axes[2]
    ks = np.arange(1, n_freq + 1)
    ax.bar(ks, np.asarray(logit_share)[1:], color=["tab:red" if m else "tab:gray" for m in key_mask[1:]])
    ax.set_xlabel("frequency w")
    ax.set_ylabel("share of logit variance")
    ax.set_title("logits ≈ Σ_w α_w cos(w(a+b−c))", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ablation_plot(labels, losses, reference, title=""):
    """Loss after each Fourier-space ablation, beside the unablated loss and log p (chance)."""
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(np.arange(len(labels)), losses, color="tab:blue")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20, fontsize=8, ha="right")
    for name, v, color in reference:
        ax.axhline(v, ls="--", lw=0.8, color=color, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("loss over all pairs")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def label_noise_plot(steps, curves: dict, expected_train, title=""):
    """Train / clean-train / test accuracy over training for one corrupted-label run."""
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, y in curves.items():
        ax.plot(steps, y, label=name)
    ax.axhline(expected_train, color="k", ls="--", lw=0.8, label="1−ξ+ξ/p")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def phase_diagram_plot(fractions, noises, test_acc, train_acc, expected, title=""):
    """Test accuracy and how close train accuracy is to 1−ξ+ξ/p over (train fraction × ξ)."""
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, data, label, cmap in ((axes[0], test_acc, "test accuracy", "viridis"),
                                  (axes[1], train_acc - expected, "train acc − (1−ξ+ξ/p)", "coolwarm")):
        vmin, vmax = (0, 1) if cmap == "viridis" else (-0.5, 0.5)
        im = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(np.arange(len(noises)), [f"{x:g}" for x in noises])
        ax.set_yticks(np.arange(len(fractions)), [f"{f:g}" for f in fractions])
        ax.set_xlabel("label noise ξ")
        ax.set_ylabel("train fraction")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, label=label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pruning_plot(shares, curve, ipr, size, title=""):
    """(1) accuracies as the lowest-IPR neurons are pruned; (2) each neuron's IPR against its
    weight size."""
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, color in (("corrupted", "tab:red"), ("clean_train", "tab:blue"), ("test", "tab:green")):
        axes[0].plot(np.asarray(shares) * 100, [c[key] for c in curve], "o-", ms=3, color=color,
                     label={"corrupted": "corrupted train labels", "clean_train": "clean train", "test": "test"}[key])
    axes[0].set_xlabel("% of neurons pruned (lowest IPR first)")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1.03)
    axes[0].legend(fontsize=7)
    axes[1].scatter(ipr, size, s=6)
    axes[1].set_xlabel("IPR of the neuron's Fourier weights")
    axes[1].set_ylabel("‖w_in‖·‖w_out‖")
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
