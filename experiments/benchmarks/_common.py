"""What every benchmark shares: the timing helper (:func:`timed`, and :func:`time_ensemble`
built on it for the sweep runner's program), the devices line of each report, and
command-line value parsers whose errors name the value and what is allowed."""

from __future__ import annotations

import argparse
import math
import os
import statistics
import time

__all__ = ["timed", "now", "choice_list", "stopwatch", "repeat_steps", "time_ensemble", "devices_line", "positive_int", "positive_float",
           "int_list", "block_size_arg", "OneLineParser", "json_path",
           "import_torch", "over_torch_threads", "Budget", "is_out_of_memory"]


class stopwatch:
    """``with stopwatch() as t: ...`` then ``t.seconds``: wall time of a block (compiles,
    whole runs) that is not a call to repeat."""

    def __enter__(self):
        self.seconds = None
        self._t0 = time.perf_counter()
        return self

    def __exit__(self, *exc):
        self.seconds = time.perf_counter() - self._t0
        return False


def choice_list(choices, what: str):
    """An argparse type: a comma-separated list of some of ``choices`` (in their order)."""
    choices = tuple(choices)

    def parse(text: str) -> tuple:
        names = [s.strip() for s in text.split(",") if s.strip()]
        if not names or any(n not in choices for n in names):
            raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a comma-separated list of {what} "
                                             f"({', '.join(choices)})")
        return tuple(n for n in choices if n in names)

    return parse


def now() -> float:
    """The benchmarks' clock (seconds, monotonic): for budgets; timings go through :func:`timed`."""
    return time.perf_counter()


class Budget:
    """A time budget of ``seconds`` from now: ``left()`` seconds remain, ``spent()`` have gone;
    ``allows(estimate)``: whether a measurement predicted to take ``estimate`` seconds still
    fits (a measurement that has started is never interrupted, so a budget can be overrun by
    the measurement running when it ends)."""

    def __init__(self, seconds: float, clock=time.perf_counter):
        self.seconds, self._clock = float(seconds), clock
        self._t0 = clock()

    def spent(self) -> float:
        return self._clock() - self._t0

    def left(self) -> float:
        return self.seconds - self.spent()

    def allows(self, estimate: float = 0.0) -> bool:
        return self.left() > max(0.0, estimate)


def is_out_of_memory(error: BaseException) -> bool:
    """Whether ``error`` is an allocation failure (XLA's RESOURCE_EXHAUSTED, an out-of-memory
    message, MemoryError) rather than a bug."""
    if isinstance(error, MemoryError):
        return True
    text = str(error)
    return "RESOURCE_EXHAUSTED" in text or "out of memory" in text.lower() or "Out of memory" in text


def repeat_steps(step, k: int):
    """Call ``step()`` k times; its last result (a loop to hand to :func:`timed`)."""
    out = None
    for _ in range(k):
        out = step()
    return out


def timed(fn, *args, repeats: int = 3, first: bool = True, sync=None) -> dict:
    """Time ``fn(*args)`` to completion: ``sync(result)`` after each call (default
    ``jax.block_until_ready``; pass e.g. ``torch.cuda.synchronize`` wrapped for torch).

    With ``first``, one call (compilation, caches, lazy state) is timed on its own as
    ``first_s`` before the ``repeats`` calls; ``seconds`` is the median of those (the first
    call's time when ``repeats`` is 0), ``min_s`` the fastest, ``times`` all of them and
    ``result`` the last output.
    """
    if sync is None:
        import jax

        sync = jax.block_until_ready

    def call():
        t0 = time.perf_counter()
        out = fn(*args)
        sync(out)
        return time.perf_counter() - t0, out

    first_s, result = call() if first else (None, None)
    times = []
    for _ in range(repeats):
        dt, result = call()
        times.append(dt)
    if not times and first_s is None:
        raise ValueError("timed: nothing to time (first=False and repeats=0)")
    seconds = statistics.median(times) if times else first_s
    return {"first_s": first_s, "seconds": seconds, "min_s": min(times) if times else first_s, "times": times,
            "result": result}


class OneLineParser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``prog: error: ...``), no usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def json_path(text: str) -> str:
    """A path to write JSON to, whose folder exists (checked before anything is computed)."""
    folder = os.path.dirname(os.path.abspath(text))
    if not os.path.isdir(folder):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: its folder does not exist")
    return text


def import_torch(log):
    """torch, or None after saying how to get it (a comparison is optional)."""
    try:
        import torch
    except ImportError:
        log("torch is not importable: pip install torch to compare")
        return None
    return torch


def over_torch_threads(torch, threads, point) -> dict:
    """``{n: point(n)}`` with torch at each thread count ``n`` (default: 1 and every core),
    its own setting restored afterwards."""
    before = torch.get_num_threads()
    out = {}
    try:
        for n in threads or tuple(sorted({1, os.cpu_count() or 1})):
            torch.set_num_threads(n)
            out[n] = point(n)
    finally:
        torch.set_num_threads(before)
    return out


def devices_line() -> str:
    """One line naming the devices JAX sees, its backend and version (benchmark headers)."""
    import jax

    devices = jax.devices()
    return f"devices: {len(devices)} × {devices[0].device_kind} ({jax.default_backend()}); jax {jax.__version__}"


def positive_int(text: str) -> int:
    try:
        value = int(text.strip().replace("_", ""))
    except ValueError:
        value = 0
    if value <= 0:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive integer")
    return value


def positive_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not (math.isfinite(value) and value > 0):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number > 0")
    return value


def int_list(text: str) -> tuple[int, ...]:
    """A comma-separated list of positive integers, sorted, without repeats."""
    allowed = "must be a comma-separated list of positive integers, e.g. 1,4,16"
    try:
        values = [int(s.strip().replace("_", "")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {allowed}") from None
    if not values or any(v <= 0 for v in values):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: {allowed}")
    return tuple(sorted(set(values)))


def block_size_arg(text: str) -> int:
    """A positive ensemble block size, or 0 for 'none' (one vmap over all instances)."""
    if text.strip().lower() == "none":
        return 0
    try:
        return positive_int(text)
    except argparse.ArgumentTypeError:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a positive integer or 'none'") from None


def time_ensemble(family: str, cfg, n_models: int, block_size: int | None = None) -> dict:
    """Steady-state timing of the program the sweep runner runs for ``n_models`` seeds of one
    config: :meth:`Trainer.run` in one segment (block size as the runner picks it when None;
    0 for one vmap over all), compiled and run once untimed, then timed."""
    import numpy as np

    from toylab.core.train import Trainer, stack_hparams

    trainer = Trainer(family, cfg, block_size="auto" if block_size is None else (block_size or None))
    hp = stack_hparams([cfg] * n_models)
    seeds = np.arange(n_models, dtype=np.uint32)
    with stopwatch() as compiling:
        block = trainer.block_size  # "auto" measures one instance's compiled segment
    run = lambda: trainer.run(hp, seeds, segments=1)  # noqa: E731
    t = timed(run, repeats=1)  # the first call compiles and warms up, the second is timed
    _, metrics = t["result"]
    # compile_s: choosing the block and compiling (the first call's excess over a steady one).
    compile_s = compiling.seconds + max(0.0, t["first_s"] - t["seconds"])
    return {"models": n_models, "steps": cfg.steps, "seconds": t["seconds"], "compile_s": compile_s,
            "block_size": block, "model_steps_per_s": n_models * cfg.steps / t["seconds"],
            "final_train_loss": float(np.mean(metrics["loss"][:, -1]))}
