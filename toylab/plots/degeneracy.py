"""Figures of the degeneracy tools: arrays in, matplotlib Figure out."""

from __future__ import annotations

import textwrap

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["calibration_plot", "validation_plot", "llc_over_training_plot", "kgon_plot", "degeneracy_counts_plot"]


def _wrapped(title: str, width: int) -> str:
    """Long titles (they carry the settings) on several lines instead of off the figure."""
    return textwrap.fill(title, width) if title else title


def calibration_plot(calibration, nbeta_index: int = 0, localization_index: int = 0, title: str = ""):
    """A calibration at one (nβ, γ): left, each step size's loss trace (mean over chains,
    minus L(w*), burn-in shaded); right, the estimate (± std over chains) against the step
    size, unstable steps hollow and the chosen step marked.

    calibration: a :class:`toylab.analysis.llc.Calibration` (what ``calibrate`` returns):
        its grid step sizes × nβ × γ, results (traces (steps, nβ, γ, chains, draws),
        init_loss, mean, std, burnin), stable and chosen.
    nbeta_index, localization_index: which nβ and γ of the grid to draw (integers).
    title: optional; default names the nβ and γ.
    """
    what = "a Calibration (from toylab.analysis.llc.calibrate)"
    try:
        res = calibration.results
        eps = np.asarray(calibration.step_sizes, np.float64).ravel()
        n_nb, n_loc = np.size(calibration.nbetas), np.size(calibration.localizations)
        grids = {k: np.asarray(getattr(res, k), np.float64) for k in ("traces", "init_loss", "mean", "std")}
        grids["stable"] = np.asarray(calibration.stable, bool)
        chosen_grid = np.asarray(calibration.chosen, np.float64)
        burnin = res.burnin
    except (AttributeError, TypeError, ValueError):
        raise ConfigError("calibration", check.shown(calibration), f"must be {what}") from None
    lead = (eps.size, n_nb, n_loc)
    bad = [k for k, a in grids.items() if a.shape[:3] != lead or (k == "traces" and a.ndim != 5)]
    if bad or chosen_grid.shape != lead[1:] or eps.size == 0:
        raise ConfigError("calibration", described(f"grid {lead} with {bad or ['chosen']} of another shape"),
                          f"must be {what}: arrays leading with (step sizes, nβ, γ)")
    nbeta_index = check.integer("nbeta_index", nbeta_index, f"an index into the {n_nb} nβ values", lo=-n_nb,
                                hi=n_nb - 1)
    localization_index = check.integer("localization_index", localization_index,
                                       f"an index into the {n_loc} γ values", lo=-n_loc, hi=n_loc - 1)
    title = check.title("title", title)
    at = (slice(None), nbeta_index, localization_index)
    traces = grids["traces"][at]  # (steps, chains, draws)
    init, mean, std, stable = (grids[k][at] for k in ("init_loss", "mean", "std", "stable"))
    chosen = float(chosen_grid[nbeta_index, localization_index])
    fig, (left, right) = plt.subplots(1, 2, figsize=(10, 3.6))
    colours = plt.cm.viridis(np.linspace(0, 0.9, len(eps)))
    curves = traces.mean(1) - init[:, None]
    for i, e in enumerate(eps):
        left.plot(curves[i], color=colours[i], lw=1, ls="-" if stable[i] else "--",
                  label=f"ε = {e:.2g}" + ("" if stable[i] else " (unstable)"))
    left.axvspan(0, burnin, color="0.9", zorder=0, label="burn-in")
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
    nb = float(np.asarray(calibration.nbetas).ravel()[nbeta_index])
    gam = float(np.asarray(calibration.localizations).ravel()[localization_index])
    fig.suptitle(title or f"LLC calibration at nβ = {nb:.3g}, γ = {gam:.3g}")
    fig.tight_layout()
    return fig


def validation_plot(labels, closed_forms, expected, estimates: dict | None = None, title: str = ""):
    """Estimated LLCs against theory, one column per model: the closed-form λ (×), what the
    estimator measures at the case's nβ (—: the exact finite-nβ value, or λ shifted by its
    multiplicity) and each sampler's estimate ± std over chains (``estimates``: {name: (means,
    stds)}), side by side.

    labels: one name per model (k of them).
    closed_forms: (k,) closed-form λ; expected: (k,) the value expected at the case's nβ
        (log axis: values ≤ 0 are not shown).
    estimates: optional dict of sampler name -> (means (k,), stds (k,)); None or {}: none.
    title: optional axes title.
    """
    labels = [str(x) for x in check.labels("labels", labels)]
    k = len(labels)
    if k == 0:
        raise ConfigError("labels", [], "must name at least one model")
    lam = check.vector("closed_forms", closed_forms, k)
    exp = check.vector("expected", expected, k)
    what = f"sampler -> (means, stds), each one value per model ({k})"
    estimates = check.mapping("estimates", {} if estimates is None else estimates, what, nonempty=False)
    for name, pair in estimates.items():
        if isinstance(pair, (str, bytes)) or not hasattr(pair, "__len__") or len(pair) != 2:
            raise ConfigError("estimates", check.shown(pair), f"must be {what} ({name!r} is not a pair)")
        estimates[name] = tuple(check.vector("estimates", v, k, what=f"{name!r}: {what}") for v in pair)
    title = check.title("title", title)
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
    excluded loss) is drawn on the loss axis as dashed lines with markers.

    snapshot_steps: (s,) steps of the snapshots; llc: (s,) LLC estimates; llc_std: (s,) their
        std over chains, or None (no error bars).
    steps: (logs,) logged steps; train_loss: (logs,) (log axis); test_loss: optional
        (logs,).
    bounds: optional phase bounds as above; title: optional axes title.
    progress: optional dict of name -> (s,) values at the snapshot steps.
    """
    from .grokking import _shade_phases

    snapshot_steps = check.vector("snapshot_steps", snapshot_steps)
    s = snapshot_steps.size
    llc = check.vector("llc", llc, s, what=f"one LLC estimate per snapshot ({s})")
    llc_std = check.vector("llc_std", llc_std, s, optional=True, what=f"None or one std per snapshot ({s})")
    steps = check.vector("steps", steps)
    train_loss = check.vector("train_loss", train_loss, steps.size, what=f"one loss per step ({steps.size})")
    test_loss = check.vector("test_loss", test_loss, steps.size, optional=True,
                             what=f"None or one loss per step ({steps.size})")
    bounds = check.phase_bounds("bounds", bounds, int(steps[-1]))
    title = check.title("title", title)
    progress = {name: check.vector("progress", v, s, what=f"{name!r}: one value per snapshot ({s})")
                for name, v in (check.mapping("progress", progress, "name -> values at the snapshot steps",
                                              optional=True, nonempty=False) or {}).items()}

    fig, (top, bottom) = plt.subplots(2, 1, figsize=(6.5, 5.5), sharex=True)
    top.errorbar(snapshot_steps, llc, yerr=llc_std, color="C0", marker="o", ms=3, capsize=2)
    top.set_ylabel("LLC estimate")
    bottom.plot(steps, train_loss, color="tab:blue", label="train")
    if test_loss is not None:
        bottom.plot(steps, test_loss, color="tab:red", label="test")
    for i, (name, values) in enumerate(progress.items()):
        bottom.plot(snapshot_steps, values, ls="--", marker=".", ms=4, color=f"C{i + 2}", label=name)
    bottom.set(yscale="log", xlabel="step", ylabel="cross-entropy loss")
    if bounds is not None:
        for ax in (top, bottom):
            _shade_phases(ax, bounds)
    bottom.legend(fontsize=7)
    top.set_title(_wrapped(title, 100), fontsize=8)
    fig.tight_layout()
    return fig


def kgon_plot(examples: dict, ks, llcs, losses, title: str = ""):
    """One k-gon of each order found (the columns of W as arrows), then the LLC and the loss
    of every run against its k.

    examples: dict of k -> (2, n) weight matrix W of one run that found a k-gon (may be {}).
    ks: (runs,) each run's k (integers); llcs: (runs,) its LLC estimate; losses: (runs,) its
        loss at w*.
    title: optional figure title.
    """
    examples = check.mapping("examples", examples, "k -> a (2, n) weight matrix", nonempty=False)
    for k, W in examples.items():
        W = check.array("examples", W, f"{k!r}: a (2, n) weight matrix", ndim=2)
        if W.shape[0] != 2:
            raise ConfigError("examples", described(f"{k!r} of shape {W.shape}"), "must map k to a (2, n) matrix")
        examples[k] = W
    ks = check.vector("ks", ks, dtype=np.int64, what="a 1-D array of integers (each run's k)")
    llcs = check.vector("llcs", llcs, ks.size, what=f"one LLC per run ({ks.size})")
    losses = check.vector("losses", losses, ks.size, what=f"one loss per run ({ks.size})")
    title = check.title("title", title)
    n = len(examples)
    fig, axes = plt.subplots(1, n + 2, figsize=(2.6 * (n + 2), 2.8))
    for ax, (k, W) in zip(axes, examples.items()):
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
    (tol · max). Right: the counts side by side (parameters, rank, 2·λ̂, …).

    eigenvalues: 1-D array of Hessian eigenvalues (any order, signs ignored).
    tol: the relative threshold (a number ≥ 0): near zero means ≤ tol · max |eigenvalue|.
    counts: dict of name -> number, one bar each.
    title: optional figure title.
    """
    ev = np.sort(np.abs(check.vector("eigenvalues", eigenvalues)))[::-1]
    tol = check.number("tol", tol, "a number ≥ 0")
    if tol < 0:
        raise ConfigError("tol", tol, "must be a number ≥ 0")
    counts = {str(k): check.number("counts", v, f"{k!r}: a number (a count)")
              for k, v in check.mapping("counts", counts, "name -> count").items()}
    title = check.title("title", title)
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
