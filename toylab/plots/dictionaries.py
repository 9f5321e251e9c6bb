"""Figures of sparse dictionaries: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["pareto_plot", "recovery_plot", "frequency_alignment_plot"]


def _title(ax, title: str, width: int = 60):
    if title:
        ax.set_title(textwrap.fill(title, width), fontsize=9)


def pareto_plot(points: dict, score_name: str, frontiers: dict | None = None, ax=None, title: str = ""):
    """One marker per dictionary of a sweep: L0 (x) against a score (y), a colour per kind.
    ``points`` maps kind → (l0 array, score array); ``frontiers`` kind → bool mask of the
    Pareto-optimal points, joined by a line.

    points: dict of kind -> (l0, score), two arrays of one value per dictionary (any shape,
        flattened; the same size).
    score_name: the y-axis label.
    frontiers: optional dict of kind -> bool mask over that kind's points; kinds missing from
        it get no line.
    ax: optional matplotlib Axes to draw into (default: a new figure); its figure is returned.
    title: optional axes title.
    """
    what = "kind -> (l0, score), two arrays of one value per dictionary"
    points = check.mapping("points", points, what)
    for kind, pair in points.items():
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ConfigError("points", check.shown(pair), f"must be {what} ({kind!r} is not a pair)")
        l0, score = (check.array("points", v, f"{what} ({kind!r})").ravel() for v in pair)
        if l0.size != score.size:
            raise ConfigError("points", described(f"{kind!r}: {l0.size} L0 values and {score.size} scores"),
                              f"must be {what} (the same number of each)")
        points[kind] = (l0, score)
    score_name = check.title("score_name", score_name, required=True)
    frontiers = check.mapping("frontiers", frontiers, "kind -> bool mask over its points", optional=True,
                              nonempty=False)
    for kind, mask in (frontiers or {}).items():
        if kind in points:
            mask = check.array("frontiers", mask, f"{kind!r}: a bool mask over its points", dtype=bool).ravel()
            if mask.size != points[kind][0].size:
                raise ConfigError("frontiers", described(f"{kind!r}: a mask of {mask.size}"),
                                  f"must have one entry per point ({points[kind][0].size})")
            frontiers[kind] = mask
    ax = check.axes("ax", ax)
    title = check.title("title", title)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (kind, (l0, score)) in enumerate(points.items()):
        ax.scatter(l0, score, s=18, color=f"C{i}", alpha=0.6, label=kind)
        if frontiers is not None and kind in frontiers:
            on = frontiers[kind]
            order = np.argsort(l0[on])
            ax.plot(l0[on][order], score[on][order], color=f"C{i}", lw=1.5)
    ax.set_xlabel("L0 (latents firing per example)")
    ax.set_ylabel(score_name)
    ax.legend(fontsize=8)
    _title(ax, title)
    if fig is not None:
        fig.tight_layout()  # room for the wrapped title
    return fig if fig is not None else ax.figure


def recovery_plot(density, scores: dict, threshold=None, ax=None, title: str = ""):
    """Scores of the best dictionary at each data density (x, log scale): ``scores`` maps a
    name (e.g. "MCC") → array over ``density``; ``threshold`` draws the line recovery is
    judged against.

    density: (k,) feature probabilities (> 0: log axis).
    scores: dict of name -> (k,) scores, one line each.
    threshold: optional number, drawn as a dashed line.
    ax: optional matplotlib Axes to draw into (default: a new figure); its figure is returned.
    title: optional axes title.
    """
    density = check.positive("density", check.vector("density", density))
    scores = {name: check.vector("scores", v, density.size, what=f"{name!r}: one score per density ({density.size})")
              for name, v in check.mapping("scores", scores, "name -> one score per density").items()}
    threshold = check.number("threshold", threshold, optional=True)
    ax = check.axes("ax", ax)
    title = check.title("title", title)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (name, values) in enumerate(scores.items()):
        ax.plot(density, values, "o-", color=f"C{i}", label=name)
    if threshold is not None:
        ax.axhline(threshold, color="grey", ls="--", lw=1)
    ax.set_xscale("log")
    ax.set_xlabel("feature probability (density) of the toy's inputs")
    ax.set_ylim(-0.02, 1.02)
    ax.legend(fontsize=8)
    _title(ax, title)
    if fig is not None:
        fig.tight_layout()  # room for the wrapped title
    return fig if fig is not None else ax.figure


def frequency_alignment_plot(latent_frequency, latent_fraction, latent_power, key, n_freq: int, ax=None,
                             title: str = ""):
    """Each live latent's leading frequency (x) and the share of its variance it explains
    (y), marker area ∝ the latent's activation power; key frequencies shaded. ``key`` is a mask
    indexed by frequency (entry 0 the constant), as ``fourier.key_frequencies`` returns.

    latent_frequency: (latents,) each latent's leading frequency (integer in 1..n_freq);
        latent_fraction: (latents,) the share of its variance there; latent_power: (latents,)
        its activation power (≥ 0).
    key: bool mask over frequencies 0..n_freq (at most n_freq + 1 entries).
    n_freq: the highest frequency shown (a positive integer, ⌊p/2⌋).
    ax: optional matplotlib Axes to draw into (default: a new figure); its figure is returned.
    title: optional axes title.
    """
    latent_frequency = check.vector("latent_frequency", latent_frequency, nonempty=False)
    m = latent_frequency.size
    latent_fraction = check.vector("latent_fraction", latent_fraction, m, nonempty=False,
                                   what=f"one share per latent ({m})")
    power = check.vector("latent_power", latent_power, m, nonempty=False, what=f"one power per latent ({m})")
    if power.size and power.min() < 0:
        raise ConfigError("latent_power", described(f"minimum {power.min():g}"), "must be ≥ 0 (an activation power)")
    n_freq = check.integer("n_freq", n_freq, "a positive integer", lo=1)
    key = check.vector("key", key, dtype=bool, nonempty=False, what="a 1-D bool mask over frequencies 0..n_freq")
    if key.size > n_freq + 1:
        raise ConfigError("key", described(f"shape {key.shape}"),
                          f"must have at most n_freq + 1 = {n_freq + 1} entries")
    ax = check.axes("ax", ax)
    title = check.title("title", title)
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    for k in np.flatnonzero(key):
        ax.axvspan(k - 0.4, k + 0.4, color="C1", alpha=0.2, lw=0)
    area = 10 + 120 * np.sqrt(power / power.max()) if power.size and power.max() > 0 else 20
    ax.scatter(latent_frequency, latent_fraction, s=area, color="C0", alpha=0.7)
    ax.set_xlim(0.3, n_freq + 0.7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latent's leading frequency k (key frequencies shaded)")
    ax.set_ylabel("share of the latent's variance at k")
    _title(ax, title)
    if fig is not None:
        fig.tight_layout()  # room for the wrapped title
    return fig if fig is not None else ax.figure
