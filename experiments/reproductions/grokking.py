"""Grokking modular addition (Nanda et al. 2023) and corrupted labels (Doshi et al. 2023).

    (a) train/test loss of the one-layer transformer on (a + b) mod p: train loss collapses
        long before test loss (several seeds in one sweep)
    (b) progress measures over training (restricted and excluded loss, Gini coefficients of
        the Fourier norms of W_E and W_L, sum of squared weights) with the three phases —
        memorization, circuit formation, cleanup — located from the measured curves
    (c) the mechanism: sparse Fourier spectrum of the embedding, neurons clustered by
        frequency, logits made of cos(w(a+b−c)) terms, and Fourier-space ablations
    (d) corrupted labels in the one-hidden-layer MLP: with weight decay the net learns the
        true rule and ignores the corrupted labels (train accuracy ≈ 1−ξ+ξ/p, test ≈ 100%);
        without it, it memorises them with low-IPR neurons, and pruning those neurons
        removes the memorisation; a small phase diagram over train fraction × ξ

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
``train_abc`` runs the transformer's sweep and ``train_d`` the MLP's two (with and without
weight decay), ``analyse_X`` measures them (for (a)-(c), the run that grokked first in detail),
``draw_X`` writes the PNGs, ``claims_X`` checks the papers' statements on the measured numbers.

``--quick`` trains a small prime that groks within minutes on a laptop CPU (found by
measurement: p = 31 with half the pairs in training); the full mode uses p = 113 and 30% of
the pairs, as the paper, with more seeds (a GPU job).
Run: ``toylab reproduce grokking [--quick]`` or ``python -m toylab.experiments.reproductions.grokking``.
"""

from __future__ import annotations

import math
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main, shared_sweep
from toylab.analysis import fourier as fa
from toylab.experiments.reproductions._claims import Claim
from toylab.core.sweep import family_arg, run_sweep
from toylab.families.grokking import grid_train_mask, table_of
from toylab.plots import grokking as plots

NAME = "grokking"


def _first(steps, condition):
    """The first logged step where condition holds (None if never)."""
    idx = np.flatnonzero(condition)
    return int(steps[idx[0]]) if idx.size else None


def locate_phases(steps, train_acc, test_loss):
    """Phase boundaries from the curves. Memorization (train loss falls, test loss rises)
    ends at the test-loss peak after the training set is fitted (train accuracy 100%);
    cleanup starts when the test loss has fallen half-way, in log, from that peak to its
    final value; cleanup ends when the test loss is within a factor 10 of its final value.
    Returns (t_mem, t_cleanup, t_end), None where a boundary is never reached."""
    fitted = np.flatnonzero(train_acc >= 1.0)
    if not fitted.size:
        return None, None, None
    log_test = np.log(np.maximum(test_loss, 1e-30))
    peak_i = int(fitted[0] + np.argmax(log_test[fitted[0]:]))
    final = log_test[-1]
    later = np.arange(len(steps)) >= peak_i
    t_clean = _first(steps, later & (log_test <= 0.5 * (log_test[peak_i] + final)))
    t_end = _first(steps, later & (log_test <= final + math.log(10)))
    return int(steps[peak_i]), t_clean, t_end


# ----------------------------------------------------------------------------- (a)-(c): grokking


def grokking_setup(quick: bool) -> tuple[dict, int]:
    if quick:
        return {"p": 31, "train_fraction": 0.5, "steps": 8000, "log_every": 40,
                "snapshot_steps": tuple(range(0, 8001, 400))}, 3
    return {"p": 113, "train_fraction": 0.3, "steps": 40_000, "log_every": 100,
            "snapshot_steps": tuple(range(0, 40_001, 500))}, 16


def _sweep_dir(work, name):
    """A results folder under ``work`` (kept and resumed), or None (a temporary one)."""
    return None if work is None else Path(work) / name


def seed_zero_sweep(quick: bool, quiet: bool, work=None):
    """The one-run sweep of the transformer of (a)–(c) at seed 0, trained once per ``toylab
    reproduce`` for every reproduction that reads it (under ``work``/NAME when given)."""
    base, _ = grokking_setup(quick)
    return shared_sweep(f"grokking-{'quick' if quick else 'full'}-seed0", NAME, base, quiet=quiet, work=work)


def grokking_runs(quick: bool, quiet: bool, seeds: int, work=None) -> list:
    """Seeds 0 … seeds−1 of the transformer of (a)–(c), with snapshots. Seed 0 is a one-run
    sweep of its own, shared (:func:`~toylab.experiments.reproductions._common.shared_sweep`)
    by every reproduction that reads this transformer (degeneracy (b), dictionaries (c),
    interaction): one ``toylab reproduce`` trains it once. The other seeds are one sweep."""
    base, _ = grokking_setup(quick)
    mode = "quick" if quick else "full"
    zero, rest = seed_zero_sweep(quick, quiet, work), []
    if seeds > 1:
        folder = _sweep_dir(work, f"grokking-{mode}-seeds-1-{seeds - 1}")
        rest = run_sweep(NAME, {**base, "seed": base.get("seed", 0) + 1}, seeds=seeds - 1, quiet=quiet,
                         out=folder, resume=folder is not None and folder.exists())
    return [zero[0], *rest]  # read after both are asked for: a plan (toylab reproduce --plan) records both


def train_abc(quick: bool, quiet: bool, work=None, shared=None):
    """The transformer's seeds of one (p, train fraction) with snapshots."""
    return grokking_runs(quick, quiet, grokking_setup(quick)[1], work)


def analyse_abc(res, quick: bool) -> dict:
    """Every seed's curves and the steps where it fits and generalises; the run that grokked
    first (or, if none did, the lowest final test loss) read in detail: its embedding's
    Fourier spectrum and key frequencies, neurons clustered by frequency, the logits' key
    share, progress measures over its snapshots, phase boundaries and Fourier ablations."""
    base, seeds = grokking_setup(quick)
    p = base["p"]
    cfg = res[0].config
    steps = res[0].steps
    train_loss = np.stack([r.metrics["train_loss"] for r in res])
    test_loss = np.stack([r.metrics["test_loss"] for r in res])
    test_acc = np.stack([r.metrics["test_accuracy"] for r in res])
    train_acc = np.stack([r.metrics["train_accuracy"] for r in res])
    t_fit = [_first(steps, a >= 1.0) for a in train_acc]
    t_grok = [_first(steps, a >= 0.95) for a in test_acc]
    grokked = [i for i, t in enumerate(t_grok) if t is not None]
    chosen = min(grokked, key=lambda i: t_grok[i]) if grokked else int(np.argmin(test_loss[:, -1]))

    # ---- the chosen run's mechanism, from its final model
    run = res[chosen]
    model = run.model
    hp = cfg.hparams()
    embed_norms = np.asarray(fa.embedding_fourier_norms(model.W_E, p))
    embed_power = np.asarray(fa.frequency_power(embed_norms, p))  # norms² summed per frequency
    key = np.asarray(fa.key_frequencies(embed_power))
    key_share = float(embed_power[key].sum() / embed_power[1:].sum())
    neurons = fa.grid_neurons(model, p, hp["alpha"])
    cl_freq, cl_frac, _ = (np.asarray(x) for x in fa.neuron_frequency_clusters(neurons, p))
    active = np.asarray(neurons).reshape(p * p, -1).std(0) > 1e-3 * np.asarray(neurons).std()
    logits = fa.grid_logits(model, p, hp["alpha"])
    _, logit_share = (np.asarray(x) for x in fa.logit_frequency_components(logits, p))
    key_logit_share = float(logit_share[key].sum())

    # ---- progress measures over the run's snapshots (key frequencies of the final model)
    train_grid = grid_train_mask(cfg)
    snaps = run.snapshots
    measures = jax.jit(jax.vmap(lambda m: fa.progress_measures(m, p, key, train_grid, hp["alpha"])))(snaps)
    measures = {k: np.asarray(v) for k, v in measures.items()}
    family = family_arg(NAME)
    at_snaps = jax.jit(jax.vmap(lambda m: family.evaluate(m, cfg, hp)))(snaps)  # losses at the snapshot steps
    measures["train_loss"] = np.asarray(at_snaps["train_loss"])
    measures["test_loss"] = np.asarray(at_snaps["test_loss"])
    bounds = locate_phases(steps, run.metrics["train_accuracy"], run.metrics["test_loss"])

    # ---- Fourier-space ablations
    full = float(fa.cross_entropy(logits.reshape(p * p, -1), fa.sum_labels(p).ravel()))
    abl = {
        "embedding: keep key": float(fa.embedding_ablation_loss(model, p, key, True, hp["alpha"])),
        "embedding: remove key": float(fa.embedding_ablation_loss(model, p, key, False, hp["alpha"])),
        "neurons: keep key": float(fa.neuron_ablation_loss(model, p, key, True, hp["alpha"])),
        "neurons: remove key": float(fa.neuron_ablation_loss(model, p, key, False, hp["alpha"])),
    }
    return {"p": p, "train_fraction": base["train_fraction"], "seeds": seeds, "steps": steps,
            "train_loss": train_loss, "test_loss": test_loss, "final_test": test_acc[:, -1],
            "t_fit": t_fit, "t_grok": t_grok, "chosen": chosen, "seed": run.seed,
            "embed_norms": embed_norms, "key": key, "key_share": key_share,
            "cluster_freq": cl_freq[active], "cluster_frac": cl_frac[active],
            "logit_share": logit_share, "key_logit_share": key_logit_share,
            "snap_steps": np.asarray(cfg.snapshot_steps), "measures": measures, "bounds": bounds,
            "full_loss": full, "ablations": abl}


def draw_abc(m, out, quick):
    p, seed, steps = m["p"], m["seed"], m["steps"]
    tag = f"p={p}, {m['train_fraction']:.0%} train, {m['seeds']} seeds"
    save_figure(plots.loss_curves(steps, m["train_loss"], m["test_loss"], m["chosen"],
                            f"(a) grokking (a+b) mod {p}: {tag}; seed {seed} bold"), out, "grokking_a_loss.png")
    key = m["key"]
    save_figure(plots.fourier_structure_plot(m["embed_norms"], fa.basis_names(p), fa.basis_frequency(p), key,
                                       m["cluster_freq"], m["cluster_frac"],
                                       m["logit_share"], f"(c) the Fourier mechanism, p={p}, seed {seed}: "
                                       f"key frequencies {_ints(np.flatnonzero(key))}"), out, "grokking_c_fourier.png")
    bounds = m["bounds"]
    shown = tuple(b if b is not None else int(steps[-1]) for b in bounds)
    save_figure(plots.progress_measures_plot(m["snap_steps"], m["measures"], shown,
                                       f"(b) progress measures, p={p}, seed {seed}; phases located from the curves: "
                                       f"memorization to {bounds[0]}, circuit formation to {bounds[1]}, cleanup to {bounds[2]}"),
          out, "grokking_b_progress.png")
    abl = m["ablations"]
    save_figure(plots.ablation_plot(list(abl), list(abl.values()),
                              [("unablated", m["full_loss"], "tab:green"), ("chance, log p", math.log(p), "tab:red")],
                              f"(c) Fourier-space ablations, p={p}, seed {seed}"), out, "grokking_c_ablations.png")


def claims_abc(m, quick) -> list[Claim]:
    p, seeds, key, measures, bounds = m["p"], m["seeds"], m["key"], m["measures"], m["bounds"]
    full, abl = m["full_loss"], m["ablations"]
    cl_frac = m["cluster_frac"]  # of the active neurons
    in_key_cluster = np.isin(m["cluster_freq"], np.flatnonzero(key))
    key_logit_share = m["key_logit_share"]
    ratios = [tg / tf for tf, tg in zip(m["t_fit"], m["t_grok"]) if tf and tg]
    final_test = m["final_test"]
    fin = {k: v[-1] for k, v in measures.items()}
    first = {k: v[0] for k, v in measures.items()}
    t_mem, t_clean, t_end = bounds
    n_key = int(key.sum())
    return [
        Claim("grokking (a)", "train loss collapses long before test loss (grokking)",
              "train fitted by ~1.4k epochs, test loss falls ~10k (p=113)",
              f"test acc ≥95% at {_fmt_ratio(ratios)}× the step where train acc hits 100% "
              f"({len(ratios)}/{seeds} seeds grokked)",
              len(ratios) >= math.ceil(seeds / 2) and float(np.median(ratios)) >= 3.0 if ratios else False),
        Claim("grokking (a)", "the models generalize in the end", "test accuracy ~100%",
              f"final test accuracy: median {np.median(final_test):.3f}, min {final_test.min():.3f}",
              float(np.median(final_test)) >= 0.99),
        Claim("grokking (b)", "three phases in order, located from the measures",
              "memorization ~1.4k, circuit formation to ~9.4k, cleanup to ~14k",
              f"memorization to {t_mem}, circuit formation to {t_clean}, cleanup to {t_end}",
              None not in bounds and t_mem < t_clean <= t_end),
        Claim("grokking (b)", "in the end the restricted loss is low and the excluded loss high",
              "restricted loss falls before the test loss; excluded loss rises during circuit formation",
              f"final restricted loss {fin['restricted_loss']:.2e}, excluded loss (train) "
              f"{fin['excluded_loss']:.2f} vs train loss {fin['train_loss']:.1e}",
              fin["restricted_loss"] < 0.1 and fin["excluded_loss"] > 10 * max(fin["train_loss"], 1e-6)
              and fin["excluded_loss"] > 1.0),
        Claim("grokking (b)", "Gini of the Fourier norms of W_E and W_L rises; weight norm falls in cleanup",
              "sparser embeddings and unembeddings as the circuit forms",
              f"Gini W_E {first['gini_W_E']:.2f}→{fin['gini_W_E']:.2f}, W_L {first['gini_W_L']:.2f}→"
              f"{fin['gini_W_L']:.2f}; weight norm peak {measures['weight_norm'].max():.0f}→{fin['weight_norm']:.0f}",
              fin["gini_W_E"] > first["gini_W_E"] + 0.2 and fin["gini_W_L"] > first["gini_W_L"] + 0.2
              and fin["weight_norm"] < measures["weight_norm"].max()),
        Claim("grokking (c)", "the embedding has a sparse Fourier spectrum",
              "a handful (≈4–6 at p=113) of key frequencies",
              f"{n_key} key frequencies {_ints(np.flatnonzero(key))} of {p // 2} carry {m['key_share']:.0%} of W_E's power",
              1 <= n_key <= 8 and m["key_share"] >= 0.6),
        Claim("grokking (c)", "neurons cluster by frequency",
              "one frequency explains >85% of most neurons' variance",
              f"{np.mean(cl_frac > 0.85):.0%} of {len(cl_frac)} active neurons above 85%; "
              f"{in_key_cluster.mean():.0%} in key-frequency clusters",
              float(np.mean(cl_frac > 0.85)) >= 0.5 and float(in_key_cluster.mean()) >= 0.8),
        Claim("grokking (c)", "logits are a sum of cos(w(a+b−c)) over the key frequencies",
              "the key frequencies' cos(w(a+b−c)) terms explain most of the logits",
              f"they explain {key_logit_share:.0%} of the logit variance", key_logit_share >= 0.5),
        Claim("grokking (c)", "Fourier ablations: key frequencies are necessary and sufficient",
              "keeping only them keeps performance; removing them destroys it",
              f"loss {full:.1e}; embedding keep/remove {abl['embedding: keep key']:.1e}/"
              f"{abl['embedding: remove key']:.2f}; neurons keep/remove {abl['neurons: keep key']:.1e}/"
              f"{abl['neurons: remove key']:.2f} (log p = {math.log(p):.2f})",
              abl["embedding: keep key"] < max(10 * full, 0.1) and abl["neurons: keep key"] < max(10 * full, 0.1)
              and abl["embedding: remove key"] > 0.5 * math.log(p) and abl["neurons: remove key"] > 0.5 * math.log(p)),
    ]


def _ints(xs):
    return "[" + ", ".join(str(int(x)) for x in xs) + "]"


def _fmt_ratio(ratios):
    if not ratios:
        return "n/a"
    return f"{np.median(ratios):.1f} (median; range {min(ratios):.1f}–{max(ratios):.1f})"


# ----------------------------------------------------------------------------- (d): corrupted labels


def label_noise_setup(quick: bool):
    """Doshi et al.'s one-hidden-layer MLP on one-hot (a, b), quadratic neurons, MSE loss (with biases).
    Returns (base, grid of the regularised phase diagram)."""
    common = {"model": "mlp", "embed": "onehot", "activation": "quadratic", "loss": "mse"}
    if quick:
        base = {**common, "p": 31, "d_mlp": 128, "lr": 5e-3, "steps": 12_000, "log_every": 200}
        grid = {"train_fraction": [0.4, 0.6, 0.8], "label_noise": [0.0, 0.1, 0.2, 0.3]}
    else:
        base = {**common, "p": 97, "d_mlp": 500, "lr": 5e-3, "steps": 30_000, "log_every": 500}
        grid = {"train_fraction": [0.3, 0.5, 0.7, 0.9], "label_noise": [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]}
    return base, grid


# The regularised runs' weight decay, found by measurement at p=31 (quick mode): 2 leaves the
# net memorising beside generalising, 2.5 makes it drop the corrupted labels, 3 kills it.
WEIGHT_DECAY = 2.5


def _accuracies(model, cfg, f, xi):
    """Accuracy on the corrupted training rows, the clean training rows and the held-out rows."""
    from toylab.tasks.modular import corrupted_mask, noisy_labels, train_mask

    table = table_of(cfg.p, cfg.op, cfg.data_seed)
    pred = np.asarray(jnp.argmax(jax.vmap(model)(jnp.asarray(table.tokens())), -1))
    is_train = np.asarray(train_mask(table.n, f))
    corrupted = np.asarray(corrupted_mask(table, f, xi))
    labels = np.asarray(noisy_labels(table, f, xi))
    mean = lambda m, y: float(np.mean(pred[m] == y[m])) if m.any() else float("nan")  # noqa: E731
    return {"corrupted": mean(corrupted, labels), "clean_train": mean(is_train & ~corrupted, labels),
            "test": mean(~is_train, table.c), "train": mean(is_train, labels)}


def _neuron_sizes(model):
    """‖w_in‖·‖w_out‖ per neuron of an embedding MLP: how much a neuron can matter."""
    return np.asarray(jnp.linalg.norm(model.W_out, axis=0) * jnp.linalg.norm(model.W_in, axis=1))


def train_d(quick: bool, quiet: bool, work=None, shared=None):
    """The MLP's two sweeps: with weight decay over the (train fraction × ξ) grid, and without
    it at the largest train fraction and every nonzero ξ."""
    base, grid = label_noise_setup(quick)
    mode = "quick" if quick else "full"
    fractions, noises = grid["train_fraction"], grid["label_noise"]
    folder = _sweep_dir(work, f"label-noise-{mode}")
    res = run_sweep(NAME, {**base, "weight_decay": WEIGHT_DECAY}, grid, seeds=1, quiet=quiet, out=folder,
                    resume=folder is not None and folder.exists())
    # Without weight decay: the largest train fraction, every nonzero noise.
    folder = _sweep_dir(work, f"label-noise-no-wd-{mode}")
    res0 = run_sweep(NAME, {**base, "weight_decay": 0.0, "train_fraction": fractions[-1]},
                     {"label_noise": [x for x in noises if x > 0]}, seeds=1, quiet=quiet, out=folder,
                     resume=folder is not None and folder.exists())
    return res, res0


def analyse_d(trained, quick: bool) -> dict:
    """Final train and test accuracy over the grid (with and without weight decay) beside
    1−ξ+ξ/p; one noisy run's curves (largest train fraction, ξ = 0.2); the unregularised net's
    accuracies as its lowest-IPR neurons are pruned; the neurons' IPR and size either way."""
    res, res0 = trained
    base, grid = label_noise_setup(quick)
    p = base["p"]
    fractions, noises = grid["train_fraction"], grid["label_noise"]
    expected = np.asarray([[1 - x + x / p for x in noises] for _ in fractions])

    def final(metric):
        return np.asarray([[res.one(train_fraction=f, label_noise=x).metrics[metric][-1] for x in noises]
                           for f in fractions])

    test_wd, train_wd = final("test_accuracy"), final("train_accuracy")
    test_0 = np.asarray([r.metrics["test_accuracy"][-1] for r in res0])
    train_0 = np.asarray([r.metrics["train_accuracy"][-1] for r in res0])

    # One noisy run in detail: f largest, ξ = 0.2, with and without weight decay.
    f_main, xi_main = fractions[-1], 0.2
    reg = res.one(train_fraction=f_main, label_noise=xi_main)
    raw = res0.one(label_noise=xi_main)
    curves = {"train (corrupted labels)": reg.metrics["train_accuracy"],
              "train, true labels": reg.metrics["train_clean_accuracy"],
              "test": reg.metrics["test_accuracy"]}

    # Pruning the low-IPR neurons of the unregularised net removes its memorisation.
    cfg = raw.config
    model = raw.model
    ipr = np.asarray(fa.neuron_ipr(model, p))
    # Neurons that carry weight (others are near-zero noise whatever their IPR).
    size = _neuron_sizes(model)
    order = np.argsort(ipr)
    shares = np.linspace(0, 0.9, 10)
    curve = []
    for share in shares:
        keep = np.ones_like(ipr, bool)
        keep[order[: int(round(share * len(ipr)))]] = False
        curve.append(_accuracies(fa.prune_neurons(model, keep), cfg, f_main, xi_main))
    return {"p": p, "fractions": fractions, "noises": noises, "expected": expected,
            "test_wd": test_wd, "train_wd": train_wd, "test_0": test_0, "train_0": train_0,
            "f_main": f_main, "xi_main": xi_main, "steps": reg.steps, "curves": curves,
            "shares": shares, "pruning": curve, "ipr": ipr, "size": size,
            "ipr_reg": np.asarray(fa.neuron_ipr(reg.model, p)), "size_reg": _neuron_sizes(reg.model)}


def draw_d(m, out, quick):
    p, f_main, xi_main = m["p"], m["f_main"], m["xi_main"]
    save_figure(plots.phase_diagram_plot(m["fractions"], m["noises"], m["test_wd"], m["train_wd"], m["expected"],
                                   f"(d) corrupted labels, quadratic MLP, p={p}, weight decay {WEIGHT_DECAY:g}"),
          out, "grokking_d_phase_diagram.png")
    save_figure(plots.label_noise_plot(m["steps"], m["curves"], 1 - xi_main + xi_main / p,
                                 f"(d) ξ={xi_main}, train fraction {f_main}, weight decay {WEIGHT_DECAY:g}"),
          out, "grokking_d_label_noise.png")
    save_figure(plots.pruning_plot(m["shares"], m["pruning"], m["ipr"], m["size"],
                             f"(d) pruning the lowest-IPR neurons, no weight decay, ξ={xi_main}, f={f_main}"),
          out, "grokking_d_pruning.png")


def claims_d(m, quick) -> list[Claim]:
    fractions, noises, expected = m["fractions"], m["noises"], m["expected"]
    test_wd, train_wd, test_0, train_0 = m["test_wd"], m["train_wd"], m["test_0"], m["train_0"]
    shares, curve = m["shares"], m["pruning"]
    ipr, size, ipr_reg, size_reg = m["ipr"], m["size"], m["ipr_reg"], m["size_reg"]
    before = curve[0]
    best = max(range(len(curve)), key=lambda i: curve[i]["test"] - curve[i]["corrupted"])
    big = lambda s: s > 0.1 * s.max()  # noqa: E731

    i_top = len(fractions) - 1
    ok_noise = [j for j, x in enumerate(noises) if 0 < x <= 0.2]
    gap = np.abs(train_wd[i_top, ok_noise] - expected[i_top, ok_noise])
    return [
        Claim("grokking (d)", "with weight decay the net ignores corrupted labels",
              "test accuracy ~100%, train accuracy → 1−ξ+ξ/p",
              f"train fraction {fractions[-1]}, ξ={[noises[j] for j in ok_noise]}: test acc "
              f"{_fmts(test_wd[i_top, ok_noise])}, train acc − (1−ξ+ξ/p) {_fmts(train_wd[i_top, ok_noise] - expected[i_top, ok_noise], '+.3f')}",
              bool((test_wd[i_top, ok_noise] >= 0.95).all() and (gap <= 0.03).all())),
        Claim("grokking (d)", "without weight decay the net memorizes the corrupted labels",
              "train accuracy 100% on corrupted data (memorization, or coexistence with generalization)",
              f"train fraction {fractions[-1]}, ξ={[x for x in noises if x > 0]}: train acc {_fmts(train_0)}, "
              f"test acc {_fmts(test_0)}",
              bool(train_0.min() >= 0.99)),
        Claim("grokking (d)", "memorizing neurons have low IPR; pruning them removes memorization",
              "pruning low-IPR neurons lowers accuracy on corrupted data and keeps or improves it on clean data",
              f"pruning {shares[best]:.0%} lowest-IPR neurons: corrupted-label acc {before['corrupted']:.2f}→"
              f"{curve[best]['corrupted']:.2f}, test acc {before['test']:.2f}→{curve[best]['test']:.2f}",
              curve[best]["corrupted"] <= 0.5 * before["corrupted"] and curve[best]["test"] >= before["test"] - 0.05),
        Claim("grokking (d)", "weight decay makes the neurons that matter generalizing (high IPR)",
              "with weight decay all neurons learn generalizing (periodic) representations",
              f"median IPR of neurons with >10% of the largest weight: {np.median(ipr_reg[big(size_reg)]):.2f} with "
              f"weight decay vs {np.median(ipr[big(size)]):.2f} without",
              float(np.median(ipr_reg[big(size_reg)])) > float(np.median(ipr[big(size)])) + 0.2),
    ]


def _fmts(xs, fmt=".3f"):
    return "[" + ", ".join(format(float(x), fmt) for x in np.ravel(xs)) + "]"


FIGURES = {"a": FigureSet(train_abc, analyse_abc, draw_abc, claims_abc),
           "d": FigureSet(train_d, analyse_d, draw_d, claims_d)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None):
    """Run the reproductions, write PNGs into ``out``, return the checked claims. With
    ``work``, the sweeps are kept in that folder and reused by the next call."""
    return run_figures(FIGURES, out, quick, quiet, only, work)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "letters of figure sets to run: a (grokking), d (corrupted labels)")
