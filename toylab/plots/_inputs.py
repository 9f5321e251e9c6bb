"""Checks of the plot functions' arguments: each turns a documented input form (numpy array,
list, tuple, jax array, mapping, number) into what the drawing code uses, or raises one
:class:`~toylab.core.config.ConfigError` naming the argument."""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..core.config import ConfigError, described

_DIMS = {0: "a number", 1: "a 1-D array", 2: "a 2-D array", 3: "a 3-D array"}


def shown(value):
    """The value itself when it is small to print, else a description of it."""
    if isinstance(value, np.ndarray) or hasattr(value, "shape") and hasattr(value, "dtype"):
        return described(f"shape {tuple(np.shape(value))}")
    try:
        text = repr(value)
    except Exception:  # noqa: BLE001 - any object may be given
        text = ""
    if text and len(text) <= 80:
        return value
    try:
        return described(f"length {len(value)} ({type(value).__name__})")
    except TypeError:
        return described(f"type {type(value).__name__}")


def array(name, value, what=None, *, ndim=None, dtype=np.float64, length=None, optional=False, nonempty=False):
    """``value`` as a numpy array of ``dtype``; ``ndim`` an int or a tuple of allowed ranks,
    ``length`` the required size of the first axis. None is allowed (and returned) only when
    ``optional``."""
    ranks = (ndim,) if isinstance(ndim, int) else ndim
    if what is None:
        what = " or ".join(_DIMS.get(r, f"a {r}-D array") for r in ranks) if ranks else "an array"
        what += " of numbers"
        if length is not None:
            what += f" of length {length}"
    if value is None:
        if optional:
            return None
        raise ConfigError(name, None, f"is required: {what}")
    if isinstance(value, (str, bytes, Mapping)):
        raise ConfigError(name, shown(value), f"must be {what}")
    try:
        a = np.asarray(value, dtype)
    except (TypeError, ValueError):  # ragged nesting or not numbers
        raise ConfigError(name, shown(value), f"must be {what}") from None
    if ranks is not None and a.ndim not in ranks:
        raise ConfigError(name, shown(value), f"must be {what} (got {a.ndim}-D)")
    if length is not None and (a.ndim == 0 or a.shape[0] != length):
        raise ConfigError(name, described(f"shape {a.shape}"), f"must be {what}")
    if nonempty and a.size == 0:
        raise ConfigError(name, shown(value), f"must be {what} with at least one entry")
    return a


def vector(name, value, length=None, *, dtype=np.float64, optional=False, nonempty=True, what=None):
    """A 1-D array (a scalar counts as one entry) of ``length`` entries when given."""
    if what is None:
        what = "a 1-D array of numbers" + (f" of length {length}" if length is not None else "")
    a = array(name, value, what, dtype=dtype, optional=optional)
    if a is None:
        return None
    if a.ndim == 0:
        a = a[None]
    if a.ndim != 1:
        raise ConfigError(name, described(f"shape {a.shape}"), f"must be {what}")
    if length is not None and a.size != length:
        raise ConfigError(name, described(f"shape {a.shape}"), f"must be {what}")
    if nonempty and a.size == 0:
        raise ConfigError(name, shown(value), f"must be {what} with at least one entry")
    return a


def positive(name, a, why="it is drawn on a log axis"):
    """``a`` (already an array) unchanged, if every finite entry is > 0."""
    finite = a[np.isfinite(a)]
    if finite.size and not np.all(finite > 0):
        raise ConfigError(name, shown(a), f"must be > 0 ({why})")
    return a


def number(name, value, what="a number", *, optional=False):
    """A finite float (None allowed only when ``optional``)."""
    if value is None and optional:
        return None
    try:
        if isinstance(value, (str, bytes, bool)) or np.ndim(value) != 0:
            raise TypeError
        v = float(value)
    except (TypeError, ValueError):
        raise ConfigError(name, shown(value), f"must be {what}") from None
    if not math.isfinite(v):
        raise ConfigError(name, value, f"must be {what} (finite)")
    return v


def integer(name, value, what="an integer", *, lo=None, hi=None):
    """An int in [lo, hi] (either bound may be None)."""
    try:
        if isinstance(value, (str, bytes, bool, np.bool_)) or np.ndim(value) != 0 or int(value) != value:
            raise TypeError
        v = int(value)
    except (TypeError, ValueError, OverflowError):
        raise ConfigError(name, shown(value), f"must be {what}") from None
    if (lo is not None and v < lo) or (hi is not None and v > hi):
        raise ConfigError(name, v, f"must be {what}")
    return v


def labels(name, value, length=None, *, optional=False):
    """A list of labels (anything str() can print), one per entry when ``length`` is given."""
    what = "a list of labels" + (f" of length {length}" if length is not None else "")
    if value is None:
        if optional:
            return None
        raise ConfigError(name, None, f"is required: {what}")
    if isinstance(value, (str, bytes, Mapping)):
        raise ConfigError(name, shown(value), f"must be {what} (not one string)")
    try:
        out = list(np.asarray(value).ravel()) if hasattr(value, "shape") else list(value)
    except TypeError:
        raise ConfigError(name, shown(value), f"must be {what}") from None
    if length is not None and len(out) != length:
        raise ConfigError(name, shown(value), f"must be {what} (got {len(out)})")
    return out


def mapping(name, value, what, *, optional=False, nonempty=True):
    """A dict (a copy of any mapping), non-empty unless told."""
    if value is None and optional:
        return None
    if not isinstance(value, Mapping):
        raise ConfigError(name, shown(value), f"must be a dict: {what}")
    if nonempty and not value:
        raise ConfigError(name, {}, f"must be a non-empty dict: {what}")
    return dict(value)


def entry(name, value, key, what):
    """``value[key]`` of a dict argument, or ConfigError naming the argument and the key."""
    if not isinstance(value, Mapping) or key not in value:
        keys = sorted(map(str, value)) if isinstance(value, Mapping) else None
        raise ConfigError(name, described(f"keys {keys}") if keys is not None else shown(value),
                          f"needs the entry {key!r}: {what}")
    return value[key]


def axes(name, value):
    """None or a matplotlib Axes to draw into."""
    from matplotlib.axes import Axes

    if value is not None and not isinstance(value, Axes):
        raise ConfigError(name, shown(value), "must be None (a new figure) or a matplotlib Axes")
    return value


def fmt(v) -> str:
    """A number as text: an integral value without a decimal point, else as ``:g``."""
    return str(int(v)) if float(v).is_integer() else f"{v:g}"


def title(name, value, *, required=False):
    """A title or label: a string (None counts as none, unless ``required``)."""
    if value is None and not required:
        return ""
    if not isinstance(value, str):
        raise ConfigError(name, shown(value), "must be a string")
    return value


def shape2(name, value):
    """An image shape (h, w) of two positive integers."""
    what = "an image shape (h, w) of two positive integers"
    try:
        h, w = (integer(name, v, what, lo=1) for v in value)
    except (TypeError, ValueError):
        raise ConfigError(name, shown(value), f"must be {what}") from None
    return h, w


def phase_bounds(name, bounds, last):
    """None, or three steps (t_mem, t_cleanup, t_end) where a None entry means ``last``."""
    what = "None or three steps (t_mem, t_cleanup, t_end), each a number or None (the last step)"
    if bounds is None:
        return None
    if isinstance(bounds, (str, bytes, Mapping)) or not hasattr(bounds, "__len__") or len(bounds) != 3:
        raise ConfigError(name, described(repr(bounds)) if len(repr(bounds)) > 80 else bounds, f"must be {what}")
    return tuple(last if b is None else number(name, b, what) for b in bounds)
