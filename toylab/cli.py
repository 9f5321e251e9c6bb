"""The ``toylab`` command: run, sweep, reproduce, figures, bench, fields, show.

Bad input gets one line naming the field, the value and what is allowed, and exit code 2;
validation happens before anything is written. Building the parser and ``--help`` import
neither JAX nor a family, so they answer at once.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import importlib
import os
import sys
from pathlib import Path

__all__ = ["main"]

EXIT_LOST_PEER = 75  # EX_TEMPFAIL: a process of a multi-process sweep died; restart all with --resume


def _usage(option: str, value, allowed: str):
    from toylab.core.config import ConfigError

    return ConfigError(option, value, allowed)


def _parse_assignments(items, option: str, family, allow_lists: bool):
    from toylab.core.config import ConfigError

    cfg_cls = family.config
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise _usage(option, item, f"must be field=value{',value...' if allow_lists else ''}")
        name, text = (s.strip() for s in item.split("=", 1))
        if name not in cfg_cls.field_info():
            raise ConfigError(name, text, f"unknown field of family {family.name}; run 'toylab fields {family.name}'")
        if name in out:
            raise _usage(option, name, "given twice")
        if allow_lists:
            if cfg_cls.field_info()[name].metadata["type_name"].startswith("a comma-separated"):
                raise _usage(option, name, "a list-valued field cannot be swept; use --set")
            values = [v for v in text.split(",")]
            if any(not v.strip() for v in values):
                raise _usage(option, f"{name}={text}", "values must be separated by single commas")
            out[name] = [cfg_cls.parse_field(name, v) for v in values]
        else:
            out[name] = cfg_cls.parse_field(name, text)
    return out


def _base_and_grid(args, family) -> tuple[dict, dict]:
    """The --set fields and the --grid values of ``family`` (a field in both is refused)."""
    base = _parse_assignments(args.set, "--set", family, allow_lists=False)
    grid = _parse_assignments(args.grid, "--grid", family, allow_lists=True)
    clash = set(base) & set(grid)
    if clash:
        raise _usage("--grid", sorted(clash)[0], "is given both in --set and --grid")
    return base, grid


def _cmd_run(args) -> int:
    from toylab.core.family import get_family

    family = get_family(args.family)
    base, grid = _base_and_grid(args, family)
    if args.resume and not args.out:
        raise _usage("--resume", True, "needs --out DIR (the folder of the sweep to finish)")
    distributed = args.distributed or args.coordinator is not None
    if (args.num_processes is not None or args.process_id is not None) and args.coordinator is None:
        raise _usage("--num-processes", args.num_processes, "goes with --coordinator HOST:PORT and --process-id")
    if distributed:
        from toylab.core.devices import init_distributed

        init_distributed(args.coordinator, args.num_processes, args.process_id)
        if not args.out:
            raise _usage("--out", None, "a sweep over several processes needs --out DIR on a filesystem all can read")
    from toylab.core.sweep import run_sweep

    out = args.out or str(Path("runs") / f"{family.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    cfg = family.config(**base)
    steps = grid.get("steps", [cfg.steps])
    if "log_every" not in base and "log_every" not in grid:
        chosen = sorted({family.config(**{**base, "steps": s}).log_every for s in steps})
        if chosen != [100]:
            print(f"note: log_every not given; using {', '.join(map(str, chosen))} (the largest divisor of steps "
                  "up to 100); --set log_every=N to choose", file=sys.stderr)
    import jax

    try:
        results = run_sweep(family, base, grid, seeds=args.seeds, out=out, resume=args.resume,
                            chunk_size=args.chunk_size, segments=args.segments, block_size=args.block_size,
                            quiet=args.quiet)
    except jax.errors.JaxRuntimeError as e:
        if jax.process_count() == 1:
            raise
        # A peer died (killed, preempted): say so in one line and leave at once — JAX's
        # shutdown would wait for the lost peer's heartbeat, then abort with a stack dump.
        reason = str(e).splitlines()[0][:200]
        print(f"toylab run: process {jax.process_index()} lost another process of the sweep ({reason}); finished "
              f"chunks and the last checkpoint in {out} are kept: restart every process with --resume",
              file=sys.stderr, flush=True)
        sys.stdout.flush()
        os._exit(EXIT_LOST_PEER)

    if jax.process_index() != 0:
        return 0  # process 0 reports
    print(f"{len(results)} runs of {family.name} in {out}")
    w = results.work
    print(f"instance-steps: {w['trained']} trained now, {w['resumed']} from checkpoints, "
          f"{w['finished']} in chunks already finished")
    _print_summary_table(results)
    return 0


def _print_summary_table(results):
    """One line per grid point: mean ± std over its seeds of each final measure."""
    import numpy as np

    fields = list(results.grid)
    seeds = int(results.manifest["seeds"])
    names = sorted({k for r in results.runs for k in (*r.metrics, *r.summary)})
    header = fields + [f"{n} (mean±std over {seeds} seeds)" if seeds > 1 else n for n in names]
    print(" | ".join(header))
    for point in results.manifest["points"]:
        sel = results.select(**point)
        cells = [str(point[f]) for f in fields]
        for n in names:
            v = np.asarray([r.summary[n] if n in r.summary else r.metrics[n][-1] for r in sel if n in r.summary
                            or n in r.metrics], float)
            if not len(v):
                cells.append("-")
                continue
            cell = f"{v.mean():.4g}" + (f" ± {v.std():.2g}" if len(v) > 1 else "")
            cells.append(cell + (f" ({len(v)} of {seeds})" if len(v) < seeds else ""))
        print(" | ".join(cells))


def _cmd_show(args) -> int:
    import warnings

    from toylab.core.results import describe_run, load_results, unconfirmed_chunks

    folder = Path(args.results)
    with warnings.catch_warnings(record=True) as caught:  # said below, in the report's own words
        warnings.simplefilter("always")
        results = load_results(folder)
    m = results.manifest
    runs = m["runs"]
    print(f"{results.family.name} in {folder}: {len(results)} of {len(runs)} runs finished")
    grid = results.grid
    print("grid: " + ("; ".join(f"{k} = {', '.join(map(str, v))}" for k, v in grid.items()) or "none (one point)"))
    seeds = sorted({r["seed"] for r in runs})
    print(f"seeds: {m['seeds']} per point ({_span(seeds)})")
    configs = {r.config.steps: r.config.log_every for r in results.runs} or {
        m["base"].get("steps"): m["base"].get("log_every")}
    print("steps: " + ", ".join(f"{s} (logged every {e})" if e else str(s) for s, e in sorted(configs.items())))
    if results.missing:
        shown = "; ".join(describe_run(m, i) for i in results.missing[:args.limit])
        more = f"; and {len(results.missing) - args.limit} more" if len(results.missing) > args.limit else ""
        print(f"missing: {len(results.missing)} runs not finished: {shown}{more}")
        for chunk in unconfirmed_chunks(results):
            print(f"note: chunks/{chunk}.done.json, the record that confirms that chunk's files, is missing: its "
                  "runs are counted as not finished (a resume trains them again)")
    for w in caught:
        if "are not finished" not in str(w.message):
            print(f"note: {w.message}")
    if results.runs:
        print()
        _print_summary_table(results)
    if args.plot is not None:
        path = Path(args.plot) if args.plot else folder / "loss.png"
        if not results.runs:
            raise _usage("--plot", str(path), "the folder holds no finished run to plot")
        from toylab.core.store import check_writable

        check_writable(path.parent, "--plot")
        import matplotlib

        matplotlib.use("Agg")
        from toylab.plots.runs import training_curves

        points = m["points"]
        point_of = [runs[r.index]["point"] for r in results.runs]
        labels = [", ".join(f"{k}={v}" for k, v in p.items()) or results.family.name for p in points]
        fig = training_curves([r.steps for r in results.runs], [r.metrics["loss"] for r in results.runs],
                              groups=point_of, labels=labels, title=f"{results.family.name}: {folder.name}")
        try:
            fig.savefig(path, dpi=120)
        except (OSError, ValueError) as e:
            raise _usage("--plot", str(path), f"cannot be written ({e})") from None
        print(f"\nloss curves of {len(results)} runs: {path}")
    return 0


def _span(values) -> str:
    if len(values) > 1 and values == list(range(values[0], values[-1] + 1)):
        return f"seed {values[0]}..{values[-1]}"
    return "seed " + ", ".join(map(str, values))


def _reproduction_modules(names):
    import toylab.experiments as experiments

    from toylab.core.config import ConfigError

    names = names or list(experiments.REPRODUCTIONS)
    for n in names:
        if n not in experiments.REPRODUCTIONS:
            raise ConfigError("NAME", n, f"unknown reproduction; choose from {', '.join(experiments.REPRODUCTIONS)}")
    return [(n, importlib.import_module(experiments.REPRODUCTIONS[n])) for n in names]


def default_figures_dir() -> Path:
    """The repository's figures/ folder for a source checkout, else ./figures."""
    repo = Path(__file__).resolve().parent.parent
    return repo / "figures" if (repo / "pyproject.toml").exists() else Path("figures")


def _cmd_reproduce_plan(args) -> int:
    """``toylab reproduce [NAMES] --full --plan``: each reproduction's sweeps planned, not trained."""
    import toylab.experiments as experiments
    from toylab.core.plan import TARGET_NAMES

    if args.quick:
        raise _usage("--plan", True, "plans the full mode (--full); the quick mode is measured by running it")
    if args.target not in TARGET_NAMES:
        raise _usage("--target", args.target, f"must be one of {', '.join(TARGET_NAMES)}")
    names = list(dict.fromkeys(args.names or experiments.REPRODUCTIONS))
    for n in names:
        if n not in experiments.REPRODUCTIONS:
            raise _usage("NAME", n, f"unknown reproduction; choose from {', '.join(experiments.REPRODUCTIONS)}")
    from toylab.experiments.reproductions._plan import format_reproduction_plan, plan_reproduction

    for n in names:
        print(format_reproduction_plan(n, plan_reproduction(n, quick=False, targets=[args.target]), args.target),
              flush=True)
    print(f"predictions, not measurements: a roofline of each program's XLA cost analysis on {args.target}'s "
          "published peaks (toylab plan explains)")
    return 0


def _cmd_reproduce(args, quick=None, out=None) -> int:
    import time

    if getattr(args, "plan", False):
        return _cmd_reproduce_plan(args)
    if getattr(args, "full", False) and args.quick:
        raise _usage("--full", True, "and --quick choose opposite modes; give one")

    from toylab.experiments.reproductions._claims import format_claims, write_claims
    from toylab.core.store import check_writable

    jobs = getattr(args, "jobs", None)
    if jobs is not None:
        try:
            jobs = int(str(jobs).strip())
        except ValueError:
            jobs = 0
        if jobs < 1:
            raise _usage("--jobs", args.jobs, "must be a positive integer (reproductions run at once)")
    quick = args.quick if quick is None else quick
    if out is None:
        out = Path(args.out) if args.out else Path("reproductions") / (
            f"{'quick' if quick else 'full'}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise _usage("--out", str(out), "exists and is not a folder")
    if out.resolve() == default_figures_dir().resolve() and args.command == "reproduce":
        raise _usage("--out", str(out), "is the repository's committed figures; use 'toylab figures' to overwrite them")
    import toylab.experiments as experiments
    from toylab.experiments.reproductions import _jobs

    names = list(args.names or experiments.REPRODUCTIONS)
    for n in names:
        if n not in experiments.REPRODUCTIONS:
            raise _usage("NAME", n, f"unknown reproduction; choose from {', '.join(experiments.REPRODUCTIONS)}")
    names = list(dict.fromkeys(names))  # each once
    from toylab.experiments.reproductions._common import missing_requirements

    mods = _reproduction_modules(names)
    for n, dists in missing_requirements(mods).items():  # before, not minutes into, a run
        raise _usage("NAME", n, f"needs {', '.join(dists)}, not installed: pip install 'toylab[reproduce]'")
    check_writable(out)  # before minutes of training, not after
    known = _jobs.read_timings(out, default_figures_dir())  # the last run's timings: order and memory
    why = "--jobs"
    if jobs is None:
        jobs, why = _jobs.default_jobs(len(names), known)
    jobs = min(jobs, len(names))
    started = time.perf_counter()
    timings: dict = {}
    claims = []
    from toylab.experiments.reproductions._common import shared_sweeps

    with shared_sweeps():  # a sweep two reproductions train alike is trained once, by the first to ask
        _run_reproductions(names, mods, out, quick, args.quiet, jobs, why, known, claims, timings)
    wall = time.perf_counter() - started
    from toylab.experiments.reproductions._common import format_timings

    print()
    print(format_timings(timings, wall=wall, jobs=jobs))
    print()
    print(format_claims(claims), flush=True)  # first: whatever happens to the files, the table is shown
    path = write_claims(out / "claims.json", claims)
    _jobs.write_timings(out, timings, quick, jobs, wall)
    print(f"figures, {path.name} and {_jobs.TIMINGS} in {out}")
    failed = [c for c in claims if not c.passed]
    for c in failed:
        print(f"FAILED: {c.reproduction}: {c.claim} (paper: {c.paper}; measured: {c.measured})")
    return 1 if failed else 0


def _run_reproductions(names, mods, out, quick, quiet, jobs, why, known, claims, timings) -> None:
    """The reproductions ``names``: side by side in child processes (``jobs`` > 1) or one after
    another here; their claims appended to ``claims`` and their timings put in ``timings``."""
    import time

    from toylab.experiments.reproductions import _jobs

    if jobs > 1:  # child processes, in the order planned to end first; each one's output in out/logs/NAME.log
        print(f"== reproducing {', '.join(names)} ({'quick' if quick else 'full'}) -> {out}, "
              f"{jobs} at once ({why}); logs in {out / 'logs'}", flush=True)
        for name, (got, timing) in _jobs.run_jobs(names, out, quick, quiet, jobs, known).items():
            claims += got
            timings[name] = timing
    else:  # one after another in this process
        import matplotlib

        matplotlib.use("Agg")  # this process only writes files (a library import never switches backends)
        from toylab.experiments.reproductions._common import record_timings

        for name, mod in mods:
            print(f"== reproducing {name} ({'quick' if quick else 'full'}) -> {out}", flush=True)
            t0, peak = time.perf_counter(), _jobs.peak_rss_bytes()
            with record_timings() as rows:
                claims += mod.reproduce(out, quick=quick, quiet=quiet)
            timings[name] = {"wall_s": round(time.perf_counter() - t0, 3), "sets": rows}
            if _jobs.peak_rss_bytes() > peak:  # this process's peak was reached in this reproduction
                timings[name]["peak_rss_bytes"] = _jobs.peak_rss_bytes()


_JOBS_HELP = ("reproductions run at once, each as a child process writing its output to OUT/logs/NAME.log, "
              "in the order planned to end first from the last run's times (default: the cores available, fewer "
              "if their memory would not fit; 1 runs them one after another in this process)")


def _cmd_figures(args) -> int:
    return _cmd_reproduce(args, quick=True, out=default_figures_dir())


def _benchmarks() -> dict:
    from toylab.experiments import BENCHMARKS

    return BENCHMARKS


def _cmd_bench(args, rest) -> int:
    from toylab.core.config import ConfigError

    benchmarks = _benchmarks()
    if args.name not in benchmarks:
        raise ConfigError("NAME", args.name, f"unknown benchmark; choose from {', '.join(benchmarks)}")
    return importlib.import_module(benchmarks[args.name]).main(rest, prog=f"toylab bench {args.name}")


def _cmd_plan(args) -> int:
    from toylab.core.config import ConfigError
    from toylab.core.family import get_family
    from toylab.core.plan import TARGET_NAMES, check_plan_fits, parse_memory
    from toylab.core.store import check_writable

    family = get_family(args.family)
    base, grid = _base_and_grid(args, family)
    chosen = [t.strip() for t in ",".join(args.target or []).split(",") if t.strip()] if args.target else None
    for t in chosen or []:
        if t not in TARGET_NAMES:
            raise _usage("--target", t, f"must be one of {', '.join(TARGET_NAMES)}")
    if args.target_memory is not None:
        try:
            parse_memory(args.target_memory)
        except ConfigError as e:
            raise _usage("--target-memory", args.target_memory, e.allowed) from None
    if args.json:
        if Path(args.json).is_dir():
            raise _usage("--json", args.json, "is a folder; give the path of a file")
        check_writable(Path(args.json).parent, "--json")
    from toylab.core.plan import plan_sweep

    plan = plan_sweep(family, base, grid, seeds=args.seeds, chunk_size=args.chunk_size, block_size=args.block_size,
                      targets=chosen or TARGET_NAMES, target_memory=args.target_memory, recalibrate=args.recalibrate)
    if chosen:  # a target the user named must hold the sweep
        check_plan_fits(plan, chosen)
    print(plan.format())
    if args.json:
        print(f"figures in {plan.write_json(args.json)}")
    return 0


def _cmd_fields(args) -> int:
    from toylab.core.config import fields
    from toylab.core.family import get_family

    family = get_family(args.family)
    print(f"{family.name}: {family.description}")
    print(f"{'field':22} {'kind':10} {'default':>14}  help")
    for name, f in fields(family).items():
        extra = f" (choices: {', '.join(f['choices'])})" if f["choices"] else ""
        default = tuple(f["default"]) if isinstance(f["default"], list) else f["default"]
        print(f"{name:22} {f['kind']:10} {str(default):>14}  {f['help']}{extra}")
    print("\nstatic fields pick the compiled program; sweepable ones are traced (a grid over them is one program).")
    return 0


def _catalogue() -> str:
    """Families and reproductions for the help text, read without importing JAX."""
    from toylab.experiments import BENCHMARKS, REPRODUCTIONS
    from toylab.families import BUILTIN

    lines = ["families (toylab fields FAMILY lists fields and choices):"]
    lines += [f"  {name:14} {description}" for name, (_, description) in BUILTIN.items()]
    lines += ["reproductions (toylab reproduce NAME):", "  " + ", ".join(REPRODUCTIONS),
              "benchmarks (toylab bench NAME):", "  " + ", ".join(BENCHMARKS)]
    return "\n".join(lines)


def _parser():
    catalogue = _catalogue()
    p = argparse.ArgumentParser(
        prog="toylab", formatter_class=argparse.RawDescriptionHelpFormatter, epilog=catalogue,
        description="A JAX laboratory for the toy models of mechanistic interpretability: "
                    "train sweeps, regenerate paper figures, test theory.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)
    from toylab.families import BUILTIN

    for name in ("run", "sweep"):
        r = sub.add_parser(name, help="train a family over a grid × seeds" + (" (same as run)" if name == "sweep" else ""),
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           description="Train FAMILY at its defaults, with --set overrides, over the Cartesian "
                                       "product of the --grid values, for --seeds seeds each. Results go to --out "
                                       "(manifest.json, summary.json, metrics and params). "
                                       "'toylab fields FAMILY' lists the fields.",
                           epilog="example: toylab run superposition --grid feature_probability=1,0.1,0.01 --seeds 4\n\n"
                                  + catalogue.split("reproductions")[0])
        r.add_argument("family", metavar="FAMILY", help=f"model family: {', '.join(BUILTIN)}")
        r.add_argument("--set", action="append", metavar="FIELD=VALUE", help="set a field for every run (repeatable)")
        r.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...", help="sweep a field over values (repeatable)")
        r.add_argument("--seeds", type=_positive_int("--seeds"), default=1, metavar="N", help="seeds per grid point (default 1)")
        r.add_argument("--out", metavar="DIR", help="results folder (default runs/FAMILY-TIMESTAMP)")
        r.add_argument("--resume", action="store_true", help="finish the unfinished sweep already in --out (the same "
                                                              "command into a finished one shows it, training nothing)")
        r.add_argument("--chunk-size", type=_positive_int("--chunk-size"), default=4096, metavar="N",
                       help="runs trained at once, to bound memory (default 4096)")
        r.add_argument("--segments", type=_positive_int("--segments"), default=10, metavar="N",
                       help="compiled segments per chunk: progress and checkpoint after each (default 10)")
        r.add_argument("--block-size", type=_block_size, default="auto", metavar="N|auto|none",
                       help="instances trained at once on each device (default auto)")
        r.add_argument("--quiet", action="store_true", help="no progress bar")
        d = r.add_argument_group("several processes (jax.distributed; process 0 writes --out)")
        d.add_argument("--distributed", action="store_true",
                       help="join a multi-process run found in the environment: SLURM, a TPU pod, or "
                            "JAX_COORDINATOR_ADDRESS with JAX_NUM_PROCESSES and JAX_PROCESS_ID")
        d.add_argument("--coordinator", metavar="HOST:PORT", help="process 0's address (implies --distributed)")
        d.add_argument("--num-processes", type=_positive_int("--num-processes"), metavar="N")
        d.add_argument("--process-id", type=_nonnegative_int("--process-id"), metavar="I")
        r.set_defaults(func=_cmd_run)

    rp = sub.add_parser("reproduce", help="run paper reproductions, write figures and claims.json, check claims",
                        description="Run each named reproduction (default: all), write its figures and claims.json "
                                    "to --out and print a table: claim, what the paper says, what was measured, "
                                    "pass/fail. Exit code 1 if a claim fails; the last lines name the failed ones.")
    rp.add_argument("names", nargs="*", metavar="NAME", help="reproductions (default: all)")
    rp.add_argument("--quick", action="store_true", help="small grids that run in minutes on a laptop CPU")
    rp.add_argument("--out", metavar="DIR", help="output folder (default reproductions/quick-TIMESTAMP); "
                                                 "'toylab figures' rewrites the committed figures instead")
    rp.add_argument("--quiet", action="store_true", help="no progress bars")
    rp.add_argument("--jobs", metavar="N", help=_JOBS_HELP)
    rp.add_argument("--full", action="store_true", help="the papers' sizes (the default without --quick)")
    rp.add_argument("--plan", action="store_true",
                    help="train nothing: plan each reproduction's sweeps (XLA's cost analyses) and print their "
                         "predicted time and memory on one --target (default h100)")
    rp.add_argument("--target", default="h100", metavar="NAME", help="with --plan: cpu, h100, a100 or tpu-v5e")
    rp.set_defaults(func=_cmd_reproduce)

    fg = sub.add_parser("figures", help="regenerate the committed figures (quick reproductions into the repo's figures/)")
    fg.add_argument("names", nargs="*", metavar="NAME", help="reproductions (default: all)")
    fg.add_argument("--quiet", action="store_true", help="no progress bars")
    fg.add_argument("--jobs", metavar="N", help=_JOBS_HELP)
    fg.set_defaults(func=_cmd_figures, out=None, quick=True)

    b = sub.add_parser("bench", help="throughput benchmarks (prints figures)", add_help=False,
                       description=f"toylab bench NAME [options]; 'toylab bench NAME --help' for options (NAME: {', '.join(_benchmarks())})")
    b.add_argument("name", metavar="NAME", help=f"benchmark: {', '.join(_benchmarks())}")
    b.set_defaults(func=None)

    pl = sub.add_parser("plan", help="plan a sweep without training: XLA's cost and memory analyses, predicted "
                                     "time and memory on this CPU, an H100, an A100, a TPU v5e",
                        description="Compile each static group's programs ahead of time (nothing is trained or "
                                    "written) and print XLA's FLOPs, bytes and memory per step and per chunk, with "
                                    "a roofline prediction of wall time on each target. The same arguments as "
                                    "'toylab run'. Exit 2 if a --target cannot hold even one run.",
                        epilog="example: toylab plan dictionaries --set d_model=768 --set n_latents=4096 --seeds 16 "
                               "--target h100")
    pl.add_argument("family", metavar="FAMILY", help=f"model family: {', '.join(BUILTIN)}")
    pl.add_argument("--set", action="append", metavar="FIELD=VALUE", help="set a field for every run (repeatable)")
    pl.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...", help="sweep a field over values (repeatable)")
    pl.add_argument("--seeds", type=_positive_int("--seeds"), default=1, metavar="N", help="seeds per grid point")
    pl.add_argument("--chunk-size", type=_positive_int("--chunk-size"), default=4096, metavar="N",
                    help="runs trained at once at most (default 4096)")
    pl.add_argument("--block-size", type=_block_size, default="auto", metavar="N|auto|none",
                    help="instances at once on each CPU device (default auto)")
    pl.add_argument("--target", action="append", metavar="NAME[,NAME]",
                    help="predict for these targets only, and refuse if one cannot hold a run "
                         "(cpu, h100, a100, tpu-v5e; default all four, none refused)")
    pl.add_argument("--target-memory", metavar="SIZE", help="memory of the accelerator targets instead of theirs "
                                                            "(e.g. 40GB, 16GiB)")
    pl.add_argument("--json", metavar="PATH", help="also write the figures as JSON")
    pl.add_argument("--recalibrate", action="store_true", help="measure this CPU again (else its cached figures)")
    pl.set_defaults(func=_cmd_plan)

    f = sub.add_parser("fields", help="list a family's config fields and their choices",
                       description="List FAMILY's fields with kind, default, meaning and choices "
                                   "(as data: toylab.fields(FAMILY)).")
    f.add_argument("family", metavar="FAMILY", help=f"model family: {', '.join(BUILTIN)}")
    f.set_defaults(func=_cmd_fields)

    sh = sub.add_parser("show", help="what a results folder holds: grid, seeds, runs done and missing, summary",
                        description="Print what the results folder RESULTS holds: its family, grid fields and "
                                    "values, seeds, steps, how many runs are finished (naming those that are "
                                    "not), and the summary as a table (mean ± std over seeds per grid point). "
                                    "Reads the folder, writes nothing to it unless --plot chooses it.")
    sh.add_argument("results", metavar="RESULTS", help="a results folder (toylab run --out)")
    sh.add_argument("--plot", nargs="?", const="", metavar="PNG",
                    help="also draw the loss curves of every run to PNG (default with no value: RESULTS/loss.png)")
    sh.add_argument("--limit", type=_positive_int("--limit"), default=20, metavar="N",
                    help="name at most N missing runs (default 20)")
    sh.set_defaults(func=_cmd_show)
    return p


def _positive_int(option, least: int = 1):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            v = least - 1
        if v < least:
            raise argparse.ArgumentTypeError(f"{text!r}: must be {'a positive' if least else 'a non-negative'} integer")
        return v

    parse.__name__ = option
    return parse


def _nonnegative_int(option):
    return _positive_int(option, least=0)


def _block_size(text):
    if text.strip().lower() in ("auto", "none"):
        return text.strip().lower() if text.strip().lower() == "auto" else None
    return _positive_int("--block-size")(text)


def main(argv=None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if argv and argv[0] == "bench" and len(argv) > 1 and argv[1] not in ("-h", "--help"):
        args, rest = parser.parse_args(argv[:2]), argv[2:]
    else:
        args, rest = parser.parse_args(argv), []
    from toylab.core.config import ConfigError, cli_spelling

    try:
        with cli_spelling():  # advice in errors names --resume, not resume=True
            if args.command == "bench":
                return _cmd_bench(args, rest)
            return args.func(args)
    except ConfigError as e:
        print(f"toylab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        kept = ("finished chunks and the last checkpoint are kept (use --resume)" if args.command in ("run", "sweep")
                else "what was written so far is kept")
        print(f"\ninterrupted; {kept}", file=sys.stderr)
        return 130
    except BrokenPipeError:  # the reader left (toylab fields X | head): nothing more to say
        with contextlib.suppress(OSError):
            os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0


if __name__ == "__main__":
    sys.exit(main())
