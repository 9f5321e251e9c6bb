"""Group composition: every pair (a, b) of a finite group with its product c = a∘b.

The whole Cayley table is one data set of |G|² rows, ranked by a permutation fixed by
``data_seed``; the training rows are the first ⌊f·N⌋ (the mask of :mod:`toylab.tasks.modular`,
so the train fraction f is traced). Tokens are [a, b, =] with '=' the token |G|, the layout
of the grokking family's transformer.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import numpy as np

from ..core.config import ConfigError
from ..groups import Group, group

__all__ = ["CompositionTable", "composition_table", "group_of"]


class CompositionTable(NamedTuple):
    """Every pair of the group, ordered by the split permutation (row r has rank r)."""

    a: np.ndarray  # (N,) int32
    b: np.ndarray  # (N,) int32
    c: np.ndarray  # (N,) int32, a∘b
    order: int  # |G|

    @property
    def n(self) -> int:
        return int(self.a.shape[0])

    def tokens(self) -> np.ndarray:
        """(N, 3) token rows [a, b, =] with '=' the token |G|."""
        return np.stack([self.a, self.b, np.full_like(self.a, self.order)], axis=1)

    def grid_mask(self, n_rows: int) -> np.ndarray:
        """(|G|, |G|) bool over the (a, b) grid: the first ``n_rows`` rows of the split."""
        mask = np.zeros((self.order, self.order), bool)
        mask[self.a[:n_rows], self.b[:n_rows]] = True
        return mask


@functools.lru_cache(maxsize=32)
def group_of(name: str) -> Group:
    """The library group with this name (cached: a sweep's configs share it)."""
    return group(name)


@functools.lru_cache(maxsize=32)
def composition_table(group_name: str, data_seed: int = 0) -> CompositionTable:
    """The composition table of a library group, rows shuffled by a permutation fixed by data_seed."""
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ConfigError("data_seed", data_seed, "must be a non-negative integer")
    g = group_of(group_name)
    n = g.order
    a, b = (x.ravel() for x in np.meshgrid(np.arange(n), np.arange(n), indexing="ij"))
    perm = np.random.default_rng(data_seed).permutation(a.shape[0])
    a, b = a[perm].astype(np.int32), b[perm].astype(np.int32)
    return CompositionTable(a, b, np.asarray(g.mul[a, b], np.int32), n)
