"""Figures of any results folder: a metric over training, one line per run."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError
from . import _inputs as check

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
        ylabel: the y-axis label; title: optional axes title.
        log_y: a log y axis (default: when every value is positive).
    Returns:
        the matplotlib Figure.
    """
    what = "one 1-D array of values per run (a list, or a 2-D array of runs × logs)"
    if values is None or isinstance(values, (str, bytes)) or not hasattr(values, "__len__"):
        raise ConfigError("values", check.shown(values), f"must be {what}")
    values = [check.array("values", v, what, ndim=(0, 1)).ravel() for v in values]
    if not values:
        raise ConfigError("values", values, "needs at least one run")
    s_what = "one 1-D array of steps per run (a list), or one array shared by all"
    if steps is None or isinstance(steps, (str, bytes, dict)) or not hasattr(steps, "__len__") or len(steps) == 0:
        raise ConfigError("steps", check.shown(steps), f"must be {s_what}")
    steps = [check.vector("steps", steps, what=s_what)] * len(values) if np.ndim(steps[0]) == 0 else \
        [check.array("steps", s, s_what, ndim=(0, 1)).ravel() for s in steps]
    if len(steps) != len(values) or any(len(s) != len(v) for s, v in zip(steps, values)):
        raise ConfigError("steps", f"{len(steps)} arrays", "must give one step per value of each run")
    groups = list(range(len(values))) if groups is None else \
        [check.integer("groups", g, "one group index ≥ 0 per run", lo=0) for g in check.labels("groups", groups)]
    if len(groups) != len(values):
        raise ConfigError("groups", groups, f"must give a group for each of the {len(values)} runs")
    labels = check.labels("labels", labels, optional=True)
    ylabel = check.title("ylabel", ylabel)
    title = check.title("title", title)
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
        label = str(labels[g]) if labels is not None and g not in labelled else None
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
