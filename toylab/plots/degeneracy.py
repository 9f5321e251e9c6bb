"""Figures of the degeneracy tools: arrays in, matplotlib Figure out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

__all__ = ["calibration_plot"]


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
