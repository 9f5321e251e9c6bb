"""The ``toylab`` command: run, sweep, reproduce, figures, bench, fields.

Bad input gets one line naming the field, the value and what is allowed, and exit code 2;
validation happens before anything is written.
"""

from __future__ import annotations

import argparse
import datetime
import importlib
import sys
from pathlib import Path

__all__ = ["main"]


class UsageError(Exception):
    pass


def _families():
    import toylab

    return toylab.family_names()


def _parse_assignments(items, option: str, family, allow_lists: bool):
    from toylab.core.config import ConfigError

    cfg_cls = family.config
    out: dict = {}
    for item in items or []:
        if "=" not in item:
            raise UsageError(f"{option} {item!r}: must be field=value{',value...' if allow_lists else ''}")
        name, text = (s.strip() for s in item.split("=", 1))
        if name not in cfg_cls.field_info():
            raise ConfigError(name, text, f"unknown field of family {family.name}; run 'toylab fields {family.name}'")
        if name in out:
            raise UsageError(f"{option} {name}: given twice")
        if allow_lists:
            if cfg_cls.field_info()[name].metadata["type_name"].startswith("a comma-separated"):
                raise UsageError(f"{option} {name}: a list-valued field cannot be swept; use --set")
            values = [v for v in text.split(",")]
            if any(not v.strip() for v in values):
                raise UsageError(f"{option} {name}={text!r}: values must be separated by single commas")
            out[name] = [cfg_cls.parse_field(name, v) for v in values]
        else:
            out[name] = cfg_cls.parse_field(name, text)
    return out


def _cmd_run(args) -> int:
    import numpy as np

    from toylab.core.family import get_family
    from toylab.core.sweep import run_sweep

    family = get_family(args.family)
    base = _parse_assignments(args.set, "--set", family, allow_lists=False)
    grid = _parse_assignments(args.grid, "--grid", family, allow_lists=True)
    clash = set(base) & set(grid)
    if clash:
        raise UsageError(f"field {sorted(clash)[0]!r} given both in --set and --grid")
    if args.resume and not args.out:
        raise UsageError("--resume needs --out DIR (the folder of the sweep to finish)")
    out = args.out or str(Path("runs") / f"{family.name}-{datetime.datetime.now():%Y%m%d-%H%M%S}")
    results = run_sweep(family, base, grid, seeds=args.seeds, out=out, resume=args.resume,
                        chunk_size=args.chunk_size, segments=args.segments, quiet=args.quiet)
    # One line per grid point: mean ± std over seeds of each final measure.
    fields = list(results.grid)
    names = sorted({k for r in results.runs for k in (*r.metrics, *r.summary)})
    print(f"{len(results)} runs of {family.name} in {out}")
    header = fields + [f"{n} (mean±std over {args.seeds} seeds)" if args.seeds > 1 else n for n in names]
    print(" | ".join(header))
    for point in results.manifest["points"]:
        sel = results.select(**point)
        cells = [str(point[f]) for f in fields]
        for n in names:
            v = np.asarray([r.summary[n] if n in r.summary else r.metrics[n][-1] for r in sel], float)
            cells.append(f"{v.mean():.4g}" + (f" ± {v.std():.2g}" if len(v) > 1 else ""))
        print(" | ".join(cells))
    return 0


def _reproduction_modules(names):
    import experiments

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


def _cmd_reproduce(args, quick=None, out=None) -> int:
    from toylab.core.claims import format_claims

    mods = _reproduction_modules(args.names)
    quick = args.quick if quick is None else quick
    out = Path(out or args.out or "figures")
    if out.exists() and not out.is_dir():
        raise UsageError(f"--out {str(out)!r}: exists and is not a folder")
    claims = []
    for name, mod in mods:
        print(f"== reproducing {name} ({'quick' if quick else 'full'}) -> {out}", flush=True)
        claims += mod.reproduce(out, quick=quick, quiet=args.quiet)
    print()
    print(format_claims(claims))
    return 0 if all(c.passed for c in claims) else 1


def _cmd_figures(args) -> int:
    return _cmd_reproduce(args, quick=True, out=default_figures_dir())


def _cmd_bench(args, rest) -> int:
    from toylab.core.config import ConfigError

    benches = {"superposition": "experiments.bench_superposition", "grokking": "experiments.bench_grokking",
               "groups": "experiments.bench_groups", "bilinear": "experiments.bench_bilinear"}
    if args.name not in benches:
        raise ConfigError("NAME", args.name, f"unknown benchmark; choose from {', '.join(benches)}")
    return importlib.import_module(benches[args.name]).main(rest, prog=f"toylab bench {args.name}")


def _cmd_fields(args) -> int:
    from toylab.core.family import get_family

    family = get_family(args.family)
    print(f"{family.name}: {family.description}")
    print(f"{'field':22} {'kind':10} {'default':>14}  help")
    for name, f in family.config.field_info().items():
        print(f"{name:22} {f.metadata['kind']:10} {str(f.default):>14}  {f.metadata['help']}")
    print("\nstatic fields pick the compiled program; sweepable ones are traced (a grid over them is one program).")
    return 0


def _parser():
    p = argparse.ArgumentParser(
        prog="toylab",
        description="A JAX laboratory for the toy models of mechanistic interpretability: "
                    "train sweeps, regenerate paper figures, test theory.")
    sub = p.add_subparsers(dest="command", metavar="COMMAND", required=True)

    for name in ("run", "sweep"):
        r = sub.add_parser(name, help="train a family over a grid × seeds" + (" (same as run)" if name == "sweep" else ""),
                           description="Train FAMILY at its defaults, with --set overrides, over the Cartesian "
                                       "product of the --grid values, for --seeds seeds each. Results go to --out "
                                       "(manifest.json, summary.json, metrics and params). "
                                       "'toylab fields FAMILY' lists the fields.",
                           epilog="example: toylab run superposition --grid feature_probability=1,0.1,0.01 --seeds 4")
        r.add_argument("family", metavar="FAMILY", help="model family (see 'toylab fields FAMILY')")
        r.add_argument("--set", action="append", metavar="FIELD=VALUE", help="set a field for every run (repeatable)")
        r.add_argument("--grid", action="append", metavar="FIELD=V1,V2,...", help="sweep a field over values (repeatable)")
        r.add_argument("--seeds", type=_positive_int("--seeds"), default=1, metavar="N", help="seeds per grid point (default 1)")
        r.add_argument("--out", metavar="DIR", help="results folder (default runs/FAMILY-TIMESTAMP)")
        r.add_argument("--resume", action="store_true", help="finish the sweep already in --out")
        r.add_argument("--chunk-size", type=_positive_int("--chunk-size"), default=4096, metavar="N",
                       help="runs trained at once, to bound memory (default 4096)")
        r.add_argument("--segments", type=_positive_int("--segments"), default=10, metavar="N",
                       help="compiled segments per chunk: progress and checkpoint after each (default 10)")
        r.add_argument("--quiet", action="store_true", help="no progress bar")
        r.set_defaults(func=_cmd_run)

    rp = sub.add_parser("reproduce", help="run paper reproductions, write figures, check claims",
                        description="Run each named reproduction (default: all), write its figures to --out and "
                                    "print a table: claim, what the paper says, what was measured, pass/fail. "
                                    "Exit code 1 if a claim fails.")
    rp.add_argument("names", nargs="*", metavar="NAME", help="reproductions (default: all)")
    rp.add_argument("--quick", action="store_true", help="small grids that run in minutes on a laptop CPU")
    rp.add_argument("--out", metavar="DIR", help="figures folder (default ./figures)")
    rp.add_argument("--quiet", action="store_true", help="no progress bars")
    rp.set_defaults(func=_cmd_reproduce)

    fg = sub.add_parser("figures", help="regenerate the committed figures (quick reproductions into the repo's figures/)")
    fg.add_argument("names", nargs="*", metavar="NAME", help="reproductions (default: all)")
    fg.add_argument("--quiet", action="store_true", help="no progress bars")
    fg.set_defaults(func=_cmd_figures, out=None, quick=True)

    b = sub.add_parser("bench", help="throughput benchmarks (prints figures)", add_help=False,
                       description="toylab bench NAME [options]; 'toylab bench NAME --help' for options (NAME: superposition, grokking, groups, bilinear)")
    b.add_argument("name", metavar="NAME", help="benchmark: superposition, grokking, groups or bilinear")
    b.set_defaults(func=None)

    f = sub.add_parser("fields", help="list a family's config fields", description="List FAMILY's fields with kind, default and meaning.")
    f.add_argument("family", metavar="FAMILY")
    f.set_defaults(func=_cmd_fields)
    return p


def _positive_int(option):
    def parse(text):
        try:
            v = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer") from None
        if v < 1:
            raise argparse.ArgumentTypeError(f"{text!r}: must be a positive integer")
        return v

    parse.__name__ = option
    return parse


def main(argv=None) -> int:
    from toylab.core.config import ConfigError
    from toylab.core.store import StoreError

    argv = sys.argv[1:] if argv is None else list(argv)
    parser = _parser()
    if argv and argv[0] == "bench" and len(argv) > 1 and argv[1] not in ("-h", "--help"):
        args, rest = parser.parse_args(argv[:2]), argv[2:]
    else:
        args, rest = parser.parse_args(argv), []
    try:
        if args.command == "bench":
            return _cmd_bench(args, rest)
        return args.func(args)
    except (ConfigError, StoreError, UsageError) as e:
        print(f"toylab {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ninterrupted; finished chunks and the last checkpoint are kept (use --resume)", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
