"""The LLC over training: at every snapshot (and seed) × chain as one compiled program, refined
to groups of weights (the weight-refined LLC of a head or a layer: the restricted LLC of its
weights) and, through the loss, to a sub-distribution of the data (the data-refined LLC).

Snapshots taken during training are not local minima, so the rule that chooses a step size
(:func:`~toylab.analysis.llc.learning_coefficient`'s ``step_size="auto"``) refuses them; here ε
and γ are given and held across snapshots (as Hoogland et al. 2025 do), and each estimate's
diagnostics (predicted bias, localization share, gradient shift, R-hat, ESS) say how far it can
be trusted.
"""

from __future__ import annotations

import math
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from .llc import LLCResult, learning_coefficients

__all__ = ["llc_over_training", "point_warnings", "weighted_mean"]


def _number(name, value, *, zero_ok=False):
    if isinstance(value, str) or isinstance(value, bool) or not isinstance(value, (int, float, np.floating)) \
            or not math.isfinite(float(value)) or float(value) < 0 or (float(value) == 0 and not zero_ok):
        raise ConfigError(name, value, ("a finite number >= 0" if zero_ok else "a finite number > 0") + ", held at "
                          "every snapshot (a snapshot taken during training is not a local minimum, where the "
                          "'auto' rule applies: choose it once, e.g. at the last snapshot, and hold it)")
    return float(value)


def llc_over_training(loss: Callable, snapshots, data, key, *, step_size, localization, lead: int = 1,
                      groups: dict | None = None, chunk_size: int | None = 8, **settings) -> LLCResult:
    """The LLC at every point of ``snapshots`` (params with ``lead`` leading axes: snapshots,
    or seeds × snapshots), for every group of weights in ``groups``, as one vmapped program.

    Args:
        loss: ``loss(params, batch) -> scalar``, as :func:`~toylab.analysis.llc.learning_coefficient`
            takes it. A data-refined LLC is this with a loss that reads only a sub-distribution
            (e.g. weights in the batch), called again on that data.
        snapshots: params stacked along ``lead`` leading axes.
        data, key: as for :func:`~toylab.analysis.llc.learning_coefficient`.
        step_size, localization: ε and γ, numbers held at every point.
        groups: None (every weight moves), or ``{name: mask}`` with each mask a pytree of bools
            like one point's params (a head's weights, a layer's): the weight-refined LLC of
            each group, the others held where they are.
        chunk_size: points (snapshots × groups) estimated at once, the chunks in sequence
            inside the one program: each point's full-data loss, gradient and Hessian
            diagnostics are held for a chunk at a time (None: all points at once).
        settings: the other keywords of :func:`~toylab.analysis.llc.learning_coefficient`
            (chains, draws, burnin, batch_size, nbeta, n_examples, precision, …).

    Returns:
        An :class:`~toylab.analysis.llc.LLCResult` whose arrays lead with
        ``(len(groups),) + lead axes`` (groups in their dict order), or the lead axes alone
        without groups. :func:`point_warnings` reads one estimate's warnings.
    """
    step_size = _number("step_size", step_size)
    localization = _number("localization", localization, zero_ok=True)
    if isinstance(lead, bool) or not isinstance(lead, int) or lead < 1:
        raise ConfigError("lead", lead, "must be an integer >= 1 (the leading axes of snapshots)")
    leaves = jax.tree.leaves(snapshots)
    if not leaves or any(jnp.ndim(x) < lead for x in leaves) or len({jnp.shape(x)[:lead] for x in leaves}) != 1:
        raise ConfigError("snapshots", described(f"leading axes {sorted({jnp.shape(x)[:lead] for x in leaves})}"),
                          f"must be params stacked along {lead} leading axes shared by every array")
    shape = tuple(jnp.shape(leaves[0])[:lead])
    points = int(np.prod(shape))
    flat = jax.tree.map(lambda x: jnp.reshape(x, (points,) + jnp.shape(x)[lead:]), snapshots)
    if groups is None:
        res = learning_coefficients(loss, flat, data, key, step_size=step_size, localization=localization,
                                    chunk_size=chunk_size, **settings)
        return _unflatten(res, shape)
    if not isinstance(groups, dict) or not groups:
        raise ConfigError("groups", described(f"a {type(groups).__name__}"),
                          "must be None or a non-empty dict {name: mask like one point's params}")
    one = jax.tree.map(lambda x: x[0], flat)
    masks = []
    for name, mask in groups.items():
        if jax.tree.structure(mask) != jax.tree.structure(one) or any(
                jnp.shape(m) != jnp.shape(p) for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(one))):
            raise ConfigError("groups", described(f"{name!r}: a tree {jax.tree.structure(mask)}"),
                              "each mask must have the structure and shapes of one point's params")
        masks.append(mask)
    n_groups = len(masks)
    tiled = jax.tree.map(lambda x: jnp.broadcast_to(x[None], (n_groups,) + x.shape).reshape(
        (n_groups * points,) + x.shape[1:]), flat)
    # stacked as given (not cast to bool): learning_coefficients refuses values other than 0/1
    stacked_masks = jax.tree.map(lambda *ms: jnp.repeat(jnp.stack([jnp.asarray(m) for m in ms]), points, axis=0),
                                 *masks)
    res = learning_coefficients(loss, tiled, data, key, step_size=step_size, localization=localization,
                                mask=stacked_masks, chunk_size=chunk_size, **settings)
    return _unflatten(res, (n_groups,) + shape)


def _unflatten(res: LLCResult, shape: tuple) -> LLCResult:
    return jax.tree.map(lambda x: jnp.reshape(x, shape + jnp.shape(x)[1:]), res)


def point_warnings(res: LLCResult, index) -> list[str]:
    """The warnings of the estimate at ``index`` (an int or a tuple of ints into the result's
    leading axes: groups, then the snapshots' lead axes)."""
    if not isinstance(res, LLCResult):
        raise ConfigError("res", described(f"a {type(res).__name__}"), "must be an LLCResult")
    index = index if isinstance(index, tuple) else (index,)
    lead = np.shape(res.mean)
    if len(index) != len(lead) or any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or not 0 <= i < n
                                      for i, n in zip(index, lead)):
        raise ConfigError("index", index, f"must be one integer per leading axis of the result, within {lead}")
    return jax.tree.map(lambda x: x[index], res).warnings


def weighted_mean(values, weights):
    """Σ w·v / Σ w over every axis (0 where the weights are all 0): the loss of a
    sub-distribution from per-token losses and its 0/1 (or graded) weights."""
    values = jnp.asarray(values)
    if jnp.shape(weights) != values.shape:
        raise ConfigError("weights", described(f"shape {jnp.shape(weights)}"),
                          f"must have the values' shape {values.shape}")
    weights = jnp.asarray(weights, values.dtype)
    total = jnp.sum(weights)
    return jnp.where(total > 0, jnp.sum(weights * values) / jnp.where(total > 0, total, 1.0), 0.0)
