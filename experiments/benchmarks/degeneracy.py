"""Throughput of the degeneracy tools: chain-steps per second of the local learning
coefficient (SGLD chains vmapped, draws scanned) on the superposition toy (5 features → 2)
and on the grokking transformer, for growing numbers of chains; and the top Hessian
eigenvalues of the one-hot modular-addition MLP (Lanczos on Hessian-vector products).

Run ``toylab bench degeneracy --help``; ``main(argv)`` returns an exit code. The devinterp
and PyHessian comparisons the issue asks for run in their own environment (not installed
here): this prints only the JAX side.
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.benchmarks.common import devices_line, int_list, positive_int, timed

MODELS = ("superposition", "grokking")


def build_parser(prog=None):
    p = argparse.ArgumentParser(prog=prog or "bench_degeneracy", description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int_list, default=(1, 8, 32), help="chain counts (default 1,8,32)")
    p.add_argument("--draws", type=positive_int, default=200, help="SGLD draws per chain (default 200)")
    p.add_argument("--models", default="superposition,grokking", help="superposition, grokking or both")
    p.add_argument("--p", type=positive_int, default=113, help="modulus of the grokking model (default 113)")
    p.add_argument("--hessian-neurons", type=int, default=600,
                   help="hidden width of the one-hot MLP whose top-5 Hessian eigenvalues are timed "
                        "(600 at p=113: 204k parameters); 0 skips it")
    p.add_argument("--json", metavar="FILE", help="also write the figures as JSON")
    return p


def _superposition():
    import jax

    from toylab.families.superposition import SUPERPOSITION, SuperpositionConfig

    cfg = SuperpositionConfig(n_features=5, n_hidden=2, batch_size=1024, steps=1, log_every=1)
    model = SUPERPOSITION.init(cfg, cfg.hparams(), jax.random.key(0))
    return model, cfg, SUPERPOSITION


def _grokking(p: int):
    import jax

    from toylab.families.grokking import GROKKING, GrokkingConfig

    cfg = GrokkingConfig(p=p, steps=10, log_every=10)
    model = GROKKING.init(cfg, cfg.hparams(), jax.random.key(0))
    return model, cfg, GROKKING


def _llc_point(model, cfg, family, chains: int, draws: int) -> dict:
    import jax

    from toylab.analysis.degeneracy import family_llc_inputs, learning_coefficient

    loss, params, data, defaults = family_llc_inputs(model, family=family, config=cfg)
    defaults.pop("n_examples")
    run = jax.jit(lambda key: learning_coefficient(loss, params, data, key, chains=chains, draws=draws,
                                                   step_size=1e-5, **defaults).traces)
    t = timed(run, jax.random.key(0), repeats=2)  # the first call compiles
    return {"chains": chains, "draws": draws, "seconds": t["seconds"], "first_s": t["first_s"],
            "chain_steps_per_s": chains * draws / t["seconds"], "ms_per_chain_step": 1e3 * t["seconds"] / (chains * draws)}


def _hessian_point(p: int, neurons: int) -> dict:
    import equinox as eqx
    import jax

    from toylab.analysis.degeneracy import top_eigenvalues
    from toylab.families.grokking import GROKKING, GrokkingConfig

    cfg = GrokkingConfig(p=p, model="mlp", embed="onehot", d_mlp=neurons, steps=10, log_every=10)
    model = GROKKING.init(cfg, cfg.hparams(), jax.random.key(0))
    params, static = eqx.partition(model, eqx.is_inexact_array)
    batch = GROKKING.batch(cfg, cfg.hparams(), jax.random.key(0))
    loss = lambda prm, b: GROKKING.loss(eqx.combine(prm, static), b, cfg, cfg.hparams())[0]  # noqa: E731
    n_params = sum(x.size for x in jax.tree.leaves(params))
    # the same loss object twice: the second call reuses the compiled Lanczos program
    t = timed(lambda: top_eigenvalues(loss, params, batch, jax.random.key(0), k=5, iters=64), repeats=1)
    return {"parameters": int(n_params), "seconds": t["seconds"], "first_s": t["first_s"],
            "top5": [float(v) for v in t["result"]]}


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        print(f"{prog or 'bench_degeneracy'}: error: --models={args.models!r}: must be some of {', '.join(MODELS)}",
              file=sys.stderr)
        return 2
    if args.hessian_neurons < 0:
        print(f"{prog or 'bench_degeneracy'}: error: --hessian-neurons={args.hessian_neurons}: must be >= 0",
              file=sys.stderr)
        return 2
    print(devices_line())
    report = {"llc": {}, "hessian": None}
    for name in models:
        model, cfg, family = _superposition() if name == "superposition" else _grokking(args.p)
        print(f"LLC of the {name} model ({family.name} loss on its own training data), {args.draws} draws per chain:")
        print(f"{'chains':>7} {'first call s':>13} {'seconds':>9} {'chain-steps/s':>14} {'ms/chain-step':>14}")
        points = []
        for chains in args.chains:
            pt = _llc_point(model, cfg, family, chains, args.draws)
            points.append(pt)
            print(f"{chains:>7} {pt['first_s']:>13.2f} {pt['seconds']:>9.3f} {pt['chain_steps_per_s']:>14.1f} "
                  f"{pt['ms_per_chain_step']:>14.3f}", flush=True)
        report["llc"][name] = points
    if args.hessian_neurons:
        pt = _hessian_point(args.p, args.hessian_neurons)
        report["hessian"] = pt
        print(f"top-5 Hessian eigenvalues of the one-hot MLP (p={args.p}, {args.hessian_neurons} neurons, "
              f"{pt['parameters']} parameters), 64 Lanczos steps: {pt['seconds']:.2f} s "
              f"(first call {pt['first_s']:.2f} s): {', '.join(f'{v:.4g}' for v in pt['top5'])}")
    print("devinterp / PyHessian: not installed in this environment; run them in their own venv for the comparison")
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
