"""Reproductions side by side: ``toylab reproduce --jobs N`` runs each reproduction as a child
process (``python -m toylab.experiments.reproductions._jobs NAME ...``), at most N at once, in
the order whose planned schedule ends first, each writing its output to ``OUT/logs/NAME.log``
and its claims and timings to a result file the parent reads back. A child that fails (nonzero exit, crash, killed) is one line
and one failed claim; Ctrl-C stops the children.

Also here: ``timings.json`` (where each reproduction's time went, per figure set, with its peak
memory), read back to plan the next run's order and to size the default ``--jobs``.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

__all__ = ["default_jobs", "expected_costs", "start_order", "makespan", "read_timings", "write_timings", "run_jobs", "available_memory_bytes",
           "cores_available", "peak_rss_bytes", "child_main"]

# Seconds of each quick reproduction on the 2-core box, two side by side (a fresh clone's
# `toylab reproduce --quick`); what the start order is planned from when no timings.json says
# better.
BUILTIN_SECONDS = {"development": 807, "degeneracy": 489, "grokking": 402, "dictionaries": 307, "groups": 220,
                   "interaction": 145, "bilinear": 112, "superposition": 101}
# Reproductions that start at once whatever the plan: grokking trains first the seed-0
# transformer that degeneracy (b), dictionaries (c) and interaction read (a reader that asks
# first trains it itself while the others wait, which the plan's costs do not foresee).
STARTS_FIRST = ("grokking",)
# Start orders tried exhaustively up to this many reproductions (8! = 40 320 simulated
# schedules take about a second); beyond it, longest first.
EXHAUSTIVE_ORDERS = 8
# The peak resident memory of one reproduction when no timings.json has measured it: the
# largest measured alone, development's quick mode (6.4 GB).
DEFAULT_PEAK_BYTES = int(6.5e9)
PATH_ENV = "TOYLAB_REPRODUCTIONS_PATH"  # the parent's package path of reproductions, for its children
PARENT_ENV = "TOYLAB_REPRODUCE_PARENT"  # the parent's pid: a child ends with it
THREADS_ENV = "TOYLAB_JOB_THREADS"  # the cores each child's XLA thread pool is sized for
TIMINGS = "timings.json"


def cores_available() -> int:
    try:
        return max(len(os.sched_getaffinity(0)), 1)
    except (AttributeError, OSError):
        return max(os.cpu_count() or 1, 1)


def peak_rss_bytes() -> int:
    """This process's peak resident memory so far."""
    import resource

    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * (1 if sys.platform == "darwin" else 1024))


def available_memory_bytes() -> int | None:
    """Memory available to new processes (MemAvailable), else this machine's physical memory."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    from toylab.core.devices import host_memory_bytes

    return host_memory_bytes()


def read_timings(*folders) -> dict:
    """The ``reproductions`` record of the first ``timings.json`` found in ``folders`` ({} if none)."""
    for folder in folders:
        try:
            record = json.loads((Path(folder) / TIMINGS).read_text())
        except (OSError, ValueError):
            continue
        if isinstance(record, dict) and isinstance(record.get("reproductions"), dict):
            return record["reproductions"]
    return {}


def write_timings(out, timings: dict, quick: bool, jobs: int, wall: float) -> Path:
    """``OUT/timings.json``: this run's reproductions (their wall time, peak memory when run as
    a child, and per figure set the seconds of train, analyse, figures and claims with what of
    each was compiling), merged over the record already there so every reproduction's last
    timing is kept for scheduling."""
    import datetime

    from toylab.core.store import write_json

    path = Path(out) / TIMINGS
    known = read_timings(out)
    known.update({name: {**entry, "quick": quick} for name, entry in timings.items()})
    write_json(path, {
        "written": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "last_run": {"names": list(timings), "quick": quick, "jobs": jobs, "wall_s": round(wall, 3),
                     "cores": cores_available()},
        "reproductions": known,
    })
    return path


def expected_costs(names, quick: bool, known: dict) -> dict:
    """Expected seconds of each reproduction: its last timing of the same size, else the
    built-in estimate (scaled alike for full runs: only the order matters)."""
    costs = {}
    for n in names:
        entry = known.get(n) or {}
        if entry.get("quick") == quick and isinstance(entry.get("wall_s"), (int, float)):
            costs[n] = float(entry["wall_s"])
        else:
            costs[n] = float(BUILTIN_SECONDS.get(n, 60))
    return costs


def makespan(order, costs: dict, jobs: int) -> float:
    """When the last of ``order`` would finish if each started, in that order, as soon as one of
    ``jobs`` slots is free and took its expected seconds (``costs``)."""
    import heapq

    free = [0.0] * max(int(jobs), 1)
    end = 0.0
    for name in order:
        t = heapq.heappop(free) + costs[name]
        end = max(end, t)
        heapq.heappush(free, t)
    return end


def start_order(names, costs: dict, jobs: int, first=STARTS_FIRST) -> list:
    """The order to start ``names`` in on ``jobs`` slots: of every order (up to
    EXHAUSTIVE_ORDERS names; else only longest first) that starts the names in ``first`` at
    once, the one whose simulated schedule ends first; ties go to the order nearest longest
    first (compared as sequences of costs). Longest first alone can leave one slot idle while
    the other runs a long tail: on the quick run's costs it ends 31 s after the best order."""
    import itertools

    longest = sorted(names, key=lambda n: (n not in first, -costs[n]))  # stable: ties keep the given order
    jobs = max(int(jobs), 1)
    if jobs == 1 or len(longest) <= jobs or len(longest) > EXHAUSTIVE_ORDERS:
        return longest
    lead = [n for n in longest if n in first]
    best, best_key = longest, (makespan(longest, costs, jobs), [-costs[n] for n in longest])
    for order in itertools.permutations(longest):
        if any(n not in order[:jobs] for n in lead[:jobs]):
            continue
        span = makespan(order, costs, jobs)
        if span < best_key[0] - 1e-9:
            best, best_key = list(order), (span, [-costs[n] for n in order])
        elif abs(span - best_key[0]) <= 1e-9:
            key = [-costs[n] for n in order]
            if key < best_key[1]:
                best, best_key = list(order), (span, key)
    return list(best)


def default_jobs(n_names: int, known: dict) -> tuple[int, str]:
    """(jobs, why): the cores available, lowered so that jobs × the peak memory of one
    reproduction (the largest measured, else 6.5 GB) fits the memory available now."""
    cores = cores_available()
    peaks = [e.get("peak_rss_bytes") for e in known.values() if isinstance(e.get("peak_rss_bytes"), (int, float))]
    peak = max(peaks) if peaks else DEFAULT_PEAK_BYTES
    memory = available_memory_bytes()
    fit = max(int(memory // peak), 1) if memory else cores
    jobs = max(min(cores, fit, max(n_names, 1)), 1)
    why = f"{cores} cores" + (f", {memory / 1e9:.1f} GB available for {peak / 1e9:.1f} GB each" if memory else "")
    return jobs, why


def _child_env(jobs: int) -> dict:
    env = dict(os.environ)
    from toylab.experiments import reproductions

    env[PATH_ENV] = os.pathsep.join(reproductions.__path__)
    threads = str(max(cores_available() // max(jobs, 1), 1))
    env[THREADS_ENV] = threads
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):  # numpy's BLAS: a share of the cores
        env.setdefault(var, threads)
    env["PYTHONUNBUFFERED"] = "1"
    env[PARENT_ENV] = str(os.getpid())
    return env


def size_thread_pool(threads: int) -> None:
    """In a child, before JAX's CPU client exists: size XLA's intra-op thread pool for
    ``threads`` cores, then let every thread run on any core again.

    The CPU client sizes its pool from the cores this process may run on when it starts.
    Children that each own a share of the cores then run side by side without
    oversubscribing them. Measured on the 2-core box, two trainings side by side: 8 seeds of
    S4 composition 24 s each with 2-thread pools, 21 s with one thread each; 3 seeds of the
    p = 31 grokking transformer 65 s and 61 s."""
    try:
        cores = sorted(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return
    if threads >= len(cores):
        return
    os.sched_setaffinity(0, set(cores[:max(threads, 1)]))
    import jax

    jax.devices("cpu")  # the client and its pool, sized now
    for tid in os.listdir("/proc/self/task"):  # widen every thread the client started
        try:
            os.sched_setaffinity(int(tid), set(cores))
        except (ValueError, OSError):
            pass


def _die_with_parent():
    """In a child: be sent SIGTERM when the parent dies (Linux), and end now if it already has."""
    parent = os.environ.get(PARENT_ENV)
    try:
        import ctypes

        ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except Exception:  # noqa: BLE001 - elsewhere the parent's own cleanup has to do
        pass
    if parent and parent.isdigit() and os.getppid() != int(parent):
        sys.exit(f"the parent process {parent} has ended")


def _describe_exit(code: int) -> str:
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def run_jobs(names, out, quick: bool, quiet: bool, jobs: int, known: dict, say=print) -> dict:
    """Run the reproductions ``names`` as child processes, at most ``jobs`` at once, in the
    order that :func:`start_order` plans from ``known`` timings; returns ``{name: (claims, timing)}`` for every name, in the order
    given (a failed child: one failed claim naming its log, timing without sets)."""
    from toylab.experiments.reproductions._claims import Claim

    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    costs = expected_costs(names, quick, known)
    queue = start_order(names, costs, jobs)
    env = _child_env(jobs)
    running: dict = {}
    done: dict = {}
    width = max(map(len, names))

    def start(name):
        log_path, result_path = logs / f"{name}.log", logs / f"{name}.result.json"
        result_path.unlink(missing_ok=True)
        cmd = [sys.executable, "-m", "toylab.experiments.reproductions._jobs", name, "--out", str(out),
               "--result", str(result_path)] + (["--quick"] if quick else []) + (["--quiet"] if quiet else [])
        with open(log_path, "wb") as log:
            proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, env=env,
                                    start_new_session=True)  # Ctrl-C reaches the parent, which stops them
        running[name] = (proc, time.perf_counter(), log_path, result_path)
        say(f"started  {name:{width}}  (log: {log_path})", flush=True)

    def finish(name, code):
        proc, t0, log_path, result_path = running.pop(name)
        seconds = time.perf_counter() - t0
        result = None
        if code == 0:
            try:
                result = json.loads(result_path.read_text())
                claims = [Claim(**c) for c in result["claims"]]
            except (OSError, ValueError, KeyError, TypeError):
                result = None
        result_path.unlink(missing_ok=True)
        if result is None:
            why = _describe_exit(code) if code != 0 else "no result written"
            say(f"FAILED   {name:{width}}  {why} after {seconds:.0f} s; its output: {log_path}", flush=True)
            claims = [Claim(name, "the reproduction runs to the end", "runs", f"{why}; see {log_path}", False)]
            timing = {"wall_s": round(seconds, 3), "failed": why, "sets": []}
        else:
            n_pass = sum(c.passed for c in claims)
            say(f"finished {name:{width}}  in {seconds:.0f} s: {n_pass} of {len(claims)} claims hold", flush=True)
            timing = {"wall_s": round(seconds, 3), "peak_rss_bytes": result.get("peak_rss_bytes"),
                      "sets": result.get("sets", [])}
        done[name] = (claims, timing)

    try:
        while queue or running:
            while queue and len(running) < jobs:
                start(queue.pop(0))
            for name in list(running):
                code = running[name][0].poll()
                if code is not None:
                    finish(name, code)
            if running:
                time.sleep(0.1)
    finally:
        _stop(running)
    return {name: done[name] for name in names}


def _stop(running: dict, grace: float = 5.0) -> None:
    """End the children still running (interrupted): SIGTERM to each one's process group, then
    SIGKILL to those still there after ``grace`` seconds."""
    procs = [r[0] for r in running.values()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for p in procs:
            if p.poll() is None:
                try:
                    os.killpg(p.pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
        deadline = time.monotonic() + grace
        while any(p.poll() is None for p in procs) and time.monotonic() < deadline:
            time.sleep(0.05)
        if all(p.poll() is not None for p in procs):
            break
    for p in procs:
        try:
            p.wait(timeout=1)
        except subprocess.TimeoutExpired:
            pass


def child_main(argv=None) -> int:
    """One reproduction in this process, its claims, timings and peak memory written to
    ``--result`` (the parent's ``toylab reproduce --jobs``)."""
    import importlib

    ap = argparse.ArgumentParser(prog="python -m toylab.experiments.reproductions._jobs")
    ap.add_argument("name")
    ap.add_argument("--out", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--quick", action="store_true")
    ap.add_argument("--quiet", action="store_true")
    args = ap.parse_args(argv)
    _die_with_parent()
    threads = os.environ.get(THREADS_ENV, "")
    if threads.isdigit():
        size_thread_pool(int(threads))
    from toylab.experiments import reproductions

    for folder in filter(None, os.environ.get(PATH_ENV, "").split(os.pathsep)):  # the parent's package path
        if folder not in reproductions.__path__:
            reproductions.__path__.append(folder)
    import matplotlib

    matplotlib.use("Agg")
    from toylab import experiments
    from toylab.core.store import write_json
    from toylab.experiments.reproductions._claims import format_claims
    from toylab.experiments.reproductions._common import format_timings, record_timings

    t0 = time.perf_counter()
    mod = importlib.import_module(experiments.REPRODUCTIONS[args.name])
    print(f"== reproducing {args.name} ({'quick' if args.quick else 'full'}) -> {args.out}", flush=True)
    with record_timings() as rows:
        claims = mod.reproduce(Path(args.out), quick=args.quick, quiet=args.quiet)
    wall = time.perf_counter() - t0
    peak = peak_rss_bytes()
    print()
    print(format_claims(claims))
    print()
    print(format_timings({args.name: {"wall_s": wall, "sets": rows}}))
    write_json(Path(args.result), {
        "claims": [{**dataclasses.asdict(c), "passed": bool(c.passed)} for c in claims],
        "sets": rows, "wall_s": round(wall, 3), "peak_rss_bytes": int(peak)})
    return 0


if __name__ == "__main__":
    sys.exit(child_main())
