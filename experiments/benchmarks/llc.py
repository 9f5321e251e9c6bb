"""Benchmark: the LLC estimator against theory and against exact sampling, and what its
self-checks cost.

1. **Validation table** — on toylab.testing's known-answer cases (potentials at nβ = 1000,
   reduced-rank regressions and deep linear networks at their most singular true parameter,
   n = 10⁵): SGLD at the estimator's defaults (step size and draws by rule, γ = 1), NUTS
   (blackjax) on the same posterior, and the theory — the exact finite-nβ value of a potential,
   or λ shifted by its multiplicity — with each estimate's tolerance
   (``toylab.testing.compare_estimate``) and warnings, and the seconds of each call.
2. **Cost of the self-checks** — for each case, the compiled programs timed warm: the chains
   alone (the scan), the whole estimate at the same ε and draws (chains + every diagnostic),
   and the choice of ε (the spectrum at w* and the pilot chains of ``step_size="auto"``): the
   diagnostics' and the choice's share of the chains' time.
3. **Defaults over random reduced-rank regressions** (``--rrr N``): N shapes drawn by
   hypothesis (derandomized) with every width 1–7 and every rank, each estimated at the
   defaults and compared with λ, m: how many are within tolerance, how many warn, and how many
   are outside it without a warning (the estimator's promise is that this is none).

Run ``toylab bench llc --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import json

from toylab.experiments.benchmarks._common import OneLineParser, devices_line, json_path, positive_int, timed

CASE_NAMES = ("powers", "crossing", "rrr", "dln")


def _cases(names, n):
    from toylab.testing import cases

    out = []
    if "powers" in names:
        out += [cases.sum_of_powers(1, 4), cases.sum_of_powers(2, 2)]
    if "crossing" in names:
        out += [cases.normal_crossing([1, 2]), cases.normal_crossing([1, 1])]
    if "rrr" in names:
        out += [cases.reduced_rank_regression(M=4, N=3, H=3, r=0, n=n),
                cases.reduced_rank_regression(M=3, N=3, H=2, r=1, n=n)]
    if "dln" in names:
        out += [cases.deep_linear_network([2, 2, 2, 2], 0, n=n), cases.deep_linear_network([3, 2, 2, 3], 1, n=n)]
    return out


def validation(case_list, chains: int, hmc_draws: int) -> list[dict]:
    import jax

    from toylab.analysis import degeneracy as dg
    from toylab.testing.assertions import compare_estimate

    rows = []
    for i, case in enumerate(case_list):
        row = {"case": case.name, "lambda": float(case.value), "multiplicity": case.multiplicity,
               "nbeta": case.nbeta}
        for label, kw in (("sgld", {"chains": chains}), ("hmc", {"chains": chains, "draws": hmc_draws,
                                                                  "sampler": dg.hmc()})):
            t = timed(lambda: dg.learning_coefficient(case.loss, case.params, case.data, jax.random.key(i),
                                                      **case.settings, **kw), repeats=0,
                      sync=lambda r: jax.block_until_ready(r.mean))
            res = t["result"]
            c = compare_estimate(res, case.truth(float(res.localization)))
            row["expected"] = c.expected
            row[label] = {"mean": c.estimate, "std": float(res.std), "tolerance": c.tolerance, "within": c.ok,
                          "warnings": c.warnings, "seconds": t["seconds"], "step_size": float(res.step_size),
                          "draws": res.draws, "predicted_bias": float(res.predicted_bias)}
        rows.append(row)
    return rows


def _toy_problem():
    """The superposition toy 20 → 5 (its initial weights: the costs are a trained model's), its
    loss over 8 stored batches of 1 024 examples, one batch a step: a model whose gradient costs
    more than the bookkeeping around it."""
    import jax

    from toylab.analysis.llc import family_llc_inputs
    from toylab.core.family import get_family
    from toylab.families.superposition import SuperpositionConfig

    cfg = SuperpositionConfig(n_features=20, n_hidden=5, batch_size=1024, steps=1, log_every=1)
    fam = get_family("superposition")
    model = fam.init(cfg, cfg.hparams(), jax.random.key(0))
    loss, params, data, settings = family_llc_inputs(model, family="superposition", config=cfg)
    return "superposition toy 20→5", loss, params, data, settings["nbeta"], settings["batch_size"]


def costs(case_list, chains: int, draws: int) -> list[dict]:
    """Warm times of the compiled pieces of one estimate (same ε, draws and chains): the chains
    alone, the whole estimate (chains + diagnostics), and the choice of ε."""
    import functools

    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from toylab.analysis import llc as L
    from toylab.analysis.samplers import as_sampler

    problems = [(c.name, c.loss, c.params, c.data, c.nbeta, None) for c in case_list] + [_toy_problem()]
    out = []
    for name, loss, params, data, nbeta, batch in problems:
        flat, unravel = ravel_pytree(params)
        move = jnp.ones_like(flat)
        n = int(jax.tree.leaves(data)[0].shape[0])
        problem = L._Problem(loss=loss, unravel=unravel, n=n, batch_size=batch,
                             diag_rows=None if batch is None else min(n, max(L.DIAGNOSTIC_ROWS, 2 * batch)),
                             sampler=as_sampler(None), chains=chains, threshold=L.BIAS_THRESHOLD,
                             pilot_steps=int(min(L.PILOT_STEPS, max(50, draws // 8))))
        scalars = {"nbeta": jnp.asarray(nbeta, flat.dtype), "gamma": jnp.asarray(1.0, flat.dtype), "eps": None}
        prepare = jax.jit(functools.partial(L._prepare, problem))
        choose = timed(prepare, flat, move, data, jax.random.key(0), scalars, repeats=3)
        prep = choose["result"]
        run = jax.jit(functools.partial(L._run, problem, draws, draws // 4))
        whole = timed(run, flat, move, data, jax.random.key(1), prep, repeats=3)
        eps = prep["eps"]
        chains_only = jax.jit(lambda w, k: jax.vmap(lambda kk: problem.chain(kk, w, move, data, eps, prep["nbeta"],
                                                                             prep["gamma"], draws))(
            jax.random.split(k, chains)))
        alone = timed(chains_only, flat, jax.random.key(1), repeats=3)
        out.append({"case": name, "parameters": int(flat.size), "chains": chains, "draws": draws,
                    "chains_s": alone["seconds"], "estimate_s": whole["seconds"], "choose_step_s": choose["seconds"],
                    "diagnostics_share": whole["seconds"] / alone["seconds"] - 1,
                    "choose_share": choose["seconds"] / alone["seconds"]})
    return out


def defaults_over_rrr(examples: int, n: int, chains: int, seed: int | None = None) -> dict:
    """Hypothesis-drawn reduced-rank regressions (widths 1–7, every rank) at the defaults
    (derandomized; ``seed`` draws another sequence of shapes)."""
    import jax
    from hypothesis import HealthCheck, given, settings, strategies as st
    from hypothesis import seed as hypothesis_seed

    from toylab.analysis import degeneracy as dg
    from toylab.testing import cases
    from toylab.testing.assertions import compare_estimate

    rows = []

    @settings(max_examples=examples, derandomize=seed is None, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(M=st.integers(1, 7), N=st.integers(1, 7), H=st.integers(1, 7), data=st.data())
    def run(M, N, H, data):
        r = data.draw(st.integers(0, min(M, N, H)))
        if any(x["shape"] == (M, N, H, r) for x in rows):
            return
        case = cases.reduced_rank_regression(M=M, N=N, H=H, r=r, n=n)
        res = dg.learning_coefficient(case.loss, case.params, case.data, jax.random.key(len(rows)), **case.settings,
                                      chains=chains)
        c = compare_estimate(res, case.truth())
        rows.append({"shape": (M, N, H, r), "lambda": float(case.value), "m": case.multiplicity,
                     "expected": c.expected, "mean": c.estimate, "tolerance": c.tolerance, "within": c.ok,
                     "warned": bool(c.warnings), "warnings": c.warnings, "draws": res.draws,
                     "step_size": float(res.step_size)})
        print(f"  RRR M={M} N={N} H={H} r={r}: λ = {float(case.value):g} (m = {case.multiplicity}), expected "
              f"{c.expected:.3f}, estimate {c.estimate:.3f}, tolerance {c.tolerance:.3f}: "
              + ("within" if c.ok else "warns" if c.warnings else "OUTSIDE, SILENT"), flush=True)
    (hypothesis_seed(seed)(run) if seed is not None else run)()
    silent = [x for x in rows if not x["within"] and not x["warned"]]
    return {"examples": rows, "within": sum(x["within"] for x in rows), "warned": sum(x["warned"] for x in rows),
            "silent_misses": len(silent)}


def main(argv=None, prog: str = "toylab bench llc") -> int:
    p = OneLineParser(prog=prog, description=__doc__.split("\n\n")[0])
    p.add_argument("--cases", default=",".join(CASE_NAMES),
                   help=f"comma-separated, of {', '.join(CASE_NAMES)} (default: all)")
    p.add_argument("--chains", type=positive_int, default=8, help="chains per estimate (default 8)")
    p.add_argument("--hmc-draws", type=positive_int, default=1000, help="NUTS draws per chain (default 1000)")
    p.add_argument("--cost-draws", type=positive_int, default=2000, help="draws in the cost timing (default 2000)")
    p.add_argument("--n", type=positive_int, default=100_000, help="examples of the linear networks (default 10^5)")
    p.add_argument("--rrr", type=int, default=0, help="hypothesis examples of part 3 (default 0: skipped)")
    p.add_argument("--rrr-seed", type=int, default=None, help="draw part 3's shapes from this seed (default: the "
                   "derandomized sequence)")
    p.add_argument("--skip-validation", action="store_true", help="only part 3 (with --rrr)")
    p.add_argument("--json", type=json_path, default=None, help="also write the figures to this file")
    args = p.parse_args(argv)
    names = [x for x in args.cases.split(",") if x]
    if not names or any(x not in CASE_NAMES for x in names):
        p.error(f"--cases={args.cases!r}: must be a comma-separated list of {', '.join(CASE_NAMES)}")
    if args.rrr < 0:
        p.error(f"--rrr={args.rrr}: must be a non-negative integer")
    print(devices_line())
    case_list = _cases(names, args.n)
    report = {"validation": [] if args.skip_validation else validation(case_list, args.chains, args.hmc_draws)}
    print(f"\n{'case':24s} {'λ':>6s} {'m':>2s} {'expected':>8s} | {'SGLD (defaults)':>24s} {'s':>6s} | "
          f"{'NUTS':>22s} {'s':>6s}")
    for r in report["validation"]:
        def cell(x):
            mark = "ok" if x["within"] else "warns" if x["warnings"] else "OUT"
            return f"{x['mean']:7.3f} ± {x['tolerance']:5.3f} {mark:>5s}"
        print(f"{r['case']:24s} {r['lambda']:6.3g} {r['multiplicity'] or '?':>2} {r['expected']:8.3f} | "
              f"{cell(r['sgld']):>24s} {r['sgld']['seconds']:6.1f} | {cell(r['hmc']):>22s} {r['hmc']['seconds']:6.1f}")
    report["costs"] = [] if args.skip_validation else costs(case_list, args.chains, args.cost_draws)
    print(f"\n{'case':24s} {'d':>4s} {'chains alone s':>14s} {'estimate s':>10s} {'diagnostics':>11s} "
          f"{'choose ε s':>10s} {'choice':>7s}")
    for c in report["costs"]:
        print(f"{c['case']:24s} {c['parameters']:4d} {c['chains_s']:14.4f} {c['estimate_s']:10.4f} "
              f"{c['diagnostics_share']:+11.0%} {c['choose_step_s']:10.4f} {c['choose_share']:7.0%}")
    if args.rrr:
        print(f"\nthe defaults over {args.rrr} hypothesis-drawn reduced-rank regressions (widths 1–7, every rank):")
        report["rrr"] = defaults_over_rrr(args.rrr, args.n, args.chains, args.rrr_seed)
        print(f"{len(report['rrr']['examples'])} shapes: {report['rrr']['within']} within tolerance, "
              f"{report['rrr']['warned']} warn, {report['rrr']['silent_misses']} outside it without a warning")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1, default=str)
    silent = [r["case"] for r in report["validation"] for k in ("sgld", "hmc")
              if not r[k]["within"] and not r[k]["warnings"]]
    return 1 if silent or (args.rrr and report["rrr"]["silent_misses"]) else 0
