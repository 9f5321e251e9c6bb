"""Reproductions side by side: ``toylab reproduce --jobs N`` runs each reproduction as a child
process (``python -m toylab.experiments.reproductions._jobs NAME ...``), at most N at once,
longest first, each writing its output to ``OUT/logs/NAME.log`` and its claims and timings to a
result file the parent reads back. A child that fails (nonzero exit, crash, killed) is one line
and one failed claim; Ctrl-C stops the children.

Also here: ``timings.json`` (where each reproduction's time went, per figure set, with its peak
memory), read back to schedule the next run longest first and to size the default ``--jobs``.
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

__all__ = ["default_jobs", "expected_costs", "read_timings", "write_timings", "run_jobs", "available_memory_bytes",
           "cores_available", "peak_rss_bytes", "child_main"]

# Seconds of each quick reproduction on the 2-core box, two side by side (a fresh clone's
# `toylab reproduce --quick`); the order to start them in when no timings.json says better.
# grokking's entry (measured 445) is set above degeneracy's so that it starts first: it trains
# the transformer degeneracy (b) reads after its (a).
BUILTIN_SECONDS = {"grokking": 480, "degeneracy": 476, "dictionaries": 363, "groups": 338, "interaction": 143,
                   "bilinear": 110, "superposition": 108}
# The peak resident memory of one reproduction when no timings.json has measured it: the whole
# sequential quick run peaked at 4.3 GB, which bounds every one of them.
DEFAULT_PEAK_BYTES = int(4.3e9)
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


def default_jobs(n_names: int, known: dict) -> tuple[int, str]:
    """(jobs, why): the cores available, lowered so that jobs × the peak memory of one
    reproduction (the largest measured, else 4.3 GB) fits the memory available now."""
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
    """Run the reproductions ``names`` as child processes, at most ``jobs`` at once, longest
    first by ``known`` timings; returns ``{name: (claims, timing)}`` for every name, in the order
    given (a failed child: one failed claim naming its log, timing without sets)."""
    from toylab.experiments.reproductions._claims import Claim

    out = Path(out)
    logs = out / "logs"
    logs.mkdir(parents=True, exist_ok=True)
    costs = expected_costs(names, quick, known)
    queue = sorted(names, key=lambda n: -costs[n])  # stable: ties keep the given order
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
