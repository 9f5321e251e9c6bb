"""Degeneracy: the local learning coefficient (LLC) against theory, over training, on the
superposition toy's k-gons, and beside the Hessian and the three degeneracies.

    (a) validation table: the SGLD estimate against the closed form (real log canonical
        threshold) on potentials whose value is known — sums of powers, normal crossings —
        and on reduced-rank regressions and deep linear networks fitted to data at a true
        minimum (Aoyagi & Watanabe 2005; Aoyagi 2024); PASS within a stated relative
        tolerance, and the ordering of the estimates where the closed forms differ by more
        than it
    (b) the LLC over the training of a grokking run (its snapshots, one vmapped program), with
        the phases located from the progress curves on the same axis
    (c) the toy model of superposition with 6 features in 2 dimensions: the k-gons that
        training finds, their losses and their LLCs (Chen et al. 2023: the LLC increases with
        k, lower loss costs complexity)
    (d) a trained modular-addition MLP: the Hessian of the behavioural loss, its near-zero
        eigenvalues, the three degeneracies' freed directions (Bushnaq et al. 2024) and the
        effective parameter count 2·λ̂ of the behavioural loss, side by side

``--quick`` runs on 2 CPU cores in a few minutes; the full mode draws longer chains, more
chains and more seeds (a GPU job).
Run: ``toylab reproduce degeneracy [--quick]`` or ``python -m experiments.reproductions.degeneracy``.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from experiments.reproductions.claims import Claim
from experiments.reproductions.common import run_figures, save_figure, script_main
from experiments.reproductions.grokking import grokking_setup, locate_phases
from toylab.analysis import degeneracy as dg
from toylab.analysis import learning_coefficients as lc
from toylab.core.sweep import run_sweep
from toylab.plots import degeneracy as plots

NAME = "degeneracy"
TOLERANCE = 0.2  # relative: |estimate − λ| <= TOLERANCE·λ passes (a)


def _sweep_dir(work, name):
    """A results folder under ``work`` (kept and resumed), or None (a temporary one)."""
    return None if work is None else Path(work) / name


def _resume(folder):
    return folder is not None and folder.exists()


# ----------------------------------------------------------------------------- (a) the validation table


def _potential(K, d):
    """A loss that is the potential K itself (the data are a placeholder: nβ is given)."""
    return (lambda p, batch: K(p["w"])), {"w": jnp.zeros(d)}, jnp.zeros((2, 1))


POTENTIALS = (  # (label, K, dimension, (λ, m))
    ("w₁⁴", lambda w: w[0] ** 4, 1, lc.sum_of_powers(1, 4)),
    ("w₁⁴ + w₂⁴", lambda w: w[0] ** 4 + w[1] ** 4, 2, lc.sum_of_powers(2, 4)),
    ("w₁² + w₂²", lambda w: w[0] ** 2 + w[1] ** 2, 2, lc.sum_of_powers(2, 2)),
    ("w₁² w₂⁴", lambda w: w[0] ** 2 * w[1] ** 4, 2, lc.normal_crossing([1, 2])),
    ("w₁² w₂²", lambda w: w[0] ** 2 * w[1] ** 2, 2, lc.normal_crossing([1, 1])),
)

# (label, widths input → output, rank of the true map). Two widths-deep = reduced-rank regression.
LINEAR = (
    ("RRR M=4 H=3 N=3 r=0", (4, 3, 3), 0),
    ("RRR M=3 H=2 N=3 r=1", (3, 2, 3), 1),
    ("DLN 2-2-2-2 r=0", (2, 2, 2, 2), 0),
    ("DLN 3-2-2-3 r=1", (3, 2, 2, 3), 1),
    ("DLN 4-3-3-3-4 r=1", (4, 3, 3, 3, 4), 1),
)


def linear_network_problem(widths, r: int, n: int = 20_000, seed: int = 0, fit_steps: int = 3000):
    """A linear network y = W_L ⋯ W_1 x + N(0, I) (x Gaussian, n examples) whose true product
    has rank r with singular values 1, fitted by full-batch Adam to the empirical minimum
    from the true factors. Returns (loss, params at the minimum, data): loss is
    ½·mean‖y − W_L ⋯ W_1 x‖², the negative log-likelihood up to a constant, so nβ = n/log n
    is the usual choice."""
    rng = np.random.default_rng(seed)
    h_in, h_out = widths[0], widths[-1]
    U = np.linalg.qr(rng.normal(size=(h_out, max(r, 1))))[0][:, :r]
    V = np.linalg.qr(rng.normal(size=(h_in, max(r, 1))))[0][:, :r].T
    layers = []
    for i, (a, b) in enumerate(zip(widths[:-1], widths[1:])):
        W = np.zeros((b, a))
        if i == 0:
            W[:r] = V
        elif i == len(widths) - 2:
            W[:, :r] = U
        else:
            W[:r, :r] = np.eye(r)
        layers.append(W)
    if len(layers) == 1:
        layers[0] = U @ V
    x = rng.normal(size=(n, h_in))
    truth = U @ V
    y = x @ truth.T + rng.normal(size=(n, h_out))
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

    def loss(p, batch):
        out = batch["x"]
        for W in p:
            out = out @ W.T
        return 0.5 * jnp.mean(jnp.sum((out - batch["y"]) ** 2, -1))
    params = [jnp.asarray(W, jnp.float32) for W in layers]
    opt = optax.adam(1e-2)

    def step(carry, _):
        p, st = carry
        u, st = opt.update(jax.grad(loss)(p, data), st)
        return (optax.apply_updates(p, u), st), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=fit_steps)
    return loss, params, data


def validation_settings(quick: bool) -> dict:
    return {"potential": dict(chains=16 if quick else 64, draws=20_000 if quick else 50_000, step_size=1e-4,
                              nbeta=1000.0, localization=1.0),
            "linear": dict(chains=8 if quick else 32, draws=6000 if quick else 20_000, step_size=5e-5,
                           localization=1.0),
            "n": 20_000}


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


def figure_a(out: Path, quick: bool, quiet: bool, work=None, shared=None) -> list[Claim]:
    settings = validation_settings(quick)
    rows = []  # (label, λ, m, estimate, std, rhat)
    for label, K, d, (lam, m) in POTENTIALS:
        loss, params, data = _potential(K, d)
        s = settings["potential"]
        res = dg.learning_coefficient(loss, params, data, jax.random.key(0), burnin=s["draws"] // 5, **s)
        rows.append((label, float(lam), m, float(res.mean), float(res.std), float(res.rhat)))
        if not quiet:
            print(f"  (a) {label}: λ = {lam} (m = {m}), estimate {float(res.mean):.3f} ± {float(res.std):.3f}", flush=True)
    for label, widths, r in LINEAR:
        loss, params, data = linear_network_problem(widths, r, n=settings["n"])
        s = settings["linear"]
        lam, m = lc.deep_linear_network(widths, r)
        res = dg.learning_coefficient(loss, params, data, jax.random.key(0), burnin=s["draws"] // 3, **s)
        rows.append((label, float(lam), m, float(res.mean), float(res.std), float(res.rhat)))
        if not quiet:
            print(f"  (a) {label}: λ = {lam} (m = {m}), estimate {float(res.mean):.3f} ± {float(res.std):.3f}", flush=True)
    labels = [r[0] for r in rows]
    lams = np.array([r[1] for r in rows])
    est = np.array([r[3] for r in rows])
    std = np.array([r[4] for r in rows])
    save_figure(plots.validation_plot(labels, lams, est, std, TOLERANCE,
                                      f"(a) LLC estimates against closed forms (tolerance ±{TOLERANCE:.0%})"),
                out, "degeneracy_a_validation.png")
    pot, lin = settings["potential"], settings["linear"]
    claims = []
    for label, lam, m, e, sd, rh in rows:
        how = (f"nβ={pot['nbeta']:g}, γ={pot['localization']:g}, ε={pot['step_size']:g}" if label in dict(
            (p[0], 1) for p in POTENTIALS) else f"n={settings['n']}, nβ=n/log n, γ={lin['localization']:g}, "
               f"ε={lin['step_size']:g}")
        claims.append(Claim("degeneracy (a)", f"LLC of {label} within {TOLERANCE:.0%} of the closed form",
                            f"λ = {lam:.4g} (m = {m if m is not None else '?'})",
                            f"{e:.3f} ± {sd:.3f} over chains, R-hat {rh:.3f} ({how})",
                            bool(abs(e - lam) <= TOLERANCE * lam)))
    good, total = _pairs_in_order(lams, est, TOLERANCE)
    claims.append(Claim("degeneracy (a)", f"estimates ordered as the closed forms (pairs differing by > {TOLERANCE:.0%})",
                        "the order of the λ", f"{good} of {total} pairs in order", bool(total and good == total)))
    return claims


# ----------------------------------------------------------------------------- (b) the LLC over grokking


def grokking_llc_settings(quick: bool) -> dict:
    return dict(chains=4 if quick else 16, draws=600 if quick else 2000, step_size=3e-5, localization=100.0)


def figure_b(out: Path, quick: bool, quiet: bool, work=None, shared=None) -> list[Claim]:
    base, _ = grokking_setup(quick)
    folder = _sweep_dir(work, f"degeneracy-grokking-{'quick' if quick else 'full'}")
    res = run_sweep("grokking", base, seeds=1, quiet=quiet, out=folder, resume=_resume(folder))
    run = res[0]
    loss, _, data, defaults = dg.family_llc_inputs(run)
    n = defaults["n_examples"]
    s = grokking_llc_settings(quick)
    snap_params = eqx.filter(run.snapshots, eqx.is_inexact_array)
    llc = jax.jit(jax.vmap(lambda p: dg.learning_coefficient(loss, p, data, jax.random.key(1), nbeta=defaults["nbeta"],
                                                             batch_size=None, **s)))(snap_params)
    snap_steps = np.asarray(run.config.snapshot_steps)
    mean, std = np.asarray(llc.mean), np.asarray(llc.std)
    bounds = locate_phases(run.steps, run.metrics["train_accuracy"], run.metrics["test_loss"])
    save_figure(plots.llc_over_training_plot(snap_steps, mean, std, run.steps, run.metrics["train_loss"],
                                             run.metrics["test_loss"], bounds,
                                             f"(b) LLC over training, grokking (a+b) mod {base['p']}, seed {run.seed}: "
                                             f"nβ = n/log n = {defaults['nbeta']:.1f} (n = {n}), γ = {s['localization']:g}, "
                                             f"ε = {s['step_size']:g}"),
                out, "degeneracy_b_grokking.png")
    warnings = sorted({w for i in range(len(snap_steps)) for w in
                       jax.tree.map(lambda x: x[i], llc).warnings})
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
    return {"sweep": {"n_features": 6, "n_hidden": 2, "importance_decay": 1.0, "feature_probability": 0.1,
                      "steps": 6000, "batch_size": 512, "lr": 1e-3},
            "seeds": 24 if quick else 96, "n_batches": 32, "fine_tune_steps": 3000,
            "llc": dict(chains=8 if quick else 32, draws=2000 if quick else 10_000, step_size=1e-3,
                        localization=10.0, batch_size=4)}


def polygon_order(W, threshold: float = 0.5) -> int:
    """k: how many of the features are represented (column norm above ``threshold``)."""
    return int(np.sum(np.linalg.norm(np.asarray(W), axis=0) > threshold))


def figure_c(out: Path, quick: bool, quiet: bool, work=None, shared=None) -> list[Claim]:
    setup = kgon_setup(quick)
    folder = _sweep_dir(work, f"degeneracy-kgons-{'quick' if quick else 'full'}")
    res = run_sweep("superposition", setup["sweep"], seeds=setup["seeds"], quiet=quiet, out=folder,
                    resume=_resume(folder))
    stack = res.stacked()
    loss, _, data, defaults = dg.family_llc_inputs(res[0], n_batches=setup["n_batches"])
    full = lambda p, d: loss(p, d)  # noqa: E731  the mean over every stored batch
    params = eqx.filter(stack.model, eqx.is_inexact_array)
    # Training ends near, not at, a minimum of the loss on the LLC's own data (SGD noise):
    # full-batch Adam on those data first, so every w* is a local minimum of the L_n sampled.
    opt = optax.adam(1e-3)

    def fine_tune(p):
        def step(carry, _):
            q, st = carry
            u, st = opt.update(jax.grad(full)(q, data), st)
            return (optax.apply_updates(q, u), st), None
        return jax.lax.scan(step, (p, opt.init(p)), length=setup["fine_tune_steps"])[0][0]
    tuned = jax.jit(jax.vmap(fine_tune))(params)
    losses = np.asarray(jax.vmap(lambda p: full(p, data))(tuned))
    s = setup["llc"]
    llc = jax.jit(jax.vmap(lambda p: dg.learning_coefficient(full, p, data, jax.random.key(2), nbeta=defaults["nbeta"],
                                                             **s)))(tuned)
    ks = np.array([polygon_order(W) for W in np.asarray(tuned.W)])
    mean, below = np.asarray(llc.mean), np.asarray(llc.below_init).mean(-1)
    found = sorted(set(ks.tolist()))
    per_k = {k: (float(np.median(mean[ks == k])), float(np.median(losses[ks == k])), int(np.sum(ks == k)))
             for k in found}
    examples = {k: np.asarray(tuned.W)[int(np.flatnonzero(ks == k)[0])] for k in found}
    save_figure(plots.kgon_plot(examples, ks, mean, losses,
                                f"(c) TMS 6 → 2, {setup['seeds']} seeds: k-gons, their losses and LLCs "
                                f"(nβ = {defaults['nbeta']:.0f}, γ = {s['localization']:g}, ε = {s['step_size']:g})"),
                out, "degeneracy_c_kgons.png")
    table = "; ".join(f"{k}-gon ×{c}: loss {lo:.4f}, LLC {m:.2f}" for k, (m, lo, c) in per_k.items())
    big = [k for k in found if per_k[k][2] >= 2]
    medians = [per_k[k][0] for k in big]
    rising = len(big) >= 2 and all(b > a for a, b in zip(medians, medians[1:]))
    return [Claim("degeneracy (c)", "the LLC of the k-gons increases with k (medians over seeds, k found ≥ twice)",
                  "LLC rises with k: lower loss, higher complexity (Chen et al. 2023)",
                  f"{table}; below L(w*) {float(np.median(below)):.2f} of draws (median)", bool(rising))]


# ----------------------------------------------------------------------------- (d) Hessian and degeneracies


def degeneracy_setup(quick: bool) -> dict:
    return {"sweep": {"p": 23 if quick else 31, "model": "mlp", "embed": "onehot", "d_mlp": 48 if quick else 64,
                      "train_fraction": 0.8, "steps": 3000 if quick else 10_000, "log_every": 100},
            "tol": 1e-5, "nbeta": 1e4,
            "llc": dict(chains=8 if quick else 32, draws=2000 if quick else 10_000, step_size=1e-6, localization=1.0)}


def figure_d(out: Path, quick: bool, quiet: bool, work=None, shared=None) -> list[Claim]:
    setup = degeneracy_setup(quick)
    folder = _sweep_dir(work, f"degeneracy-mlp-{'quick' if quick else 'full'}")
    res = run_sweep("grokking", setup["sweep"], seeds=1, quiet=quiet, out=folder, resume=_resume(folder))
    run = res[0]
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
    rank = d - zero
    deg = dg.mlp_degeneracy(model, tokens)
    alive = model.W_in.shape[0] - deg["dead"]
    rescalings = alive  # each live ReLU: scale its fan-in by c, its fan-out by 1/c
    exact = deg["freed_activation"] + deg["freed_sync"] + deg["freed_dead"] + rescalings
    n_eff, llc = dg.effective_parameter_count(apply, params, tokens, jax.random.key(3), nbeta=setup["nbeta"],
                                              **setup["llc"])
    n_eff = float(n_eff)
    s = setup["llc"]
    hq = np.clip(ev, 0, None)
    k = setup["nbeta"] * hq + s["localization"]
    quadratic = float(2 * setup["nbeta"] * 0.5 * np.sum(2 * hq / (2 * k * (1 - s["step_size"] * k / 4))))
    save_figure(plots.degeneracy_counts_plot(ev, setup["tol"], {
        "parameters": d, "Hessian rank": rank, "2·λ̂ (behavioural)": n_eff,
        "d − freed (exact kinds)": d - exact}, f"(d) one-hot MLP p={p}, {model.W_in.shape[0]} neurons, {d} parameters: "
        f"behavioural-loss Hessian (tol {setup['tol']:g}), degeneracies and 2·λ̂ (nβ = {setup['nbeta']:g})"),
        out, "degeneracy_d_counts.png")
    counts = (f"d = {d}; Hessian near-zero {zero}, rank {rank}; freed: activation {deg['freed_activation']}, "
              f"Jacobian {deg['freed_jacobian']}, synchronised {deg['freed_sync']}, dead {deg['freed_dead']}, "
              f"rescalings {rescalings}")
    return [
        Claim("degeneracy (d)", "every direction the degeneracies free is flat: near-zero count ≥ freed + rescalings",
              "the three degeneracies are flat directions of the loss (Bushnaq et al. 2024)", counts,
              zero >= deg["freed_total"] + rescalings),
        Claim("degeneracy (d)", "2·λ̂ of the behavioural loss is at most d − (exactly freed directions)",
              "N_eff = 2λ below the parameter count by the degeneracies (Bushnaq et al. 2024)",
              f"2·λ̂ = {n_eff:.1f} ± {2 * float(llc.std):.1f}, d − freed = {d - exact}", n_eff <= d - exact),
        Claim("degeneracy (d)", "2·λ̂ at least the Hessian rank's quadratic share (splitting lemma)",
              "λ ≥ rank(H)/2; at finite nβ, γ a quadratic gives Σ nβh/(nβh+γ)",
              f"2·λ̂ = {n_eff:.1f}, quadratic part {quadratic:.1f}, rank {rank}", n_eff >= 0.8 * quadratic),
    ]


FIGURES = {"a": figure_a, "b": figure_b, "c": figure_c, "d": figure_d}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None) -> list[Claim]:
    """Run the degeneracy figure sets (``only``: some of "abcd"); returns the checked claims."""
    return run_figures(FIGURES, out, quick, quiet, only, work)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "figure sets, some of abcd")
