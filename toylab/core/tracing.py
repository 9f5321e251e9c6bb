"""Whether a value is traced (inside jit/vmap/grad, its entries unknown until it runs) or concrete.

The one place the lab asks: analyses check a concrete argument's values and only its shape when
traced. ``jax.core.Tracer`` is not public API and newer JAX releases move it, so it is looked up
once, and when it is gone the answer comes from whether the value can be read."""

from __future__ import annotations

import jax
import numpy as np

__all__ = ["is_traced", "concrete"]

_TRACED = (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError)
_TRACER = getattr(jax.core, "Tracer", None)


def concrete(x):
    """``x`` as a numpy array, or None when it is traced (not inspectable)."""
    try:
        return np.asarray(x)
    except _TRACED:
        return None


def is_traced(x) -> bool:
    """Whether ``x`` is a tracer, for any value (a non-array is never traced), PRNG keys included."""
    if _TRACER is not None:
        return isinstance(x, _TRACER)
    if not isinstance(x, jax.Array):
        return False
    if jax.dtypes.issubdtype(x.dtype, jax.dtypes.prng_key):
        x = jax.random.key_data(x)
    try:  # reading no entries: a concrete array copies nothing, a tracer refuses
        np.asarray(x.reshape(-1)[:0])
    except _TRACED:
        return True
    return False
