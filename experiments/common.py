"""What every reproduction and benchmark script shares: saving figures, running a figure
set, the script entry point, and command-line value parsers (argparse ``type=`` functions
whose errors name the value and what is allowed)."""

from __future__ import annotations

import argparse
import math
import time
from pathlib import Path

__all__ = ["save_figure", "run_figures", "check_only", "script_main", "positive_int", "positive_float", "int_list",
           "block_size_arg", "time_ensemble", "devices_line"]


def save_figure(fig, out: Path, name: str) -> Path:
    """Write ``fig`` as ``out/name`` (folder created) and close it."""
    import matplotlib.pyplot as plt

    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    path = out / name
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def check_only(only: str | None, letters) -> str:
    """``only`` (letters of figure sets, None for all) checked against the sets that exist."""
    letters = "".join(letters)
    if only is None:
        return letters
    if not isinstance(only, str) or not only or any(c not in letters for c in only):
        from toylab.core.config import ConfigError

        raise ConfigError("only", only, f"must be letters of the figure sets: some of {letters}")
    return only


def run_figures(figures: dict, out, quick: bool, quiet: bool, only: str | None, *extra) -> list:
    """Run each figure function ``fn(out, quick, quiet, *extra)`` whose key is in ``only``
    (all when None); returns their claims in order."""
    # A function makes the figure sets from its key up to the next key ("a" of {"a", "d"}
    # makes a, b and c), so any of those letters asks for it.
    keys = sorted(figures)
    ends = keys[1:] + [chr(ord(keys[-1]) + 1)]
    covers = {k: "".join(chr(c) for c in range(ord(k), ord(end))) for k, end in zip(keys, ends)}
    only = None if only is None else check_only(only, "".join(covers.values()))
    claims = []
    for key, fn in figures.items():
        if only and not set(covers[key]) & set(only):
            continue
        claims += fn(Path(out), quick, quiet, *extra)
    return claims


def script_main(doc: str, reproduce, only_help: str, work: bool = False) -> None:
    """``python -m experiments.NAME [--quick] [--out DIR] [--only KEYS] [--work DIR]``."""
    from experiments.claims import format_claims

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="figures")
    ap.add_argument("--only", default=None, help=only_help)
    if work:
        ap.add_argument("--work", default=None, help="keep the sweeps in this folder and reuse them")
    args = ap.parse_args()
    kwargs = {"work": args.work} if work else {}
    print(format_claims(reproduce(args.out, args.quick, only=args.only, **kwargs)))


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
    """Steady-state timing of the program the sweep runner compiles for ``n_models`` seeds of
    one config: ``make_train`` mapped by ``ensemble_map`` (block size as the runner picks it
    when None; 0 for one vmap over all), compiled, run once untimed, then timed."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import toylab
    from toylab.core.train import default_block_size, ensemble_map

    train = toylab.make_train(family, cfg)
    hp = {k: np.full(n_models, v) for k, v in cfg.hparams().items()}
    keys = jax.vmap(toylab.make_key)(jnp.arange(n_models, dtype=jnp.uint32))
    t0 = time.perf_counter()
    if block_size is None:
        block = default_block_size(fn=train, args=(cfg.hparams(), toylab.make_key(0)))
    else:
        block = block_size or None
    compiled = jax.jit(ensemble_map(train, block)).lower(hp, keys).compile()
    compile_s = time.perf_counter() - t0
    jax.block_until_ready(compiled(hp, keys))  # warm-up
    t0 = time.perf_counter()
    res = jax.block_until_ready(compiled(hp, keys))
    seconds = time.perf_counter() - t0
    return {"models": n_models, "steps": cfg.steps, "seconds": seconds, "compile_s": compile_s, "block_size": block,
            "model_steps_per_s": n_models * cfg.steps / seconds,
            "final_train_loss": float(np.mean(np.asarray(res.metrics["loss"])[:, -1]))}
