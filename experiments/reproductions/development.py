"""Development over training: induction heads form in a phase change (Olsson et al. 2022), the
LLC's plateaus split training into stages (Hoogland et al. 2025), the weight-refined LLC tells
head types apart (Wang et al. 2024), and task diversity moves in-context regression from the
Bayes predictor of its tasks to ridge (Raventós et al. 2023).

    (a) the in-context learning score falls within a window of steps in which a layer-0
        previous-token head and a layer-1 induction head appear, in every seed
    (b) the LLC at every snapshot (one program), its stage boundaries beside the window and
        the loss curve's
    (c) the weight-refined LLC of every head over training: the induction heads' curves
        cluster apart from the other heads'
    (d) in-context linear regression over the number of pretraining tasks M (one program):
        near the M-task Bayes predictor at small M, near ridge at large M

The transformer of (a)–(c) is a 2-block attention-only model trained on random tokens whose
last ``span`` tokens copy an earlier span (toylab.families.induction); (d) is
toylab.families.icl_regression. ``--quick`` runs at the sizes where induction heads form
within about 1 500 steps on a CPU; the full mode at larger sizes for a GPU (``--full --plan``).
Run: ``toylab reproduce development [--quick]``.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from toylab.analysis.development import llc_over_training
from toylab.analysis.stages import stage_boundaries, transition_window
from toylab.core.sweep import run_sweep
from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import FigureSet, check_only, run_figures, save_figure, script_main
from toylab.families import induction as ind
from toylab.plots import development as plots

NAME = "development"
# Head scores that count as a head of the type (random tokens in a context of 32: uniform
# attention gives about 0.1 on either score, as measured at initialization).
PREV_THRESHOLD = 0.2
INDUCTION_THRESHOLD = 0.3
# A head's score must cross halfway between its start and its end within the in-context
# window widened by this share of the window's length on each side.
WINDOW_SLACK = 0.5


def induction_setup(quick: bool) -> dict:
    if quick:
        return {"base": {"steps": 2400, "log_every": 100, "snapshot_steps": tuple(range(0, 2401, 200))},
                "seeds": 3,
                "llc": dict(step_size=1e-4, localization=100.0, chains=2, draws=200, batch_size=16),
                "llc_sequences": 1024, "head_snapshots": (800, 1600, 2400)}
    heads = (2000, 5000, 10_000, 20_000, 50_000)
    log_spaced = {int(round(x / 500)) * 500 for x in np.geomspace(500, 50_000, 40)}
    return {"base": {"task": "multigram", "d_vocab": 256, "n_ctx": 128, "span": 32, "d_model": 256, "n_heads": 8,
                     "steps": 50_000, "log_every": 500, "batch_size": 64,
                     "snapshot_steps": tuple(sorted(log_spaced | set(heads)))},
            "seeds": 5,
            "llc": dict(step_size=1e-4, localization=100.0, chains=8, draws=1000, batch_size=64),
            "llc_sequences": 8192, "head_snapshots": heads}


def _sweep_dir(work, name):
    """A results folder under ``work`` (kept and resumed), or None (a temporary one)."""
    return None if work is None else Path(work) / name


def prepare(quick: bool, quiet: bool, work=None):
    """The induction sweep of (a)–(c): every seed, with snapshots."""
    setup = induction_setup(quick)
    folder = _sweep_dir(work, f"development-induction-{'quick' if quick else 'full'}")
    return run_sweep("induction", setup["base"], seeds=setup["seeds"], quiet=quiet, out=folder,
                     resume=folder is not None and folder.exists())


# ----------------------------------------------------------------------------- (a) the phase change


def _crossing(steps, values):
    """The first logged step where a curve has made half of its change from start to end."""
    return transition_window(steps, values, lo=0.5, hi=0.9)[0]


def _head_maxima(metrics, kind, layer, n_heads):
    return np.max(np.stack([np.asarray(metrics[f"{kind}/L{layer}H{h}"], np.float64) for h in range(n_heads)]), axis=0)


def train_a(quick, quiet, work=None, shared=None):
    return shared


def analyse_a(res, quick) -> dict:
    """Per seed: the in-context learning score's window (10%–90% of its fall), the layer-0
    previous-token and layer-1 induction maxima over heads, where each crosses halfway."""
    rows = []
    for run in res:
        m, steps = run.metrics, np.asarray(run.steps)
        n_heads = run.config.n_heads
        icl = np.asarray(m["icl_score"], np.float64)
        prev = _head_maxima(m, "prev", 0, n_heads)
        induction = _head_maxima(m, "induction", run.config.n_layers - 1, n_heads)
        rows.append({"seed": run.seed, "steps": steps, "icl": icl, "prev": prev, "induction": induction,
                     "loss": np.asarray(m["eval_loss"], np.float64), "window": transition_window(steps, icl),
                     "prev_cross": _crossing(steps, prev), "induction_cross": _crossing(steps, induction)})
    return {"rows": rows}


def draw_a(m, out, quick):
    rows = m["rows"]
    save_figure(plots.phase_change_plot(
        rows[0]["steps"], {f"seed {r['seed']}": r["icl"] for r in rows},
        {f"seed {r['seed']}": r["prev"] for r in rows}, {f"seed {r['seed']}": r["induction"] for r in rows},
        [r["window"] for r in rows], thresholds=(PREV_THRESHOLD, INDUCTION_THRESHOLD),
        title="(a) induction heads form in a phase change: the ICL score (top) falls while a previous-token head "
              "and an induction head appear (bottom; shaded: each seed's 10%–90% window of the ICL score)"),
        out, "development_a_phase_change.png")


def _in_window(step, window):
    start, end = window
    slack = WINDOW_SLACK * (end - start)
    return bool(np.isfinite(step) and start - slack <= step <= end + slack)


def claims_a(m, quick) -> list[Claim]:
    rows = m["rows"]
    ok, parts = [], []
    for r in rows:
        start, end = r["window"]
        good = (r["icl"][-1] < r["icl"][0] and r["prev"][-1] >= PREV_THRESHOLD
                and r["induction"][-1] >= INDUCTION_THRESHOLD and _in_window(r["prev_cross"], r["window"])
                and _in_window(r["induction_cross"], r["window"]))
        ok.append(good)
        parts.append(f"seed {r['seed']}: ICL {r['icl'][0]:+.2f}→{r['icl'][-1]:+.2f} in {start:.0f}–{end:.0f}; "
                     f"prev-token {r['prev'][-1]:.2f} (half at {r['prev_cross']:.0f}), induction "
                     f"{r['induction'][-1]:.2f} (half at {r['induction_cross']:.0f})")
    return [Claim("development (a)", "the ICL score falls within a window of steps in which a layer-0 previous-token "
                  f"head (score >= {PREV_THRESHOLD}) and a layer-1 induction head (>= {INDUCTION_THRESHOLD}) appear "
                  f"(each crossing halfway within the window ± {WINDOW_SLACK:.0%} of it), in every seed",
                  "a phase change: the in-context learning score drops while a previous-token head and an "
                  "induction head form", "; ".join(parts), bool(rows) and all(ok))]


# ----------------------------------------------------------------------------- (b) stages from the LLC


def _llc_inputs(run, quick, subset="all"):
    setup = induction_setup(quick)
    params, static = eqx.partition(run.model, eqx.is_inexact_array)
    data = ind.llc_data(run.config, run.config.hparams(), setup["llc_sequences"], subset)
    return ind.llc_loss(static), params, data


def train_b(quick, quiet, work=None, shared=None):
    return shared


def analyse_b(res, quick) -> dict:
    """The LLC at every snapshot after step 0 of seed 0 (one program; ε and γ held), the stage
    boundaries of that curve and of the held-out loss curve, and seed 0's ICL window."""
    setup = induction_setup(quick)
    run = res[0]
    snap_steps = np.asarray(run.config.snapshot_steps)
    keep = snap_steps > 0  # the stage rule works in log(step)
    snaps = jax.tree.map(lambda x: x[keep], eqx.filter(run.snapshots, eqx.is_inexact_array))
    loss, _, data = _llc_inputs(run, quick)
    llc = llc_over_training(loss, snaps, data, jax.random.key(7), **setup["llc"])
    steps = np.asarray(run.steps)
    icl = np.asarray(run.metrics["icl_score"], np.float64)
    eval_loss = np.asarray(run.metrics["eval_loss"], np.float64)
    positive = steps > 0
    mean = np.asarray(llc.mean, np.float64)
    return {"snap_steps": snap_steps[keep], "mean": mean, "std": np.asarray(llc.std, np.float64),
            "stages": stage_boundaries(snap_steps[keep], mean),
            "loss_stages": stage_boundaries(steps[positive], eval_loss[positive]),
            "window": transition_window(steps, icl), "steps": steps, "eval_loss": eval_loss,
            "settings": setup["llc"], "nbeta": float(np.asarray(llc.nbeta).ravel()[0]), "warnings": llc.warnings}


def draw_b(m, out, quick):
    s = m["settings"]
    save_figure(plots.llc_stages_plot(
        m["snap_steps"], m["mean"], m["std"], m["stages"].boundaries, m["steps"], m["eval_loss"],
        m["loss_stages"].boundaries, m["window"],
        title=f"(b) the LLC at every snapshot (seed 0; ε = {s['step_size']:g}, γ = {s['localization']:g}, "
              f"nβ = {m['nbeta']:.0f}, {s['chains']} chains × {s['draws']} draws) and its stage boundaries (dashed) "
              f"beside the held-out loss's (dotted); shaded: the ICL window"),
        out, "development_b_llc_stages.png")


def claims_b(m, quick) -> list[Claim]:
    start, end = m["window"]
    bounds = m["stages"].boundaries
    slack = WINDOW_SLACK * (end - start)
    # The stage of induction-head formation ends where the LLC comes to rest: a boundary near the
    # window's end, and none inside the window's core (its middle half).
    near_end = [b for b in bounds if end - slack <= b <= end + slack]
    core = [b for b in bounds if start + 0.25 * (end - start) < b < end - 0.25 * (end - start)]
    warned = f"; the estimates warn: {'; '.join(m['warnings'])}" if m["warnings"] else ""
    return [Claim("development (b)", "the LLC curve's stages bound the induction-head window: a stage boundary at "
                  f"its end (± {WINDOW_SLACK:.0%} of its length) and none in its middle half",
                  "LLC plateaus split training into stages; induction heads form within one (LM stages at about "
                  "0.9k, 6.5k, 8.5k, 17k and 50k steps in the paper's 2-layer model)",
                  f"window {start:.0f}–{end:.0f}; {len(m['stages'])} LLC stages, boundaries "
                  f"{[int(b) for b in bounds]} ({', '.join(m['stages'].kinds) or 'none'}); loss-curve boundaries "
                  f"{[int(b) for b in m['loss_stages'].boundaries]}; LLC {m['mean'][0]:.0f} → {m['mean'][-1]:.0f}"
                  + warned, bool(near_end) and not core)]


# ----------------------------------------------------------------------------- (c) weight-refined LLC per head


def train_c(quick, quiet, work=None, shared=None):
    return shared


def _head_types(metrics, n_layers, n_heads):
    """Each head's type from its final scores: induction, previous-token or other."""
    out = {}
    for layer in range(n_layers):
        for h in range(n_heads):
            label = f"L{layer}H{h}"
            if float(metrics[f"induction/{label}"][-1]) >= INDUCTION_THRESHOLD:
                out[label] = "induction"
            elif float(metrics[f"prev/{label}"][-1]) >= PREV_THRESHOLD:
                out[label] = "previous-token"
            else:
                out[label] = "other"
    return out


def analyse_c(res, quick) -> dict:
    """Seed 0: the weight-refined LLC of every head at the chosen snapshots (every head × snapshot
    in one program), and each head's type from its final scores."""
    setup = induction_setup(quick)
    run = res[0]
    snap_steps = np.asarray(run.config.snapshot_steps)
    chosen = np.asarray([int(np.flatnonzero(snap_steps == s)[0]) for s in setup["head_snapshots"]])
    snaps = jax.tree.map(lambda x: x[chosen], eqx.filter(run.snapshots, eqx.is_inexact_array))
    loss, params, data = _llc_inputs(run, quick)
    groups = ind.head_groups(run.model, params)
    llc = llc_over_training(loss, snaps, data, jax.random.key(11), groups=groups, **setup["llc"])
    return {"labels": list(groups), "steps": snap_steps[chosen], "mean": np.asarray(llc.mean, np.float64),
            "types": _head_types(run.metrics, run.config.n_layers, run.config.n_heads), "warnings": llc.warnings}


def _separation(curves, inside):
    """(nearest distance from an induction head's curve to another head's, farthest between two
    induction heads' curves): distances as the mean |difference| over the snapshots, relative
    to the largest value of any curve."""
    scale = max(float(np.max(np.abs(curves))), 1e-12)
    idx_in, idx_out = np.flatnonzero(inside), np.flatnonzero(~inside)

    def dist(i, j):
        return float(np.mean(np.abs(curves[i] - curves[j]))) / scale
    between = min((dist(i, j) for i in idx_in for j in idx_out), default=float("nan"))
    within = max((dist(i, j) for i in idx_in for j in idx_in if i < j), default=0.0)
    return between, within


def draw_c(m, out, quick):
    save_figure(plots.head_llc_plot(
        m["steps"], m["mean"], m["labels"], [m["types"][label] for label in m["labels"]],
        title="(c) the weight-refined LLC of each head over training (seed 0), coloured by the head's type "
              "from its final scores"),
        out, "development_c_head_llc.png")


def claims_c(m, quick) -> list[Claim]:
    inside = np.asarray([m["types"][label] == "induction" for label in m["labels"]])
    between, within = _separation(m["mean"], inside)
    kinds = {k: [label for label in m["labels"] if m["types"][label] == k]
             for k in ("induction", "previous-token", "other")}
    final = ", ".join(f"{label} {v:.1f}" for label, v in zip(m["labels"], m["mean"][:, -1]))
    warned = f"; the estimates warn: {'; '.join(m['warnings'])}" if m["warnings"] else ""
    return [Claim("development (c)", "the induction heads' weight-refined LLC curves cluster apart from the other "
                  "heads' (every induction head's curve nearer every other induction head's than any other head's)",
                  "the refined LLC separates head types (previous-token, induction, multigram) by their curves",
                  f"heads {kinds}; nearest other head {between:.2f}, farthest induction pair {within:.2f} (mean "
                  f"|difference| / largest LLC); final LLCs: {final}" + warned,
                  bool(inside.sum() >= 2 and (~inside).sum() >= 1 and between > within))]


# ----------------------------------------------------------------------------- (d) task diversity


def regression_setup(quick: bool) -> dict:
    if quick:
        return {"base": {"steps": 2000, "log_every": 250}, "n_tasks": [1, 4, 16, 64], "small": 4, "large": 64}
    return {"base": {"dim": 8, "n_points": 16, "pool_size": 2 ** 15, "d_model": 256, "n_heads": 8, "n_layers": 8,
                     "d_mlp": 512, "batch_size": 256, "steps": 100_000, "log_every": 1000},
            "n_tasks": [2 ** k for k in range(1, 16, 2)], "small": 2 ** 5, "large": 2 ** 13}


def train_d(quick, quiet, work=None, shared=None):
    setup = regression_setup(quick)
    folder = _sweep_dir(work, f"development-regression-{'quick' if quick else 'full'}")
    return run_sweep("icl_regression", setup["base"], {"n_tasks": setup["n_tasks"]}, quiet=quiet, out=folder,
                     resume=folder is not None and folder.exists())


def analyse_d(res, quick) -> dict:
    """Per M: the model's mean squared distance from the M-task posterior mean and from ridge,
    on fresh tasks, at the last logged step."""
    setup = regression_setup(quick)
    rows = sorted(((float(r.config.n_tasks), float(r.metrics["delta_dmmse"][-1]), float(r.metrics["delta_ridge"][-1]))
                   for r in res), key=lambda t: t[0])
    return {"n_tasks": np.asarray([t[0] for t in rows]), "dmmse": np.asarray([t[1] for t in rows]),
            "ridge": np.asarray([t[2] for t in rows]), "small": setup["small"], "large": setup["large"]}


def draw_d(m, out, quick):
    save_figure(plots.task_diversity_plot(
        m["n_tasks"], m["dmmse"], m["ridge"],
        title="(d) in-context regression: the model's distance from the M-task Bayes predictor and from ridge, "
              "on fresh tasks, against the number of pretraining tasks M"),
        out, "development_d_task_diversity.png")


def claims_d(m, quick) -> list[Claim]:
    M, dm, rg = m["n_tasks"], m["dmmse"], m["ridge"]
    small, large = M <= m["small"], M >= m["large"]
    closer_bayes = dm < rg
    cross = [f"{M[i]:g}–{M[i + 1]:g}" for i in range(len(M) - 1) if closer_bayes[i] and not closer_bayes[i + 1]]
    table = ", ".join(f"M={a:g}: {b:.2f} vs {c:.2f}" for a, b, c in zip(M, dm, rg))
    return [Claim("development (d)", f"closer to the M-task Bayes predictor at M <= {m['small']:g}, closer to ridge at "
                  f"M >= {m['large']:g}", "below a task-diversity threshold the transformer behaves like the Bayes "
                  "predictor of its M tasks, above it like ridge regression",
                  f"squared distance from the Bayes predictor vs from ridge: {table}; crossover at "
                  f"{', '.join(cross) or 'none'}",
                  bool(small.any() and large.any() and np.all(closer_bayes[small])
                       and not np.any(closer_bayes[large])))]


FIGURES = {"a": FigureSet(train_a, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_b, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_c, analyse_c, draw_c, claims_c),
           "d": FigureSet(train_d, analyse_d, draw_d, claims_d)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None) -> list[Claim]:
    """Run the figure sets (``only``: letters, e.g. "ab"); returns their claims."""
    only = None if only is None else check_only(only, "".join(FIGURES))
    prepare_needed = only is None or bool(set(only) & set("abc"))
    return run_figures(FIGURES, out, quick, quiet, only, work, prepare=prepare if prepare_needed else None)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "letters of figures to run, e.g. 'ad'")
