"""Sparse dictionaries scored against known answers, trained as vmapped sweeps.

    (a) the superposition toy (20 features in 5 dimensions, equal importance) trained on sparse
        inputs, so it stores all 20 in superposition; inputs of several densities streamed through
        it to a ReLU + L1 dictionary of 40 latents on its hidden layer, a sweep over the L1
        coefficient × seeds at each: when the features are sparse the best dictionary recovers
        the columns of W (signed MCC near 1); recovery degrades as density rises — measured,
        with the density where it breaks
    (b) planted features with a hierarchy (parents and mutually exclusive children): the five
        kinds (ReLU + L1, TopK, BatchTopK, JumpReLU, Matryoshka) swept over their sparsity knob;
        the Pareto frontiers of MCC and F1 against L0, and the kinds' frontiers compared at
        matched L0 —
        published: Matryoshka above BatchTopK (Bussmann et al. 2025) and JumpReLU above
        ReLU + L1 (Rajamanoharan et al. 2024)
    (c) a grokked modular-addition transformer: a TopK dictionary on its MLP neurons; its
        latents' activations over the p × p inputs are led by the key frequencies the Fourier
        analysis of the embedding finds

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
``train_X`` runs its sweeps (into ``work``, or a temporary folder that ``analyse_X`` removes
once it has read them; for (c), the dictionaries only if the transformer grokked),
``analyse_X`` scores them, ``draw_X`` writes the PNGs (and (b)'s frontier table), ``claims_X``
checks the papers' statements on the measured numbers.

Every dictionary of a sweep reads the same activation stream (``data_seed``), so the settings
are compared on identical data and each batch is made once per vmapped block.

Which MCC: (b) reads the field's MCC (Hungarian matching on |cosine|, as SAELens and
SynthSAEBench compute it, so its numbers compare with theirs), and F1 through that matching.
(a) judges recovery by the signed MCC, its thresholds set on it, and prints the |cosine| one
beside it: a ReLU code is non-negative, so a latent pointing against a feature cannot
reconstruct it, yet |cosine| scores the pair 1; and in the toy each feature's nearest other
column is anti-aligned (cosine about −0.65, the nearest aligned one about +0.3), so |cosine|
gives a muddled dictionary credit exactly where (a) draws its line.

``--quick`` runs on 2 CPU cores in minutes; the full mode (more densities and seeds,
SynthSAEBench's scale for (b): 16 384 features in 768 dimensions, 4 096 latents; p = 113 for
(c)) is a GPU job.
Run: ``toylab reproduce dictionaries [--quick]`` or ``python -m toylab.experiments.reproductions.dictionaries``.
"""

from __future__ import annotations

import csv
import os
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import SHARED_ENV, FigureSet, run_figures, save_figure, script_main
from toylab.experiments.reproductions.grokking import grokking_setup, seed_zero_sweep
from toylab.analysis import dictionaries as dm
from toylab.analysis import fourier as fa
from toylab.core.sweep import run_sweep
from toylab.families.dictionaries import layer_activations
from toylab.plots import dictionaries as plots

NAME = "dictionaries"
RECOVERED = 0.9  # (a): signed MCC at or above this counts as recovered
REPRESENTED = 0.5  # (a): a toy feature whose column of W has at least this norm is stored
KINDS = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
GROKKED = 0.99  # (c): the transformer's test accuracy at or above this counts as grokked


class _Work:
    """A folder for the sweeps: ``work/name`` (kept, resumed) or a temporary one."""

    def __init__(self, work):
        self._tmp = None if work is not None else tempfile.TemporaryDirectory(prefix="toylab-dictionaries-")
        self.root = Path(work if work is not None else self._tmp.name)

    def sweep(self, family, base, grid=None, *, seeds=1, name, quiet):
        folder = self.root / name
        return run_sweep(family, base, grid, seeds=seeds, out=folder, resume=folder.exists(), quiet=quiet)

    def close(self):
        if self._tmp is not None:
            self._tmp.cleanup()


# ----------------------------------------------------------------------------- (a) the superposition toy


def toy_setup(quick: bool) -> dict:
    return {
        # Trained sparse, so that it stores all 20 features in superposition in its 5 dimensions.
        "toy": {"n_features": 20, "n_hidden": 5, "importance_decay": 1.0, "feature_probability": 0.01,
                "steps": 10_000 if quick else 20_000, "log_every": 1000},
        # The densities of the inputs streamed through that toy to the dictionary.
        "densities": [0.01, 0.03, 0.1, 0.3, 0.5] if quick else [0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.3, 0.5],
        "dictionary": {"kind": "relu", "n_latents": 40, "batch_size": 1024, "steps": 3000 if quick else 10_000,
                       "log_every": 500, "lr": 3e-3, "eval_size": 4096, "data_seed": 0},
        "sparsity": [0.01, 0.03, 0.1, 0.3, 1.0, 3.0],
        "seeds": 2 if quick else 4,
    }


def train_a(quick: bool, quiet: bool, work=None, shared=None):
    """The toy, then one dictionary sweep (L1 coefficient × seeds) per input density on its
    hidden layer. Returns the sweeps with their folder, which :func:`analyse_a` closes."""
    setup = toy_setup(quick)
    place = _Work(work)
    try:
        toy = place.sweep("superposition", setup["toy"], name="a-toy", quiet=quiet)[0]
        sweeps = {}
        for density in setup["densities"]:
            sweeps[density] = place.sweep("dictionaries", {**setup["dictionary"], "source": str(place.root / "a-toy"),
                                                           "node": "hidden",
                                                           "source_overrides": f"feature_probability={density}"},
                                          {"sparsity": setup["sparsity"]}, seeds=setup["seeds"],
                                          name=f"a-sae-{density:g}", quiet=quiet)
    except BaseException:
        place.close()
        raise
    return {"place": place, "toy": toy, "sweeps": sweeps}


def analyse_a(trained, quick: bool) -> dict:
    """How many features the toy stores; per density, the L1 coefficient whose seeds have the
    best mean signed MCC, with its scores (signed and |cos| MCC, L0, explained variance, F1)."""
    setup = toy_setup(quick)
    try:
        W = np.asarray(trained["toy"].model.W)  # (n_hidden, n_features): feature i is column i
        represented = int((np.linalg.norm(W, axis=0) >= REPRESENTED).sum())
        features = jnp.asarray(W.T)  # the family's true features for this source
        signed_mcc = jax.jit(dm.signed_mcc)
        rows = []
        for density in setup["densities"]:
            sweep = trained["sweeps"][density]
            # Signed MCC of the decoder against the 20 columns of W; the |cos| MCC and F1 (through
            # the |cos| matching) are the family's summary.
            scores = np.asarray([(float(signed_mcc(features, r.model.directions())), r.summary["mcc"],
                                  r.summary["l0"], r.summary["explained_variance"], r.summary["f1"],
                                  r.config.sparsity) for r in sweep])
            by_lambda = {lam: scores[np.isclose(scores[:, 5], lam)] for lam in setup["sparsity"]}
            # The L1 coefficient whose seeds have the best mean signed MCC (chosen with the truth:
            # the best this kind of dictionary does on these data).
            lam = max(by_lambda, key=lambda l: by_lambda[l][:, 0].mean())
            best = by_lambda[lam]
            rows.append({"density": density, "signed_mcc": best[:, 0].mean(), "signed_mcc_min": best[:, 0].min(),
                         "mcc": best[:, 1].mean(), "l0": best[:, 2].mean(), "explained_variance": best[:, 3].mean(),
                         "f1": best[:, 4].mean(), "sparsity": lam})
    finally:
        trained["place"].close()
    return {"represented": represented, "rows": rows}


def draw_a(m, out, quick):
    rows = m["rows"]
    density = np.asarray([r["density"] for r in rows])
    signed = np.asarray([r["signed_mcc"] for r in rows])
    save_figure(plots.recovery_plot(density, {"signed MCC (best L1 coefficient, mean over seeds)": signed,
                                              "MCC on |cos| (SAELens), same dictionaries": [r["mcc"] for r in rows],
                                              "F1 of the |cos|-matched latents": [r["f1"] for r in rows],
                                              "explained variance": [r["explained_variance"] for r in rows]},
                                    RECOVERED, title="(a) a ReLU + L1 dictionary (40 latents) on the hidden layer of "
                                    "the superposition toy 20 → 5 (trained at p = 0.01), fed inputs of rising "
                                    "density"),
                out, "dictionaries_a_recovery.png")


def claims_a(m, quick) -> list[Claim]:
    rows, represented = m["rows"], m["represented"]
    density = np.asarray([r["density"] for r in rows])
    signed = np.asarray([r["signed_mcc"] for r in rows])
    broken = [r["density"] for r in rows if r["signed_mcc"] < RECOVERED]
    table = "; ".join(f"p={r['density']:g}: signed MCC {r['signed_mcc']:.3f} (min {r['signed_mcc_min']:.3f}), "
                      f"|cos| MCC {r['mcc']:.3f}, F1 {r['f1']:.2f}, L0 {r['l0']:.2f}, λ={r['sparsity']:g}"
                      for r in rows)
    return [
        Claim("dictionaries (a)", f"sparse features are recovered: the toy stores all 20 features and signed MCC "
              f"≥ {RECOVERED} at the sparsest density (p = {rows[0]['density']:g})",
              "dictionaries recover the true features of sparse data",
              f"{represented} of 20 columns of W with norm ≥ {REPRESENTED}; {table}",
              bool(rows[0]["signed_mcc"] >= RECOVERED and represented == 20)),
        Claim("dictionaries (a)", "recovery degrades as density rises: signed MCC at the densest below "
              f"{RECOVERED}, and the density where it first falls below",
              "superposed dense features are not recoverable by a sparse code",
              f"breaks (signed MCC < {RECOVERED}) from p = {broken[0]:g}" if broken else
              f"does not break up to p = {density[-1]:g}", bool(signed[-1] < RECOVERED and broken)),
    ]


# ----------------------------------------------------------------------------- (b) kinds on a hierarchy


def hierarchy_setup(quick: bool) -> dict:
    if quick:
        generator = {"n_features": 48, "dim": 24, "n_parents": 6, "children_per_parent": 4, "mean_active": 3.0,
                     "zipf_exponent": 0.5, "child_probability": 0.8, "magnitude_std": 0.2, "noise_std": 0.01}
        width, prefixes, steps, seeds = 48, (6, 12, 24, 48), 2000, 2
    else:
        # SynthSAEBench's size (a GPU job).
        generator = {"n_features": 16_384, "dim": 768, "n_parents": 512, "children_per_parent": 4,
                     "mean_active": 30.0, "zipf_exponent": 0.5, "child_probability": 0.8, "magnitude_std": 0.2,
                     "noise_std": 0.01}
        width, prefixes, steps, seeds = 4096, (128, 512, 2048, 4096), 30_000, 2
    ks = [1.0, 2.0, 3.0, 4.0, 6.0] if quick else [10.0, 20.0, 30.0, 45.0, 60.0]
    # batchtopk's k is an average over the batch, so it may be a fraction (k·batch is the count)
    batch_ks = [1.5, 2.0, 3.0, 4.0, 6.0] if quick else ks
    return {
        "base": {**generator, "n_latents": width, "batch_size": 512 if quick else 4096, "steps": steps,
                 "log_every": steps // 4, "lr": 3e-3 if quick else 1e-3, "eval_size": 4096, "data_seed": 0},
        "grids": {"relu": {"sparsity": [0.01, 0.03, 0.1, 0.3, 1.0]},
                  "topk": {"k": ks}, "batchtopk": {"k": batch_ks}, "matryoshka": {"k": ks},
                  "jumprelu": {"sparsity": [0.003, 0.01, 0.03, 0.1, 0.3]}},
        "prefixes": prefixes,
        "seeds": seeds,
    }


def _frontier_at(points: dict, names, score: str, grid) -> dict:
    """Each kind's Pareto frontier read at the L0 values ``grid``: the best of its settings'
    seed-mean scores among those with mean L0 at most that value (NaN below its sparsest)."""
    out = {}
    for kind in names:
        l0, s = np.asarray(points[kind]["l0"]), np.asarray(points[kind][score])
        out[kind] = np.asarray([s[l0 <= x].max() if (l0 <= x).any() else np.nan for x in grid])
    return out


def _at_matched_l0(points: dict, names, score: str, grid) -> dict:
    """Each kind's score at the L0 values ``grid``: linear interpolation of its seeds' mean
    score against its mean L0 across its sweep (NaN outside the kind's L0 range)."""
    out = {}
    for kind in names:
        l0, s = points[kind]["l0"], points[kind][score]
        order = np.argsort(l0)
        out[kind] = np.interp(grid, l0[order], s[order], left=np.nan, right=np.nan)
    return out


def train_b(quick: bool, quiet: bool, work=None, shared=None):
    """One sweep per kind over its sparsity knob × seeds, on the planted hierarchy. Returns the
    sweeps with their folder, which :func:`analyse_b` closes."""
    setup = hierarchy_setup(quick)
    place = _Work(work)
    sweeps = {}
    try:
        for kind in KINDS:
            base = {**setup["base"], "kind": kind, **({"prefixes": setup["prefixes"]} if kind == "matryoshka" else {})}
            sweeps[kind] = place.sweep("dictionaries", base, setup["grids"][kind], seeds=setup["seeds"],
                                       name=f"b-{kind}", quiet=quiet)
    except BaseException:
        place.close()
        raise
    return {"place": place, "sweeps": sweeps}


SCORES = ("l0", "mcc", "f1", "explained_variance", "mmcs", "dead_latents")


def analyse_b(trained, quick: bool) -> dict:
    """Per kind and knob value, the seed-mean scores (L0, MCC, F1, explained variance, MMCS,
    dead latents); each kind's Pareto frontier of MCC, F1 and explained variance against L0;
    the rows of the frontier table."""
    setup = hierarchy_setup(quick)
    points = {}
    try:
        for kind in KINDS:
            sweep = trained["sweeps"][kind]
            knob = next(iter(setup["grids"][kind]))
            values = setup["grids"][kind][knob]
            per = {name: [] for name in SCORES}
            for v in values:  # the mean over seeds at each grid value
                runs = [r for r in sweep if np.isclose(getattr(r.config, knob), v)]
                for name in per:
                    per[name].append(np.mean([r.summary[name] for r in runs]))
            points[kind] = {name: np.asarray(vals) for name, vals in per.items()} | {"knob": knob, "values": values}
    finally:
        trained["place"].close()

    rows = []
    for kind in KINDS:
        p = points[kind]
        front = dm.pareto_frontier(p["l0"], p["mcc"])
        for i, v in enumerate(p["values"]):
            rows.append({"kind": kind, p["knob"]: v, **{name: float(p[name][i]) for name in SCORES},
                         "on_mcc_frontier": bool(front[i])})
    frontiers = {score: {k: dm.pareto_frontier(points[k]["l0"], points[k][score]) for k in KINDS}
                 for score in ("mcc", "f1", "explained_variance")}
    return {"points": points, "rows": rows, "frontiers": frontiers,
            "sizes": {name: setup["base"][name] for name in ("n_features", "dim", "n_latents")},
            "seeds": setup["seeds"]}


def draw_b(m, out, quick):
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    with open(out / "dictionaries_b_frontier.csv", "w", newline="") as fh:
        fields = ["kind", "sparsity", "k", "l0", "mcc", "f1", "explained_variance", "mmcs", "dead_latents",
                  "on_mcc_frontier"]
        writer = csv.DictWriter(fh, fields, restval="")
        writer.writeheader()
        writer.writerows(m["rows"])
    points, sizes = m["points"], m["sizes"]
    for score, label in (("mcc", "MCC (|cos|, as SynthSAEBench)"), ("f1", "F1 (|cos| matching)"),
                         ("explained_variance", "explained variance")):
        save_figure(plots.pareto_plot({k: (points[k]["l0"], points[k][score]) for k in KINDS}, label,
                                      m["frontiers"][score],
                                      title=f"(b) {label} against L0, planted features with a hierarchy "
                                      f"({sizes['n_features']} features in {sizes['dim']} dims, "
                                      f"{sizes['n_latents']} latents; mean of {m['seeds']} seeds)"),
                    out, f"dictionaries_b_{score}.png")


def claims_b(m, quick) -> list[Claim]:
    points = m["points"]
    claims = []
    for better, worse, paper in (("matryoshka", "batchtopk", "Bussmann et al. 2025: Matryoshka SAEs recover "
                                  "hierarchical features better than BatchTopK"),
                                 ("jumprelu", "relu", "Rajamanoharan et al. 2024: JumpReLU beats ReLU + L1 at "
                                  "matched L0")):
        lo = max(points[better]["l0"].min(), points[worse]["l0"].min())
        hi = min(points[better]["l0"].max(), points[worse]["l0"].max())
        if not hi > lo:
            claims.append(Claim("dictionaries (b)", f"{better} above {worse} on MCC (|cos|) and F1 at matched L0",
                                paper,
                                f"their L0 ranges do not overlap ({better} "
                                f"{points[better]['l0'].min():.2f}–{points[better]['l0'].max():.2f}, {worse} "
                                f"{points[worse]['l0'].min():.2f}–{points[worse]['l0'].max():.2f})", False))
            continue
        # The kinds compared as the papers do, by their Pareto frontiers (the best setting at
        # each L0 budget), averaged over L0 values spread across the range both cover; beside
        # it, every setting's curve interpolated, dominated settings included (not claimed).
        grid = np.linspace(lo, hi, 9)
        measured, wins = [], True
        for score, label in (("mcc", "MCC (|cos|)"), ("f1", "F1")):
            front = _frontier_at(points, (better, worse), score, grid)
            gap = float(np.mean(front[better] - front[worse]))
            every = _at_matched_l0(points, (better, worse), score, grid)
            measured.append(f"{label} frontier {np.mean(front[better]):.3f} against "
                            f"{np.mean(front[worse]):.3f} (all settings interpolated: {np.nanmean(every[better]):.3f} "
                            f"against {np.nanmean(every[worse]):.3f})")
            wins = wins and gap > 0
        claims.append(Claim("dictionaries (b)", f"{better} above {worse} on MCC (|cos|) and F1 at matched L0: their "
                            f"Pareto frontiers over L0 {lo:.2f}–{hi:.2f}", paper, "; ".join(measured), bool(wins)))
    return claims


# ----------------------------------------------------------------------------- (c) the grokked transformer


def grokked_setup(quick: bool) -> dict:
    base, _ = grokking_setup(quick)
    return {"grokking": base,
            "dictionary": {"kind": "topk", "n_latents": 64 if quick else 256, "k": 4.0, "node": "mlp_post.0",
                           "batch_size": 1024, "steps": 3000 if quick else 10_000, "log_every": 500, "lr": 1e-3,
                           "eval_size": 2048, "data_seed": 0},
            "seeds": 2}


def train_c(quick: bool, quiet: bool, work=None, shared=None):
    """The transformer; if it grokked (test accuracy ≥ GROKKED), a TopK dictionary sweep on its
    MLP neurons (none otherwise: nothing to read). Returns them with their folder, which
    :func:`analyse_c` closes."""
    setup = grokked_setup(quick)
    place = _Work(work)
    try:
        # grokking (a)-(c)'s transformer at seed 0: shared with it in one `toylab reproduce`, else
        # kept with the dictionaries (its folder is the dictionaries' source)
        alone = work is None and not os.environ.get(SHARED_ENV)
        grok = seed_zero_sweep(quick, quiet, place.root if alone else work)
        run = grok[0]
        test_acc = float(run.metrics["test_accuracy"][-1])
        sweep = None
        if test_acc >= GROKKED:
            sweep = place.sweep("dictionaries", {**setup["dictionary"], "source": str(grok.root)},
                                seeds=setup["seeds"], name="c-sae", quiet=quiet)
    except BaseException:
        place.close()
        raise
    return {"place": place, "run": run, "test_acc": test_acc, "sweep": sweep}


def analyse_c(trained, quick: bool) -> dict:
    """The transformer's test accuracy; if it grokked, its key frequencies (from the
    embedding) and, per dictionary seed, each live latent's leading frequency over the p × p
    inputs, that frequency's share, the latents' activation power and the share of it on
    latents led by a key frequency."""
    setup = grokked_setup(quick)
    p = setup["grokking"]["p"]
    try:
        if trained["sweep"] is None:
            return {"p": p, "test_acc": trained["test_acc"], "grokked": False}
        model = trained["run"].model
        # Power per frequency (a basis row's norm per row; cos and sin of one k summed).
        key = np.asarray(fa.key_frequencies(fa.frequency_power(
            fa.embedding_fourier_norms(fa.embedding_matrix(model), p), p)))
        neurons = layer_activations(model, jnp.asarray(fa.grid_tokens(p)), "mlp_post.0")  # (p², d_mlp)
        per_seed = []
        for dic in trained["sweep"]:
            codes = np.asarray(dic.model.encode(neurons))  # (p², L)
            live = np.flatnonzero((codes > 0).any(axis=0))
            freq, frac, _ = fa.neuron_frequency_clusters(jnp.asarray(codes[:, live]).reshape(p, p, -1), p)
            freq, frac = np.asarray(freq), np.asarray(frac)
            power = (codes[:, live] ** 2).sum(axis=0)
            on_key = key[freq]
            per_seed.append({"live": len(live), "width": codes.shape[1], "freq": freq, "frac": frac, "power": power,
                             "key_share": float(power[on_key].sum() / power.sum()),
                             "median_frac": float(np.median(frac)),
                             "ev": dic.summary["explained_variance"], "l0": dic.summary["l0"]})
    finally:
        trained["place"].close()
    return {"p": p, "test_acc": trained["test_acc"], "grokked": True, "key": key, "per_seed": per_seed}


def draw_c(m, out, quick):
    if not m["grokked"]:  # nothing was read: no figure
        return
    p, key, first = m["p"], m["key"], m["per_seed"][0]
    key_list = [int(k) for k in np.flatnonzero(key)]
    save_figure(plots.frequency_alignment_plot(first["freq"], first["frac"], first["power"], key, p // 2,
                                               title=f"(c) TopK dictionary latents on the MLP neurons of a grokked "
                                               f"(a+b) mod {p} transformer: leading frequency and its share; key "
                                               f"frequencies {key_list} from the embedding"),
                out, "dictionaries_c_frequencies.png")


def claims_c(m, quick) -> list[Claim]:
    if m["test_acc"] < GROKKED:
        return [Claim("dictionaries (c)", f"the transformer groks (test accuracy ≥ {GROKKED})", "grokking",
                      f"test accuracy {m['test_acc']:.3f}", False)]
    per_seed = m["per_seed"]
    key_list = [int(k) for k in np.flatnonzero(m["key"])]
    share = min(s["key_share"] for s in per_seed)
    frac = min(s["median_frac"] for s in per_seed)
    measured = "; ".join(f"seed {i}: {s['live']} of {s['width']} latents live, {s['key_share']:.3f} of their "
                         f"activation power on latents led by a key frequency, median share of the leading "
                         f"frequency {s['median_frac']:.2f}, explained variance {s['ev']:.3f}, L0 {s['l0']:.1f}"
                         for i, s in enumerate(per_seed))
    # Not claimed: that each latent is one frequency, as a neuron is. A TopK latent fires on a
    # few inputs, and a function of (a, b) that is zero on most of the grid spreads its power
    # over many frequencies; the median share is printed with the measurement.
    return [
        Claim("dictionaries (c)", f"dictionary latents on the MLP neurons align with the key frequencies "
              f"{key_list}: ≥ 0.9 of the latents' activation power is on latents whose leading frequency is key",
              "the neurons of a grokked model are organised by the key frequencies (Nanda et al. 2023)",
              f"{measured} (worst seed's median share {frac:.2f})", bool(share >= 0.9)),
    ]


FIGURES = {"a": FigureSet(train_a, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_b, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_c, analyse_c, draw_c, claims_c)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None) -> list[Claim]:
    """Run the sparse-dictionary figure sets (``only``: some of "abc"); returns the claims."""
    return run_figures(FIGURES, out, quick, quiet, only, work)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "figure sets, some of abc")
