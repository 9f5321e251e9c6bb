"""What the lab runs beyond the tests, installed as ``toylab.experiments``, in two kinds:

- ``toylab.experiments.reproductions``: one module per paper figure set, each in one shape —
  ``FIGURES`` (figure letters → the function making them), ``reproduce(out, quick, quiet,
  only, work)`` returning the checked claims, quick and full sizes — read by
  ``toylab reproduce``.
- ``toylab.experiments.benchmarks``: one throughput benchmark per family (``toylab bench
  NAME``), each timing through ``toylab.experiments.benchmarks._common.timed``; they print
  figures, they assert nothing.

Each is found by its file: a public module of its folder is a reproduction (or benchmark) of
that name; helpers start with ``_``.
"""

from .. import _discovery
from . import benchmarks, reproductions

__all__ = ["REPRODUCTIONS", "BENCHMARKS", "benchmarks", "reproductions"]


def __getattr__(name):
    # Read from the folders on each access: ``REPRODUCTIONS`` is ``{name: module}`` of the
    # reproductions (``toylab reproduce NAME``), ``BENCHMARKS`` of the benchmarks (``toylab
    # bench NAME``), whatever files the folders (their package paths) hold now.
    if name == "REPRODUCTIONS":
        return _discovery.public_modules(reproductions)
    if name == "BENCHMARKS":
        return _discovery.public_modules(benchmarks)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
