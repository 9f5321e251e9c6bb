"""Group composition and universality (Chughtai, Chan & Nanda 2023).

    (a) grokking: train and test loss of the MLP on each group, many seeds in one sweep
    (b) universality: per group, how often each irrep is key at the end of training, how many
        irreps a run learns and which it learns first (figure, and a table written beside it)
    (c) the mechanism, irrep by irrep: logit similarity with the character cubes over
        training; the share of the embeddings, unembedding and hidden activations in each
        irrep's span; restricted and excluded loss with the key irreps

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
the sets share one sweep per group, which :func:`prepare` trains once and :func:`analyse_group`
measures (the train pieces hand it on: nothing more trains); ``analyse_X`` takes what the
figure and claims need from it (for (c), the best run's shares per irrep), ``draw_X`` writes
the PNG (and, for (b), the table), ``claims_X`` checks the paper's statements on the numbers.

``--quick`` trains S_4, D_13 and C_26 on a laptop CPU (the train fractions at which they grok
within the step budget were found by measurement; C_26 has D_13's order, so the two show the
cyclic and the dihedral case of the logit claim at one size and budget); the full mode trains
S_5, A_5, S_6, C_113 and D_59 at the paper's train fractions with more seeds and steps (a GPU job).

The paper's per-run table (its appendix; rep_theory/paper/universality_results in the authors'
repository) gives the share of the centred logits' variance carried by the character cubes
(its "logit FVE", Σ similarity² as here) for each MLP: 93-98% for C_113 and C_118, 49-57% for
D_59 and D_61, 34-85% for S_5 and S_6, 44-51% for A_5. So "most of the logit variance" is
checked for cyclic groups only; for the others the claim is the GCR readout itself: the part
of the logits that depends on (a, b) only through a∘b is the key irreps' character cubes.
Run: ``toylab reproduce groups [--quick]`` or ``python -m toylab.experiments.reproductions.groups``.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main
from toylab.analysis import representations as ra
from toylab.experiments.reproductions._claims import Claim
from toylab.core.config import ConfigError, described
from toylab.core.sweep import run_sweep
from toylab.families.groups import grid_train_mask
from toylab.plots import groups as plots
from toylab.tasks.composition import group_of

NAME = "groups"
GROKKED = 0.95  # final test accuracy of a run that counts as grokked


def setups(quick: bool) -> dict:
    """group -> (config overrides, seeds)."""
    if quick:
        return {
            "S4": ({"group": "S4", "train_fraction": 0.7, "steps": 16_000, "log_every": 200}, 8),
            "D13": ({"group": "D13", "train_fraction": 0.6, "steps": 16_000, "log_every": 200}, 8),
            "C26": ({"group": "C26", "train_fraction": 0.7, "steps": 16_000, "log_every": 200}, 8),
        }
    return {
        "S5": ({"group": "S5", "train_fraction": 0.4, "steps": 250_000, "log_every": 1000}, 32),
        "A5": ({"group": "A5", "train_fraction": 0.5, "steps": 100_000, "log_every": 1000}, 32),
        "S6": ({"group": "S6", "train_fraction": 0.4, "steps": 50_000, "log_every": 1000}, 8),
        "C113": ({"group": "C113", "train_fraction": 0.3, "steps": 50_000, "log_every": 500}, 32),
        "D59": ({"group": "D59", "train_fraction": 0.3, "steps": 50_000, "log_every": 500}, 32),
    }


# Per-run range of the paper's logit FVE (Σ similarity² over the nontrivial irreps) of its MLPs,
# by kind of group: (the groups it trained, lowest, highest).
PAPER_LOGIT_FVE = {"C": ("C113, C118", 0.9269, 0.9825), "D": ("D59, D61", 0.4865, 0.5679),
                   "S": ("S5, S6", 0.3450, 0.8481), "A": ("A5", 0.4386, 0.5138)}
MOST = 0.7  # "most" of a variance
NEARLY_ALL = 0.9  # exact GCR logits give 1; reading ρ(a∘b∘c⁻¹) through one entry (also solves the task) 0.62


def paper_logit_fve(group: str):
    """The paper's (groups, lowest, highest) logit FVE for this kind of group, or None."""
    m = re.fullmatch(r"([CDSA])\d+", group)
    return PAPER_LOGIT_FVE.get(m.group(1)) if m else None


@jax.jit
def _composition_share(logits, mul):
    n = mul.shape[0]
    centred = logits - logits.mean(-1, keepdims=True)
    sums = jax.ops.segment_sum(centred.reshape(n * n, n), mul.reshape(-1), num_segments=n)
    # The projection holds the fibre mean sums/n at each of the fibre's n pairs.
    return jnp.sum(sums ** 2) / n / jnp.maximum(jnp.sum(centred ** 2), 1e-30)


def composition_share(logits, g) -> float:
    """Share of the centred logits' variance (each pair centred over c) that is a function of
    (a∘b, c), i.e. kept by averaging over the pairs with equal a∘b. Every character cube is
    such a function, so Σ similarity² over any irreps is at most this share."""
    n = g.order
    logits = jnp.asarray(logits, jnp.float32)
    if logits.shape != (n, n, n):
        raise ConfigError("logits", described(f"array of shape {logits.shape}"), f"must be ({n}, {n}, {n}): [a, b, c] for {g.name}")
    return float(_composition_share(logits, jnp.asarray(g.mul)))


def _kernel(rep) -> np.ndarray:
    """Bool over the group: where ρ(g) = I (the character equals the dimension)."""
    chi = np.trace(rep.matrices, axis1=1, axis2=2)
    return np.abs(chi - rep.dim) < 1e-6


def jointly_faithful(reps, key) -> bool:
    """Whether the key irreps' kernels meet only in the identity: only then can the GCR
    logits Σ_ρ χ_ρ(a∘b∘c⁻¹) single out c = a∘b."""
    kernel = np.ones(reps[0].matrices.shape[0], bool)
    for r, k in zip(reps, key):
        if k:
            kernel &= _kernel(r)
    return bool(kernel.sum() == 1)


def _sweep(name, base, seeds, quiet, work):
    folder = None if work is None else Path(work) / f"groups-{name}"
    return run_sweep(NAME, base, seeds=seeds, quiet=quiet, out=folder, resume=folder is not None and folder.exists())


def analyse_group(res, threshold=ra.KEY_THRESHOLD) -> dict:
    """Per-run measures of one group's sweep (each run's final model and its metrics)."""
    cfg = res[0].config
    g = group_of(cfg.group)
    reps = ra.real_irreps_of(g)
    names = ra.irrep_labels(g)
    steps = res[0].steps
    sims = np.stack([np.stack([r.metrics[f"sim/{n}"] for n in names], -1) for r in res])  # (runs, logs, irreps)
    test_acc = np.stack([r.metrics["test_accuracy"] for r in res])
    train_acc = np.stack([r.metrics["train_accuracy"] for r in res])
    key = sims[:, -1] > threshold
    order = ra.learning_order(sims, steps, threshold)  # (runs, irreps)
    first = np.full(len(res), -1)
    for i, o in enumerate(order):
        learned = np.flatnonzero(o >= 0)
        if learned.size:  # earliest step; ties go to the larger similarity then
            first[i] = min(learned, key=lambda j: (o[j], -sims[i, -1, j]))
    train_grid = grid_train_mask(cfg)
    per_run = []
    for i, r in enumerate(res):
        logits = ra.group_logits(r.model, g)
        shares = ra.embedding_shares(r.model, g)
        final_sims = ra.logit_similarity(logits, g)
        per_run.append({
            "restricted": float(ra.restricted_loss(logits, g, key[i])),
            "excluded": float(ra.excluded_loss(logits, g, key[i], train_grid)),
            "train_loss": float(r.metrics["train_loss"][-1]),
            "test_loss": float(r.metrics["test_loss"][-1]),
            "embed_key_share": float(np.asarray(shares["left"])[key[i]].sum()),
            "unembed_key_share": float(np.asarray(shares["unembed"])[key[i]].sum()),
            "faithful": jointly_faithful(reps, key[i]),
            "explained": float(ra.logit_variance_explained(final_sims, key[i])),
            "composed": composition_share(logits, g),
        })
    return dict(group=cfg.group, g=g, reps=reps, names=names, dims=[r.dim for r in reps], steps=steps, sims=sims,
                train_acc=train_acc, test_acc=test_acc, key=key, first=first, order=order, runs=per_run, res=res,
                threshold=threshold, grokked=test_acc[:, -1] >= GROKKED)


def _first_step(steps, cond):
    idx = np.flatnonzero(cond)
    return int(steps[idx[0]]) if idx.size else None


def universality_table(stats: dict) -> str:
    """Markdown: per group and irrep, the share of grokked runs where it is key at the end and
    where it is learned first; then how many irreps the runs learn."""
    lines = ["| group | irrep | dim | key at end | learned first |", "|---|---|---|---|---|"]
    for name, s in stats.items():
        key, first = s["key"], s["first"]
        for i, (n, d) in enumerate(zip(s["names"], s["dims"])):
            if len(key):
                lines.append(f"| {name} | {n} | {d} | {key[:, i].mean():.2f} | {(first == i).mean():.2f} |")
    lines += ["", "| group | grokked runs | key irreps per run (min / median / max) | distinct key sets |", "|---|---|---|---|"]
    for name, s in stats.items():
        counts = s["key"].sum(1)
        if not counts.size:
            lines.append(f"| {name} | 0 | - | - |")
            continue
        distinct = len({tuple(k) for k in s["key"]})
        lines.append(f"| {name} | {s['key'].shape[0]} | {counts.min()} / {np.median(counts):g} / {counts.max()} | {distinct} |")
    return "\n".join(lines) + "\n"


def prepare(quick: bool, quiet: bool, work=None) -> dict:
    """One sweep per group of the mode, analysed: what every figure set reads."""
    return {name: analyse_group(_sweep(name, base, seeds, quiet, work)) for name, (base, seeds) in setups(quick).items()}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None):
    """Train every group of the mode, write the figures and the universality table into
    ``out``, and return the checked claims. ``only``: letters of the figure sets to make
    (a, b, c; all when None); the sets share one sweep per group."""
    return run_figures(FIGURES, out, quick, quiet, only, work, prepare=prepare)


def train_shared(quick: bool, quiet: bool, work=None, shared=None):
    """Every figure set reads the sweeps :func:`prepare` trained and analysed, one per group
    (``shared``): nothing more to train."""
    return shared


# ----------------------------------------------------------------------------- (a)


def analyse_a(analyses, quick) -> dict:
    """Per group: every seed's loss curves, how many runs grokked, and each run's delay (the
    step of test accuracy ≥ GROKKED over the step of 100% train accuracy)."""
    groups = {}
    for name, a in analyses.items():
        res = a["res"]
        delays = []
        for tr, te in zip(a["train_acc"], a["test_acc"]):
            t_fit, t_gen = _first_step(a["steps"], tr >= 1.0), _first_step(a["steps"], te >= GROKKED)
            if t_fit is not None and t_gen is not None:
                delays.append(t_gen / t_fit)
        groups[name] = {"train_fraction": res[0].config.train_fraction, "steps": a["steps"],
                        "train_loss": np.stack([r.metrics["train_loss"] for r in res]),
                        "test_loss": np.stack([r.metrics["test_loss"] for r in res]),
                        "n_runs": len(res), "n_grokked": int(a["grokked"].sum()), "delays": delays}
    return {"groups": groups}


def draw_a(m, out, quick):
    mode = "quick" if quick else "full"
    curves = {f"{name} (train {g['train_fraction']:.0%})": (g["steps"], g["train_loss"], g["test_loss"])
              for name, g in m["groups"].items()}
    save_figure(plots.loss_panels(curves, f"(a) grokking group composition ({mode} mode)"), out, "groups_a_loss.png")


def claims_a(m, quick) -> list[Claim]:
    claims = []
    for name, g in m["groups"].items():
        n_grok, n_runs, delays = g["n_grokked"], g["n_runs"], g["delays"]
        median_delay = float(np.median(delays)) if delays else float("nan")
        claims.append(Claim(
            f"groups (a) {name}", f"the MLP groks {name}: most seeds reach {GROKKED:.0%} test accuracy, long after "
                                  "fitting the training pairs",
            "networks fit the train set early and generalise much later (grokking)",
            f"{n_grok}/{n_runs} seeds grokked; test {GROKKED:.0%} at a median {median_delay:.1f}× the step of "
            "100% train accuracy", n_grok >= 0.75 * n_runs and median_delay >= 2.0))
    return claims


# ----------------------------------------------------------------------------- (b)


def train_b(quick: bool, quiet: bool, work=None, shared=None):
    """The shared sweeps, and whether to print the universality table beside writing it."""
    return {"analyses": shared, "quiet": quiet}


def analyse_b(trained, quick) -> dict:
    """Per group, over its grokked runs: which irreps are key at the end and which was learned
    first, whether the key irreps are jointly faithful; the universality table."""
    stats, faithful = {}, {}
    for name, a in trained["analyses"].items():
        gk = a["grokked"]
        stats[name] = {"names": a["names"], "dims": a["dims"], "key": a["key"][gk], "first": a["first"][gk]}
        faithful[name] = [r["faithful"] for r, g in zip(a["runs"], gk) if g]
    return {"stats": stats, "faithful": faithful, "table": universality_table(stats),
            "print_table": not trained["quiet"]}


def draw_b(m, out, quick):
    mode = "quick" if quick else "full"
    save_figure(plots.universality_plot(m["stats"], f"(b) which irreps the MLP learns ({mode} mode; key: logit "
                                                    f"similarity > {ra.KEY_THRESHOLD})"), out, "groups_b_universality.png")
    out.mkdir(parents=True, exist_ok=True)
    (out / "groups_b_universality.md").write_text(m["table"])
    if m["print_table"]:
        print(m["table"])


def claims_b(m, quick) -> list[Claim]:
    claims = []
    stats = m["stats"]
    for name, runs in m["faithful"].items():
        if not runs:
            claims.append(Claim(f"groups (b) {name}", "key irreps of grokked runs", "-", "no run grokked", False))
            continue
        faithful = sum(runs)
        claims.append(Claim(
            f"groups (b) {name}", "every grokked run's key irreps are jointly faithful (their kernels meet only "
                                  "in e), as the GCR algorithm needs to single out c = a∘b",
            "networks learn the GCR algorithm with one or more irreps",
            f"{faithful}/{len(runs)} runs", faithful == len(runs)))
    if "S5" in stats and len(stats["S5"]["key"]):
        s5 = stats["S5"]
        both = s5["key"][:, s5["names"].index("(1, 1, 1, 1, 1)")] & s5["key"][:, s5["names"].index("(4, 1)")]
        claims.append(Claim(
            "groups (b) S5", "the sign and the standard (4, 1) irreps are key in almost every grokked S5 run",
            "S5 MLPs learn the sign and standard irreps in almost every seed", f"{both.mean():.0%} of "
            f"{len(both)} runs", both.mean() >= 0.8))
    key_sets = {name: {tuple(k) for k in s["key"]} for name, s in stats.items()}
    firsts = {name: set(s["first"].tolist()) for name, s in stats.items()}
    varied = [name for name in stats if len(key_sets[name]) > 1 or len(firsts[name]) > 1]
    claims.append(Claim(
        "groups (b)", "mixed universality: the learned irreps or the one learned first vary from seed to seed",
        "which irreps are learned, and their order, vary by seed",
        "; ".join(f"{n}: {len(key_sets[n])} key sets, {len(firsts[n])} first irreps" for n in stats),
        len(varied) == len(stats)))

    return claims


# ----------------------------------------------------------------------------- (c)


def logit_claim(name: str, group: str, runs: list[dict]) -> Claim:
    """The logit claim for one group's grokked runs (each with ``explained``, Σ similarity² over
    its key irreps, and ``composed``, :func:`composition_share`). Where every run in the paper's
    table has most of the logit variance in the cubes (cyclic groups), that is checked; else
    that the cubes carry nearly all of the part that depends on (a, b) only through a∘b."""
    explained = float(np.median([r["explained"] for r in runs]))
    composed = float(np.median([r["composed"] for r in runs]))
    within = float(np.median([r["explained"] / max(r["composed"], 1e-12) for r in runs]))
    paper = paper_logit_fve(group)
    gcr = "logits ∝ χ_ρ(a∘b∘c⁻¹) summed over the learned irreps"
    in_paper = f"; the cubes carry {paper[1]:.0%}-{paper[2]:.0%} of the logit variance in the paper's {paper[0]} MLPs" if paper else ""
    if paper and paper[1] >= MOST:
        return Claim(f"groups (c) {name}", "the key irreps' character cubes carry most of the centred logits' variance",
                     gcr + in_paper, f"median Σ similarity² over key irreps {explained:.2f}", explained >= MOST)
    return Claim(
        f"groups (c) {name}", "of the centred logits' variance that depends on (a, b) only through a∘b, the key "
                              "irreps' character cubes carry nearly all",
        gcr + in_paper,
        f"median Σ similarity² over key irreps {explained:.2f}; share that is a function of (a∘b, c) {composed:.2f}; "
        f"the cubes' part of it {within:.2f} (median)", within >= NEARLY_ALL)


def analyse_c(analyses, quick) -> dict:
    """Per group with grokked runs: those runs' measures (restricted and excluded loss, key
    shares, logit variance explained) and the number of key irreps; and, for the figure, the
    run whose cubes explain the most: its similarities over training and its shares per irrep
    of the embeddings, unembedding, hidden activations and logits."""
    groups, cases = {}, {}
    for name, a in analyses.items():
        runs = [(i, r) for i, (r, gk) in enumerate(zip(a["runs"], a["grokked"])) if gk]
        if not runs:
            continue
        groups[name] = {"group": a["group"], "runs": [r for _, r in runs], "n_irreps": len(a["names"]),
                        "key_counts": a["key"][a["grokked"]].sum(1)}
        i = max(runs, key=lambda t: t[1]["explained"])[0]
        r = a["res"][i]
        g = a["g"]
        shares = ra.embedding_shares(r.model, g)
        hidden = ra.hidden_shares(ra.group_neurons(r.model, g), g)
        cases[name] = {"names": a["names"], "dims": a["dims"], "steps": a["steps"], "sims": a["sims"][i],
                       "threshold": a["threshold"], "seed": r.seed,
                       "shares": {"left embedding": np.asarray(shares["left"]),
                                  "unembedding": np.asarray(shares["unembed"]),
                                  "hidden (via a∘b)": np.asarray(hidden),
                                  "logits (similarity²)": a["sims"][i, -1] ** 2}}
    return {"groups": groups, "cases": cases}


def draw_c(m, out, quick):
    mode = "quick" if quick else "full"
    if m["cases"]:
        save_figure(plots.mechanism_plot(m["cases"], f"(c) the GCR mechanism per irrep ({mode} mode)"), out,
                    "groups_c_mechanism.png")


def claims_c(m, quick) -> list[Claim]:
    claims = []
    for name, gr in m["groups"].items():
        runs = gr["runs"]
        restricted_ok = np.mean([r["restricted"] <= max(2 * r["test_loss"], 0.1) for r in runs])
        excluded_ratio = np.median([r["excluded"] / max(r["train_loss"], 1e-12) for r in runs])
        embed = np.median([r["embed_key_share"] for r in runs])
        unembed = np.median([r["unembed_key_share"] for r in runs])
        claims.append(logit_claim(name, gr["group"], runs))
        claims.append(Claim(
            f"groups (c) {name}", "keeping only the key irreps' logit components keeps the loss low; removing them "
                                  "destroys performance on the training pairs",
            "restricted loss stays low, excluded loss rises far above the train loss",
            f"restricted loss <= max(2·test loss, 0.1) in {restricted_ok:.0%} of runs; excluded/train loss median "
            f"{excluded_ratio:.3g}", restricted_ok >= 0.75 and excluded_ratio >= 10))
        claims.append(Claim(
            f"groups (c) {name}", "the embeddings and unembedding live mostly in the key irreps' spans",
            "embeddings hold ρ(a), ρ(b); the unembedding holds ρ(c⁻¹)",
            f"median share in key spans: left embedding {embed:.2f}, unembedding {unembed:.2f} (median "
            f"{np.median(gr['key_counts']):g} of {gr['n_irreps'] - 1} nontrivial irreps key)",
            embed >= 0.5 and unembed >= 0.5))
    return claims


FIGURES = {"a": FigureSet(train_shared, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_b, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_shared, analyse_c, draw_c, claims_c)}


if __name__ == "__main__":
    script_main(__doc__, reproduce, "letters of figure sets to make: a (loss), b (universality), c (mechanism)")
