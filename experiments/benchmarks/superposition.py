"""Benchmark: instance-steps per second of toylab's superposition training loop.

Trains ensembles of L independent toy models of superposition (n=20 features, m=5 hidden,
ReLU-output model, batch 1024, feature probability 0.05) and reports how many
instance-steps (one optimizer step of one instance) each approach completes per second:

- JAX, the program the sweep runner compiles: ``make_train("superposition", cfg)`` mapped
  over stacked hparams and per-instance keys by ``ensemble_map`` with the runner's block
  size (a plain vmap on an accelerator; on CPU a scan over vmapped blocks sized to a ~40 MB
  working set, 64 instances here, which keeps big ensembles in cache), with the default ``threefry2x32`` PRNG and with
  ``prng_impl="unsafe_rbg"`` (random-number generation dominates the step on CPU).
- PyTorch, the reference notebook's approach: one model holding the stacked instance
  weights, a Python loop of AdamW steps, at each thread count asked for (skipped with a
  note when torch is missing).

Timing is steady state: the JAX program is compiled ahead of time (the compile time is
reported on its own), run once untimed, then a second call is timed to completion
(``block_until_ready``); torch runs a few untimed warm-up steps first. The number of steps S
per point is scaled with L so that each timed measurement takes about ``--seconds``.

Run ``toylab bench superposition --help`` (or ``python3 -m toylab.experiments.benchmarks.superposition``); ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import sys

from toylab.experiments.benchmarks._common import (block_size_arg, int_list, positive_float, positive_int, repeat_steps,
                                          stopwatch, timed)

DEFAULT_INSTANCES = (1, 4, 16, 64, 256, 1024, 4096)
QUICK_INSTANCES = (1, 16, 256)
N_FEATURES, N_HIDDEN, BATCH, PROB = 20, 5, 1024, 0.05
IMPLS = ("threefry2x32", "unsafe_rbg")
GPU_TARGET = 100.0  # 4096-instance throughput / 1-instance throughput on a GPU


# ----------------------------------------------------------------------------- CLI parsing

def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog=prog or "bench_superposition",
        description=(f"Instance-steps per second of the toy model of superposition (n={N_FEATURES}, "
                     f"m={N_HIDDEN}, batch {BATCH}, ReLU output, p={PROB}): toylab's JAX loop "
                     "(threefry and unsafe_rbg PRNG) against a PyTorch reference loop."),
    )
    p.add_argument("--instances", type=int_list, default=None, metavar="L1,L2,...",
                   help=f"ensemble sizes (default {','.join(map(str, DEFAULT_INSTANCES))}; "
                        f"--quick: {','.join(map(str, QUICK_INSTANCES))})")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="fixed steps per measurement for every size (default: scaled with the "
                        "ensemble size so each measurement takes about --seconds)")
    p.add_argument("--seconds", type=positive_float, default=None, metavar="T",
                   help="target seconds per timed measurement when --steps is not given "
                        "(default 2, --quick 0.25)")
    p.add_argument("--quick", action="store_true",
                   help="smoke check: sizes 1,16,256 with short measurements (well under 30 s)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True,
                   help="also time the PyTorch reference loop (default: on)")
    p.add_argument("--torch-threads", type=int_list, default=None, metavar="N1,N2,...",
                   help="thread counts to time the torch loop at on CPU, each its own column "
                        "(default: 1 and os.cpu_count())")
    p.add_argument("--block-size", type=block_size_arg, default=None, metavar="B",
                   help="instances per vmapped block of the JAX program, or 'none' for one vmap "
                        "over all (default: the sweep runner's, 64 on CPU and none on accelerators)")
    p.add_argument("--repeats", type=positive_int, default=1, metavar="R",
                   help="timed calls per point after the warm-up; the fastest is reported (default 1)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON to PATH")
    return p


# ----------------------------------------------------------------------------- helpers

def _nice(x: float) -> int:
    """Round a step count to two significant figures (at least 1)."""
    if x <= 1:
        return 1
    digits = int(math.floor(math.log10(x))) - 1
    return max(1, int(round(x / 10 ** digits) * 10 ** digits))


class _StepPlanner:
    """Predicts the steps giving a measurement of ``target`` seconds from the sizes already
    measured: throughput extrapolated in log-log from the last two points (growth clamped
    to between flat and linear in L)."""

    def __init__(self, target: float, first_guess: float, max_steps: int):
        self.target, self.first_guess, self.max_steps = target, first_guess, max_steps
        self.seen: list[tuple[int, float]] = []  # (instances, inst-steps/s)

    def steps(self, L: int) -> int:
        if not self.seen:
            rate = self.first_guess * L
        elif len(self.seen) == 1:
            L0, r0 = self.seen[-1]
            rate = r0 * (L / L0) ** 0.5
        else:
            (L0, r0), (L1, r1) = self.seen[-2], self.seen[-1]
            alpha = math.log(r1 / r0) / math.log(L1 / L0) if L1 != L0 else 0.0
            rate = r1 * (L / L1) ** min(max(alpha, 0.0), 1.0)
        return min(self.max_steps, _nice(self.target * rate / L))

    def record(self, L: int, rate: float):
        self.seen.append((L, rate))


def _fmt_rate(x) -> str:
    if x is None:
        return "-"
    return f"{x:,.0f}" if x >= 100 else f"{x:,.1f}"


def _fmt_ratio(a, b) -> str:
    return "-" if a is None or b is None or b == 0 else f"{a / b:.1f}x"


# ----------------------------------------------------------------------------- JAX

def _jax_point(L: int, steps: int, impl: str, *, target: float | None, max_steps: int, repeats: int,
               block_size: int | None) -> dict:
    """Compile, warm up and time toylab's vmapped training loop for L instances.

    With a ``target`` (seconds), the untimed warm-up call doubles as a calibration: when it
    ran far from the target the program is compiled once more with a rescaled step count
    (S is static, so each S is its own program) before the timed call."""
    import jax
    import jax.numpy as jnp
    import numpy as np
    from jax.sharding import Mesh, NamedSharding, PartitionSpec

    import toylab
    from toylab.core.train import ensemble_map
    from toylab.families.superposition import SuperpositionConfig

    keys = jax.vmap(lambda s: toylab.make_key(s, impl))(jnp.arange(L))
    devices = jax.devices()
    sharding = None
    if len(devices) > 1 and L % len(devices) == 0:
        sharding = NamedSharding(Mesh(np.asarray(devices), ("sweep",)), PartitionSpec("sweep"))
        keys = jax.device_put(keys, sharding)

    for attempt in range(2):
        cfg = SuperpositionConfig(n_features=N_FEATURES, n_hidden=N_HIDDEN, model="relu_output",
                                  batch_size=BATCH, feature_probability=PROB, steps=steps,
                                  log_every=steps, prng_impl=impl)
        hparams = {k: np.full(L, v) for k, v in cfg.hparams().items()}
        if sharding is not None:
            hparams = jax.device_put(hparams, sharding)
        train = toylab.make_train("superposition", cfg)
        with stopwatch() as compiling:
            groups = len(devices) if sharding is not None else 1
            program = jax.jit(ensemble_map(train, block_size, groups))
            compiled = program.lower(hparams, keys).compile()
        compile_s = compiling.seconds  # of the program that is timed
        first_s = timed(compiled, hparams, keys, repeats=0)["first_s"]  # warm-up call, not counted
        if target is None or attempt == 1:
            break
        if first_s < target / 4 and steps < max_steps:
            steps = min(max_steps, _nice(steps * target / max(first_s, 1e-6)))
        elif first_s > 3 * target and steps > 1:
            steps = max(1, _nice(steps * target / first_s))
        else:
            break

    t = timed(compiled, hparams, keys, repeats=repeats, first=False)
    seconds, result = t["min_s"], t["result"]
    loss = float(np.mean(np.asarray(result.metrics["loss"])[:, -1]))
    return {"instances": L, "steps": steps, "seconds": seconds, "warmup_call_s": first_s,
            "compile_s": compile_s, "inst_steps_per_s": L * steps / seconds, "final_loss": loss}


def _bench_jax(sizes, impl, fixed_steps, target, first_guess, max_steps, repeats, block_size, log) -> list[dict]:
    planner = _StepPlanner(target, first_guess, max_steps)
    out = []
    for L in sizes:
        steps = fixed_steps or planner.steps(L)
        point = _jax_point(L, steps, impl, target=None if fixed_steps else target,
                           max_steps=max_steps, repeats=repeats, block_size=block_size)
        planner.record(L, point["inst_steps_per_s"])
        log(f"  jax {impl:<12} L={L:<6} S={point['steps']:<6} {point['seconds']:6.2f} s  "
            f"(compile {point['compile_s']:.2f} s)  {_fmt_rate(point['inst_steps_per_s'])} inst-steps/s")
        out.append(point)
    return out


# ----------------------------------------------------------------------------- PyTorch

def _torch_point(torch, L: int, steps: int | None, target: float, device, repeats: int) -> dict:
    """The reference notebook's loop: stacked instance weights, two rand draws per batch,
    importance-weighted MSE (mean over batch and features, summed over instances), AdamW."""
    n, m = N_FEATURES, N_HIDDEN
    gen = torch.Generator(device=device).manual_seed(0)
    std = (2.0 / (n + m)) ** 0.5  # per-instance Xavier normal
    W = torch.nn.Parameter(torch.randn(L, m, n, generator=gen, device=device) * std)
    b = torch.nn.Parameter(torch.zeros(L, n, device=device))
    importance = 0.7 ** torch.arange(n, dtype=torch.float32, device=device)
    opt = torch.optim.AdamW([W, b], lr=1e-3, weight_decay=0.01)
    zero = torch.zeros((), device=device)

    def sync():
        if device.type == "cuda":
            torch.cuda.synchronize()

    def step():
        values = torch.rand(BATCH, L, n, generator=gen, device=device)
        x = torch.where(torch.rand(BATCH, L, n, generator=gen, device=device) <= PROB, values, zero)
        h = torch.einsum("lmn,bln->blm", W, x)
        out = torch.relu(torch.einsum("lmn,blm->bln", W, h) + b)
        loss = (importance * (x - out) ** 2).mean(dim=(0, 2)).sum()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    def run(k):
        sync()
        t = timed(repeat_steps, step, k, repeats=1, first=False, sync=lambda _: sync())
        return t["seconds"], t["result"]

    run(3)  # warm-up: lazy optimizer state, allocator, kernels
    if steps is None:
        # Calibrate on further untimed steps (doubling until they take a tenth of the target).
        k = 1
        while True:
            dt, _ = run(k)
            if dt >= target / 10 or k >= 4096:
                break
            k *= 2
        steps = max(2, _nice(target * k / max(dt, 1e-9)))
    seconds = math.inf
    for _ in range(repeats):
        dt, loss = run(steps)
        seconds = min(seconds, dt)
    return {"instances": L, "steps": steps, "seconds": seconds,
            "inst_steps_per_s": L * steps / seconds, "final_loss": float(loss.detach()) / L}


def _bench_torch(sizes, fixed_steps, target, use_gpu, threads, repeats, log):
    try:
        import torch
    except ImportError:
        return None, "torch is not importable: pip install torch to compare"
    device = torch.device("cuda" if use_gpu and torch.cuda.is_available() else "cpu")
    before = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        out = []
        for L in sizes:
            point = _torch_point(torch, L, fixed_steps, target, device, repeats)
            log(f"  torch ({device.type})     L={L:<6} S={point['steps']:<6} {point['seconds']:6.2f} s  "
                f"{_fmt_rate(point['inst_steps_per_s'])} inst-steps/s")
            out.append(point)
    finally:
        torch.set_num_threads(before)
    note = f"torch {torch.__version__} on cpu, {threads} thread{'' if threads == 1 else 's'}" if device.type == "cpu" \
        else f"torch {torch.__version__} on {torch.cuda.get_device_name(device)}"
    return out, note


# ----------------------------------------------------------------------------- main

def main(argv=None, prog: str | None = None) -> int:
    """Run the benchmark; returns the exit code (2 for bad command-line input)."""
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # argparse's usage errors (code 2) and --help (code 0)
        return e.code if isinstance(e.code, int) else 2
    sizes = args.instances or (QUICK_INSTANCES if args.quick else DEFAULT_INSTANCES)
    target = args.seconds or (0.25 if args.quick else 2.0)
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        try:
            parser.error(f"argument --json: invalid value {args.json!r}: its folder does not exist")
        except SystemExit as e:
            return e.code

    def log(msg):
        print(msg, flush=True)

    import jax

    import toylab  # noqa: F401  (fails early, with its own message, if the package is broken)
    from toylab.core.train import default_block_size

    backend = jax.default_backend()
    devices = jax.devices()
    on_gpu = any(d.platform in ("gpu", "cuda", "rocm") for d in devices)
    if args.block_size is None:  # as the sweep runner chooses: measured from one instance's program
        from toylab.families.superposition import SuperpositionConfig

        one = SuperpositionConfig(n_features=N_FEATURES, n_hidden=N_HIDDEN, model="relu_output", batch_size=BATCH,
                                  feature_probability=PROB, steps=100, log_every=100)
        block_size = default_block_size(backend, fn=toylab.make_train("superposition", one),
                                        args=(one.hparams(), toylab.make_key(0)))
    else:
        block_size = args.block_size or None
    log(f"jax {jax.__version__}, backend: {backend}, devices: {devices}")
    log(f"setting: n={N_FEATURES}, m={N_HIDDEN}, batch {BATCH}, relu_output, feature probability {PROB}, "
        f"AdamW lr 1e-3 wd 0.01; sizes {','.join(map(str, sizes))}; "
        + (f"{args.steps} steps per point" if args.steps else f"~{target:g} s per timed point")
        + f"; JAX block size {block_size or 'none (one vmap)'}")

    # First guesses of per-instance throughput at L=1 (instance-steps/s); later sizes are
    # extrapolated from measured ones.
    first_guess = 20_000.0 if on_gpu else 2_000.0
    max_steps = 100_000 if on_gpu else 20_000
    whole = stopwatch().__enter__()
    jax_results = {}
    for impl in IMPLS:
        jax_results[impl] = _bench_jax(sizes, impl, args.steps, target, first_guess, max_steps, args.repeats,
                                       block_size, log)

    torch_runs: list[tuple[str, list[dict]]] = []  # (column name, points)
    torch_notes = []
    if args.torch:
        thread_counts = (1,) if on_gpu else (args.torch_threads or tuple(sorted({1, os.cpu_count() or 1})))
        for threads in thread_counts:
            points, note = _bench_torch(sizes, args.steps, target, on_gpu, threads, args.repeats, log)
            torch_notes.append(note)
            if points is None:
                break
            name = "torch" if on_gpu else f"torch {threads}t"
            torch_runs.append((name, points))
    else:
        torch_notes.append("torch comparison off (--no-torch)")
    whole.__exit__()
    total_s = whole.seconds

    # ---- the table
    thr = {p["instances"]: p for p in jax_results["threefry2x32"]}
    rbg = {p["instances"]: p for p in jax_results["unsafe_rbg"]}
    tor = {name: {p["instances"]: p for p in points} for name, points in torch_runs}
    header = ["instances", "jax threefry", "jax unsafe_rbg", *tor, "threefry/best torch", "rbg/best torch"]
    rows = []
    best_torch = {}
    for L in sizes:
        ts = [tor[name][L]["inst_steps_per_s"] for name in tor if L in tor[name]]
        best_torch[L] = max(ts) if ts else None
        a, r = thr[L]["inst_steps_per_s"], rbg[L]["inst_steps_per_s"]
        rows.append([str(L), _fmt_rate(a), _fmt_rate(r),
                     *(_fmt_rate(tor[name].get(L, {}).get("inst_steps_per_s")) for name in tor),
                     _fmt_ratio(a, best_torch[L]), _fmt_ratio(r, best_torch[L])])
    widths = [max(len(h), *(len(row[i]) for row in rows)) for i, h in enumerate(header)]
    line = lambda cells: " | ".join(c.rjust(w) for c, w in zip(cells, widths))  # noqa: E731
    log("")
    log("instance-steps per second")
    log(line(header))
    log("-+-".join("-" * w for w in widths))
    for row in rows:
        log(line(row))
    log("(ratios: a JAX column over the fastest torch column at that size)")
    log("")
    log("details: steps S per point / timed seconds / compile seconds")
    for L in sizes:
        parts = [f"threefry S={thr[L]['steps']} {thr[L]['seconds']:.2f}s compile {thr[L]['compile_s']:.2f}s",
                 f"unsafe_rbg S={rbg[L]['steps']} {rbg[L]['seconds']:.2f}s compile {rbg[L]['compile_s']:.2f}s"]
        for name in tor:
            if L in tor[name]:
                parts.append(f"{name} S={tor[name][L]['steps']} {tor[name][L]['seconds']:.2f}s")
        log(f"  L={L:<5} " + "; ".join(parts))
    for note in torch_notes:
        log(f"torch: {note}")
    if tor:
        beaten = [L for L in sizes if best_torch[L] and thr[L]["inst_steps_per_s"] > best_torch[L]]
        log(f"JAX (threefry) beats the fastest torch column at {len(beaten)} of {len(sizes)} sizes"
            + ("" if len(beaten) == len(sizes) else f" (not at {', '.join(str(L) for L in sizes if L not in beaten)})"))

    # ---- the scaling criterion: throughput at the largest ensemble over one instance
    scaling = {}
    lo, hi = min(sizes), max(sizes)
    if hi > lo:
        for impl, res in (("threefry2x32", thr), ("unsafe_rbg", rbg)):
            scaling[impl] = res[hi]["inst_steps_per_s"] / res[lo]["inst_steps_per_s"]
        standard = lo == 1 and hi == 4096
        what = f"{hi}-instance / {lo}-instance throughput" + ("" if standard else " (criterion is 4096 vs 1)")
        figures = ", ".join(f"{k} {v:.1f}x" for k, v in scaling.items())
        if on_gpu:
            verdict = "PASS" if scaling["threefry2x32"] >= GPU_TARGET and standard else \
                ("FAIL" if standard else "n/a")
            log(f"GPU criterion: {what} = {figures} (target >= {GPU_TARGET:.0f}x): {verdict}")
        else:
            log(f"GPU criterion (informational, no GPU here — backend {backend}): {what} = {figures} "
                f"(target >= {GPU_TARGET:.0f}x applies on a GPU)")
    log(f"total benchmark time {total_s:.1f} s")

    if args.json:
        payload = {
            "jax_version": jax.__version__, "backend": backend, "devices": [str(d) for d in devices],
            "setting": {"n_features": N_FEATURES, "n_hidden": N_HIDDEN, "batch_size": BATCH,
                        "model": "relu_output", "feature_probability": PROB, "lr": 1e-3, "weight_decay": 0.01},
            "instances": list(sizes), "target_seconds": None if args.steps else target, "fixed_steps": args.steps,
            "block_size": block_size,
            "jax": {impl: jax_results[impl] for impl in IMPLS},
            "torch": {name: points for name, points in torch_runs}, "torch_notes": torch_notes,
            "scaling_max_over_min": scaling, "gpu": on_gpu, "total_seconds": total_s,
        }
        try:
            with open(args.json, "w") as f:
                json.dump(payload, f, indent=2)
        except OSError as e:
            print(f"bench_superposition: error: --json {args.json!r}: cannot write ({e.strerror})", file=sys.stderr)
            return 1
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
