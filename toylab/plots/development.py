"""Figures of development over training: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["phase_change_plot", "llc_stages_plot", "head_llc_plot", "task_diversity_plot"]

HEAD_COLOURS = {"induction": "tab:red", "previous-token": "tab:blue", "other": "tab:gray"}


def _title(ax, title, width=95):
    if title:
        ax.set_title(textwrap.fill(title, width), fontsize=8)


def _window(name, value):
    ok = isinstance(value, (tuple, list)) and len(value) == 2 and all(
        isinstance(v, (int, float, np.integer, np.floating)) and not isinstance(v, bool) for v in value)
    if not ok:
        raise ConfigError(name, check.shown(value), "must be a (start, end) pair of steps (NaN: no window)")
    return float(value[0]), float(value[1])


def _curves(name, curves, length):
    curves = check.mapping(name, curves, "label -> values at the logged steps")
    return {label: check.vector(name, v, length, what=f"{label!r}: one value per logged step ({length})")
            for label, v in curves.items()}


def phase_change_plot(steps, icl, prev, induction, windows, thresholds=(0.2, 0.3), title: str = ""):
    """Top: the in-context learning score of each seed; bottom: its largest previous-token
    (layer 0) and induction (last layer) head scores, the thresholds dashed; each seed's
    window shaded on both.

    steps: (logs,) logged steps; icl, prev, induction: {label: (logs,) values} per seed;
    windows: one (start, end) per seed; thresholds: (previous-token, induction)."""
    steps = check.vector("steps", steps)
    icl, prev, induction = (_curves(n, c, steps.size) for n, c in (("icl", icl), ("prev", prev),
                                                                    ("induction", induction)))
    if not isinstance(windows, (list, tuple)) or len(windows) != len(icl):
        raise ConfigError("windows", check.shown(windows), f"must hold one (start, end) per seed ({len(icl)})")
    windows = [_window("windows", w) for w in windows]
    t_prev, t_ind = (float(check.number("thresholds", t)) for t in thresholds)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    for i, (label, values) in enumerate(icl.items()):
        top.plot(steps, values, color=f"C{i}", label=label)
    for ax in (top, bottom):
        for start, end in windows:
            if np.isfinite(start) and np.isfinite(end):
                ax.axvspan(start, end, color="0.5", alpha=0.12, lw=0)
    top.set_ylabel("ICL score (late − early loss)")
    top.legend(fontsize=7)
    for i, label in enumerate(prev):
        bottom.plot(steps, prev[label], color=f"C{i}", ls="-", label=f"{label}: previous-token (layer 0)")
        bottom.plot(steps, induction[label], color=f"C{i}", ls="--", label=f"{label}: induction (last layer)")
    bottom.axhline(t_prev, color="k", lw=0.7, ls=":")
    bottom.axhline(t_ind, color="k", lw=0.7, ls="-.")
    bottom.set(xlabel="step", ylabel="largest head score")
    bottom.legend(fontsize=6, ncol=2)
    _title(top, title)
    fig.tight_layout()
    return fig


def llc_stages_plot(snapshot_steps, llc, llc_std, boundaries, steps, loss, loss_boundaries, window, title: str = ""):
    """Top: the LLC at each snapshot (± std over chains) with its stage boundaries (dashed);
    bottom: the held-out loss with its own boundaries (dotted); the window shaded on both.
    Log step axis (the stage rule works in log step)."""
    snapshot_steps = check.positive("snapshot_steps", check.vector("snapshot_steps", snapshot_steps))
    s = snapshot_steps.size
    llc = check.vector("llc", llc, s, what=f"one LLC estimate per snapshot ({s})")
    llc_std = check.vector("llc_std", llc_std, s, optional=True, what=f"None or one std per snapshot ({s})")
    steps = check.vector("steps", steps)
    loss = check.vector("loss", loss, steps.size, what=f"one loss per logged step ({steps.size})")
    boundaries = check.vector("boundaries", boundaries, nonempty=False)
    loss_boundaries = check.vector("loss_boundaries", loss_boundaries, nonempty=False)
    start, end = _window("window", window)
    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    top.errorbar(snapshot_steps, llc, yerr=llc_std, color="C0", marker="o", ms=3, capsize=2)
    top.set_ylabel("LLC estimate")
    positive = steps > 0
    bottom.plot(steps[positive], loss[positive], color="tab:blue")
    bottom.set(xscale="log", xlabel="step", ylabel="held-out loss")
    for ax in (top, bottom):
        if np.isfinite(start) and np.isfinite(end):
            ax.axvspan(start, end, color="0.5", alpha=0.12, lw=0)
        for b in boundaries:
            ax.axvline(b, color="C3", ls="--", lw=1)
        for b in loss_boundaries:
            ax.axvline(b, color="C2", ls=":", lw=1)
    _title(top, title)
    fig.tight_layout()
    return fig


def head_llc_plot(steps, llc, labels, types, title: str = ""):
    """Each head's weight-refined LLC (rows of ``llc``, (heads, snapshots)) over the snapshot
    steps, coloured by its type (induction, previous-token, other)."""
    steps = check.vector("steps", steps)
    llc = check.array("llc", llc, ndim=2)
    labels = check.labels("labels", labels, llc.shape[0])
    if llc.shape[1] != steps.size:
        raise ConfigError("llc", described(f"shape {llc.shape}"), f"must be (heads, {steps.size} snapshots)")
    if not isinstance(types, (list, tuple)) or len(types) != len(labels) or any(t not in HEAD_COLOURS for t in types):
        raise ConfigError("types", check.shown(types), f"must name one of {sorted(HEAD_COLOURS)} per head")
    fig, ax = plt.subplots(figsize=(6.5, 4.2))
    seen = set()
    for row, label, kind in zip(llc, labels, types):
        ax.plot(steps, row, marker="o", ms=3, color=HEAD_COLOURS[kind], label=None if kind in seen else kind)
        ax.annotate(label, (steps[-1], row[-1]), fontsize=6, xytext=(3, 0), textcoords="offset points")
        seen.add(kind)
    ax.set(xlabel="step", ylabel="weight-refined LLC of the head")
    ax.legend(fontsize=7)
    _title(ax, title)
    fig.tight_layout()
    return fig


def task_diversity_plot(n_tasks, dmmse, ridge, title: str = ""):
    """The model's squared distance from the M-task Bayes predictor and from ridge against M
    (log axes)."""
    n_tasks = check.positive("n_tasks", check.vector("n_tasks", n_tasks))
    dmmse = check.vector("dmmse", dmmse, n_tasks.size)
    ridge = check.vector("ridge", ridge, n_tasks.size)
    fig, ax = plt.subplots(figsize=(6.0, 4.0))
    ax.plot(n_tasks, dmmse, marker="o", label="from the M-task Bayes predictor (dMMSE)")
    ax.plot(n_tasks, ridge, marker="s", label="from ridge")
    ax.set(xscale="log", yscale="log", xlabel="pretraining tasks M", ylabel="mean squared distance (fresh tasks)")
    ax.legend(fontsize=7)
    _title(ax, title, 80)
    fig.tight_layout()
    return fig
