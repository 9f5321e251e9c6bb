"""Benchmark: the plan's predicted CPU time against measured sweeps on this CPU.

For each case (a family at a small and a large ensemble) it plans the sweep
(``run_sweep(..., plan=True)``: programs compiled ahead of time, XLA's cost analysis, the
roofline of this CPU's calibration) and then runs it in memory, timing the whole call
(compile included, with an empty compilation cache so the run compiles as a fresh machine
would), and prints predicted, measured and their ratio. ``--quick`` takes fewer steps.

Run ``toylab bench plan --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import json
import tempfile

from toylab.experiments.benchmarks._common import OneLineParser, choice_list, devices_line, json_path, timed

# (family, base config, seeds): small and large ensembles of five families.
CASES = {
    "superposition": ({"steps": 2000}, (1, 256)),
    "grokking": ({"p": 31, "steps": 500, "train_fraction": 0.5}, (1, 16)),
    "dictionaries": ({"steps": 1000}, (1, 64)),
    "groups": ({"steps": 500}, (1, 16)),
    "bilinear": ({"steps": 200}, (1, 8)),
}


def build_parser(prog=None):
    p = OneLineParser(prog=prog, description=__doc__.splitlines()[0])
    p.add_argument("--families", type=choice_list(CASES, "families"), default=tuple(CASES), metavar="A,B",
                   help=f"families to measure (default all: {', '.join(CASES)})")
    p.add_argument("--quick", action="store_true", help="a tenth of the steps (the test's size)")
    p.add_argument("--recalibrate", action="store_true", help="measure this CPU again before planning")
    p.add_argument("--json", type=json_path, metavar="PATH", help="also write the figures as JSON")
    return p


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    families = args.families
    import jax

    from toylab.core.plan import cpu_target
    from toylab.core.sweep import run_sweep

    if jax.default_backend() != "cpu":
        print(f"{parser.prog}: error: this benchmark checks the CPU prediction; run it on a CPU")
        return 2
    print(devices_line())
    cpu = cpu_target(recalibrate=args.recalibrate)
    print(f"this CPU: {cpu.flops_per_s['float32'] / 1e9:.1f} GFLOP/s float32 products, "
          f"{cpu.bytes_per_s / 1e9:.1f} GB/s, {cpu.kernel_seconds * 1e6:.2f} µs per kernel ({cpu.source})")
    rows = []
    print(f"{'family':14} {'runs':>5} {'steps':>6} {'predicted s':>12} {'measured s':>11} {'ratio':>6}  "
          f"{'of which compile (pred.)':>24}  bound")
    with tempfile.TemporaryDirectory() as cache:
        # A fresh compilation cache: the measured run compiles, as the predicted one does.
        jax.config.update("jax_compilation_cache_dir", cache)
        for family in families:
            base, sizes = CASES[family]
            base = dict(base)
            if args.quick:
                base["steps"] = max(base["steps"] // 10, 50)
            for seeds in sizes:
                plan = run_sweep(family, base, seeds=seeds, plan=True)
                t = plan.targets["cpu"]
                # One call, compile included: what the plan predicts.
                measured = timed(lambda: run_sweep(family, base, seeds=seeds, quiet=True), repeats=0)["first_s"]
                rows.append({"family": family, "runs": seeds, "steps": base["steps"],
                             "predicted_seconds": t.predicted_seconds, "measured_seconds": measured,
                             "ratio": measured / t.predicted_seconds, "compile_seconds": plan.compile_seconds,
                             "bound": t.bound, "flops_per_step": plan.groups[0].flops_per_step,
                             "bytes_per_step": plan.groups[0].bytes_per_step,
                             "block_size": plan.groups[0].block_size})
                r = rows[-1]
                print(f"{family:14} {seeds:>5} {base['steps']:>6} {r['predicted_seconds']:>12.2f} "
                      f"{measured:>11.2f} {r['ratio']:>6.2f}  {r['compile_seconds']:>24.2f}  {t.bound}", flush=True)
    ratios = [r["ratio"] for r in rows]
    print(f"measured / predicted: {min(ratios):.2f} to {max(ratios):.2f} over {len(rows)} sweeps")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"cpu": {"flops_per_s": cpu.flops_per_s["float32"], "bytes_per_s": cpu.bytes_per_s,
                               "kernel_seconds": cpu.kernel_seconds}, "rows": rows}, f, indent=1)
        print(f"figures in {args.json}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
