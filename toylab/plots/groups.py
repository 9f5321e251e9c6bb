"""Figures for group composition and universality (Chughtai et al. 2023)."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["loss_panels", "universality_plot", "mechanism_plot"]


def _irreps(arg, group, s):
    """The irreps' names and dimensions of one group's entry of a dict argument."""
    names = [str(n) for n in check.labels(arg, check.entry(arg, s, "names", f"{group!r}: the irreps' names"))]
    dims = check.labels(arg, check.entry(arg, s, "dims", f"{group!r}: the irreps' dimensions"), len(names))
    return names, dims


def _labels(names, dims):
    return [f"{n}\nd={d}" for n, d in zip(names, dims)]


def loss_panels(runs: dict, title=""):
    """One panel per group: train (blue) and test (red) loss of every seed over training, the
    median bold.

    runs: dict of group name -> (steps (logs,), train_loss (seeds, logs), test_loss (seeds,
        logs)); a 1-D loss is one seed. Losses on a log axis.
    title: optional figure title.
    """
    runs = check.mapping("runs", runs, "group -> (steps, train_loss, test_loss)")
    checked = {}
    for name, run in runs.items():
        what = f"{name!r}: (steps, train_loss (seeds, logs), test_loss (seeds, logs))"
        if isinstance(run, (str, bytes)) or not hasattr(run, "__len__") or len(run) != 3:
            raise ConfigError("runs", check.shown(run), f"must map each group to {what}")
        steps = check.vector("runs", run[0], what=what)
        curves = []
        for a in run[1:]:
            a = check.array("runs", a, what, ndim=(1, 2))
            a = a[None, :] if a.ndim == 1 else a
            if a.shape[1] != steps.size or a.shape[0] == 0:
                raise ConfigError("runs", described(f"a loss of shape {a.shape} for {name!r}"),
                                  f"must give (seeds, {steps.size}) losses: one per logged step")
            curves.append(a)
        checked[name] = (steps, *curves)
    runs = checked
    title = check.title("title", title)
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
    irreps each run learns, and which irrep is learned first.

    stats: dict of group name -> dict with "names" (irreps,) the irreps' names, "dims"
        (irreps,) their dimensions, "key" (runs, irreps) bool (is the irrep key at the end),
        "first" (runs,) index of the first-learned irrep or -1 (none).
    title: optional figure title.
    """
    stats = check.mapping("stats", stats, "group -> dict of names, dims, key, first")
    checked = {}
    for name, s in stats.items():
        names, dims = _irreps("stats", name, s)
        key = check.array("stats", check.entry("stats", s, "key", f"{name!r}: (runs, irreps) bool"),
                          f"{name!r}: key, a (runs, {len(names)}) bool array", ndim=2, dtype=bool)
        if key.shape[1] != len(names):
            raise ConfigError("stats", described(f"key of shape {key.shape} for {name!r}"),
                              f"must be (runs, {len(names)}): one column per irrep")
        first = check.vector("stats", check.entry("stats", s, "first", f"{name!r}: (runs,) first-learned irrep"),
                             key.shape[0], dtype=np.int64, nonempty=False,
                             what=f"{name!r}: first, one irrep index (or -1) per run ({key.shape[0]})")
        if first.size and (first.min() < -1 or first.max() >= len(names)):
            raise ConfigError("stats", described(f"first in [{first.min()}, {first.max()}] for {name!r}"),
                              f"must be irrep indices in [-1, {len(names) - 1}]")
        checked[name] = {"names": names, "dims": dims, "key": key, "first": first}
    stats = checked
    title = check.title("title", title)
    fig, axes = plt.subplots(len(stats), 3, figsize=(15, 3.4 * len(stats)), squeeze=False)
    for row, (name, s) in zip(axes, stats.items()):
        key, names, dims = s["key"], s["names"], s["dims"]
        x = np.arange(len(names))
        row[0].bar(x, key.mean(0) if key.shape[0] else np.zeros(len(names)), color="tab:blue")
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
        first = s["first"]
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
    span, beside the share of logit variance (similarity²).

    cases: dict of group name -> dict with "names" (irreps,) and "dims" (irreps,) as in
        :func:`universality_plot`, "steps" (logs,), "sims" (logs, irreps) logit similarities,
        "shares" (dict of name -> (irreps,) shares), and optionally "threshold" (a number, the
        key threshold, drawn dashed) and "seed" (shown in the titles).
    title: optional figure title.
    """
    cases = check.mapping("cases", cases, "group -> dict of names, dims, steps, sims, shares")
    checked = {}
    for name, c in cases.items():
        names, dims = _irreps("cases", name, c)
        steps = check.vector("cases", check.entry("cases", c, "steps", f"{name!r}: (logs,) steps"),
                             what=f"{name!r}: steps, a 1-D array")
        sims = check.array("cases", check.entry("cases", c, "sims", f"{name!r}: (logs, irreps) similarities"),
                           f"{name!r}: sims, a (logs, irreps) array", ndim=2)
        if sims.shape != (steps.size, len(names)):
            raise ConfigError("cases", described(f"sims of shape {sims.shape} for {name!r}"),
                              f"must be (len(steps), len(names)) = {(steps.size, len(names))}")
        shares = check.mapping("cases", check.entry("cases", c, "shares", f"{name!r}: name -> (irreps,) shares"),
                               f"{name!r}: shares, name -> (irreps,) shares")
        shares = {k: check.vector("cases", v, len(names), what=f"{name!r}: shares[{k!r}], one per irrep")
                  for k, v in shares.items()}
        threshold = check.number("cases", c.get("threshold"), f"{name!r}: threshold, a number", optional=True)
        seed = c.get("seed")
        checked[name] = {"names": names, "dims": dims, "steps": steps, "sims": sims, "shares": shares,
                         "threshold": threshold, "run": "" if seed is None else f", seed {seed}"}
    cases = checked
    title = check.title("title", title)
    fig, axes = plt.subplots(len(cases), 2, figsize=(13, 3.5 * len(cases)), squeeze=False)
    for row, (name, c) in zip(axes, cases.items()):
        names, dims = c["names"], c["dims"]
        for i, n in enumerate(names):
            if i == 0:
                continue  # the trivial irrep: its centred character cube is zero
            row[0].plot(c["steps"], c["sims"][:, i], label=f"{n} (d={dims[i]})")
        if c["threshold"] is not None:
            row[0].axhline(c["threshold"], color="k", ls="--", lw=0.8, label="key threshold")
        row[0].set_xlabel("step")
        row[0].set_ylabel("logit similarity")
        row[0].set_title(f"{name}{c['run']}: logit similarity with χ(a∘b∘c⁻¹)", fontsize=9)
        row[0].legend(fontsize=6, ncol=2)
        x = np.arange(len(names))
        width = 0.8 / len(c["shares"])
        for j, (label, v) in enumerate(c["shares"].items()):
            row[1].bar(x + (j - (len(c["shares"]) - 1) / 2) * width, v, width, label=label)
        row[1].set_xticks(x, _labels(names, dims), fontsize=7)
        row[1].set_ylabel("share")
        row[1].set_title(f"{name}{c['run']}: share in each irrep's span", fontsize=9)
        row[1].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
