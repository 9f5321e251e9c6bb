"""Paper reproductions: one module per figure set, each with ``reproduce(out_dir, quick)``
returning the checked claims, and a registry the ``toylab reproduce`` command reads."""

REPRODUCTIONS = {
    "superposition": "experiments.superposition",
    "grokking": "experiments.grokking",
    "groups": "experiments.groups",
    "bilinear": "experiments.bilinear",
}
