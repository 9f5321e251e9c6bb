"""Toy Models of Superposition (Elhage et al. 2022): figures (a)–(f) and their checked claims.

    (a) n=20, m=5, I=0.7^i: WᵀW and b across 1−S from 1 to 0.001, linear beside ReLU output
    (b) D* against 1/(1−S): sticky at 1 and at 1/2
    (c) D_i against 1/(1−S) with the fraction lines
    (d) the n=2, m=1 phase diagram over relative importance × density
    (e) n=5, m=2: dedicated dimensions → antipodal pairs → pentagon as sparsity grows
    (f) computation in superposition: the untied absolute-value model

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
``train_X`` runs one sweep (``run_sweep``), ``analyse_X`` measures it (keeping the lowest-loss
seed of each point where the paper does), ``draw_X`` writes the PNG, ``claims_X`` checks the
paper's statements on the measured numbers.
Run: ``toylab reproduce superposition [--quick]`` or ``python -m toylab.experiments.reproductions.superposition``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main
from toylab.analysis import superposition as geo
from toylab.experiments.reproductions._claims import Claim
from toylab.core.sweep import run_sweep
from toylab.plots import superposition as plots
from toylab.tasks.sparse_features import sparse_features

NAME = "superposition"


def _best_per_point(results, **fields):
    """The lowest-final-loss run among the seeds of one grid point."""
    runs = results.select(**fields)
    return min(runs, key=lambda r: r.metrics["loss"][-1])


# ----------------------------------------------------------------------------- (a)

A_DENSITIES = [1.0, 0.3, 0.1, 0.03, 0.01, 0.003, 0.001]
KINDS = ("linear", "relu_output")


def train_a(quick, quiet, work=None, shared=None):
    return run_sweep(NAME, {"n_features": 20, "n_hidden": 5, "importance_decay": 0.7,
                            "steps": 5000 if quick else 10_000},
                     {"model": list(KINDS), "feature_probability": A_DENSITIES},
                     seeds=2 if quick else 5, quiet=quiet)


def analyse_a(res, quick):
    """Per model kind and density (best seed): WᵀW, b, features represented (‖W_i‖ > 0.5), D*."""
    grams, biases, represented, dstar = {}, {}, {}, {}
    for kind in KINDS:
        grams[kind], biases[kind] = [], []
        for p in A_DENSITIES:
            m = _best_per_point(res, model=kind, feature_probability=p).model
            grams[kind].append(np.asarray(geo.gram(m.W)))
            biases[kind].append(np.asarray(m.b))
            represented[kind, p] = int(np.sum(np.asarray(geo.feature_norms(m.W)) > 0.5))
            dstar[kind, p] = float(geo.dimensions_per_feature(m.W))
    return {"grams": grams, "biases": biases, "represented": represented, "dstar": dstar}


def draw_a(measured, out, quick):
    grams, biases = measured["grams"], measured["biases"]
    fig = plots.gram_grid([grams["linear"], grams["relu_output"]], [biases["linear"], biases["relu_output"]],
                          ["linear", "ReLU output"], [f"1−S={p:g}" for p in A_DENSITIES],
                          "WᵀW and b, n=20, m=5, I=0.7^i")
    save_figure(fig, out, "superposition_a_gram.png")


def claims_a(measured, quick):
    represented, dstar = measured["represented"], measured["dstar"]
    lin = [represented["linear", p] for p in A_DENSITIES]
    relu_dense, relu_sparse = represented["relu_output", 1.0], represented["relu_output", 0.001]
    return [
        Claim("superposition (a)", "linear model: top m features, no superposition, at every sparsity",
              "linear models learn the m=5 most important features orthogonally (D*=1)",
              f"features represented {lin}; D* {min(dstar['linear', p] for p in A_DENSITIES):.2f}–"
              f"{max(dstar['linear', p] for p in A_DENSITIES):.2f}",
              all(n == 5 for n in lin) and all(abs(dstar["linear", p] - 1) < 0.1 for p in A_DENSITIES)),
        Claim("superposition (a)", "ReLU model: dense → m features, sparse → superposition",
              "dense: like linear (m=5 features); sparse: many more features than dimensions",
              f"features represented: {relu_dense} at 1−S=1, {relu_sparse} at 1−S=0.001 (≥ 2m required)",
              relu_dense == 5 and relu_sparse >= 10),
    ]


# ----------------------------------------------------------------------------- (b), (c)


def _bc_densities(quick):
    return np.geomspace(1.0, 0.01 if quick else 0.001, 16 if quick else 30)


def train_bc(quick, quiet, work=None, shared=None):
    n, m = (100, 10) if quick else (400, 30)
    return run_sweep(NAME, {"n_features": n, "n_hidden": m, "importance_decay": 1.0,
                            "batch_size": 256 if quick else 1024, "steps": 6000 if quick else 20_000,
                            "lr": 3e-3 if quick else 1e-3},
                     {"feature_probability": [float(p) for p in _bc_densities(quick)]}, seeds=1, quiet=quiet)


def analyse_bc(res, quick):
    """D* per density, each represented feature's D_i, and the fraction lines they cluster on."""
    densities = _bc_densities(quick)
    dstar, dims = [], []
    for p in densities:
        W = res.one(feature_probability=float(p)).model.W
        dstar.append(float(geo.dimensions_per_feature(W)))
        d = np.asarray(geo.feature_dimensionality(W))
        dims.append(np.where(np.asarray(geo.feature_norms(W)) > 0.5, d, 0.0))  # represented features only
    all_dims = np.concatenate([d[d > 0] for d in dims])
    detected = np.asarray(geo.detect_fraction_lines(jnp.asarray(all_dims), tol=0.02, min_count=5))
    lines = [name for (name, _), hit in zip(geo.FRACTION_LINES, detected) if hit]
    within = float(np.mean(np.min(np.abs(all_dims[:, None] - np.asarray([v for _, v in geo.FRACTION_LINES[:-1]])), 1)
                           < 0.02))
    return {"densities": densities, "dstar": np.asarray(dstar), "dims": dims, "lines": lines, "within": within}


def draw_bc(measured, out, quick):
    inv = 1 / measured["densities"]
    save_figure(plots.dimensions_per_feature_plot(inv, list(measured["dstar"])), out,
                "superposition_b_dimensions_per_feature.png")
    save_figure(plots.feature_dimensionality_plot(inv, measured["dims"], list(measured["dstar"])), out,
                "superposition_c_feature_dimensionality.png")


def claims_bc(measured, quick):
    densities, dstar, names, within = measured["densities"], measured["dstar"], measured["lines"], measured["within"]
    inv = 1 / densities
    near_half = np.abs(dstar - 0.5) < 0.05
    longest_run = max((len(run) for run in "".join("1" if h else "0" for h in near_half).split("0")), default=0)
    return [
        Claim("superposition (b)", "D* starts at 1 (dense) and falls with sparsity",
              "D* = 1 for dense features, decreasing as 1/(1−S) grows",
              f"D* = {dstar[0]:.2f} at 1−S=1, {dstar[-1]:.2f} at 1−S={densities[-1]:.3g}",
              abs(dstar[0] - 1) < 0.1 and dstar[-1] < 0.45),
        Claim("superposition (b)", "D* sticks at 1/2",
              "a plateau at D* = 1/2 (antipodal pairs) over a range of sparsity",
              f"{int(near_half.sum())} of {len(dstar)} sparsities (longest run {longest_run}) have |D*−1/2|<0.05 "
              f"(1/(1−S) ∈ [{inv[near_half].min() if near_half.any() else 0:.3g}, {inv[near_half].max() if near_half.any() else 0:.3g}])",
              longest_run >= 2),
        Claim("superposition (c)", "D_i cluster on the fraction lines" + (" (quick: the 1/2 line)" if quick else ""),
              "lines at 1, 3/4, 2/3, 1/2, 2/5, 3/8; only ~1/4 of features within ±0.02 of one",
              f"lines detected as clusters: {', '.join(names) or 'none'}; {100 * within:.0f}% of learned features within ±0.02",
              # quick mode (n=100, m=10) shows the antipodal line; the full sweep must show more
              "1/2" in names and (quick or len(set(names) - {"1", "0"}) >= 2)),
    ]


# ----------------------------------------------------------------------------- (d)


def _d_axes(quick):
    return np.geomspace(0.1, 10, 9 if quick else 21), np.geomspace(1.0, 0.01, 9 if quick else 21)


def train_d(quick, quiet, work=None, shared=None):
    importances, densities = _d_axes(quick)
    return run_sweep(NAME, {"n_features": 2, "n_hidden": 1, "batch_size": 256 if quick else 1024,
                            "steps": 4000 if quick else 10_000},
                     {"importance_decay": [float(r) for r in importances],
                      "feature_probability": [float(p) for p in densities]},
                     seeds=4 if quick else 10, quiet=quiet)


def analyse_d(res, quick):
    """The phase of the best seed at each (relative importance, density)."""
    importances, densities = _d_axes(quick)
    phases = np.zeros((len(importances), len(densities)), int)
    for i, r in enumerate(importances):
        for j, p in enumerate(densities):
            W = _best_per_point(res, importance_decay=float(r), feature_probability=float(p)).model.W
            phases[i, j] = int(geo.classify_phase(W))
    return {"importances": importances, "densities": densities, "phases": phases}


def draw_d(measured, out, quick):
    save_figure(plots.phase_diagram(measured["phases"], measured["densities"], measured["importances"]), out,
                "superposition_d_phase_diagram.png")


def claims_d(measured, quick):
    importances, densities, phases = measured["importances"], measured["densities"], measured["phases"]
    dense_high = phases[importances >= 2, 0]
    dense_low = phases[importances <= 0.5, 0]
    sparse_equal = phases[np.abs(np.log10(importances)) < 0.3][:, densities <= 0.03]
    found = sorted({geo.PHASE_NAMES[k] for k in phases.ravel()})
    return [
        Claim("superposition (d)", "three phases in the n=2, m=1 model",
              "not represented / dedicated dimension / superposition regions",
              f"phases found: {', '.join(found)}", len(found) == 3),
        Claim("superposition (d)", "dense: the more important feature takes the dimension",
              "dense, extra feature more important → dedicated; less important → not represented",
              f"1−S=1: importance≥2 → {[geo.PHASE_NAMES[k] for k in sorted(set(dense_high))]}, "
              f"≤0.5 → {[geo.PHASE_NAMES[k] for k in sorted(set(dense_low))]}",
              bool(np.all(dense_high == 1) and np.all(dense_low == 0))),
        Claim("superposition (d)", "sparse and similar importance: superposition",
              "sparse features of comparable importance share the dimension (antipodal)",
              f"{int(np.sum(sparse_equal == 2))} of {sparse_equal.size} points superposed at "
              "importance 0.5–2, 1−S ≤ 0.03",
              sparse_equal.size > 0 and float(np.mean(sparse_equal == 2)) >= 0.75),
    ]


# ----------------------------------------------------------------------------- (e)

E_DENSITIES = [1.0, 0.3, 0.1, 0.05, 0.02, 0.01]


def train_e(quick, quiet, work=None, shared=None):
    return run_sweep(NAME, {"n_features": 5, "n_hidden": 2, "importance_decay": 0.9,
                            "batch_size": 512 if quick else 1024, "steps": 6000 if quick else 20_000},
                     {"feature_probability": E_DENSITIES}, seeds=6 if quick else 20, quiet=quiet)


def analyse_e(res, quick):
    """Per density (best seed): W, the features represented and each feature's D_i."""
    weights, counts, dims = [], [], []
    for p in E_DENSITIES:
        W = np.asarray(_best_per_point(res, feature_probability=p).model.W)
        weights.append(W)
        counts.append(int(np.sum(np.linalg.norm(W, axis=0) > 0.5)))
        dims.append(np.asarray(geo.feature_dimensionality(jnp.asarray(W))))
    return {"weights": weights, "counts": counts, "dims": dims}


def draw_e(measured, out, quick):
    labels = [f"1−S={p:g}\n{c} features" for p, c in zip(E_DENSITIES, measured["counts"])]
    save_figure(plots.feature_geometry(measured["weights"], labels), out, "superposition_e_geometry.png")


def claims_e(measured, quick):
    weights, counts, dims = measured["weights"], measured["counts"], measured["dims"]
    sparse_dims = dims[-1][np.linalg.norm(weights[-1], axis=0) > 0.5]
    pairs = [i for i, (c, d) in enumerate(zip(counts, dims)) if c == 4 and np.sum(np.abs(d - 0.5) < 0.05) == 4]
    return [
        Claim("superposition (e)", "dense: 2 features get dedicated dimensions",
              "n=5, m=2 dense: the two most important features, orthogonal",
              f"features represented at 1−S=1: {counts[0]} (D_i {[round(float(d), 2) for d in np.sort(dims[0])[::-1][:2]]})",
              counts[0] == 2 and np.all(np.sort(dims[0])[-2:] > 0.9)),
        Claim("superposition (e)", "intermediate sparsity: antipodal pairs",
              "4 features as two antipodal pairs (D_i = 1/2)",
              f"features represented per sparsity: {counts}; antipodal pairs at 1−S="
              f"{[E_DENSITIES[i] for i in pairs]}",
              len(pairs) >= 1),
        Claim("superposition (e)", "sparse: a pentagon",
              "all 5 features on a regular pentagon (D_i = 2/5)",
              f"at 1−S={E_DENSITIES[-1]}: {counts[-1]} features, D_i {[round(float(d), 2) for d in sparse_dims]}",
              counts[-1] == 5 and bool(np.all(np.abs(sparse_dims - 0.4) < 0.05))),
    ]


# ----------------------------------------------------------------------------- (f)

F_DENSITIES = [1.0, 0.3, 0.1, 0.03, 0.01]
F_N, F_M = 20, 5


def train_f(quick, quiet, work=None, shared=None):
    return run_sweep(NAME, {"model": "abs", "n_features": F_N, "n_hidden": F_M, "importance_decay": 1.0,
                            "batch_size": 512 if quick else 1024, "steps": 8000 if quick else 20_000,
                            "lr": 3e-3 if quick else 1e-3},
                     {"feature_probability": F_DENSITIES}, seeds=2 if quick else 5, quiet=quiet)


def analyse_f(res, quick):
    """Per density (best seed): each feature's relative error in |x| on fresh inputs, and the
    features' worth of |x| computed, Σ_i R²_i (threshold-free)."""
    n_computed, errors = [], []
    for p in F_DENSITIES:
        model = _best_per_point(res, feature_probability=p).model
        x = sparse_features(jax.random.key(123), 20_000, F_N, p, signed=True)
        err = np.asarray(geo.relative_feature_error(model(x), jnp.abs(x)))
        errors.append(err)
        n_computed.append(float(np.sum(np.clip(1 - err, 0, 1))))
    return {"n_computed": n_computed, "errors": errors}


def draw_f(measured, out, quick):
    save_figure(plots.abs_computation_plot(F_DENSITIES, measured["n_computed"], F_M, measured["errors"]), out,
                "superposition_f_abs.png")


def claims_f(measured, quick):
    n_computed = measured["n_computed"]
    return [
        Claim("superposition (f)", "dense: |x| computed for fewer features than neurons",
              "dense inputs: each |x_i| needs its own neurons, so fewer than m features are computed",
              f"features computed (Σ R²) at 1−S=1: {n_computed[0]:.1f} with m={F_M} neurons",
              n_computed[0] < F_M),
        Claim("superposition (f)", "sparse: computation in superposition",
              "sparse inputs: more features computed than there are neurons",
              f"features computed (Σ R²) at 1−S={F_DENSITIES[-1]}: {n_computed[-1]:.1f} with m={F_M} neurons",
              n_computed[-1] > F_M),
    ]


FIGURES = {"a": FigureSet(train_a, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_bc, analyse_bc, draw_bc, claims_bc),
           "d": FigureSet(train_d, analyse_d, draw_d, claims_d),
           "e": FigureSet(train_e, analyse_e, draw_e, claims_e),
           "f": FigureSet(train_f, analyse_f, draw_f, claims_f)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None):
    """Run the reproductions, write PNGs into ``out``, return the checked claims (each
    figure trains its own small sweep; ``work`` is unused)."""
    return run_figures(FIGURES, out, quick, quiet, only, work)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "letters of figures to run, e.g. 'ad'")
