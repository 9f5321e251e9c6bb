# The hypothesis profiles ("ci" when CI is set, "dev" otherwise, HYPOTHESIS_PROFILE to choose)
# and the prng_key, float64 and compile_counter fixtures come from toylab's pytest plugin
# (toylab/testing/plugin.py, registered by entry point).

import os


def _available_memory_bytes() -> int | None:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return None


WORKER_BYTES = 3 * 2**30
"""Peak memory of one test worker (a JAX process compiling the larger training tests), so
`-n auto` never starts more workers than the machine's memory holds."""


def pytest_xdist_auto_num_workers(config):
    """`-n auto` (pyproject's addopts): one worker per core this process may use, as many as
    the available memory holds; `-n N` on the command line overrides it."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)
    memory = _available_memory_bytes()
    by_memory = cores if memory is None else max(1, memory // WORKER_BYTES)
    return max(1, min(cores, by_memory))


def pytest_collection_modifyitems(config, items):
    """End-to-end runs are left out unless the marker expression names them
    (`-m end_to_end`), so `-m "not slow"` is the fast subset without them."""
    if "end_to_end" in (config.option.markexpr or ""):
        return
    kept = [item for item in items if item.get_closest_marker("end_to_end") is None]
    if len(kept) != len(items):
        config.hook.pytest_deselected(items=[item for item in items if item.get_closest_marker("end_to_end")])
        items[:] = kept
