"""Checks of example batches shared by the models' layer maps."""

from __future__ import annotations

import numpy as np

from ..core.tracing import is_traced


def out_of_range(tokens, n):
    """What is wrong with integer ``tokens`` outside 0..n−1 (a gather would clamp them
    silently); None when traced, as the values are not known then."""
    if is_traced(tokens) or tokens.size == 0:
        return None
    values = np.asarray(tokens)  # numpy: inside a jit trace, jnp's min would be traced too
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        return f"token values must be in 0..{n - 1} (got {lo}..{hi})"
    return None
