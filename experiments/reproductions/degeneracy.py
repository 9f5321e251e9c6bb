"""Degeneracy: the local learning coefficient (LLC) against theory, over training, on the
superposition toy's k-gons, and beside the Hessian and the three degeneracies.

    (a) validation table: the SGLD estimate against the closed form (real log canonical
        threshold) on potentials whose value is known — sums of powers, normal crossings —
        and on reduced-rank regressions and deep linear networks fitted to data at a true
        minimum (Aoyagi & Watanabe 2005; Aoyagi 2024); PASS within a stated relative
        tolerance, and the ordering of the estimates where the closed forms differ by more
        than it
    (b) the LLC over the training of a grokking run (its snapshots, one vmapped program), with
        the phases located from the loss curves and Nanda et al.'s restricted and excluded
        loss at the same snapshots on the same axis
    (c) the toy model of superposition with 6 features in 2 dimensions: the k-gons that
        training finds, their losses and their LLCs (Chen et al. 2023: the LLC increases with
        k, lower loss costs complexity)
    (d) a trained modular-addition MLP: the Hessian of the behavioural loss, its near-zero
        eigenvalues, the three degeneracies' freed directions (Bushnaq et al. 2024) and the
        effective parameter count 2·λ̂ of the behavioural loss, side by side

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
``train_X`` runs its sweep ((a) has none: its cases are constructed at their minima),
``analyse_X`` draws the LLC chains and the other measures at the trained points (in (c) the
estimator first fine-tunes each point to its nearby minimum, as its recipe says), ``draw_X``
writes the PNG, ``claims_X`` checks the statements on the measured numbers.

``--quick`` runs on 2 CPU cores in a few minutes; the full mode draws longer chains, more
chains and more seeds (a GPU job).
Run: ``toylab reproduce degeneracy [--quick]`` or ``python -m toylab.experiments.reproductions.degeneracy``.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main
from toylab.experiments.reproductions.grokking import grokking_runs, grokking_setup, locate_phases
from toylab.analysis import degeneracy as dg
from toylab.analysis import fourier as fa
from toylab.core.sweep import run_sweep
from toylab.families.grokking import grid_train_mask
from toylab.plots import degeneracy as plots
from toylab.testing import cases
from toylab.testing.assertions import Truth, compare_estimate

NAME = "degeneracy"
# import name -> distribution of what this reproduction needs beyond toylab's dependencies
# (NUTS, the gold standard of (a); the cases' exact values by quadrature); all in the reproduce extra
REQUIRES = {"blackjax": "blackjax", "scipy": "scipy"}


def _sweep_dir(work, name):
    """A results folder under ``work`` (kept and resumed), or None (a temporary one)."""
    return None if work is None else Path(work) / name


def _resume(folder):
    return folder is not None and folder.exists()


# ----------------------------------------------------------------------------- (a) the validation table


def validation_cases(quick: bool) -> list:
    """The known-answer cases of (a), from toylab.testing.cases: potentials at nβ = 1000 (their
    exact finite-nβ values by quadrature) and linear networks fitted to n = 10⁵ examples (λ and
    its multiplicity from Aoyagi & Watanabe 2005 and Aoyagi 2024)."""
    return [
        cases.sum_of_powers(1, 4), cases.sum_of_powers(2, 4), cases.sum_of_powers(2, 2),
        cases.normal_crossing([1, 2]), cases.normal_crossing([1, 1]),
        cases.reduced_rank_regression(M=4, N=3, H=3, r=0), cases.reduced_rank_regression(M=3, N=3, H=2, r=1),
        cases.deep_linear_network([2, 2, 2, 2], 0), cases.deep_linear_network([3, 2, 2, 3], 1),
        cases.deep_linear_network([4, 3, 3, 3, 4], 1),
    ]


def validation_settings(quick: bool) -> dict:
    """SGLD runs at the estimator's defaults (step size, draws and γ = 1 as
    learning_coefficient chooses them) with these chains; NUTS, the gold standard, with
    these chains and draws after its warmup, at γ = 0.1 (nearer the γ → 0 the closed forms
    describe; it mixes there where SGLD would need far more draws) and target acceptance 0.99
    (singular posteriors are funnels: at 0.95, 1–9% of its trajectories diverged here)."""
    return {"sgld": dict(chains=8 if quick else 32),
            "hmc": dict(chains=8 if quick else 32, draws=1000 if quick else 4000, localization=0.1,
                        sampler=dg.hmc(target_accept=0.99))}


def _pairs_in_order(values, estimates, tol):
    """(concordant, compared): pairs whose closed forms differ by more than ``tol`` (relative
    to the smaller) compared on their estimates."""
    good = total = 0
    for i in range(len(values)):
        for j in range(i + 1, len(values)):
            lo, hi = sorted((values[i], values[j]))
            if hi > (1 + tol) * lo:
                total += 1
                good += (estimates[i] - estimates[j]) * (values[i] - values[j]) > 0
    return good, total


def train_a(quick: bool, quiet: bool, work=None, shared=None):
    """Nothing to train: the known-answer cases sit at their minima by construction. Returns
    them, and whether :func:`analyse_a` prints each estimate as it is drawn."""
    return {"cases": validation_cases(quick), "quiet": quiet}


def analyse_a(trained, quick: bool) -> dict:
    """Per case: SGLD (at its defaults) and NUTS estimates, each compared with the theory
    (expected value at its nβ, tolerance, warnings); for a case with multiplicity ≥ 3 and no
    exact value, NUTS also against the shifted value and against λ itself."""
    settings = validation_settings(quick)
    rows = []
    for i, case in enumerate(trained["cases"]):
        key = jax.random.key(i)
        sgld = dg.learning_coefficient(case.loss, case.params, case.data, key, **case.settings, **settings["sgld"])
        hmc = dg.learning_coefficient(case.loss, case.params, case.data, key, **case.settings, **settings["hmc"])
        truth_sgld, truth_hmc = (case.truth(float(r.localization)) for r in (sgld, hmc))
        c_sgld, c_hmc = compare_estimate(sgld, truth_sgld), compare_estimate(hmc, truth_hmc)
        row = {"name": case.name, "value": float(case.value), "multiplicity": case.multiplicity,
               "exact": case.exact, "nbeta": case.nbeta, "c_sgld": c_sgld, "c_hmc": c_hmc,
               "sgld": {"mean": float(sgld.mean), "std": float(sgld.std), "step_size": float(sgld.step_size),
                        "draws": sgld.draws, "predicted_bias": float(sgld.predicted_bias)},
               "hmc": {"mean": float(hmc.mean), "std": float(hmc.std), "chains": hmc.chains, "draws": hmc.draws,
                       "localization": float(hmc.localization)}}
        # The multiplicity's shift, checked where it is largest: the deep linear network 2-2-2-2 at
        # rank 0 (λ = 3/2, m = 3). Its value against the shifted expectation, and against λ itself.
        if case.multiplicity and case.multiplicity >= 3 and case.exact is None:
            row["shifted"] = compare_estimate(hmc, case.truth(), allow_warnings=("trajectories diverged",))
            row["unshifted"] = compare_estimate(hmc, Truth(value=float(case.value), multiplicity=1),
                                                allow_warnings=("trajectories diverged",))
        rows.append(row)
        if not trained["quiet"]:
            print(f"  (a) {case.name}: λ = {case.value} (m = {case.multiplicity}); expected at nβ = {case.nbeta:.4g}: "
                  f"{c_hmc.expected:.3f}; SGLD {float(sgld.mean):.3f} ± {float(sgld.std):.3f} "
                  f"({len(sgld.warnings)} warnings), NUTS {float(hmc.mean):.3f} ± {float(hmc.std):.3f}", flush=True)
    return {"rows": rows}


def draw_a(m, out, quick):
    rows = m["rows"]
    labels = [r["name"] for r in rows]
    lams = np.array([r["value"] for r in rows])
    expected = np.array([r["c_hmc"].expected for r in rows])
    save_figure(plots.validation_plot(
        labels, lams, expected, {"SGLD (defaults)": ([r["sgld"]["mean"] for r in rows], [r["sgld"]["std"] for r in rows]),
                                 "NUTS": ([r["hmc"]["mean"] for r in rows], [r["hmc"]["std"] for r in rows])},
        "(a) LLC estimates against theory: closed-form λ (x), what the estimator measures at this nβ (—: the "
        "exact finite-nβ value, or λ shifted by its multiplicity), SGLD at its defaults and NUTS"),
        out, "degeneracy_a_validation.png")


def claims_a(m, quick) -> list[Claim]:
    rows = m["rows"]
    claims = []

    def verdict(c):
        return "within tolerance" if c.ok else "outside" if not c.warnings else f"warns: {'; '.join(c.warnings)}"
    for r in rows:
        c_sgld, c_hmc, sgld, hmc = r["c_sgld"], r["c_hmc"], r["sgld"], r["hmc"]
        target = (f"exact finite-nβ value {c_hmc.expected:.4g} (λ = {r['value']:.4g} as nβ → ∞)"
                  if r["exact"] is not None else
                  f"λ = {r['value']:.4g}, m = {r['multiplicity']}: {c_hmc.expected:.4g} at nβ = {r['nbeta']:.4g}")
        # Each estimator's promise: within its tolerance of the theory, or a warning that says why not.
        claims.append(Claim("degeneracy (a)", f"NUTS on {r['name']}: matches the theory, or warns why not", target,
                            f"{c_hmc.estimate:.3f} ± {hmc['std']:.3f}, tolerance {c_hmc.tolerance:.3f} "
                            f"({hmc['chains']} chains × {hmc['draws']} draws, γ = {hmc['localization']:g}): "
                            + verdict(c_hmc), c_hmc.ok or bool(c_hmc.warnings)))
        claims.append(Claim(
            "degeneracy (a)", f"SGLD at its defaults on {r['name']}: matches the theory, or warns why not",
            target, f"{c_sgld.estimate:.3f} ± {sgld['std']:.3f} (ε = {sgld['step_size']:.3g}, "
            f"{sgld['draws']} draws, predicted bias {sgld['predicted_bias']:+.1%}): " + verdict(c_sgld),
            c_sgld.ok or bool(c_sgld.warnings)))
    for r in rows:
        if "shifted" not in r:
            continue
        value_check, unshifted, c_hmc = r["shifted"], r["unshifted"], r["c_hmc"]
        claims.append(Claim(
            "degeneracy (a)", f"{r['name']}: NUTS measures λ shifted by its multiplicity (within tolerance of the "
            f"shifted value, and nearer it than λ)",
            f"λ = {r['value']:.4g}, m = {r['multiplicity']} → {value_check.expected:.4g} at nβ = "
            f"{r['nbeta']:.4g}", f"{value_check.estimate:.3f}: off the shifted value by "
            f"{value_check.estimate - value_check.expected:+.3f} (tolerance {value_check.tolerance:.3f}), off λ by "
            f"{unshifted.estimate - unshifted.expected:+.3f} (tolerance {unshifted.tolerance:.3f})"
            + (f"; warnings: {'; '.join(c_hmc.warnings)}" if c_hmc.warnings else ""),
            value_check.ok and abs(value_check.estimate - value_check.expected)
            < abs(unshifted.estimate - unshifted.expected)))
    lams = np.array([r["value"] for r in rows])
    good, total = _pairs_in_order(lams, [r["c_hmc"].estimate for r in rows], 0.2)
    claims.append(Claim("degeneracy (a)", "NUTS estimates ordered as the closed forms (pairs differing by > 20%)",
                        "the order of the λ", f"{good} of {total} pairs in order", bool(total and good == total)))
    return claims


# ----------------------------------------------------------------------------- (b) the LLC over grokking


def grokking_llc_settings(quick: bool) -> dict:
    # minibatches of training rows: a full batch of the p = 113 table costs a whole forward
    # and backward pass of the transformer per draw. The snapshots are where training was, not
    # minima, so step_size="auto" (which needs a minimum) does not apply: ε is given, and each
    # estimate's warnings say what that costs.
    return dict(chains=4 if quick else 16, draws=400 if quick else 2000, step_size=3e-5, localization=100.0,
                batch_size=32 if quick else 128)


def llc_snapshot_stride(quick: bool) -> int:
    """The LLC at every how-many-th snapshot (the quick run's 21 snapshots: every other)."""
    return 2 if quick else 1


def train_b(quick: bool, quiet: bool, work=None, shared=None):
    """One grokking run with its snapshots: the transformer of grokking (a)-(c), seed 0."""
    return grokking_runs(quick, quiet, 1, work)[0]  # grokking (a)-(c)'s seed 0, shared with it


def analyse_b(run, quick: bool) -> dict:
    """The LLC at every stride-th snapshot (where training was, no fine-tuning), the phases
    located from the loss curves, and the restricted and excluded loss at the same snapshots."""
    base, _ = grokking_setup(quick)
    s = grokking_llc_settings(quick)
    stride = llc_snapshot_stride(quick)
    snap_params = jax.tree.map(lambda x: x[::stride], eqx.filter(run.snapshots, eqx.is_inexact_array))
    # the LLC where training was (no fine-tuning), every snapshot in one vmapped program
    llc = dg.family_learning_coefficient(run, jax.random.key(1), at=snap_params, fine_tune=False, **s)
    snap_steps = np.asarray(run.config.snapshot_steps)[::stride]
    bounds = locate_phases(run.steps, run.metrics["train_accuracy"], run.metrics["test_loss"])
    # Nanda et al.'s progress measures at the same snapshots (key frequencies of the final model)
    p, hp = run.config.p, run.config.hparams()
    key = np.asarray(fa.key_frequencies(np.asarray(fa.frequency_power(
        np.asarray(fa.embedding_fourier_norms(fa.embedding_matrix(run.model), p)), p))))
    train_grid = grid_train_mask(run.config)
    measures = jax.jit(jax.vmap(lambda m: fa.progress_measures(m, p, key, train_grid, hp["alpha"])))(run.snapshots)
    progress = {"restricted loss": np.asarray(measures["restricted_loss"])[::stride],
                "excluded loss (train)": np.asarray(measures["excluded_loss"])[::stride]}
    warnings = sorted({w for i in range(len(snap_steps)) for w in
                       jax.tree.map(lambda x: x[i], llc).warnings})
    return {"p": base["p"], "seed": run.seed, "settings": s, "n": llc.n, "nbeta": float(np.asarray(llc.nbeta)[0]),
            "snap_steps": snap_steps, "mean": np.asarray(llc.mean), "std": np.asarray(llc.std),
            "steps": run.steps, "train_loss": run.metrics["train_loss"], "test_loss": run.metrics["test_loss"],
            "bounds": bounds, "progress": progress, "warnings": warnings}


def draw_b(m, out, quick):
    s = m["settings"]
    save_figure(plots.llc_over_training_plot(m["snap_steps"], m["mean"], m["std"], m["steps"], m["train_loss"],
                                             m["test_loss"], m["bounds"],
                                             f"(b) LLC over training, grokking (a+b) mod {m['p']}, seed {m['seed']}: "
                                             f"nβ = n/log n = {m['nbeta']:.1f} (n = {m['n']}), γ = {s['localization']:g}, "
                                             f"ε = {s['step_size']:g}, "
                                             f"batch {s['batch_size']}", progress=m["progress"]),
                out, "degeneracy_b_grokking.png")


def claims_b(m, quick) -> list[Claim]:
    snap_steps, mean, std, bounds, warnings = m["snap_steps"], m["mean"], m["std"], m["bounds"], m["warnings"]
    claims = []
    t_mem, t_clean, t_end = bounds
    if t_mem is None or t_end is None:
        return [Claim("degeneracy (b)", "the run groks (phases located)", "grokking", f"phases {bounds}", False)]
    during = (snap_steps >= 0) & (snap_steps <= t_clean if t_clean is not None else snap_steps <= t_mem)
    peak_i = int(np.argmax(np.where(during, mean, -np.inf)))
    after = snap_steps >= t_end
    final = float(mean[after].mean()) if after.any() else float(mean[-1])
    claims.append(Claim("degeneracy (b)", "the LLC falls from its peak before cleanup to the end of cleanup",
                        "the generalising solution is simpler: lower LLC than the memorising one",
                        f"peak {mean[peak_i]:.1f} at step {snap_steps[peak_i]}, {final:.1f} after step {t_end} "
                        f"(phases: memorization to {t_mem}, cleanup {t_clean}–{t_end})"
                        + (f"; warnings: {'; '.join(warnings)}" if warnings else ""),
                        bool(final < mean[peak_i] - 2 * std[peak_i])))
    return claims


# ----------------------------------------------------------------------------- (c) k-gons of TMS 6 → 2


def kgon_setup(quick: bool) -> dict:
    # Chen et al.'s regime is high sparsity, where the loss falls with k (6-gon lowest); in
    # denser data the 6-gon's interference costs more, and "LLC rises with k" need not hold.
    return {"sweep": {"n_features": 6, "n_hidden": 2, "importance_decay": 1.0, "feature_probability": 0.03,
                      "steps": 6000, "batch_size": 512, "lr": 1e-3},
            "seeds": 16 if quick else 96, "n_batches": 16 if quick else 32,
            # Training from random starts finds one polygon almost always (the 5-gon here), so
            # training also starts from each regular k-gon (perturbed): the critical points
            # Chen et al. enumerate, each carried by the same training to its nearby minimum.
            "kgon_starts": (3, 4, 5, 6), "starts_per_k": 2 if quick else 12,
            "llc": dict(chains=8 if quick else 32, draws=1500 if quick else 10_000, localization=10.0, batch_size=4)}


def kgon_params(template, k: int, key, n_features: int = 6, jitter: float = 0.05):
    """``template`` (a toy model's arrays) with W a regular k-gon of unit columns in the plane
    (features k.. at zero), b = 0, plus ``jitter``·N(0, 1) on every entry of W and b."""
    angles = 2 * np.pi * np.arange(k) / k
    W = np.zeros((2, n_features), np.float32)
    W[:, :k] = np.stack([np.cos(angles), np.sin(angles)])
    k_w, k_b = jax.random.split(key)
    W = jnp.asarray(W) + jitter * jax.random.normal(k_w, W.shape)
    b = jitter * jax.random.normal(k_b, (n_features,))
    return eqx.tree_at(lambda m: (m.W, m.b), template, (W, b))


def polygon_order(W, threshold: float = 0.5) -> int:
    """k: how many of the features are represented (column norm above ``threshold``)."""
    return int(np.sum(np.linalg.norm(np.asarray(W), axis=0) > threshold))


def train_c(quick: bool, quiet: bool, work=None, shared=None):
    """The toy 6 → 2 from random starts, seeds in one sweep."""
    setup = kgon_setup(quick)
    folder = _sweep_dir(work, f"degeneracy-kgons-{'quick' if quick else 'full'}")
    return run_sweep("superposition", setup["sweep"], seeds=setup["seeds"], quiet=quiet, out=folder,
                     resume=_resume(folder))


def analyse_c(res, quick: bool) -> dict:
    """The trained seeds and perturbed regular k-gons as points; each fine-tuned to its nearby
    minimum on the LLC's own data (the estimator's recipe) and sampled: per point its k, loss
    and LLC; per k found, the median LLC and loss and how many points (and random starts)."""
    setup = kgon_setup(quick)
    stack = res.stacked()
    trained = eqx.filter(stack.model, eqx.is_inexact_array)
    template = jax.tree.map(lambda x: x[0], trained)
    starts = [kgon_params(template, k, jax.random.fold_in(jax.random.key(5), 100 * k + i))
              for k in setup["kgon_starts"] for i in range(setup["starts_per_k"])]
    params = jax.tree.map(lambda a, *b: jnp.concatenate([a, jnp.stack(b)]), trained, *starts)
    origin = ["random"] * setup["seeds"] + [f"{k}-gon" for k in setup["kgon_starts"]
                                            for _ in range(setup["starts_per_k"])]
    # The lab's recipe: training ends near, not at, a minimum of the loss on the LLC's own data
    # (SGD noise), so each point is fine-tuned there first (full-batch Adam), then sampled.
    s = setup["llc"]
    llc = dg.family_learning_coefficient(res[0], jax.random.key(2), at=params, n_batches=setup["n_batches"],
                                         fine_tune="auto", **s)
    tuned = llc.point
    losses = np.asarray(llc.init_loss)
    ks = np.array([polygon_order(W) for W in np.asarray(tuned.W)])
    mean = np.asarray(llc.mean)
    found = sorted(set(ks.tolist()))
    per_k = {k: (float(np.median(mean[ks == k])), float(np.median(losses[ks == k])), int(np.sum(ks == k)))
             for k in found}
    examples = {k: np.asarray(tuned.W)[int(np.flatnonzero(ks == k)[0])] for k in found}
    from_random = {k: sum(1 for o, kk in zip(origin, ks) if kk == k and o == "random") for k in found}
    return {"seeds": setup["seeds"], "n_starts": len(starts), "localization": s["localization"],
            "nbeta": float(np.asarray(llc.nbeta)[0]), "feature_probability": setup["sweep"]["feature_probability"],
            "ks": ks, "mean": mean, "losses": losses, "examples": examples, "per_k": per_k,
            "from_random": from_random, "warnings": llc.warnings}


def draw_c(m, out, quick):
    save_figure(plots.kgon_plot(m["examples"], m["ks"], m["mean"], m["losses"],
                                f"(c) TMS 6 → 2, {m['seeds']} random + {m['n_starts']} k-gon starts: k-gons, their losses "
                                f"and LLCs (nβ = {m['nbeta']:.0f}, γ = {m['localization']:g}, ε by rule)"),
                out, "degeneracy_c_kgons.png")


def claims_c(m, quick) -> list[Claim]:
    per_k, from_random = m["per_k"], m["from_random"]
    found = sorted(per_k)
    table = "; ".join(f"{k}-gon ×{c} ({from_random[k]} from random starts): loss {lo:.4f}, LLC {med:.2f}"
                      for k, (med, lo, c) in per_k.items())
    big = [k for k in found if per_k[k][2] >= 2]
    medians = [per_k[k][0] for k in big]
    rising = len(big) >= 2 and all(b > a for a, b in zip(medians, medians[1:]))
    # Chen et al.: training moves from high loss, low complexity to low loss, high complexity
    by_loss = sorted(big, key=lambda k: per_k[k][1])  # lowest loss first
    inverse = len(big) >= 2 and all(per_k[a][0] > per_k[b][0] for a, b in zip(by_loss, by_loss[1:]))
    losses_fall = len(big) >= 2 and all(per_k[b][1] < per_k[a][1] for a, b in zip(big, big[1:]))
    warned = m["warnings"]
    tail = f"; warnings: {'; '.join(warned)}" if warned else "; no estimate warns"
    return [Claim("degeneracy (c)", "the k-gons' LLCs are ordered opposite to their losses (k found ≥ twice)",
                  "low loss, high complexity; high loss, low complexity (Chen et al. 2023)",
                  f"{table}; by loss: {', '.join(f'{k}-gon' for k in by_loss)}{tail}", bool(inverse)),
            Claim("degeneracy (c)", "the LLC of the k-gons increases with k (medians over seeds, k found ≥ twice)",
                  "LLC rises with k where loss falls with k (Chen et al. 2023)",
                  f"medians {', '.join(f'{k}-gon {med:.2f}' for k, med in zip(big, medians))}; loss "
                  f"{'falls' if losses_fall else 'does not fall'} with k at feature probability "
                  f"{m['feature_probability']:g}", bool(rising))]


# ----------------------------------------------------------------------------- (d) Hessian and degeneracies


def degeneracy_setup(quick: bool) -> dict:
    return {"sweep": {"p": 23 if quick else 31, "model": "mlp", "embed": "onehot", "d_mlp": 48 if quick else 64,
                      "train_fraction": 0.8, "steps": 3000 if quick else 10_000, "log_every": 100},
            "tol": 1e-5, "nbeta": 1e4,
            "llc": dict(chains=8 if quick else 32, draws=2000 if quick else 10_000, step_size=1e-6, localization=1.0)}


def train_d(quick: bool, quiet: bool, work=None, shared=None):
    """One modular-addition MLP."""
    setup = degeneracy_setup(quick)
    folder = _sweep_dir(work, f"degeneracy-mlp-{'quick' if quick else 'full'}")
    return run_sweep("grokking", setup["sweep"], seeds=1, quiet=quiet, out=folder, resume=_resume(folder))[0]


def analyse_d(run, quick: bool) -> dict:
    """At the trained MLP: the behavioural loss's Hessian spectrum and near-zero count, the
    three degeneracies' freed directions and the ReLU rescalings, 2·λ̂ of the behavioural loss
    and what the quadratic approximation would give at the same settings."""
    setup = degeneracy_setup(quick)
    model = run.model
    p = run.config.p
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    tokens = jnp.asarray(np.stack([a.ravel(), b.ravel(), np.full(p * p, p)], 1))
    params, static = eqx.partition(model, eqx.is_inexact_array)

    def apply(prm, t):
        return eqx.combine(prm, static)(t)
    loss_b = dg.behavioural_loss(apply, params)
    H = dg.hessian(loss_b, params, tokens)
    ev = np.asarray(jnp.linalg.eigvalsh(H))
    d = ev.size
    zero = int(dg.near_zero_count(ev, setup["tol"]))
    deg = dg.mlp_degeneracy(model, tokens)
    alive = model.W_in.shape[0] - deg["dead"]
    rescalings = alive  # each live ReLU: scale its fan-in by c, its fan-out by 1/c
    n_eff, llc = dg.effective_parameter_count(apply, params, tokens, jax.random.key(3), nbeta=setup["nbeta"],
                                              **setup["llc"])
    s = setup["llc"]
    # 2× the estimate the quadratic approximation at w* would give at exactly these settings
    # (its slow directions, nβh ≲ 1/(ε·draws), are not yet filled at this chain length)
    quadratic = 2 * dg.quadratic_estimate(ev, nbeta=setup["nbeta"], localization=s["localization"],
                                          step_size=s["step_size"], draws=s["draws"], burnin=llc.burnin)
    return {"p": p, "neurons": model.W_in.shape[0], "tol": setup["tol"], "nbeta": setup["nbeta"], "eigenvalues": ev,
            "d": d, "zero": zero, "freed": {k: deg[k] for k in ("freed_activation", "freed_jacobian", "freed_sync",
                                                                "freed_dead", "freed_total")},
            "rescalings": rescalings, "n_eff": float(n_eff), "n_eff_std": 2 * float(llc.std), "quadratic": quadratic}


def _exactly_freed(m) -> int:
    """The directions freed by the exact kinds: activation, synchronised and dead neurons, and
    the ReLU rescalings."""
    f = m["freed"]
    return f["freed_activation"] + f["freed_sync"] + f["freed_dead"] + m["rescalings"]


def draw_d(m, out, quick):
    d, rank = m["d"], m["d"] - m["zero"]
    save_figure(plots.degeneracy_counts_plot(m["eigenvalues"], m["tol"], {
        "parameters": d, "Hessian rank": rank, "2·λ̂ (behavioural)": m["n_eff"],
        "2·λ̂ if quadratic (same ε, draws)": m["quadratic"],
        "d − freed (exact kinds)": d - _exactly_freed(m)}, f"(d) one-hot MLP p={m['p']}, {m['neurons']} neurons, {d} "
        f"parameters: behavioural-loss Hessian (tol {m['tol']:g}), degeneracies and 2·λ̂ (nβ = {m['nbeta']:g})"),
        out, "degeneracy_d_counts.png")


def claims_d(m, quick) -> list[Claim]:
    d, zero, deg, rescalings = m["d"], m["zero"], m["freed"], m["rescalings"]
    n_eff, quadratic = m["n_eff"], m["quadratic"]
    rank = d - zero
    exact = _exactly_freed(m)
    counts = (f"d = {d}; Hessian near-zero {zero}, rank {rank}; freed: activation {deg['freed_activation']}, "
              f"Jacobian {deg['freed_jacobian']}, synchronised {deg['freed_sync']}, dead {deg['freed_dead']}, "
              f"rescalings {rescalings}")
    return [
        Claim("degeneracy (d)", "every direction the degeneracies free is flat: near-zero count ≥ freed + rescalings",
              "the three degeneracies are flat directions of the loss (Bushnaq et al. 2024)", counts,
              zero >= deg["freed_total"] + rescalings),
        Claim("degeneracy (d)", "2·λ̂ of the behavioural loss is at most d − (exactly freed directions)",
              "N_eff = 2λ below the parameter count by the degeneracies (Bushnaq et al. 2024)",
              f"2·λ̂ = {n_eff:.1f} ± {m['n_eff_std']:.1f}, d − freed = {d - exact}", n_eff <= d - exact),
        Claim("degeneracy (d)", "2·λ̂ at least 90% of the Hessian's quadratic part at the same settings",
              "λ ≥ rank(H)/2 (splitting lemma); a finite chain fills the quadratic directions it can reach",
              f"2·λ̂ = {n_eff:.1f}, quadratic part at these ε, nβ, γ, draws {quadratic:.1f}, rank {rank}",
              n_eff >= 0.9 * quadratic),
    ]


FIGURES = {"a": FigureSet(train_a, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_b, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_c, analyse_c, draw_c, claims_c),
           "d": FigureSet(train_d, analyse_d, draw_d, claims_d)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None) -> list[Claim]:
    """Run the degeneracy figure sets (``only``: some of "abcd"); returns the checked claims."""
    return run_figures(FIGURES, out, quick, quiet, only, work)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "figure sets, some of abcd")
