"""What the lab runs beyond the tests, in two kinds:

- ``experiments.reproductions``: one module per paper figure set, each in one shape —
  ``FIGURES`` (figure letters → the function making them), ``reproduce(out, quick, quiet,
  only, work)`` returning the checked claims, quick and full sizes — read by
  ``toylab reproduce``.
- ``experiments.benchmarks``: one throughput benchmark per family (``toylab bench NAME``),
  each timing through ``experiments.benchmarks.common.timed``; they print figures, they
  assert nothing.
"""

REPRODUCTIONS = {
    "superposition": "experiments.reproductions.superposition",
    "grokking": "experiments.reproductions.grokking",
    "groups": "experiments.reproductions.groups",
    "bilinear": "experiments.reproductions.bilinear",
    "degeneracy": "experiments.reproductions.degeneracy",
    "interaction": "experiments.reproductions.interaction",
    "dictionaries": "experiments.reproductions.dictionaries",
}
