"""Figures of the degeneracy tools: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["calibration_plot", "validation_plot", "llc_over_training_plot", "kgon_plot", "degeneracy_counts_plot"]


def _wrapped(title: str, width: int) -> str:
    """Long titles (they carry the settings) on several lines instead of off the figure."""
    return textwrap.fill(title, width) if title else title


def calibration_plot(calibration, nbeta_index: int = 0, localization_index: int = 0, title: str = ""):
    """A calibration at one (nβ, γ): left, each step size's loss trace (mean over chains,
    minus L(w*), burn-in shaded); right, the estimate (± std over chains) against the step
    size, unstable steps hollow and the chosen step marked."""
    res = calibration.results
    eps = np.asarray(calibration.step_sizes)
    traces = np.asarray(res.traces)[:, nbeta_index, localization_index]  # (steps, chains, draws)
    init = np.asarray(res.init_loss)[:, nbeta_index, localization_index]
    mean = np.asarray(res.mean)[:, nbeta_index, localization_index]
    std = np.asarray(res.std)[:, nbeta_index, localization_index]
    stable = np.asarray(calibration.stable)[:, nbeta_index, localization_index]
    chosen = float(np.asarray(calibration.chosen)[nbeta_index, localization_index])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(eps)))
    curves = traces.mean(1) - init[:, None]
    for i, e in enumerate(eps):
        left.plot(curves[i], color=colours[i], lw=1, ls="-" if stable[i] else "--",
                  label=f"ε = {e:.2g}" + ("" if stable[i] else " (unstable)"))
    left.axvspan(0, res.burnin, color="0.9", zorder=0, label="burn-in")
    shown = curves[stable] if stable.any() else curves
    finite = shown[np.isfinite(shown)]
    if finite.size:  # the stable traces set the scale; a diverging one leaves the frame
        lo, hi = float(finite.min()), float(finite.max())
        pad = 0.1 * (hi - lo) or 1.0
        left.set_ylim(lo - pad, hi + pad)
    left.set(xlabel="draw", ylabel="L(w) − L(w*) (mean over chains)")
    left.legend(fontsize=7)
    ok = stable & np.isfinite(mean)
    right.errorbar(eps[ok], mean[ok], yerr=std[ok], fmt="none", ecolor="0.5", capsize=2)
    right.scatter(eps[ok], mean[ok], color="C0", zorder=3, label="stable")
    shaky = ~stable & np.isfinite(mean)
    right.scatter(eps[shaky], mean[shaky], facecolors="none", edgecolors="C3", zorder=3, label="unstable")
    lost = ~np.isfinite(mean)
    if lost.any():  # diverged: no estimate to draw, so a mark on the axis
        right.scatter(eps[lost], np.full(lost.sum(), np.nanmin(np.where(ok, mean, np.nan)) if ok.any() else 0.0),
                      marker="x", color="C3", zorder=3, label="diverged")
    if np.isfinite(chosen):
        right.axvline(chosen, color="C2", ls="--", lw=1, label=f"chosen ε = {chosen:.2g}")
    right.set(xscale="log", xlabel="step size ε", ylabel="LLC estimate")
    right.legend(fontsize=7)
    nb = float(np.asarray(calibration.nbetas)[nbeta_index])
    gam = float(np.asarray(calibration.localizations)[localization_index])
    fig.suptitle(title or f"LLC calibration at nβ = {nb:.3g}, γ = {gam:.3g}")
    fig.tight_layout()
    return fig


def validation_plot(labels, closed_forms, expected, estimates: dict, title: str = ""):
    """Estimated LLCs against theory, one column per model: the closed-form λ (×), what the
    estimator measures at the case's nβ (—: the exact finite-nβ value, or λ shifted by its
    multiplicity) and each sampler's estimate ± std over chains (``estimates``: {name: (means,
    stds)}), side by side."""
    lam, exp = np.asarray(closed_forms, float), np.asarray(expected, float)
    x = np.arange(len(labels))
    fig, ax = plt.subplots(figsize=(max(6.0, 0.8 * len(labels) + 2), 4.6))
    ax.scatter(x, lam, marker="x", color="k", zorder=3, label="closed-form λ")
    ax.hlines(exp, x - 0.35, x + 0.35, color="k", lw=1.5, label="expected at this nβ")
    width = 0.5 / max(len(estimates), 1)
    for i, (name, (means, stds)) in enumerate(estimates.items()):
        off = -0.25 + width * (i + 0.5)
        ax.errorbar(x + off, means, yerr=stds, fmt="o", ms=4, capsize=2, color=f"C{i}", label=name)
    ax.set_xticks(x, labels, rotation=35, ha="right", fontsize=7)
    ax.set(ylabel="LLC", yscale="log")
    ax.legend(fontsize=7, loc="upper left")
    ax.set_title(_wrapped(title, 90), fontsize=9)
    fig.tight_layout()
    return fig


def llc_over_training_plot(snapshot_steps, llc, llc_std, steps, train_loss, test_loss=None, bounds=None,
                           title: str = "", progress: dict | None = None):
    """The LLC at each snapshot (± std over chains) above the train loss (and the test loss
    when given). ``bounds``: None (no phases shaded) or the steps (t_mem, t_cleanup, t_end)
    ending grokking's three phases (memorization, circuit formation, cleanup; a None entry
    runs to the last step), as :func:`toylab.experiments.reproductions.grokking.locate_phases`
    returns them; ``progress`` ({name: values at the snapshot steps}, e.g. restricted and
    excluded loss) is drawn on the loss axis as dashed lines with markers."""
    from ..core.config import ConfigError, described

    if bounds is not None and (isinstance(bounds, (str, bytes)) or not hasattr(bounds, "__len__") or len(bounds) != 3):
        raise ConfigError("bounds", described(repr(bounds)), "must be None or three steps (t_mem, t_cleanup, t_end)")
    from .grokking import _shade_phases

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    top.errorbar(snapshot_steps, llc, yerr=llc_std, color="C0", marker="o", ms=3, capsize=2)
    top.set_ylabel("LLC estimate")
    bottom.plot(steps, train_loss, color="tab:blue", label="train")
    if test_loss is not None:
        bottom.plot(steps, test_loss, color="tab:red", label="test")
    for i, (name, values) in enumerate((progress or {}).items()):
        bottom.plot(snapshot_steps, values, ls="--", marker=".", ms=4, color=f"C{i + 2}", label=name)
    bottom.set(yscale="log", xlabel="step", ylabel="cross-entropy loss")
    if bounds is not None:
        last = int(np.asarray(steps)[-1])
        shown = tuple(b if b is not None else last for b in bounds)
        for ax in (top, bottom):
            _shade_phases(ax, shown)
    bottom.legend(fontsize=7)
    top.set_title(_wrapped(title, 100), fontsize=8)
    fig.tight_layout()
    return fig


def kgon_plot(examples: dict, ks, llcs, losses, title: str = ""):
    """One k-gon of each order found (the columns of W as arrows), then the LLC and the loss
    of every run against its k."""
    ks, llcs, losses = (np.asarray(v) for v in (ks, llcs, losses))
    n = len(examples)
    fig, axes = plt.subplots(1, n + 2, figsize=(2.6 * (n + 2), 2.8))
    for ax, (k, W) in zip(axes, examples.items()):
        W = np.asarray(W)
        for j in range(W.shape[1]):
            ax.plot([0, W[0, j]], [0, W[1, j]], color=plt.cm.tab10(j % 10), lw=1.5)
            ax.scatter(W[0, j], W[1, j], color=plt.cm.tab10(j % 10), s=10)
        r = 1.2 * max(1e-3, float(np.abs(W).max()))
        ax.set(xlim=(-r, r), ylim=(-r, r), aspect="equal", title=f"{k}-gon", xticks=[], yticks=[])
    jitter = np.linspace(-0.15, 0.15, len(ks)) if len(ks) > 1 else np.zeros(1)
    axes[n].scatter(ks + jitter, llcs, s=12)
    axes[n].set(xlabel="k (features represented)", ylabel="LLC estimate", xticks=sorted(set(ks.tolist())))
    axes[n + 1].scatter(ks + jitter, losses, s=12, color="C1")
    axes[n + 1].set(xlabel="k", ylabel="loss at w*", xticks=sorted(set(ks.tolist())))
    fig.suptitle(_wrapped(title, 100), fontsize=9)
    fig.tight_layout()
    return fig


def degeneracy_counts_plot(eigenvalues, tol: float, counts: dict, title: str = ""):
    """Left: |Hessian eigenvalues| sorted, on a log axis, with the near-zero threshold
    (tol · max). Right: the counts side by side (parameters, rank, 2·λ̂, …)."""
    ev = np.sort(np.abs(np.asarray(eigenvalues, float)))[::-1]
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.8))
    left.semilogy(np.arange(1, ev.size + 1), np.maximum(ev, 1e-30), lw=1)
    left.axhline(tol * ev[0], color="C3", ls="--", lw=1, label=f"near zero: ≤ {tol:g} · max")
    left.set(xlabel="index", ylabel="|eigenvalue|")
    left.legend(fontsize=7)
    names = list(counts)
    right.barh(names, [counts[k] for k in names], color=[f"C{i}" for i in range(len(names))])
    for i, k in enumerate(names):
        right.text(counts[k], i, f" {counts[k]:.0f}", va="center", fontsize=7)
    right.invert_yaxis()
    right.set(xlabel="directions")
    fig.suptitle(_wrapped(title, 100), fontsize=9)
    fig.tight_layout()
    return fig
