"""A plan before a sweep: XLA's own cost and memory analyses of every static group's
program, and a roofline prediction of wall time and memory on named targets.

Each static group's programs (init, one training segment, final) are lowered and compiled
ahead of time on the current backend, exactly as :func:`~toylab.core.sweep.run_sweep` would
build them, and nothing is trained. From the compiled segment XLA reports the FLOPs and bytes
accessed of one optimizer step of one run (a ``while`` body is counted once, so the one-step
figure is read off a one-interval segment, less the interval's evaluation), the number of
kernels a step launches, and the memory of the chunk's program. A target's prediction is a
roofline: per step, the larger of FLOPs ÷ peak rate (at the program's dot type and precision)
and bytes ÷ memory bandwidth, plus the kernels' launch overhead, times steps, blocks and
chunks; plus this backend's measured compile time. Targets:

- ``cpu``: this machine, from a short calibration of its matrix-product rate, memory
  bandwidth and per-kernel overhead (cached in ``~/.cache/toylab``; ``recalibrate=True``);
- ``h100``, ``a100``: NVIDIA H100 SXM5 80 GB and A100 SXM4 80 GB, published dense peaks;
- ``tpu-v5e``: one Google TPU v5e chip.

A prediction is only as good as a roofline. XLA counts every operand an op reads as memory
traffic, and the CPU's bandwidth is calibrated on a pass larger than its caches, so a
memory-bound ensemble whose blocks stay partly in cache runs faster than predicted (measured
on a 2-core EPYC: single runs 0.95–1.28× the prediction, ensembles of 16–256 runs 0.44–0.75×;
``toylab bench plan``); work the cost model does not see (a loop inside an op counts once, the
host's own time between segments) runs slower.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
import os
import platform
import re
import time
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from .config import ConfigError

__all__ = ["TARGETS", "Target", "SweepPlan", "GroupPlan", "TargetPlan", "plan_sweep", "calibrate_cpu",
           "current_target", "program_costs", "parse_memory", "recording", "PlannedSweep", "SweepPlanned"]


# ----------------------------------------------------------------------------- targets


@dataclasses.dataclass(frozen=True)
class Target:
    """A device a plan predicts for: peak FLOP/s by dot type, memory bandwidth and memory."""

    name: str
    description: str
    flops_per_s: dict  # "float64", "float32" (full float32 dots), "tf32" (the fast float32 mode), "bfloat16"
    bytes_per_s: float
    memory_bytes: int  # what one program may use (after the runtime's own reservation)
    kernel_seconds: float  # launch overhead of one kernel (op) inside the training loop
    source: str

    def rate(self, dtype: str) -> float:
        return self.flops_per_s.get(dtype) or self.flops_per_s["float32"]


_GiB = 2 ** 30
# JAX preallocates this share of a GPU's memory and allocates only inside it.
_GPU_FRACTION = 0.75


def _gpu_fraction() -> float:
    try:
        f = float(os.environ.get("XLA_PYTHON_CLIENT_MEM_FRACTION", _GPU_FRACTION))
    except ValueError:
        return _GPU_FRACTION
    return f if 0 < f <= 1 else _GPU_FRACTION


def _accelerators() -> dict[str, Target]:
    # Published dense peaks (no sparsity). A GPU kernel in a while loop costs a few
    # microseconds to launch and finish; a TPU step's fused ops cost about one.
    gpu = _gpu_fraction()
    return {
        "h100": Target("h100", "NVIDIA H100 SXM5 80 GB",
                       {"float64": 67e12, "float32": 67e12, "tf32": 494.7e12, "bfloat16": 989.4e12},
                       3.35e12, int(79.6 * _GiB * gpu), 4e-6,
                       "NVIDIA H100 Tensor Core GPU datasheet (SXM5: FP64/FP32 67 TF, TF32 495 TF, BF16 989 TF dense, "
                       f"HBM3 3.35 TB/s); memory: 81 559 MiB x {gpu:g} (JAX's preallocation)"),
        "a100": Target("a100", "NVIDIA A100 SXM4 80 GB",
                       {"float64": 19.5e12, "float32": 19.5e12, "tf32": 156e12, "bfloat16": 312e12},
                       2.039e12, int(79.2 * _GiB * gpu), 4e-6,
                       "NVIDIA A100 datasheet (SXM4 80 GB: FP64 TC/FP32 19.5 TF, TF32 156 TF, BF16 312 TF dense, "
                       f"HBM2e 2 039 GB/s); memory: 81 251 MiB x {gpu:g} (JAX's preallocation)"),
        # A TPU multiplies in bfloat16 passes: full float32 takes 6, the fast mode 1.
        # float64 has no hardware path (XLA emulates it, far slower than any figure here).
        "tpu-v5e": Target("tpu-v5e", "Google TPU v5e (one chip)",
                          {"float32": 197e12 / 6, "tf32": 197e12, "bfloat16": 197e12, "float64": 197e12 / 6 / 8},
                          819e9, int(15.75 * _GiB), 1e-6,
                          "Google Cloud TPU v5e: 197 TF bf16, 16 GiB HBM2 at 819 GB/s; float32 dots at HIGHEST "
                          "precision take 6 bf16 passes; float64 is emulated (the rate here is a guess: /8)"),
    }


TARGET_NAMES = ("cpu", "h100", "a100", "tpu-v5e")


def __getattr__(name):
    if name == "TARGETS":  # the CPU's figures are measured on first use
        return {"cpu": cpu_target(), **_accelerators()}
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def get_target(name: str) -> Target:
    if not isinstance(name, str) or name not in TARGET_NAMES:
        raise ConfigError("target", name, f"must be one of {', '.join(TARGET_NAMES)}")
    return cpu_target() if name == "cpu" else _accelerators()[name]


def current_target() -> str:
    """The target name of the device JAX runs on now ("cpu" on a CPU; an unknown
    accelerator is predicted as the nearest named one: an H100)."""
    dev = jax.devices()[0]
    if dev.platform == "cpu":
        return "cpu"
    kind = str(getattr(dev, "device_kind", "")).lower()
    if "a100" in kind:
        return "a100"
    if "tpu" in kind or dev.platform == "tpu":
        return "tpu-v5e"
    return "h100"


def parse_memory(value) -> int:
    """Bytes from a size: an integer, or text like "80GB", "16 GiB", "512MiB" (ConfigError
    naming target_memory otherwise)."""
    units = {"": 1, "b": 1, "kb": 1e3, "mb": 1e6, "gb": 1e9, "tb": 1e12, "kib": 2 ** 10, "mib": 2 ** 20,
             "gib": 2 ** 30, "tib": 2 ** 40, "k": 2 ** 10, "m": 2 ** 20, "g": 2 ** 30, "t": 2 ** 40}
    if isinstance(value, (int, np.integer)) and not isinstance(value, bool):
        n = float(value)
    elif isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+(?:e[0-9]+)?)\s*([a-zA-Z]*)\s*", value)
        if not m or m.group(2).lower() not in units:
            raise ConfigError("target_memory", value, 'must be a size such as "80GB", "16GiB" or a number of bytes')
        n = float(m.group(1)) * units[m.group(2).lower()]
    else:
        raise ConfigError("target_memory", value, 'must be a size such as "80GB", "16GiB" or a number of bytes')
    if not math.isfinite(n) or n < 1:
        raise ConfigError("target_memory", value, "must be a positive size")
    return int(n)


# ----------------------------------------------------------------------------- this CPU


def _cache_dir() -> Path:
    return Path(os.environ.get("TOYLAB_CACHE") or Path.home() / ".cache" / "toylab")


def _cpu_key() -> str:
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count()
    model = platform.processor() or platform.machine()
    try:
        with open("/proc/cpuinfo") as f:
            names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
        model = names[0] if names else model
    except OSError:
        pass
    return f"{model} | {cores} cores | jax {jax.__version__}"


def _best_seconds(fn, *args, repeats: int = 5) -> float:
    jax.block_until_ready(fn(*args))  # compile and warm
    best = math.inf
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        best = min(best, time.perf_counter() - t0)
    return best


def calibrate_cpu() -> dict:
    """Measure this CPU: float32 matrix-product rate (1024² products), memory bandwidth (an
    elementwise pass over 64 MB) and the cost of one kernel in a training loop (a scan of
    small dependent ops, divided by the kernels its compiled loop body holds)."""
    import jax.numpy as jnp

    cpu = jax.devices("cpu")[0]
    with jax.default_device(cpu):
        n = 1024
        a = jax.random.normal(jax.random.key(0), (n, n), jnp.float32)
        mm = jax.jit(lambda x: x @ x)
        flops = 2 * n ** 3 / _best_seconds(mm, a)
        big = jnp.ones((16 * 2 ** 20,), jnp.float32)  # 64 MB
        sweep = jax.jit(lambda x: x * 1.0001 + 1.0)
        bandwidth = 2 * big.nbytes / _best_seconds(sweep, big)
        steps = 2000

        def body(x, _):
            for _ in range(8):  # small dependent products: one kernel each, launch-bound
                x = jnp.tanh(x @ x[::-1])
            return x, None

        small = jnp.eye(4, dtype=jnp.float32) * 0.5
        loop = jax.jit(lambda x: jax.lax.scan(body, x, length=steps)[0])
        per_step = _best_seconds(loop, small, repeats=3) / steps
        kernels = count_kernels(jax.jit(lambda x: body(x, None)[0]).lower(small).compile().as_text())
    return {"key": _cpu_key(), "flops_per_s": flops, "bytes_per_s": bandwidth,
            "kernel_seconds": per_step / max(kernels, 1), "measured": time.strftime("%Y-%m-%d %H:%M:%S")}


_CPU: dict = {}


def cpu_target(recalibrate: bool = False) -> Target:
    """This CPU as a target, from its calibration (measured once, then read from the cache)."""
    key = _cpu_key()
    if recalibrate or _CPU.get("key") != key:
        path = _cache_dir() / "cpu-calibration.json"
        cal = None
        if not recalibrate:
            try:
                found = json.loads(path.read_text())
                if found.get("key") == key and all(float(found[k]) > 0 for k in
                                                   ("flops_per_s", "bytes_per_s", "kernel_seconds")):
                    cal = found
            except (OSError, ValueError, KeyError, TypeError):
                cal = None  # a missing or damaged cache is measured again
        if cal is None:
            cal = calibrate_cpu()
            with contextlib.suppress(OSError):
                path.parent.mkdir(parents=True, exist_ok=True)
                tmp = path.with_suffix(f".tmp{os.getpid()}")
                tmp.write_text(json.dumps(cal, indent=1))
                os.replace(tmp, path)
        _CPU.clear()
        _CPU.update(cal)
    from .devices import host_memory_bytes

    f = float(_CPU["flops_per_s"])
    return Target("cpu", f"this CPU ({_CPU['key']})", {"float64": f / 2, "float32": f, "tf32": f, "bfloat16": f},
                  float(_CPU["bytes_per_s"]), int(host_memory_bytes() or 16 * _GiB), float(_CPU["kernel_seconds"]),
                  f"calibrated {_CPU.get('measured', '')}: 1024² float32 products, a 64 MB elementwise pass, "
                  "a scan of small products")


# ----------------------------------------------------------------------------- XLA's analyses

_NOT_KERNELS = {"parameter", "constant", "get-tuple-element", "tuple", "bitcast", "after-all", "partition-id",
                "replica-id", "opt-barrier"}


def count_kernels(hlo_text: str) -> int:
    """Operations a compiled module runs as kernels: the instructions of its unfused
    computations (entry, loop bodies and conditions, branches), less bookkeeping ones."""
    fused = set(re.findall(r"(?:calls|to_apply)=%?([\w.\-]+)", hlo_text))
    count, current = 0, None
    for line in hlo_text.splitlines():
        head = re.match(r"^(?:ENTRY )?%?([\w.\-]+) .*\{\s*$", line)
        if head:
            current = head.group(1)
            continue
        if line.startswith("}"):
            current = None
            continue
        if current is None or current in fused:
            continue
        op = re.search(r"=\s*\S+\s+([a-z][\w\-]*)\(", line)
        if op and op.group(1) not in _NOT_KERNELS:
            count += 1
    return count


def dot_type(hlo_text: str) -> str:
    """The widest dot of a lowered module, as a target's rate key: "float64", "bfloat16",
    "tf32" (float32 dots not at HIGHEST precision), or "float32"."""
    dots = re.findall(r"stablehlo\.dot_general.*", hlo_text) + re.findall(r"stablehlo\.convolution.*", hlo_text)
    if not dots:
        return "float32"
    if any("f64" in d for d in dots):
        return "float64"
    f32 = [d for d in dots if "xf32>" in d.split("->")[0] or "tensor<f32>" in d]
    if not f32:
        return "bfloat16" if any("bf16" in d for d in dots) else "float32"
    return "float32" if all("HIGHEST" in d for d in f32) else "tf32"


def program_costs(compiled) -> dict:
    """XLA's figures of a compiled program: flops, bytes accessed, and its memory (argument,
    output, temporary, aliased bytes; ``peak`` = argument + output − alias + temporary)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):  # some jax versions give one dict per device
        cost = cost[0] if cost else {}
    cost = cost or {}
    mem = compiled.memory_analysis()
    get = lambda name: int(getattr(mem, name, 0) or 0) if mem is not None else 0  # noqa: E731
    args, out, alias, temp = (get("argument_size_in_bytes"), get("output_size_in_bytes"),
                              get("alias_size_in_bytes"), get("temp_size_in_bytes"))
    return {"flops": float(cost.get("flops", 0.0)), "bytes": float(cost.get("bytes accessed", 0.0)),
            "transcendentals": float(cost.get("transcendentals", 0.0)),
            "argument_bytes": args, "output_bytes": out, "alias_bytes": alias, "temp_bytes": temp,
            "peak_memory_bytes": max(args + out - alias, 0) + temp}


# ----------------------------------------------------------------------------- the plan


@dataclasses.dataclass
class TargetPlan:
    target: str
    description: str
    predicted_seconds: float | None  # None when even one run does not fit
    fits: bool
    chunk_size: int  # runs at once on the target (its memory, and the sweep's chunk_size)
    max_runs: int  # the largest ensemble of one group's runs that fits the target's memory
    steps_per_second: float  # predicted instance-steps/s over the sweep
    memory_bytes: int
    bound: str  # "compute", "memory" or "launch": what limits the largest group
    notes: list


@dataclasses.dataclass
class GroupPlan:
    group: int
    static: dict  # the static fields where this group differs from the family's defaults
    runs: int
    chunks: int
    chunk_size: int
    block_size: int | None  # this backend's layout (None: one vmap)
    programs: int
    steps: int
    log_every: int
    flops_per_step: float  # one run, one optimizer step
    bytes_per_step: float
    eval_flops: float  # one run, one logging interval's evaluation
    eval_bytes: float
    kernels_per_step: int
    dot_type: str
    run_bytes: int  # one run's resident memory on the device (its state and its share of the program)
    peak_memory_bytes: int  # the largest chunk's program on this backend
    compile_seconds: float
    flops: float  # the whole group: runs × steps
    bytes: float


@dataclasses.dataclass
class SweepPlan:
    family: str
    runs: int
    backend: str
    groups: list
    targets: dict
    calibration: dict | None = None

    @property
    def flops(self) -> float:
        return sum(g.flops for g in self.groups)

    @property
    def bytes(self) -> float:
        return sum(g.bytes for g in self.groups)

    @property
    def peak_memory_bytes(self) -> int:
        return max((g.peak_memory_bytes for g in self.groups), default=0)

    @property
    def compile_seconds(self) -> float:
        return sum(g.compile_seconds for g in self.groups)

    @property
    def programs(self) -> int:
        return sum(g.programs for g in self.groups)

    def to_dict(self) -> dict:
        return {"family": self.family, "runs": self.runs, "backend": self.backend,
                "total": {"flops": self.flops, "bytes": self.bytes, "peak_memory_bytes": self.peak_memory_bytes,
                          "compile_seconds": self.compile_seconds, "programs": self.programs},
                "groups": [dataclasses.asdict(g) for g in self.groups],
                "targets": {k: dataclasses.asdict(t) for k, t in self.targets.items()},
                "calibration": self.calibration}

    def write_json(self, path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(json.dumps(self.to_dict(), indent=1))
        os.replace(tmp, path)
        return path

    def format(self) -> str:
        lines = [f"plan: {self.family}, {self.runs} runs in {len(self.groups)} static group"
                 f"{'s' if len(self.groups) != 1 else ''}, {self.programs} programs compiled on {self.backend} "
                 f"in {self.compile_seconds:.1f} s (nothing trained)"]
        for g in self.groups:
            static = ", ".join(f"{k}={v}" for k, v in g.static.items()) or "defaults"
            lines.append(f"  group {g.group} ({static}): {g.runs} runs x {g.steps} steps, {g.chunks} chunk"
                         f"{'s' if g.chunks != 1 else ''} of <= {g.chunk_size}; per run-step "
                         f"{_si(g.flops_per_step)}FLOP, {_bytes(g.bytes_per_step)} accessed, {g.kernels_per_step} "
                         f"kernels, {g.dot_type} dots; one run {_bytes(g.run_bytes)}; chunk peak "
                         f"{_bytes(g.peak_memory_bytes)}")
        lines.append(f"  total: {_si(self.flops)}FLOP, {_bytes(self.bytes)} accessed, peak "
                     f"{_bytes(self.peak_memory_bytes)}")
        lines.append("predicted (roofline + kernel launches + this backend's compile time):")
        for t in self.targets.values():
            if not t.fits:
                lines.append(f"  {t.target:8} does not fit: {t.notes[0] if t.notes else ''}")
                continue
            note = f"; {'; '.join(t.notes)}" if t.notes else ""
            lines.append(f"  {t.target:8} {_duration(t.predicted_seconds):>9}  {_si(t.steps_per_second)}"
                         f"instance-steps/s, {t.bound}-bound; {t.chunk_size} runs at once (up to {t.max_runs} fit "
                         f"{_bytes(t.memory_bytes)}){note}")
        return "\n".join(lines)


def _si(x: float) -> str:
    for unit, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(x) >= scale:
            return f"{x / scale:.3g} {unit}"
    return f"{x:.3g} "


def _bytes(n: float) -> str:
    for unit, scale in (("TiB", 2 ** 40), ("GiB", 2 ** 30), ("MiB", 2 ** 20), ("KiB", 2 ** 10)):
        if abs(n) >= scale:
            return f"{n / scale:.3g} {unit}"
    return f"{n:.0f} B"


def _duration(s: float | None) -> str:
    if s is None:
        return "-"
    if s < 60:
        return f"{s:.3g} s"
    if s < 3600:
        return f"{s / 60:.1f} min"
    return f"{s / 3600:.1f} h"


def _shape(x):
    return jax.ShapeDtypeStruct(np.shape(x), x.dtype) if hasattr(x, "dtype") else x


def _timed_compile(fn, *args):
    t0 = time.perf_counter()
    lowered = jax.jit(fn).lower(*args) if not hasattr(fn, "lower") else fn.lower(*args)
    compiled = lowered.compile()
    return lowered, compiled, time.perf_counter() - t0


def _group_costs(trainer, rows: int, block_size):
    """Compile one instance's one-interval segment (the per-step figures) and the chunk's
    own programs (its memory, and the compile time a run pays)."""
    from .train import ensemble_map, segment_length, stack_hparams

    cfg = trainer.config
    hp = cfg.hparams()
    seed = np.uint32(0)
    state = jax.eval_shape(lambda s: trainer.init(hp, trainer._key(s)), seed)
    one = lambda st, h, s: trainer.segment(st, h, trainer._key(s), 1)  # noqa: E731
    lowered, compiled, _ = _timed_compile(one, state, hp, seed)
    seg = program_costs(compiled)
    kernels = count_kernels(compiled.as_text())
    dots = dot_type(lowered.as_text())
    ev = {"flops": 0.0, "bytes": 0.0}
    if trainer.family.evaluate is not None:
        model = jax.eval_shape(lambda st: trainer.model(st.params, st.model_state), state)
        params, static = eqx.partition(model, lambda x: isinstance(x, jax.ShapeDtypeStruct))
        _, ev_compiled, _ = _timed_compile(
            lambda p, h: trainer.family.evaluate(eqx.combine(p, static), cfg, h), params, hp)
        ev = program_costs(ev_compiled)
    step_flops = max(seg["flops"] - ev["flops"], 0.0)
    step_bytes = max(seg["bytes"] - ev["bytes"], 0.0)
    # One run on a device: its state in and out, and the segment's working memory.
    run_bytes = seg["peak_memory_bytes"]

    # The chunk's programs as run_sweep compiles them: init, the segment, final.
    from .sweep import sweep_mesh

    hps = jax.tree.map(lambda v: jax.ShapeDtypeStruct((rows,), np.float32), stack_hparams([cfg]))
    seeds = jax.ShapeDtypeStruct((rows,), np.uint32)
    n_int = segment_length(trainer.n_logs, 10)
    t0 = time.perf_counter()
    init = jax.jit(jax.vmap(lambda h, s: trainer.init(h, trainer._key(s)))).lower(hps, seeds).compile()
    states = jax.eval_shape(jax.vmap(lambda h, s: trainer.init(h, trainer._key(s))), hps, seeds)
    n_dev = sweep_mesh().devices.size
    train_segment = lambda st, h, s: trainer.segment(st, h, trainer._key(s), n_int)  # noqa: E731
    chunk = jax.jit(ensemble_map(train_segment, block_size, groups=n_dev)).lower(states, hps, seeds).compile()
    compile_seconds = time.perf_counter() - t0
    chunk_mem = program_costs(chunk)["peak_memory_bytes"]
    init_mem = program_costs(init)["peak_memory_bytes"]
    return {"flops_per_step": step_flops, "bytes_per_step": step_bytes, "eval_flops": ev["flops"],
            "eval_bytes": ev["bytes"], "kernels": kernels, "dot_type": dots, "run_bytes": run_bytes,
            "peak": max(chunk_mem, init_mem), "compile_seconds": compile_seconds}


def _predict(target: Target, g: GroupPlan, block: int | None, chunk: int) -> tuple[float, str]:
    """Seconds to train the group's runs on ``target`` in chunks of ``chunk``, each laid out
    in blocks of ``block`` (None: one vmap): (seconds, what bounds the step)."""
    rate = target.rate(g.dot_type)
    total, bound = 0.0, "compute"
    left = g.runs
    while left > 0:
        rows = min(chunk, left)
        b = rows if block is None else min(block, rows)
        blocks = math.ceil(rows / b)
        compute = b * g.flops_per_step / rate
        memory = b * g.bytes_per_step / target.bytes_per_s
        launch = g.kernels_per_step * target.kernel_seconds
        per_step = max(compute, memory) + launch
        per_eval = max(b * g.eval_flops / rate, b * g.eval_bytes / target.bytes_per_s)
        total += blocks * (g.steps * per_step + (g.steps // g.log_every) * per_eval)
        bound = "launch" if launch > max(compute, memory) else ("compute" if compute >= memory else "memory")
        left -= rows
    return total, bound


def _static_differences(family, cfg) -> dict:
    from .config import STATIC

    default = family.config()
    skip = {"steps", "log_every", "snapshot_steps"}
    return {n: getattr(cfg, n) for n in cfg.names(STATIC) if n not in skip and getattr(cfg, n) != getattr(default, n)}


def plan_sweep(family, base=None, grid=None, *, seeds: int = 1, chunk_size: int = 4096,
               block_size: int | str | None = "auto", targets=TARGET_NAMES, target_memory=None,
               recalibrate: bool = False) -> SweepPlan:
    """The plan of ``run_sweep(family, base, grid, seeds=..., chunk_size=...)``, trained by
    nothing: each static group's programs compiled ahead of time on this backend, XLA's cost
    and memory analyses, and predictions on ``targets`` (names from ``TARGET_NAMES``).

    ``target_memory`` (a size, "80GB", or bytes) replaces the memory of every named target
    other than ``cpu``. A target that cannot hold even one run is reported with
    ``fits=False``; :func:`check_plan_fits` turns that into the ConfigError a user who chose
    that target gets.
    """
    from .sweep import _chunks, expand_grid, family_arg, sweep_mesh
    from .train import Trainer

    family = family_arg(family)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError("chunk_size", chunk_size, "must be a positive integer")
    if block_size != "auto" and block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1):
        raise ConfigError("block_size", block_size, 'must be a positive integer, "auto" or None')
    if isinstance(targets, str):
        targets = [targets]
    if not isinstance(targets, (list, tuple)) or not targets:
        raise ConfigError("targets", targets, f"must be a list of target names: {', '.join(TARGET_NAMES)}")
    for t in targets:
        if t not in TARGET_NAMES:
            raise ConfigError("target", t, f"must be one of {', '.join(TARGET_NAMES)}")
    if not isinstance(recalibrate, (bool, np.bool_)):
        raise ConfigError("recalibrate", recalibrate, "must be True or False")
    memory = None if target_memory is None else parse_memory(target_memory)
    base_cfg, grid_vals, points, configs, runs = expand_grid(family, base, grid, seeds)
    chunks = _chunks(family, runs, configs, chunk_size)
    n_dev = sweep_mesh().devices.size
    groups: list[GroupPlan] = []
    for gi in sorted({c.group for c in chunks}):
        mine = [c for c in chunks if c.group == gi]
        cfg = mine[0].program
        trainer = Trainer(family, cfg, block_size=block_size, n_devices=n_dev)
        largest = max(len(c.members) for c in mine)
        rows = math.ceil(largest / n_dev) * n_dev
        costs = _group_costs(trainer, rows, trainer.block_size)
        n_runs = sum(len(c.members) for c in mine)
        sizes = {len(c.members) for c in mine}
        groups.append(GroupPlan(
            group=gi, static=_static_differences(family, configs[mine[0].members[0]["point"]]), runs=n_runs,
            chunks=len(mine), chunk_size=largest,
            block_size=trainer.block_size, programs=3 * len(sizes), steps=cfg.steps, log_every=cfg.log_every,
            flops_per_step=costs["flops_per_step"], bytes_per_step=costs["bytes_per_step"],
            eval_flops=costs["eval_flops"], eval_bytes=costs["eval_bytes"], kernels_per_step=costs["kernels"],
            dot_type=costs["dot_type"], run_bytes=costs["run_bytes"], peak_memory_bytes=costs["peak"],
            compile_seconds=costs["compile_seconds"] * len(sizes),
            flops=n_runs * (cfg.steps * costs["flops_per_step"] + (cfg.steps // cfg.log_every) * costs["eval_flops"]),
            bytes=n_runs * (cfg.steps * costs["bytes_per_step"] + (cfg.steps // cfg.log_every) * costs["eval_bytes"])))

    out = {}
    for name in targets:
        target = get_target(name) if name != "cpu" or not recalibrate else cpu_target(recalibrate=True)
        if memory is not None and name != "cpu":
            target = dataclasses.replace(target, memory_bytes=memory)
        out[name] = _target_plan(target, groups, chunk_size, on_this_backend=(name == current_target()))
    calibration = dict(_CPU) if "cpu" in targets else None
    return SweepPlan(family.name, len(runs), jax.default_backend(), groups, out, calibration)


def _target_plan(target: Target, groups: list[GroupPlan], chunk_size: int, on_this_backend: bool) -> TargetPlan:
    notes: list[str] = []
    seconds, steps, bound = 0.0, 0, "compute"
    fits, at_once, max_runs = True, None, None
    usable = int(target.memory_bytes * 0.9)  # headroom for the runtime and fragmentation
    for g in groups:
        fit = usable // max(g.run_bytes, 1)
        max_runs = fit if max_runs is None else min(max_runs, fit)
        if fit < 1:
            fits = False
            notes.append(f"one run of group {g.group} needs about {_bytes(g.run_bytes)}, more than the "
                         f"{_bytes(usable)} usable of {target.description}")
            continue
        chunk = int(min(chunk_size, fit, g.runs))
        at_once = chunk if at_once is None else min(at_once, chunk)
        # On this CPU the runner's own layout (blocks); an accelerator takes the chunk in one vmap.
        block = g.block_size if target.name == "cpu" else None
        s, bound = _predict(target, g, block, chunk)
        seconds += s + g.compile_seconds
        steps += g.runs * g.steps
    if fits and target.name != "cpu" and any(g.dot_type == "float64" for g in groups) and target.name == "tpu-v5e":
        notes.append("float64 is emulated on TPUs: expect it slower than predicted")
    if not on_this_backend and target.name != "cpu":
        notes.append("compile time as measured here")
    return TargetPlan(target.name, target.description, seconds if fits else None, fits, at_once or 0,
                      int(max_runs or 0), steps / seconds if fits and seconds > 0 else 0.0, target.memory_bytes,
                      bound, notes)


def check_plan_fits(plan: SweepPlan, targets) -> None:
    """ConfigError for the first of ``targets`` that cannot hold even one run."""
    for name in targets:
        t = plan.targets.get(name)
        if t is not None and not t.fits:
            raise ConfigError("target", name, f"cannot hold the sweep: {t.notes[0]}; choose smaller sizes")


# ----------------------------------------------------------------------------- recording


class SweepPlanned(Exception):
    """Raised by a planned sweep's stand-in when code asks for its (untrained) results."""


class PlannedSweep:
    """What :func:`~toylab.core.sweep.run_sweep` returns while :func:`recording`: the plan,
    and no results (asking for any raises :class:`SweepPlanned`)."""

    def __init__(self, plan: SweepPlan):
        self.plan = plan

    def __getattr__(self, name):
        raise SweepPlanned(f"the {self.plan.family} sweep was planned, not trained")

    def __getitem__(self, item):
        raise SweepPlanned(f"the {self.plan.family} sweep was planned, not trained")

    def __iter__(self):
        raise SweepPlanned(f"the {self.plan.family} sweep was planned, not trained")

    def __len__(self):
        raise SweepPlanned(f"the {self.plan.family} sweep was planned, not trained")


_RECORDING: list = []


@contextlib.contextmanager
def recording(**plan_options):
    """Within this block :func:`~toylab.core.sweep.run_sweep` plans instead of training:
    each call appends its :class:`SweepPlan` to the yielded list and returns a
    :class:`PlannedSweep`. ``plan_options`` go to :func:`plan_sweep` (targets, ...)."""
    plans: list = []
    _RECORDING.append((plans, plan_options))
    try:
        yield plans
    finally:
        _RECORDING.pop()


def active_recording():
    return _RECORDING[-1] if _RECORDING else None
