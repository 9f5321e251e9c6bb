"""Benchmark: the runner's CPU block size against blocks of one and one vmap, for every family.

For each family (one setting each, below) and each ensemble size, the program the sweep runner
runs for seeds of one config (:meth:`Trainer.run`, one segment; a block's hparams are shared) is
timed three ways: blocks of 1 (a scan over instances), one vmap over all (block none), and the
block size the runner picks by default (``"auto"``: :func:`toylab.core.train.default_block_size`,
its rule read from XLA's cost and memory analyses). Only the training segment is timed (the
initial state is made once). The three programs are compiled and run once untimed, then timed
in turns (``--repeats`` rounds, the fastest of each kept), so a shared machine's load falls on
all three alike. A default equal to 1, or at least the ensemble size, is the same program as
blocks of 1 or one vmap and reuses that timing.

The criterion: no default may be slower than both blocks of 1 and one vmap (beyond
``--tolerance``, timing noise). Each slower one prints a FAIL line and the exit code is 1.

Settings (instance-steps per second are printed; ``--tiny``: small configs for a quick check):

- superposition: n=20 features, m=5 hidden, ReLU output, batch 1024
- grokking: Nanda et al.'s one-layer transformer (d_model 128, 4 heads, 512 neurons) at p=59, full
  batch (a quarter of p=113's work per step, so 64 of them take seconds)
- groups: Chughtai et al.'s S5 MLP, full batch (40% of 14 400 pairs)
- bilinear: one bilinear layer of 256 (embedding 256) on 8×8 digits, batch 1024
- dictionaries: ReLU + L1 SAEs 64 → 256 latents, batch 4096, one data stream (data_seed=0)
- induction: a 2-block attention-only transformer (d_model 64, 4 heads), vocabulary 32,
  context 32, batch 64 (its held-out scores once, at the last step)
- icl_regression: a 2-block transformer (d_model 64, 4 heads, MLP 128) on 16 (x, y) pairs in
  4 dimensions, batch 64 (its Bayes predictors once, at the last step)

Measured (``toylab bench layout``, the 2-core CPU box shared with other jobs, jax 0.10.2;
instance-steps/s, blocks of 1 / one vmap / default (block)):

- superposition  8: 3,994 / 5,141 / 5,141 (64)    64: 3,762 / 4,730 / 4,730 (64)
- grokking       8: 59.2 / 52.5 / 59.2 (1)        64: 58.6 / 48.5 / 58.6 (1)
- groups         8: 92.8 / 89.6 / 92.8 (1)        64: 83.3 / 80.4 / 83.3 (1)
- bilinear       8: 92.9 / 89.0 / 89.0 (2)        64: 45.2 / 38.9 / 44.9 (2)
- dictionaries   8: 39.4 / 56.6 / 56.6 (128)      64: 40.8 / 58.1 / 58.1 (128)

and ``--families dictionaries --sizes 128``: 76.2 / 114.9 / 114.9 (128); before the rule widened
blocks that share work past 64, two blocks of 64 ran 60.0 there, slower than both.

Run ``toylab bench layout --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json

from toylab.experiments.benchmarks._common import (OneLineParser, choice_list, devices_line, int_list, json_path, positive_int,
                                                   stopwatch, timed)

DEFAULT_SIZES = (8, 64)
TINY_SIZES = (2, 4)


def _superposition(tiny: bool):
    from toylab.families.superposition import SuperpositionConfig

    steps = 5 if tiny else 100
    return SuperpositionConfig(n_features=20, n_hidden=5, model="relu_output", batch_size=64 if tiny else 1024,
                               steps=steps, log_every=steps)


def _grokking(tiny: bool):
    from toylab.families.grokking import GrokkingConfig

    if tiny:
        return GrokkingConfig(p=7, d_model=16, n_heads=2, d_mlp=32, steps=3, log_every=3, warmup_steps=1)
    return GrokkingConfig(p=59, steps=4, log_every=4, warmup_steps=1)


def _groups(tiny: bool):
    from toylab.families.groups import GroupsConfig

    if tiny:
        return GroupsConfig(group="C5", d_embed=8, d_hidden=8, steps=3, log_every=3, warmup_steps=1)
    return GroupsConfig(group="S5", steps=10, log_every=10, warmup_steps=1)


def _bilinear(tiny: bool):
    from toylab.families.bilinear import BilinearConfig

    if tiny:
        return BilinearConfig(dataset="sparse", hidden=8, d_model=8, batch_size=32, steps=3, log_every=3)
    return BilinearConfig(dataset="digits", hidden=256, d_model=256, batch_size=1024, steps=2, log_every=2)


def _dictionaries(tiny: bool):
    from toylab.families.dictionaries import DictionaryConfig

    steps = 3 if tiny else 4
    return DictionaryConfig(kind="relu", n_features=256, dim=64, n_latents=256, batch_size=32 if tiny else 4096,
                            mean_active=8.0, zipf_exponent=0.5, sparsity=0.1, steps=steps, log_every=steps,
                            eval_size=256, data_seed=0)


def _induction(tiny: bool):
    from toylab.families.induction import InductionConfig

    if tiny:
        return InductionConfig(d_vocab=16, n_ctx=16, span=4, d_model=16, n_heads=2, batch_size=8, eval_size=8,
                               steps=3, log_every=3)
    return InductionConfig(steps=10, log_every=10)


def _icl_regression(tiny: bool):
    from toylab.families.icl_regression import ICLRegressionConfig

    if tiny:
        return ICLRegressionConfig(dim=2, n_points=4, pool_size=16, d_model=8, n_heads=2, d_mlp=8, batch_size=8,
                                   eval_size=16, steps=3, log_every=3)
    return ICLRegressionConfig(steps=10, log_every=10)


# family -> (its setting in words, config maker)
CASES = {
    "superposition": ("n=20, m=5, ReLU output, batch 1024", _superposition),
    "grokking": ("p=59 one-layer transformer, full batch", _grokking),
    "groups": ("S5 MLP (embeddings 256, 128 neurons), full batch", _groups),
    "bilinear": ("bilinear layer of 256 on 8x8 digits, batch 1024", _bilinear),
    "dictionaries": ("ReLU + L1 SAEs 64 -> 256, batch 4096, data_seed=0", _dictionaries),
    "induction": ("2-block attention-only transformer, vocabulary 32, context 32, batch 64", _induction),
    "icl_regression": ("2-block transformer on 16 (x, y) pairs in 4 dimensions, batch 64", _icl_regression),
}


family_list = choice_list(CASES, "families")


def tolerance_arg(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number in [0, 1)")
    return value


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog or "bench_layout",
                      description="Instance-steps per second of every family's sweep program on CPU in blocks of 1, "
                                  "in one vmap and at the runner's default block size; FAIL (exit 1) where the "
                                  "default is slower than both.")
    p.add_argument("--families", type=family_list, default=tuple(CASES), metavar="A,B,...",
                   help=f"families to measure (default all: {','.join(CASES)})")
    p.add_argument("--sizes", type=int_list, default=None, metavar="N1,N2,...",
                   help=f"ensemble sizes (default {','.join(map(str, DEFAULT_SIZES))}; "
                        f"{','.join(map(str, TINY_SIZES))} with --tiny)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="steps per timed run (default: each family's own, a second or so of work)")
    p.add_argument("--repeats", type=positive_int, default=2, metavar="R",
                   help="timed rounds of the three programs, in turns; the fastest of each is kept (default 2)")
    p.add_argument("--tolerance", type=tolerance_arg, default=0.05, metavar="T",
                   help="a default slower than both by less than this share counts as timing noise (default 0.05)")
    p.add_argument("--tiny", action="store_true", help="tiny configs and sizes (a quick check of the plumbing)")
    p.add_argument("--json", metavar="PATH", type=json_path, default=None, help="also write the figures as JSON")
    return p


def _config(family: str, tiny: bool, steps: int | None):
    cfg = CASES[family][1](tiny)
    if steps is not None:
        cfg = cfg.replace(steps=steps, log_every=steps, **({"warmup_steps": min(cfg.warmup_steps, steps)}
                                                            if cfg.warmup_steps else {}))
    return cfg


def default_block(family: str, cfg) -> tuple[int | None, float]:
    """The block size the runner picks for ``cfg`` (``"auto"``) and the seconds choosing took."""
    from toylab.core.train import Trainer

    with stopwatch() as choosing:
        block = Trainer(family, cfg, block_size="auto").block_size
    return block, choosing.seconds


def measure(family: str, cfg, n: int, repeats: int, block: int | None) -> dict:
    """Instance-steps per second of ``n`` seeds of ``cfg`` in blocks of 1, one vmap, and the
    runner's default ``block``, timed in turns."""
    import numpy as np

    from toylab.core.train import Trainer, stack_hparams

    hp = stack_hparams([cfg] * n)
    seeds = np.arange(n, dtype=np.uint32)
    trainers = {"one": Trainer(family, cfg, block_size=1), "vmap": Trainer(family, cfg, block_size=None)}
    same = "one" if block == 1 else "vmap" if block is None or block >= n else None
    if same is None:
        trainers["default"] = Trainer(family, cfg, block_size=block)
    def program(t):  # the training segment alone: initial state and metric names made once, untimed
        state = t.init_ensemble(hp, seeds)
        names = t.metric_names(state, hp, seeds)
        metrics = {k: np.zeros((n, t.n_logs), np.float32) for k in names}
        return lambda: t.run(hp, seeds, state=state, metrics=metrics, segments=1)

    runs = {name: program(t) for name, t in trainers.items()}
    first = {name: timed(run, repeats=0)["first_s"] for name, run in runs.items()}  # compile and warm up
    best = {name: float("inf") for name in runs}
    for _ in range(repeats):
        for name, run in runs.items():
            best[name] = min(best[name], timed(run, repeats=1, first=False)["seconds"])
    rate = {name: n * cfg.steps / s for name, s in best.items()}
    if same is not None:
        rate["default"], best["default"] = rate[same], best[same]
    return {"family": family, "instances": n, "steps": cfg.steps, "block_size": block, "default_is": same,
            "first_s": first, "seconds": best,
            "blocks_of_1": rate["one"], "one_vmap": rate["vmap"], "default": rate["default"]}


def slower_than_both(row: dict, tolerance: float) -> bool:
    """Whether the default runs slower than both blocks of 1 and one vmap, beyond ``tolerance``."""
    return row["default"] < (1.0 - tolerance) * min(row["blocks_of_1"], row["one_vmap"])


def _block_words(row: dict) -> str:
    block, n = row["block_size"], row["instances"]
    if block is None or block >= n:
        return f"{'none' if block is None else block}: one vmap"
    return f"{block}: blocks of 1" if block == 1 else f"{block}"


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    log = lambda m: print(m, flush=True)  # noqa: E731
    import jax

    sizes = args.sizes or (TINY_SIZES if args.tiny else DEFAULT_SIZES)
    log(devices_line())
    if jax.default_backend() != "cpu":
        log("note: the runner blocks only on CPU (one vmap on an accelerator); JAX_PLATFORMS=cpu measures the CPU rule")
    log(f"instance-steps/s, the fastest of {args.repeats} timed round{'s' if args.repeats > 1 else ''} in turns; "
        f"FAIL: the default slower than both by more than {args.tolerance:.0%}")
    rows, failures = [], []
    for family in args.families:
        cfg = _config(family, args.tiny, args.steps)
        block, choose_s = default_block(family, cfg)
        log(f"{family}: {'tiny config' if args.tiny else CASES[family][0]}, {cfg.steps} steps; default block "
            f"{block} (chosen from XLA's analyses in {choose_s:.1f}s)")
        log(f"  {'instances':>9}  {'blocks of 1':>12}  {'one vmap':>12}  {'default':>12}  {'default/best':>12}  "
            f"default block")
        for n in sizes:
            row = measure(family, cfg, n, args.repeats, block)
            row["choose_s"] = choose_s
            row["slower_than_both"] = slower_than_both(row, args.tolerance)
            rows.append(row)
            best = max(row["blocks_of_1"], row["one_vmap"])
            log(f"  {n:>9}  {row['blocks_of_1']:>12,.1f}  {row['one_vmap']:>12,.1f}  {row['default']:>12,.1f}  "
                f"{row['default'] / best:>11.2f}x  {_block_words(row)}")
            if row["slower_than_both"]:
                failures.append(row)
                log(f"FAIL: {family} at {n} instances: the default (block {row['block_size']}) runs "
                    f"{row['default']:,.1f} instance-steps/s, slower than blocks of 1 ({row['blocks_of_1']:,.1f}) "
                    f"and one vmap ({row['one_vmap']:,.1f})")
    log(f"{len(rows) - len(failures)} of {len(rows)} defaults at least as fast as blocks of 1 or one vmap"
        + ("" if not failures else f"; {len(failures)} FAIL"))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"tolerance": args.tolerance, "repeats": args.repeats, "tiny": args.tiny, "rows": rows}, fh,
                      indent=1, default=str)
    return 1 if failures else 0


if __name__ == "__main__":
    raise SystemExit(main())
