"""Argument checks shared by the analyses: one ConfigError naming the argument, its value and
what is allowed."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.tracing import concrete, is_traced

__all__ = ["concrete", "is_traced", "positive", "nonnegative", "finite_tree"]

def positive(name: str, value, integer: bool = False):
    """A finite number > 0 (an integer when ``integer``); a traced value passes unchecked."""
    if isinstance(value, jax.Array) and is_traced(value):
        return value
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating)) and not (
        isinstance(value, (np.ndarray, jax.Array)) and np.ndim(value) == 0)
    if not bad:
        v = float(np.asarray(value))
        bad = not math.isfinite(v) or v <= 0 or (integer and int(v) != v)
    if bad:
        raise ConfigError(name, value, "must be a positive integer" if integer else "must be a finite number > 0")
    return int(np.asarray(value)) if integer else value


def nonnegative(name: str, value):
    """A finite number >= 0; a traced value passes unchecked."""
    if isinstance(value, jax.Array) and is_traced(value):
        return value
    ok = not isinstance(value, bool) and isinstance(value, (int, float, np.integer, np.floating, np.ndarray, jax.Array))
    if ok:
        v = np.asarray(value)
        ok = v.ndim == 0 and math.isfinite(float(v)) and float(v) >= 0
    if not ok:
        raise ConfigError(name, value, "must be a finite number >= 0")
    return value


_NOT_FINITE = "must be finite (no NaN or inf)"


def _concretely_finite(a, host: bool) -> bool:
    """Whether every entry of the concrete array ``a`` is finite."""
    if host:  # numpy reads a host buffer in place, with no kernel to compile per shape
        return bool(np.isfinite(np.asarray(a)).all())
    # On an accelerator, reduce there and fetch one bool; ensure_compile_time_eval, as a concrete
    # array closed over by a jit trace would otherwise be traced too.
    with jax.ensure_compile_time_eval():
        return bool(jnp.isfinite(a).all())


def _non_finite(a, leaf: str = ""):
    """What is non-finite in a concrete float array (count, ``leaf`` when given, rows), or None.

    None as well for a traced array (its values are unknown until it runs) and for anything
    that is not a float array. One isfinite().all() when everything is finite; the rows are
    looked up only on failure.
    """
    where = f" in {leaf}" if leaf else ""
    if isinstance(a, float):
        return None if math.isfinite(a) else f"a non-finite value (NaN or inf){where}"
    if is_traced(a) or not hasattr(a, "dtype"):
        return None
    try:
        if not jnp.issubdtype(a.dtype, jnp.inexact):
            return None
    except TypeError:  # a dtype numpy does not know (another framework's tensor): not ours to read
        return None
    devices = getattr(a, "devices", None)
    host = isinstance(a, (np.ndarray, np.generic)) or not callable(devices) or all(
        d.platform == "cpu" for d in devices())
    if _concretely_finite(a, host):
        return None
    bad = ~np.isfinite(np.asarray(a))
    n = int(bad.sum())
    what = f"{n} non-finite value{'s' if n != 1 else ''} (NaN or inf){where}"
    if bad.ndim == 0:
        return what
    rows = np.flatnonzero(bad.reshape(bad.shape[0], -1).any(axis=1))
    shown = ", ".join(str(r) for r in rows[:5]) + (", ..." if rows.size > 5 else "")
    return f"{what} at {'rows' if bad.ndim > 1 else 'indices'} [{shown}]"


def _refuse_non_finite(a, name: str):
    """a unchanged, or ConfigError naming ``name`` when a is concrete and holds NaN or inf."""
    problem = _non_finite(a)
    if problem:
        raise ConfigError(name, described(problem), _NOT_FINITE)
    return a


def _refuse_non_finite_tree(tree, name: str):
    """:func:`_refuse_non_finite` on every leaf of a pytree (a model, a basis, a dict of
    inputs); the error says which leaf."""
    for path, leaf in jax.tree_util.tree_flatten_with_path(tree)[0]:
        problem = _non_finite(leaf, jax.tree_util.keystr(path, simple=True, separator="."))
        if problem:
            raise ConfigError(name, described(problem), _NOT_FINITE)
    return tree


def finite_tree(name: str, tree) -> bool:
    """Refuse a pytree with a NaN or infinite value in a concrete leaf (ConfigError naming
    ``name`` and the leaf); returns False when some leaf is traced (then the caller flags it in
    its result)."""
    _refuse_non_finite_tree(tree, name)
    return not any(is_traced(leaf) for leaf in jax.tree.leaves(tree))
