"""Stages of development from a curve over training (Hoogland et al. 2025): the LLC's plateaus
split training into stages, and the same rule reads the loss curve or a head score.

The rule, stated once:

1. The curve (values at increasing steps, possibly noisy estimates) is smoothed by a Gaussian
   kernel over log(step) of width ``smoothing`` (in natural-log units; development is
   spread over orders of magnitude of steps, so one width serves early and late training).
2. Its slope d value / d log(step) is taken by central differences of the smoothed curve.
3. A boundary is where that slope crosses zero (the curve turns: a peak or a trough), or
   where it comes to rest without crossing: a local minimum of |slope| below ``flat`` times
   the largest |slope| (a plateau between two rises). A curve that starts at rest has a
   boundary where it leaves it (an onset: |slope| first rises through ``flat`` times its
   largest value), and one that ends at rest where it enters that rest (|slope| falls through
   it for the last time); of the two points around such a crossing, the one nearer the level.
4. Boundaries in the first and last ``edge`` points are dropped (the kernel is one-sided
   there); then boundaries closer than ``min_gap`` (log units) are merged into the one with
   the smaller |slope|.

Host-side numpy: a curve is a few hundred numbers, read once after training.
"""

from __future__ import annotations

import dataclasses

import numpy as np

from ..core.config import ConfigError, described

__all__ = ["Stages", "stage_boundaries", "smoothed_slope", "transition_window"]


@dataclasses.dataclass(frozen=True)
class Stages:
    """``boundaries``: the steps where stages end (increasing); ``kinds``: "turn" (the slope
    crosses zero), "plateau" (it rests near zero between two rises), "onset" (the curve leaves
    the rest it starts in) or "rest" (it enters the rest it ends in) for each; ``stages``:
    (start, end) step pairs covering the curve; ``smoothed`` and ``slope``: the curve as the
    rule read it."""

    boundaries: tuple
    kinds: tuple
    stages: tuple
    smoothed: np.ndarray
    slope: np.ndarray

    def __len__(self):
        return len(self.stages)


def _check_curve(steps, values):
    steps = np.asarray(steps, np.float64)
    values = np.asarray(values, np.float64)
    if steps.ndim != 1 or values.shape != steps.shape or steps.size < 5:
        raise ConfigError("values", described(f"shape {values.shape} beside steps {steps.shape}"),
                          "must be one curve: values and steps of the same length, at least 5 points")
    if not np.all(np.isfinite(values)):
        raise ConfigError("values", described(f"{int(np.sum(~np.isfinite(values)))} non-finite value(s)"),
                          "must be finite (drop the points whose estimate failed)")
    if not np.all(np.isfinite(steps)) or np.any(steps <= 0) or np.any(np.diff(steps) <= 0):
        raise ConfigError("steps", described(f"{steps[:3].tolist()}..."), "must be positive and increasing")
    return steps, values


def smoothed_slope(steps, values, smoothing: float = 0.15):
    """(smoothed values, slope d value / d log step): the rule's steps 1 and 2."""
    steps, values = _check_curve(steps, values)
    if not (isinstance(smoothing, (int, float, np.floating)) and smoothing > 0):
        raise ConfigError("smoothing", smoothing, "must be a positive width in log(step) units")
    t = np.log(steps)
    w = np.exp(-0.5 * ((t[:, None] - t[None, :]) / smoothing) ** 2)
    smooth = (w @ values) / w.sum(axis=1)
    return smooth, np.gradient(smooth, t)


def stage_boundaries(steps, values, *, smoothing: float = 0.15, flat: float = 0.1, min_gap: float = 0.2,
                     edge: int = 2) -> Stages:
    """The stage boundaries of a curve by the module's rule.

    Args:
        steps: (n,) increasing positive training steps (a snapshot at step 0 must be left out:
            the rule works in log(step)).
        values: (n,) the curve (an LLC estimate per snapshot, a loss, a score).
        smoothing: the kernel's width in log(step).
        flat: a rest of the slope counts as a plateau below this share of its largest |value|.
        min_gap: boundaries nearer than this (log units) are one.
        edge: points at each end where no boundary is placed.
    Returns:
        :class:`Stages`.
    """
    for name, v, lo, hi in (("flat", flat, 0.0, 1.0), ("min_gap", min_gap, 0.0, np.inf)):
        if not (isinstance(v, (int, float, np.floating)) and lo <= v < hi):
            raise ConfigError(name, v, f"must be a number in [{lo}, {hi})")
    if isinstance(edge, bool) or not isinstance(edge, (int, np.integer)) or edge < 1:
        raise ConfigError("edge", edge, "must be an integer >= 1")
    smooth, slope = smoothed_slope(steps, values, smoothing)
    steps = np.asarray(steps, np.float64)
    n = steps.size
    if 2 * edge >= n - 1:
        raise ConfigError("edge", edge, f"must leave points between the edges of {n} points")
    t = np.log(steps)
    top = np.max(np.abs(slope))
    found = []  # (index, kind)
    for i in range(1, n):
        if slope[i] == 0.0 or (slope[i - 1] != 0 and np.sign(slope[i]) != np.sign(slope[i - 1])):
            # the crossing lies between i − 1 and i: the point with the smaller |slope|
            found.append((i if abs(slope[i]) <= abs(slope[i - 1]) else i - 1, "turn"))
    level = flat * top
    calm = np.abs(slope) < level
    if top > 0 and calm[0] and not calm.all():
        i = int(np.argmin(calm))  # the first point above the level
        found.append((i if abs(abs(slope[i]) - level) <= abs(abs(slope[i - 1]) - level) else i - 1, "onset"))
    if top > 0 and calm[-1] and not calm.all():
        i = n - int(np.argmin(calm[::-1]))  # the first point of the final rest
        found.append((i if abs(abs(slope[i]) - level) <= abs(abs(slope[i - 1]) - level) else i - 1, "rest"))
    turns = [t[i] for i, k in found if k == "turn"]
    for i in range(1, n - 1):
        if (top > 0 and abs(slope[i]) < flat * top and abs(slope[i]) <= abs(slope[i - 1])
                and abs(slope[i]) <= abs(slope[i + 1]) and all(abs(t[i] - u) >= min_gap for u in turns)):
            found.append((i, "plateau"))
    # the edges first: a boundary the one-sided kernel places there must not displace one inside
    found = sorted((i, k) for i, k in found if edge <= i < n - edge)
    merged = []
    for idx, kind in found:
        if merged and t[idx] - t[merged[-1][0]] < min_gap:
            if abs(slope[idx]) < abs(slope[merged[-1][0]]):
                merged[-1] = (idx, kind)
            continue
        merged.append((idx, kind))
    bounds = tuple(float(steps[i]) for i, _ in merged)
    edges = (float(steps[0]),) + bounds + (float(steps[-1]),)
    return Stages(boundaries=bounds, kinds=tuple(k for _, k in merged),
                  stages=tuple(zip(edges[:-1], edges[1:])), smoothed=smooth, slope=slope)


def transition_window(steps, values, *, lo: float = 0.1, hi: float = 0.9) -> tuple[float, float]:
    """(start, end): the first logged steps by which a curve has made ``lo`` and ``hi`` of its
    change from its first value to its last (a phase change's window: Olsson et al.'s
    in-context learning score falls within it). Raw values, no smoothing; a curve that does
    not change gives (nan, nan)."""
    steps = np.asarray(steps, np.float64)
    _check_curve(steps + 1.0 if steps.size and steps[0] == 0 else steps, values)  # a step 0 is allowed here
    values = np.asarray(values, np.float64)
    for name, v in (("lo", lo), ("hi", hi)):
        if not (isinstance(v, (int, float, np.floating)) and 0 < v < 1):
            raise ConfigError(name, v, "must be a share in (0, 1)")
    if lo >= hi:
        raise ConfigError("hi", hi, f"must be above lo={lo}")
    change = values[-1] - values[0]
    if change == 0:
        return float("nan"), float("nan")
    progress = (values - values[0]) / change

    def first(share):
        return float(steps[int(np.argmax(progress >= share))])
    return first(lo), first(hi)
