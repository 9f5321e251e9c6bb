"""The one shape of a reproduction: figure sets keyed by letter, each in four pieces
(:class:`FigureSet`: train, analyse, draw, claims), run by :func:`run_figures` (an optional
shared sweep prepared once), figures saved by :func:`save_figure`, and the
``python -m toylab.experiments.reproductions.NAME`` entry point.

Inside :func:`record_timings`, :func:`run_figures` records where each set's time goes: wall
seconds of train, analyse, draw (``figures``) and claims, and of the shared ``prepare``, with
the seconds JAX spent compiling inside each (tracing, lowering and XLA compilation or a
persistent-cache load, summed from :mod:`jax.monitoring` events).

Across reproductions: :func:`shared_sweep` trains a sweep several of them read once per
``toylab reproduce`` (inside :func:`shared_sweeps`), and :func:`missing_requirements` names the
packages a reproduction's ``REQUIRES`` lists that are not installed."""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import threading
import time
from pathlib import Path
from typing import Any, Callable

__all__ = ["FigureSet", "save_figure", "run_figures", "check_only", "script_main", "record_timings",
           "compile_seconds", "format_timings", "TIMED_PHASES", "missing_requirements", "shared_sweeps",
           "shared_sweep", "SHARED_ENV"]

# The jax.monitoring durations that make up compiling one program: tracing to a jaxpr, lowering
# to MLIR, and the backend's compile (which also covers a persistent-cache load, so the cache's
# own retrieval events are not added again).
_COMPILE_EVENTS = frozenset({"/jax/core/compile/jaxpr_trace_duration",
                             "/jax/core/compile/jaxpr_to_mlir_module_duration",
                             "/jax/core/compile/backend_compile_duration"})
_compiled = [0.0]
_lock = threading.Lock()
_listening = [False]

TIMED_PHASES = ("train", "analyse", "figures", "claims")  # the FigureSet pieces, draw as "figures"


def _on_duration(event, duration, **kwargs):
    if event in _COMPILE_EVENTS:
        with _lock:
            _compiled[0] += float(duration)


def compile_seconds() -> float:
    """Seconds this process has spent compiling JAX programs since it was first asked (a
    process-wide :mod:`jax.monitoring` listener, registered once)."""
    with _lock:
        if not _listening[0]:
            from jax import monitoring

            monitoring.register_event_duration_secs_listener(_on_duration)
            _listening[0] = True
        return _compiled[0]


class _Timing:
    """What :func:`record_timings` collects: rows, and the row of the set running now."""

    rows: list | None = None
    row: dict | None = None


def _new_row(name: str) -> dict:
    row = {"set": name, **{k: 0.0 for p in TIMED_PHASES for k in (p, f"{p}_compile")}, "total": 0.0,
           "compile": 0.0}
    if _Timing.rows is not None:
        _Timing.rows.append(row)
    return row


@contextlib.contextmanager
def record_timings():
    """``with record_timings() as rows:`` collects one row per figure set run by
    :func:`run_figures` inside the block (and one ``prepare`` row for a shared preparation):
    ``set`` (its letters), wall seconds of ``train``, ``analyse``, ``figures`` (draw) and
    ``claims``, each with ``PHASE_compile`` (the seconds of it spent compiling), ``total`` and
    ``compile`` (all its compiling)."""
    saved = _Timing.rows, _Timing.row
    _Timing.rows, _Timing.row = [], None
    compile_seconds()  # listen from here on
    try:
        yield _Timing.rows
    finally:
        _Timing.rows, _Timing.row = saved


def _timed(row: dict | None, phase: str, fn, *args):
    """``fn(*args)``, its wall and compile seconds added to ``row[phase]`` (when recording)."""
    if row is None:
        return fn(*args)
    t0, c0 = time.perf_counter(), compile_seconds()
    try:
        result = fn(*args)
        if phase == "train":  # dispatch is asynchronous: wait, so the training is counted here
            try:
                import jax

                jax.block_until_ready(result)
            except Exception:  # noqa: BLE001 - a result that holds no arrays has nothing to wait for
                pass
        return result
    finally:
        row[phase] += time.perf_counter() - t0
        row[f"{phase}_compile"] += compile_seconds() - c0


@dataclasses.dataclass(frozen=True)
class FigureSet:
    """One figure set of a reproduction, as four pieces with one job each:

    - ``train(quick, quiet, work, shared) -> trained``: the sweeps (the only piece that trains);
    - ``analyse(trained, quick) -> measured``: a dict of the numbers and arrays the figures and
      claims need (no training, no drawing);
    - ``draw(measured, out, quick)``: writes the figures into ``out``;
    - ``claims(measured, quick) -> [Claim]``: the papers' statements checked on the numbers
      (pure: a test can hand it numbers and see a claim fail).

    Called as ``figure_set(out, quick, quiet, work, shared)``, it runs the four in order and
    returns the claims.
    """

    train: Callable[..., Any]
    analyse: Callable[..., dict]
    draw: Callable[..., None]
    claims: Callable[..., list]

    def __call__(self, out, quick: bool, quiet: bool, work=None, shared=None) -> list:
        row = _Timing.row  # the set's timing row when run_figures is recording, else None
        trained = _timed(row, "train", self.train, quick, quiet, work, shared)
        measured = _timed(row, "analyse", self.analyse, trained, quick)
        _timed(row, "figures", self.draw, measured, Path(out), quick)
        return _timed(row, "claims", self.claims, measured, quick)


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


def run_figures(figures: dict, out, quick: bool, quiet: bool, only: str | None, work=None, prepare=None) -> list:
    """Run each figure function ``fn(out, quick, quiet, work, shared)`` whose key is in
    ``only`` (all when None); returns their claims in order. ``prepare(quick, quiet, work)``,
    when given, trains and analyses what the figures share, once, before the first of them
    (``shared`` is its result; None without it)."""
    # A function makes the figure sets from its key up to the next key ("a" of {"a", "d"}
    # makes a, b and c), so any of those letters asks for it.
    keys = sorted(figures)
    ends = keys[1:] + [chr(ord(keys[-1]) + 1)]
    covers = {k: "".join(chr(c) for c in range(ord(k), ord(end))) for k, end in zip(keys, ends)}
    only = None if only is None else check_only(only, "".join(covers.values()))
    chosen = [key for key in figures if not only or set(covers[key]) & set(only)]
    recording = _Timing.rows is not None
    shared = None
    if prepare is not None and chosen:  # timed as the training of a "prepare" row
        row = _new_row("prepare") if recording else None
        shared = _timed(row, "train", prepare, quick, quiet, work)
        _close_row(row)
    if isinstance(shared, list):  # the preparation could not run: its claims say why
        return shared
    claims = []
    for key in chosen:
        row = _new_row(covers[key]) if recording else None
        _Timing.row = row
        t0 = time.perf_counter()
        try:
            claims += figures[key](Path(out), quick, quiet, work, shared)
        finally:
            _Timing.row = None
            if row is not None:
                row["total"] = time.perf_counter() - t0
                _close_row(row, total=False)
    return claims


def _close_row(row: dict | None, total: bool = True) -> None:
    if row is not None:
        row["compile"] = sum(row[f"{p}_compile"] for p in TIMED_PHASES)
        if total:
            row["total"] = sum(row[p] for p in TIMED_PHASES)
        row.update({k: round(v, 3) for k, v in row.items() if isinstance(v, float)})


def format_timings(timings: dict, wall: float | None = None, jobs: int = 1) -> str:
    """A plain-text table of where the time went: one line per figure set (and shared
    preparation) of each reproduction, then the reproduction's own line (its wall time,
    imports included). ``timings`` is ``{name: {"wall_s": s, "sets": [rows of
    record_timings]}}``; ``wall`` the whole command's wall seconds, run on ``jobs`` processes."""
    cols = [("reproduction", 14), ("set", 8), ("train", 8), ("compile", 8), ("analyse", 8), ("compile", 8),
            ("figures", 8), ("total", 8)]
    lines = ["seconds of wall time per figure set (compile: of the column before, spent compiling JAX programs)",
             " | ".join(n.ljust(w) if i < 2 else n.rjust(w) for i, (n, w) in enumerate(cols)),
             "-+-".join("-" * w for _, w in cols)]

    def line(name, set_name, values):
        cells = [f"{v:.1f}" if isinstance(v, (int, float)) else "" for v in values]
        return " | ".join([name.ljust(cols[0][1]), set_name.ljust(cols[1][1])]
                          + [c.rjust(w) for c, (_, w) in zip(cells, cols[2:])])

    for name, entry in timings.items():
        rows = entry.get("sets") or []
        keys = ("train", "train_compile", "analyse", "analyse_compile", "figures")
        for r in rows:
            lines.append(line(name, str(r.get("set", "")), [r.get(k, 0.0) for k in keys]
                              + [r.get("total", 0.0)]))
        sums = [sum(r.get(k, 0.0) for r in rows) for k in keys]
        wall_s = entry.get("wall_s")
        lines.append(line(name, "all", sums + [wall_s if wall_s is not None else sum(r.get("total", 0.0) for r in rows)]))
    if wall is not None:
        busy = sum(e.get("wall_s") or 0.0 for e in timings.values())
        lines.append(f"{len(timings)} reproduction{'s' if len(timings) != 1 else ''} in {wall:.1f} s of wall time on "
                     f"{jobs} process{'es' if jobs != 1 else ''} ({busy:.1f} s of reproduction time)")
    return "\n".join(lines)


def script_main(doc: str, reproduce, only_help: str) -> None:
    """``python -m toylab.experiments.reproductions.NAME [--quick] [--out DIR] [--only KEYS] [--work DIR]``."""
    from toylab.experiments.reproductions._claims import format_claims

    ap = argparse.ArgumentParser(description=doc.splitlines()[0])
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--out", default="reproductions/script")
    ap.add_argument("--only", default=None, help=only_help)
    ap.add_argument("--work", default=None, help="keep the sweeps in this folder and reuse them")
    args = ap.parse_args()
    print(format_claims(reproduce(args.out, args.quick, only=args.only, work=args.work)))


def missing_requirements(modules) -> dict:
    """``{name: [distributions]}``: for each ``(name, module)`` the packages its ``REQUIRES``
    (import name -> distribution) names that are not installed here."""
    import importlib.util

    out = {}
    for name, mod in modules:
        missing = []
        for module_name, dist in getattr(mod, "REQUIRES", {}).items():
            try:
                found = importlib.util.find_spec(module_name) is not None
            except (ImportError, ValueError):
                found = False
            if not found:
                missing.append(dist)
        if missing:
            out[name] = missing
    return out


SHARED_ENV = "TOYLAB_SHARED_SWEEPS"  # the folder of the sweeps one `toylab reproduce` shares


@contextlib.contextmanager
def shared_sweeps():
    """For one ``toylab reproduce``: a temporary folder for the sweeps its reproductions share
    (:func:`shared_sweep`), named in this process's environment so that child processes started
    inside find it too; removed at the end. Inside an enclosing one, that one is used."""
    import os
    import tempfile

    if os.environ.get(SHARED_ENV):
        yield Path(os.environ[SHARED_ENV])
        return
    with tempfile.TemporaryDirectory(prefix="toylab-shared-sweeps-") as folder:
        os.environ[SHARED_ENV] = folder
        try:
            yield Path(folder)
        finally:
            os.environ.pop(SHARED_ENV, None)


def shared_sweep(name: str, family, base, grid=None, *, seeds: int = 1, quiet: bool = False, work=None):
    """``run_sweep(family, base, grid, seeds=...)``, trained once however many reproductions
    ask for it by the same ``name`` (which must say everything that makes the sweep: family,
    mode, seeds). Under ``work`` when given (kept, resumed); else in the shared folder of the
    ``toylab reproduce`` running it, under a file lock: the first to ask trains, the others wait
    for it and read its results (if it died, the next one resumes its checkpoints); else, run
    alone, in a temporary folder as any sweep."""
    import os

    from toylab.core.config import ConfigError
    from toylab.core.sweep import run_sweep

    if not isinstance(name, str) or not name or name in (".", "..") or any(c in name for c in "/\\"):
        raise ConfigError("name", name, "must be a folder name (no path separators): the shared sweep's key")
    shared = os.environ.get(SHARED_ENV)
    root = Path(work) if work is not None else Path(shared) if shared else None
    try:
        import fcntl
    except ImportError:  # no POSIX file locks: children could not wait for each other
        fcntl = None
        root = Path(work) if work is not None else None
    if root is None:
        return run_sweep(family, base, grid, seeds=seeds, quiet=quiet)
    root.mkdir(parents=True, exist_ok=True)
    folder = root / name
    with open(root / f"{name}.lock", "a") as lock:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)  # released when this process ends, however it ends
        return run_sweep(family, base, grid, seeds=seeds, quiet=quiet, out=folder, resume=folder.exists())
