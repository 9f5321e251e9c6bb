"""Figures for group composition and universality (Chughtai et al. 2023)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["loss_panels", "universality_plot", "mechanism_plot"]


def _labels(names, dims):
    return [f"{n}\nd={d}" for n, d in zip(names, dims)]


def loss_panels(runs: dict, title=""):
    """One panel per group: train (blue) and test (red) loss of every seed over training, the
    median bold. ``runs``: group -> (steps, train_loss (seeds, logs), test_loss (seeds, logs))."""
    fig, axes = plt.subplots(1, len(runs), figsize=(5 * len(runs), 3.6), squeeze=False)
    for ax, (name, (steps, train, test)) in zip(axes[0], runs.items()):
        for curves, color, label in ((train, "tab:blue", "train"), (test, "tab:red", "test")):
            for c in curves:
                ax.plot(steps, c, color=color, lw=0.6, alpha=0.3)
            ax.plot(steps, np.median(curves, axis=0), color=color, lw=2, label=f"{label} (median)")
        ax.set_yscale("log")
        ax.set_xlabel("step")
        ax.set_ylabel("cross-entropy")
        ax.set_title(f"{name}: {train.shape[0]} seeds", fontsize=9)
        ax.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def universality_plot(stats: dict, title=""):
    """Per group (one row): how often each irrep is key at the end of training, how many
    irreps each run learns, and which irrep is learned first. ``stats``: group -> dict with
    names, dims, key (runs, irreps) bool, first (runs,) index of the first-learned irrep or -1."""
    fig, axes = plt.subplots(len(stats), 3, figsize=(15, 3.4 * len(stats)), squeeze=False)
    for row, (name, s) in zip(axes, stats.items()):
        key, names, dims = np.asarray(s["key"]), s["names"], s["dims"]
        x = np.arange(len(names))
        row[0].bar(x, key.mean(0), color="tab:blue")
        row[0].set_xticks(x, _labels(names, dims), fontsize=7)
        row[0].set_ylim(0, 1.05)
        row[0].set_ylabel("share of runs")
        row[0].set_title(f"{name}: irrep key at the end ({key.shape[0]} grokked runs)", fontsize=9)
        counts = key.sum(1)
        bins = np.arange(0, len(names) + 1)
        row[1].bar(bins, [(counts == k).sum() for k in bins], color="tab:green")
        row[1].set_xlabel("number of key irreps")
        row[1].set_ylabel("runs")
        row[1].set_title(f"{name}: irreps learned per run", fontsize=9)
        first = np.asarray(s["first"])
        row[2].bar(x, [(first == i).sum() for i in x], color="tab:orange")
        row[2].set_xticks(x, _labels(names, dims), fontsize=7)
        row[2].set_ylabel("runs")
        row[2].set_title(f"{name}: irrep learned first", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def mechanism_plot(cases: dict, title=""):
    """Per group (one row), one run: (1) each irrep's logit similarity over training; (2) the
    share of the left embedding, the unembedding and the hidden activations in each irrep's
    span, beside the share of logit variance (similarity²). ``cases``: group -> dict with
    names, dims, steps, sims (logs, irreps), shares (dict of name -> (irreps,)), seed."""
    fig, axes = plt.subplots(len(cases), 2, figsize=(13, 3.5 * len(cases)), squeeze=False)
    for row, (name, c) in zip(axes, cases.items()):
        names, dims = c["names"], c["dims"]
        for i, n in enumerate(names):
            if i == 0:
                continue  # the trivial irrep: its centred character cube is zero
            row[0].plot(c["steps"], c["sims"][:, i], label=f"{n} (d={dims[i]})")
        row[0].axhline(c["threshold"], color="k", ls="--", lw=0.8, label="key threshold")
        row[0].set_xlabel("step")
        row[0].set_ylabel("logit similarity")
        row[0].set_title(f"{name}, seed {c['seed']}: logit similarity with χ(a∘b∘c⁻¹)", fontsize=9)
        row[0].legend(fontsize=6, ncol=2)
        x = np.arange(len(names))
        width = 0.8 / len(c["shares"])
        for j, (label, v) in enumerate(c["shares"].items()):
            row[1].bar(x + (j - (len(c["shares"]) - 1) / 2) * width, v, width, label=label)
        row[1].set_xticks(x, _labels(names, dims), fontsize=7)
        row[1].set_ylabel("share")
        row[1].set_title(f"{name}, seed {c['seed']}: share in each irrep's span", fontsize=9)
        row[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
