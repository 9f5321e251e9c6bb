"""Benchmark: the groups family's sweep throughput and the cost of its representation theory.

1. Seeds·steps per second of the S_5 MLP of Chughtai et al. (embeddings 256 wide, 128 ReLU
   neurons, no biases; 40% of the 14 400 pairs train, full-batch AdamW, float64 loss): the
   program the sweep runner compiles (``make_train`` mapped over seeds by ``ensemble_map``,
   with the runner's block size), steady state, for several seed counts; then one whole
   ``run_sweep`` of the largest count end to end (compile included), which shards the seeds
   over every device JAX sees.
2. The time to build S_6's Cayley table, all its irreps over C and over R, and every real
   irrep's character cube χ(a∘b∘c⁻¹) (720³ entries each, built by one gather of rows and dropped),
   and to compute the logit similarities of one random logit cube without building cubes.

Run ``toylab bench groups --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys

from toylab.experiments.benchmarks._common import devices_line, int_list, positive_int, time_ensemble, timed

DEFAULT_SEEDS = (1, 8, 32)


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or "bench_groups",
                                description="Seeds·steps per second of the S5 MLP sweep, and the time to build S6's "
                                            "irreps and character cubes.")
    p.add_argument("--seeds", type=int_list, default=DEFAULT_SEEDS, metavar="S1,S2,...",
                   help=f"seed counts trained together (default {','.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--steps", type=positive_int, default=200, metavar="N", help="timed steps per measurement (default 200)")
    p.add_argument("--group", default="S5", help="group of the sweep (default S5)")
    p.add_argument("--no-sweep", action="store_true", help="skip the end-to-end run_sweep measurement")
    p.add_argument("--irreps-group", default="S6", help="group whose irreps and cubes are timed (default S6)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    return p


def _config(group: str, steps: int):
    from toylab.families.groups import GroupsConfig

    return GroupsConfig(group=group, steps=steps, log_every=steps, warmup_steps=min(10, steps))


def _representation_timings(name: str) -> dict:
    import numpy as np

    from toylab.analysis import representations as ra
    from toylab.groups import group, irreps, real_irreps

    out = {}
    # Built once and cached by the library: timed on their first (only) call.
    t = timed(group, name, warmup=False)
    g, out["table_s"] = t["result"], t["seconds"]
    t = timed(irreps, g, warmup=False)
    complex_reps, out["irreps_s"] = t["result"], t["seconds"]
    t = timed(real_irreps, g, warmup=False)
    reps, out["real_irreps_s"] = t["result"], t["seconds"]

    def all_cubes():
        for r in reps:  # one at a time: each is |G|³ floats
            np.asarray(ra.character_cube(g, np.trace(r.matrices, axis1=1, axis2=2).astype(np.float32)))
    out["character_cubes_s"] = timed(all_cubes, warmup=False)["seconds"]
    logits = np.random.default_rng(0).standard_normal((g.order,) * 3, dtype=np.float32)
    out["logit_similarity_s"] = timed(lambda: ra.logit_similarity(logits, g), repeats=1)["seconds"]
    out.update(group=name, order=g.order, n_irreps=len(complex_reps), n_real_irreps=len(reps),
               dims=[r.dim for r in complex_reps])
    return out


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    import jax

    from toylab.core.config import ConfigError

    try:
        cfg = _config(args.group, args.steps)
        from toylab.groups import group as build_group

        build_group(args.irreps_group)
    except (ConfigError, ValueError) as e:
        print(f"{prog or 'bench_groups'}: error: {e}", file=sys.stderr)
        return 2
    devices = jax.devices()
    print(devices_line())
    print(f"{args.group} MLP (d_embed {cfg.d_embed}, d_hidden {cfg.d_hidden}), train fraction {cfg.train_fraction}, "
          f"{args.steps} full-batch steps per measurement")
    print(f"{'seeds':>6} {'block':>6} {'compile s':>10} {'seconds':>9} {'seeds·steps/s':>14}")
    points = []
    for n in args.seeds:
        pt = time_ensemble("groups", cfg, n)
        points.append(pt)
        print(f"{n:>6} {str(pt['block_size']):>6} {pt['compile_s']:>10.1f} {pt['seconds']:>9.2f} "
              f"{pt['model_steps_per_s']:>14.1f}", flush=True)
    sweep = None
    if not args.no_sweep:
        from toylab.core.sweep import run_sweep

        n = max(args.seeds)
        seconds = timed(lambda: run_sweep("groups", {"group": args.group, "steps": args.steps, "log_every": args.steps},
                                          seeds=n, quiet=True), warmup=False)["seconds"]
        sweep = {"seeds": n, "seconds": seconds, "seeds_steps_per_s": n * args.steps / seconds}
        print(f"run_sweep, {n} seeds on {len(devices)} device(s), compile included: {seconds:.1f} s "
              f"({sweep['seeds_steps_per_s']:.1f} seeds·steps/s)")
    reps = _representation_timings(args.irreps_group)
    print(f"{reps['group']} (order {reps['order']}): table {reps['table_s']:.2f} s; {reps['n_irreps']} irreps over C "
          f"(dims {reps['dims']}) {reps['irreps_s']:.2f} s; {reps['n_real_irreps']} over R {reps['real_irreps_s']:.2f} s; "
          f"all character cubes {reps['character_cubes_s']:.2f} s; "
          f"logit similarities of one logit cube {reps['logit_similarity_s']:.2f} s")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"points": points, "sweep": sweep, "representations": reps}, f, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
