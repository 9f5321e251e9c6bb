"""Figures of any results folder: a metric over training, one line per run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError

__all__ = ["training_curves"]


def training_curves(steps, values, groups=None, labels=None, *, ylabel: str = "loss", title: str = "",
                    log_y: bool | None = None):
    """One line per run of a metric over training steps.

    Args:
        steps: one 1-D array of logged steps per run (a list), or one array shared by all.
        values: one 1-D array per run (a list, or a 2-D array of runs × logs).
        groups: for each run, the index of its group (runs of one grid point share a colour
            and one legend entry); default: each run its own group.
        labels: one legend label per group (none: no legend).
        log_y: a log y axis (default: when every value is positive).
    Returns:
        the matplotlib Figure.
    """
    values = [np.asarray(v, np.float64).ravel() for v in values]
    if not values:
        raise ConfigError("values", values, "needs at least one run")
    steps = [np.asarray(steps).ravel()] * len(values) if np.ndim(steps[0]) == 0 else \
        [np.asarray(s).ravel() for s in steps]
    if len(steps) != len(values) or any(len(s) != len(v) for s, v in zip(steps, values)):
        raise ConfigError("steps", f"{len(steps)} arrays", "must give one step per value of each run")
    groups = list(range(len(values))) if groups is None else [int(g) for g in groups]
    if len(groups) != len(values):
        raise ConfigError("groups", groups, f"must give a group for each of the {len(values)} runs")
    if labels is not None and len(labels) <= max(groups):
        raise ConfigError("labels", labels, f"must give a label for each of the {max(groups) + 1} groups")
    finite = np.concatenate([v[np.isfinite(v)] for v in values])
    if log_y is None:
        log_y = finite.size > 0 and bool(np.all(finite > 0))
    colours = plt.get_cmap("viridis" if max(groups) >= 10 else "tab10")
    n_groups = max(groups) + 1
    fig, ax = plt.subplots(figsize=(6, 3.8))
    labelled = set()
    for s, v, g in zip(steps, values, groups):
        colour = colours(g / max(n_groups - 1, 1)) if max(groups) >= 10 else colours(g % 10)
        label = labels[g] if labels is not None and g not in labelled else None
        labelled.add(g)
        ax.plot(s, v, color=colour, lw=1.0, alpha=0.8, label=label)
    if log_y:
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title, fontsize=10)
    if labels is not None and n_groups <= 20:
        ax.legend(fontsize=7, frameon=False)
    fig.tight_layout()
    return fig
