"""Argument checks shared by the degeneracy analyses: one ConfigError naming the argument."""

from __future__ import annotations

import math

import jax
import numpy as np

from ..core.config import ConfigError, described

_TRACED = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)
_TRACER = getattr(jax.core, "Tracer", None)


def concrete(x):
    """``x`` as a numpy array, or None when it is traced (inside jit/vmap: not inspectable)."""
    try:
        return np.asarray(x)
    except _TRACED:
        return None


def is_traced(x) -> bool:
    """Whether ``x`` is a tracer (inside jit/vmap), for any array including PRNG keys."""
    if _TRACER is not None:
        return isinstance(x, _TRACER)
    if isinstance(x, jax.Array) and jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    return concrete(x) is None


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


def finite_tree(name: str, tree) -> bool:
    """Refuse a pytree with a NaN or infinite value in a concrete leaf (ConfigError naming
    ``name``); returns False when some leaf is traced (then the caller flags it in its result)."""
    bad, total, traced = 0, 0, False
    for leaf in jax.tree.leaves(tree):
        if not hasattr(leaf, "dtype") or not np.issubdtype(np.asarray(leaf).dtype if not isinstance(leaf, jax.Array)
                                                           else leaf.dtype, np.inexact):
            continue
        arr = concrete(leaf)
        if arr is None:
            traced = True
            continue
        bad += int(np.size(arr) - np.count_nonzero(np.isfinite(arr)))
        total += int(np.size(arr))
    if bad:
        raise ConfigError(name, described(f"{bad} non-finite values (NaN or inf) among {total}"), "must be finite")
    return not traced
