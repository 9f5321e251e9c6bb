"""Figures of the grokking family: arrays in, matplotlib Figure out."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from ..core.config import ConfigError, described
from . import _inputs as check

__all__ = ["loss_curves", "progress_measures_plot", "fourier_structure_plot", "ablation_plot",
           "label_noise_plot", "phase_diagram_plot", "pruning_plot"]

_PHASE_COLORS = ("tab:orange", "tab:green", "tab:purple")
_PHASE_NAMES = ("memorization", "circuit formation", "cleanup")


def _shade_phases(ax, bounds):
    """bounds: (t_mem, t_cleanup, t_end) steps; shades the three phases."""
    edges = [1 if ax.get_xscale() == "log" else 0, *bounds]
    for (lo, hi), color, name in zip(zip(edges[:-1], edges[1:]), _PHASE_COLORS, _PHASE_NAMES):
        if hi > lo:
            ax.axvspan(lo, hi, color=color, alpha=0.12, lw=0, label=name)


def _seed_curves(name, value, n_logs, optional=False):
    """A (seeds, logs) array from a 2-D array or one run's 1-D curve."""
    a = check.array(name, value, f"a (seeds, {n_logs}) array or one ({n_logs},) curve", ndim=(1, 2),
                    optional=optional)
    if a is None:
        return None
    a = a[None, :] if a.ndim == 1 else a
    if a.shape[1] != n_logs or a.shape[0] == 0:
        raise ConfigError(name, described(f"shape {a.shape}"), f"must be (seeds, {n_logs}): one value per logged step")
    return a


def loss_curves(steps, train_loss, test_loss=None, highlight: int = 0, title=""):
    """Train and test loss of several seeds on log-log axes; the highlighted seed bold.

    steps: (logs,) logged steps.
    train_loss: (seeds, logs) losses (a 1-D (logs,) curve is one seed).
    test_loss: optional, the same shape as ``train_loss``.
    highlight: index of the seed drawn bold (0 ≤ highlight < seeds).
    title: optional axes title.
    """
    steps = check.vector("steps", steps)
    train_loss = _seed_curves("train_loss", train_loss, steps.size)
    test_loss = _seed_curves("test_loss", test_loss, steps.size, optional=True)
    if test_loss is not None and test_loss.shape != train_loss.shape:
        raise ConfigError("test_loss", described(f"shape {test_loss.shape}"),
                          f"must have the shape of train_loss {train_loss.shape}")
    seeds = train_loss.shape[0]
    highlight = check.integer("highlight", highlight, f"a seed index in [0, {seeds - 1}]", lo=0, hi=seeds - 1)
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(5.5, 3.6))
    for i in range(train_loss.shape[0]):
        lw, alpha = (1.8, 1.0) if i == highlight else (0.7, 0.35)
        ax.plot(steps, train_loss[i], color="tab:blue", lw=lw, alpha=alpha, label="train" if i == highlight else None)
        if test_loss is not None:
            ax.plot(steps, test_loss[i], color="tab:red", lw=lw, alpha=alpha, label="test" if i == highlight else None)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("step (full-batch epochs)")
    ax.set_ylabel("cross-entropy loss")
    ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    fig.tight_layout()
    return fig


def progress_measures_plot(steps, measures: dict, bounds=None, title=""):
    """Losses (train, test, restricted, excluded), Gini coefficients and weight norm over
    training, with the three phases shaded.

    steps: (logs,) steps at which the measures were taken.
    measures: dict of name -> (logs,) values; "gini_W_E", "gini_W_L" and "weight_norm" are
        required, "train_loss", "test_loss", "restricted_loss" and "excluded_loss" are drawn
        when present (losses on a log axis).
    bounds: optional (t_mem, t_cleanup, t_end) steps ending the three phases (a None entry
        runs to the last step); None: no phases shaded.
    title: optional figure title.
    """
    steps = check.vector("steps", steps)
    measures = check.mapping("measures", measures, "name -> values at each step")
    for name in ("gini_W_E", "gini_W_L", "weight_norm"):
        check.entry("measures", measures, name, "the Gini coefficients and the weight norm are drawn")
    drawn = ("train_loss", "test_loss", "restricted_loss", "excluded_loss", "gini_W_E", "gini_W_L", "weight_norm")
    measures = {name: check.vector("measures", v, steps.size, what=f"{name!r}: one value per step ({steps.size})")
                for name, v in measures.items() if name in drawn}
    bounds = check.phase_bounds("bounds", bounds, float(steps[-1]))
    title = check.title("title", title)
    fig, axes = plt.subplots(1, 3, figsize=(13, 3.6))
    ax = axes[0]
    for name, color in (("train_loss", "tab:blue"), ("test_loss", "tab:red"),
                        ("restricted_loss", "tab:green"), ("excluded_loss", "tab:purple")):
        if name in measures:
            ax.plot(steps, measures[name], color=color, label=name.replace("_", " "))
    ax.set_yscale("log")
    ax.set_ylabel("loss")
    for name, color in (("gini_W_E", "tab:brown"), ("gini_W_L", "tab:olive")):
        axes[1].plot(steps, measures[name], color=color, label=name.replace("_", " "))
    axes[1].set_ylabel("Gini of Fourier norms")
    axes[2].plot(steps, measures["weight_norm"], color="k", label="sum of squared weights")
    axes[2].set_ylabel("sum of squared weights")
    for a in axes:
        a.set_xlabel("step")
        if bounds is not None:
            _shade_phases(a, bounds)
        a.legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def fourier_structure_plot(embed_norms, names, basis_freq, key_mask, cluster_freq, cluster_frac, logit_share,
                           title=""):
    """(1) Fourier norms of the embedding per basis vector (``basis_freq``: each one's
    frequency); (2) each neuron's frequency and
    the share of its variance that frequency explains; (3) the share of logit variance
    explained by cos(w(a+b−c)) for each w. ``key_mask`` and ``logit_share`` are indexed by
    frequency (entry 0 the constant), as :func:`toylab.analysis.fourier.key_frequencies` and
    :func:`~toylab.analysis.fourier.logit_frequency_components` return them.

    embed_norms: (basis,) norm of the embedding's component on each Fourier basis vector.
    names: (basis,) the basis vectors' names ("const", then "cos k" / "sin k").
    basis_freq: (basis,) each basis vector's frequency (integers in 0..n_freq).
    key_mask: (n_freq + 1,) bool, True at the key frequencies.
    cluster_freq: (neurons,) each neuron's frequency (integer); cluster_frac: (neurons,) the
        share of its variance that frequency explains.
    logit_share: (n_freq + 1,) share of logit variance per frequency.
    title: optional figure title.
    """
    embed_norms = check.vector("embed_norms", embed_norms)
    basis = embed_norms.size
    names = [str(n) for n in check.labels("names", names, basis)]
    basis_freq = check.vector("basis_freq", basis_freq, basis, dtype=np.int64,
                              what=f"one integer frequency per basis vector ({basis})")
    key_mask = check.vector("key_mask", key_mask, dtype=bool, what="a 1-D bool mask over frequencies 0..n_freq")
    n_freq = len(key_mask) - 1
    if basis_freq.min() < 0 or basis_freq.max() > n_freq:
        raise ConfigError("basis_freq", described(f"values in [{basis_freq.min()}, {basis_freq.max()}]"),
                          f"must be frequencies in 0..{n_freq} (the length of key_mask − 1)")
    cluster_freq = check.vector("cluster_freq", cluster_freq, dtype=np.int64, nonempty=False,
                                what="one integer frequency per neuron")
    cluster_frac = check.vector("cluster_frac", cluster_frac, cluster_freq.size, nonempty=False)
    logit_share = check.vector("logit_share", logit_share, n_freq + 1,
                               what=f"a 1-D array over frequencies 0..n_freq ({n_freq + 1}, as key_mask)")
    title = check.title("title", title)
    fig, axes = plt.subplots(1, 3, figsize=(14, 3.6))
    ax = axes[0]
    colors = ["tab:red" if f > 0 and key_mask[f] else "tab:gray" for f in basis_freq]
    ax.bar(np.arange(len(names)), embed_norms, color=colors)
    # One tick per frequency, at its cos bar (its sin bar is the next one).
    ticks = [0] + [i for i, name in enumerate(names) if name.startswith("cos")]
    labels = ["c"] + [name.split()[1] for name in names if name.startswith("cos")]
    every = max(1, len(ticks) // 16)
    ax.set_xticks(ticks[::every], labels[::every], fontsize=7)
    ax.set_xlabel("frequency k (bars: constant, then cos k, sin k)")
    ax.set_ylabel("norm of W_E component")
    ax.set_title("embedding in the Fourier basis (key in red)", fontsize=9)
    ax = axes[1]
    order = np.lexsort((-cluster_frac, cluster_freq))
    ax.scatter(np.arange(len(order)), cluster_frac[order], c=cluster_freq[order], cmap="tab20", s=6)
    ax.axhline(0.85, color="k", ls="--", lw=0.7)
    ax.set_xlabel("neuron (sorted by frequency)")
    ax.set_ylabel("variance explained by its frequency")
    ax.set_ylim(0, 1.02)
    ax.set_title("neurons cluster by frequency", fontsize=9)
    ax = axes[2]
    ks = np.arange(1, n_freq + 1)
    ax.bar(ks, logit_share[1:], color=["tab:red" if m else "tab:gray" for m in key_mask[1:]])
    ax.set_xlabel("frequency w")
    ax.set_ylabel("share of logit variance")
    ax.set_title("logits ≈ Σ_w α_w cos(w(a+b−c))", fontsize=9)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def ablation_plot(labels, losses, reference=None, title=""):
    """Loss after each Fourier-space ablation, beside the unablated loss and log p (chance).

    labels: one name per ablation.
    losses: (len(labels),) loss after each ablation (log axis: zeros are not shown).
    reference: optional list of (name, loss) or (name, loss, colour) drawn as dashed lines
        (e.g. the unablated loss and log p); None or empty: none.
    title: optional axes title.
    """
    labels = [str(x) for x in check.labels("labels", labels)]
    if not labels:
        raise ConfigError("labels", [], "must name at least one ablation")
    losses = check.vector("losses", losses, len(labels))
    refs = []
    what = "a list of (name, loss) or (name, loss, colour) lines"
    if reference is not None:
        if isinstance(reference, (str, bytes)) or not hasattr(reference, "__iter__"):
            raise ConfigError("reference", check.shown(reference), f"must be {what}")
        for i, r in enumerate(reference):
            if isinstance(r, (str, bytes)) or not hasattr(r, "__len__") or len(r) not in (2, 3):
                raise ConfigError("reference", check.shown(reference), f"must be {what} (entry {i} is not)")
            refs.append((str(r[0]), check.number("reference", r[1], f"{what} (entry {i}: a number)"),
                         r[2] if len(r) == 3 else f"C{i + 1}"))
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(6.5, 3.4))
    ax.bar(np.arange(len(labels)), losses, color="tab:blue")
    ax.set_xticks(np.arange(len(labels)), labels, rotation=20, fontsize=8, ha="right")
    for name, v, color in refs:
        ax.axhline(v, ls="--", lw=0.8, color=color, label=name)
    ax.set_yscale("log")
    ax.set_ylabel("loss over all pairs")
    if refs:
        ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def label_noise_plot(steps, curves: dict, expected_train=None, title=""):
    """Train / clean-train / test accuracy over training for one corrupted-label run.

    steps: (logs,) logged steps (log axis: step 0 is not shown).
    curves: dict of name -> (logs,) accuracies in [0, 1], one line each.
    expected_train: optional number, the train accuracy 1−ξ+ξ/p of a model that memorises
        nothing of the noise, drawn dashed.
    title: optional axes title.
    """
    steps = check.vector("steps", steps)
    curves = check.mapping("curves", curves, "name -> accuracy at each step")
    curves = {name: check.vector("curves", y, steps.size, what=f"{name!r}: one accuracy per step ({steps.size})")
              for name, y in curves.items()}
    expected_train = check.number("expected_train", expected_train, "a number (an accuracy)", optional=True)
    title = check.title("title", title)
    fig, ax = plt.subplots(figsize=(5.5, 3.4))
    for name, y in curves.items():
        ax.plot(steps, y, label=name)
    if expected_train is not None:
        ax.axhline(expected_train, color="k", ls="--", lw=0.8, label="1−ξ+ξ/p")
    ax.set_xscale("log")
    ax.set_ylim(0, 1.03)
    ax.set_xlabel("step")
    ax.set_ylabel("accuracy")
    ax.legend(fontsize=7)
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    return fig


def phase_diagram_plot(fractions, noises, test_acc, train_acc, expected, title=""):
    """Test accuracy and how close train accuracy is to 1−ξ+ξ/p over (train fraction × ξ).

    fractions: (F,) train fractions (rows); noises: (N,) label-noise levels ξ (columns).
    test_acc, train_acc: (F, N) accuracies.
    expected: the expected train accuracy 1−ξ+ξ/p: a number, (N,) per ξ, or (F, N).
    title: optional figure title.
    """
    fractions = check.vector("fractions", fractions)
    noises = check.vector("noises", noises)
    grid = (fractions.size, noises.size)
    test_acc = check.array("test_acc", test_acc, ndim=2)
    train_acc = check.array("train_acc", train_acc, ndim=2)
    for name, a in (("test_acc", test_acc), ("train_acc", train_acc)):
        if a.shape != grid:
            raise ConfigError(name, described(f"shape {a.shape}"), f"must be (len(fractions), len(noises)) = {grid}")
    expected = check.array("expected", expected, "a number, (len(noises),) or (len(fractions), len(noises))",
                           ndim=(0, 1, 2))
    if expected.shape not in ((), (noises.size,), grid):
        raise ConfigError("expected", described(f"shape {expected.shape}"),
                          f"must be a number, ({noises.size},) per ξ or {grid}")
    title = check.title("title", title)
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.6))
    for ax, data, label, cmap in ((axes[0], test_acc, "test accuracy", "viridis"),
                                  (axes[1], train_acc - expected, "train acc − (1−ξ+ξ/p)", "coolwarm")):
        vmin, vmax = (0, 1) if cmap == "viridis" else (-0.5, 0.5)
        im = ax.imshow(data, origin="lower", cmap=cmap, vmin=vmin, vmax=vmax, aspect="auto")
        ax.set_xticks(np.arange(len(noises)), [f"{x:g}" for x in noises])
        ax.set_yticks(np.arange(len(fractions)), [f"{f:g}" for f in fractions])
        ax.set_xlabel("label noise ξ")
        ax.set_ylabel("train fraction")
        for i in range(data.shape[0]):
            for j in range(data.shape[1]):
                ax.text(j, i, f"{data[i, j]:.2f}", ha="center", va="center", fontsize=7)
        fig.colorbar(im, ax=ax, label=label)
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig


def pruning_plot(shares, curve, ipr, size, title=""):
    """(1) accuracies as the lowest-IPR neurons are pruned; (2) each neuron's IPR against its
    weight size.

    shares: (k,) fractions of neurons pruned, in [0, 1].
    curve: k dicts (one per share) with the accuracies "corrupted", "clean_train" and "test";
        or one dict of those names -> (k,) accuracies.
    ipr: (neurons,) each neuron's IPR; size: (neurons,) its ‖w_in‖·‖w_out‖ (log axis: zeros
        are not shown).
    title: optional figure title.
    """
    shares = check.vector("shares", shares)
    keys = ("corrupted", "clean_train", "test")
    if isinstance(curve, dict):
        curve = {k: check.vector("curve", check.entry("curve", curve, k, "the accuracies after each pruning share"),
                                 shares.size, what=f"{k!r}: one accuracy per share ({shares.size})") for k in keys}
        curve = [{k: curve[k][i] for k in keys} for i in range(shares.size)]
    elif curve is None or isinstance(curve, (str, bytes)) or not hasattr(curve, "__len__") or len(curve) != shares.size:
        raise ConfigError("curve", check.shown(curve), f"must give one dict of accuracies per share ({shares.size})")
    else:
        curve = [{k: check.number("curve", check.entry("curve", c, k, "one dict of accuracies per share"),
                                  f"{k!r}: an accuracy") for k in keys} for c in curve]
    ipr = check.vector("ipr", ipr, nonempty=False)
    size = check.vector("size", size, ipr.size, nonempty=False)
    title = check.title("title", title)
    fig, axes = plt.subplots(1, 2, figsize=(10, 3.5))
    for key, color in (("corrupted", "tab:red"), ("clean_train", "tab:blue"), ("test", "tab:green")):
        axes[0].plot(shares * 100, [c[key] for c in curve], "o-", ms=3, color=color,
                     label={"corrupted": "corrupted train labels", "clean_train": "clean train", "test": "test"}[key])
    axes[0].set_xlabel("% of neurons pruned (lowest IPR first)")
    axes[0].set_ylabel("accuracy")
    axes[0].set_ylim(0, 1.03)
    axes[0].legend(fontsize=7)
    axes[1].scatter(ipr, size, s=6)
    axes[1].set_xlabel("IPR of the neuron's Fourier weights")
    axes[1].set_ylabel("‖w_in‖·‖w_out‖")
    axes[1].set_yscale("log")
    fig.suptitle(title, fontsize=10)
    fig.tight_layout()
    return fig
