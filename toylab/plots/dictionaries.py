"""Figures of sparse dictionaries: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["pareto_plot", "recovery_plot", "frequency_alignment_plot"]


def _title(ax, title: str, width: int = 60):
    if title:
        ax.set_title(textwrap.fill(title, width), fontsize=9)


def pareto_plot(points: dict, score_name: str, frontiers: dict | None = None, ax=None, title: str = ""):
    """One marker per dictionary of a sweep: L0 (x) against a score (y), a colour per kind.
    ``points`` maps kind → (l0 array, score array); ``frontiers`` kind → bool mask of the
    Pareto-optimal points, joined by a line."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    for i, (kind, (l0, score)) in enumerate(points.items()):
        l0, score = np.asarray(l0, np.float64).ravel(), np.asarray(score, np.float64).ravel()
        ax.scatter(l0, score, s=18, color=f"C{i}", alpha=0.6, label=kind)
        if frontiers is not None and kind in frontiers:
            on = np.asarray(frontiers[kind]).ravel()
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
    judged against."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(5.5, 4))
    density = np.asarray(density, np.float64)
    for i, (name, values) in enumerate(scores.items()):
        ax.plot(density, np.asarray(values, np.float64), "o-", color=f"C{i}", label=name)
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
    indexed by frequency (entry 0 the constant), as ``fourier.key_frequencies`` returns."""
    fig = None
    if ax is None:
        fig, ax = plt.subplots(figsize=(6, 4))
    for k in np.flatnonzero(np.asarray(key)):
        ax.axvspan(k - 0.4, k + 0.4, color="C1", alpha=0.2, lw=0)
    power = np.asarray(latent_power, np.float64)
    area = 10 + 120 * np.sqrt(power / power.max()) if power.size and power.max() > 0 else 20
    ax.scatter(np.asarray(latent_frequency), np.asarray(latent_fraction), s=area, color="C0", alpha=0.7)
    ax.set_xlim(0.3, n_freq + 0.7)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("latent's leading frequency k (key frequencies shaded)")
    ax.set_ylabel("share of the latent's variance at k")
    _title(ax, title)
    if fig is not None:
        fig.tight_layout()  # room for the wrapped title
    return fig if fig is not None else ax.figure
