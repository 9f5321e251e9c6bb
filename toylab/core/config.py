"""Frozen, validated configs whose fields are either static (they pick the compiled
program) or sweepable (numbers traced inside it), plus the fields every family shares.

A family config is a frozen dataclass subclassing :class:`TrainConfig`; each field is
declared with :func:`static`, :func:`sweepable` or :func:`seed_field`, which record its
kind, its parser and its check in the field metadata. Construction validates every
field and raises :class:`ConfigError` naming the field, the value and what is allowed.
"""

from __future__ import annotations

import contextvars
import dataclasses
import math
from typing import Any, Callable

import numpy as np

__all__ = [
    "ConfigError",
    "described",
    "TrainConfig",
    "static",
    "sweepable",
    "seed_field",
    "positive_int",
    "nonnegative_int",
    "positive",
    "nonnegative",
    "in_interval",
    "one_of",
    "seed_value",
    "default_log_every",
    "fields",
    "cli_spelling",
    "spelled",
]


class ConfigError(ValueError):
    """Bad user input — the one error class toylab raises for it, from configs, the CLI, the
    results store, the group library and the analysis functions alike. Names the field (or
    parameter), the value given and what is allowed."""

    def __init__(self, field: str, value: Any, allowed: str):
        self.field, self.value, self.allowed = field, value, allowed
        shown = f"{field} has {value}" if isinstance(value, Described) else f"{field}={value!r}"
        super().__init__(f"{shown}: {allowed}")


class Described(str):
    """A description of a value too big to show (``described("shape (3, 4)")``): the error
    reads "x has shape (3, 4): ..." instead of quoting it."""


described = Described


# ----------------------------------------------------------------------------- checks
# A check takes the parsed value and returns None when it is allowed, else a phrase
# saying what is allowed.


MAX_INT32 = 2**31 - 1  # sizes and counts become int32 array dimensions and indices
MAX_SEED = 2**32 - 1  # seeds become uint32 (a larger one would wrap onto a smaller seed's key)


def positive_int(v):
    if v < 1:
        return "must be a positive integer"
    return None if v <= MAX_INT32 else f"must be at most {MAX_INT32} (sizes and counts are int32)"


def nonnegative_int(v):
    if v < 0:
        return "must be a non-negative integer"
    return None if v <= MAX_INT32 else f"must be at most {MAX_INT32} (sizes and counts are int32)"


def seed_value(v):
    return None if 0 <= v <= MAX_SEED else f"must be an integer in [0, {MAX_SEED}] (seeds are uint32)"


def positive(v):
    return None if math.isfinite(v) and v > 0 else "must be a finite number > 0"


def nonnegative(v):
    return None if math.isfinite(v) and v >= 0 else "must be a finite number >= 0"


def in_interval(lo: float, hi: float, *, lo_open: bool = False, hi_open: bool = False):
    left, right = ("(" if lo_open else "["), (")" if hi_open else "]")

    def check(v):
        ok = math.isfinite(v) and (v > lo if lo_open else v >= lo) and (v < hi if hi_open else v <= hi)
        return None if ok else f"must be in {left}{lo}, {hi}{right}"

    return check


def one_of(*choices: str):
    def check(v):
        return None if v in choices else f"must be one of {', '.join(choices)}"

    check.choices = choices  # listed by `toylab fields`
    return check


DEFAULT_LOG_EVERY = 100


def default_log_every(steps: int) -> int:
    """log_every when none is given: 100, or the largest divisor of ``steps`` below 100."""
    return next(d for d in range(min(DEFAULT_LOG_EVERY, steps), 0, -1) if steps % d == 0)


# ----------------------------------------------------------------------------- parsers
# A parser turns a Python value or a command-line string into the field's type, raising
# ValueError (turned into ConfigError) when it cannot.


def _parse_int(v):
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, str):
        return int(v.strip().replace("_", ""))
    if isinstance(v, (int, np.integer)):
        return int(v)
    if isinstance(v, (float, np.floating)) and float(v).is_integer():
        return int(v)
    raise ValueError


def _parse_float(v):
    if isinstance(v, bool):
        raise ValueError
    if isinstance(v, str):
        return float(v.strip()) + 0.0
    if isinstance(v, (int, float, np.integer, np.floating)):
        return float(v) + 0.0  # -0.0 and 0.0 are one value (a grid must not train it twice)
    raise ValueError


def _parse_str(v):
    if not isinstance(v, str):
        raise ValueError
    return v.strip()


def _parse_bool(v):
    if isinstance(v, (bool, np.bool_)):
        return bool(v)
    if isinstance(v, str) and v.strip().lower() in ("true", "1", "yes", "false", "0", "no"):
        return v.strip().lower() in ("true", "1", "yes")
    raise ValueError


def _tuple_of(item_parser):
    def parse(v):
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none")):
            return ()
        if isinstance(v, str):
            v = [s for s in v.replace(";", ",").split(",") if s.strip()]
        return tuple(item_parser(x) for x in v)

    return parse


def _optional(parser):
    def parse(v):
        if v is None or (isinstance(v, str) and v.strip().lower() in ("", "none")):
            return None
        return parser(v)

    return parse


_PARSERS = {
    int: (_parse_int, "an integer"),
    float: (_parse_float, "a number"),
    str: (_parse_str, "a string"),
    bool: (_parse_bool, "true or false"),
    "ints": (_tuple_of(_parse_int), "a comma-separated list of integers"),
    "floats": (_tuple_of(_parse_float), "a comma-separated list of numbers"),
    "optional floats": (_optional(_tuple_of(_parse_float)), "a comma-separated list of numbers, or none"),
    "optional float": (_optional(_parse_float), "a number, or none"),
    "optional int": (_optional(_parse_int), "an integer, or none"),
}

STATIC, SWEEPABLE, SEED = "static", "sweepable", "seed"
MAX_STEPS = 2**31 - 1  # the step counter is an int32
_RECORDED_DERIVED: contextvars.ContextVar = contextvars.ContextVar("toylab_recorded_derived", default=None)


def _field(kind, default, type_, check, help, whole=False):
    if type_ is None:
        type_ = type(default)
    parser, type_name = _PARSERS[type_]
    meta = dict(kind=kind, parse=parser, type_name=type_name, check=check, help=help, whole=whole)
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple default")
    return dataclasses.field(default=default, metadata=meta)


def static(default, *, type=None, check: Callable | None = None, help: str = ""):
    """A field that fixes shapes or code paths: each value is its own compiled program."""
    return _field(STATIC, default, type, check, help)


def sweepable(default: float, *, check: Callable | None = None, help: str = "", whole: bool = False):
    """A number used inside the math: traced (as float32), so a grid over it is one program.
    ``whole``: the number counts something (latents kept), so a fraction is refused rather
    than rounded inside the program."""
    return _field(SWEEPABLE, float(default), float, check, help, whole=whole)


def seed_field(default: int = 0, help: str = "base PRNG seed; seed i of a sweep uses seed + i"):
    return _field(SEED, default, int, seed_value, help)


FLOAT32_MAX = float(np.finfo(np.float32).max)


# ----------------------------------------------------------------------------- base config


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """Fields shared by every family. Subclasses add their own, all with defaults."""

    steps: int = static(10_000, check=positive_int, help="optimizer steps")
    log_every: int | None = static(None, type="optional int", check=positive_int,
                                   help=f"steps between logged metrics; divides steps (none: {DEFAULT_LOG_EVERY}, or "
                                        "the largest divisor of steps below it)")
    snapshot_steps: tuple = static((), type="ints", help="steps at which parameters are saved (multiples of log_every, 0 allowed)")
    schedule: str = static("constant", check=one_of("constant", "cosine"), help="learning-rate schedule after warmup")
    warmup_steps: int = static(0, check=nonnegative_int, help="linear warmup steps (lr rises from 0)")
    prng_impl: str = static("threefry2x32", check=one_of("threefry2x32", "rbg", "unsafe_rbg"), help="JAX PRNG implementation")
    matmul_precision: str = static("float32", check=one_of("float32", "tf32", "bfloat16"),
                                   help="matrix products of the training program (toylab.core.precision): float32 "
                                        "(HIGHEST, full float32 on every backend), tf32 (the backend's fast mode: "
                                        "TF32 on Ampere+ GPUs, bfloat16 passes on TPUs, no change on CPU), bfloat16 "
                                        "(the loss computed from bfloat16 parameters and inputs, float32 updates)")
    data_seed: int | None = static(None, type="optional int", check=seed_value,
                                   help="seed of the training batches (none: each run draws its own from its seed; "
                                        "a number: every run draws the batches that seed draws, so the runs of a "
                                        "sweep see the same data and a vmapped block makes each batch once)")
    lr: float = sweepable(1e-3, check=positive, help="peak learning rate (AdamW)")
    weight_decay: float = sweepable(0.0, check=nonnegative, help="decoupled AdamW weight decay (multiplied by lr, as torch)")
    beta1: float = sweepable(0.9, check=in_interval(0, 1, hi_open=True), help="AdamW beta1")
    beta2: float = sweepable(0.999, check=in_interval(0, 1, hi_open=True), help="AdamW beta2")
    seed: int = seed_field()

    def __post_init__(self):
        for f in dataclasses.fields(self):
            raw = getattr(self, f.name)
            value = self.parse_field(f.name, raw)
            object.__setattr__(self, f.name, value)
        # A log_every the user did not give adapts to steps instead of refusing them.
        object.__setattr__(self, "_auto_log_every", self.log_every is None)
        if self.log_every is None:
            object.__setattr__(self, "log_every", default_log_every(self.steps))
        self.validate()
        recorded = _RECORDED_DERIVED.get()
        object.__setattr__(self, "_derived", dict(recorded) if recorded is not None else self.check_data())

    @classmethod
    def from_record(cls, fields: dict, derived: dict | None = None) -> "TrainConfig":
        """Rebuild a config from a results manifest: every field is parsed and checked, but
        no data is read (:meth:`check_data` is skipped; its sizes come from ``derived``), so
        a results folder stays loadable after its data file moved."""
        token = _RECORDED_DERIVED.set(dict(derived or {}))
        try:
            return cls(**fields)
        finally:
            _RECORDED_DERIVED.reset(token)

    def check_data(self) -> dict:
        """Hook for a family whose model sizes come from data it reads (image files): check
        the data here, so a bad file is refused before anything is written, and return the
        sizes (JSON-able). They are recorded in the results manifest. Default: no data."""
        return {}

    @property
    def derived(self) -> dict:
        """The sizes :meth:`check_data` found (or that a results manifest recorded)."""
        return self._derived

    # -- cross-field checks; families extend this and call super().validate()
    def validate(self):
        if self.steps > MAX_STEPS:
            raise ConfigError("steps", self.steps, f"must be at most {MAX_STEPS} (the step counter is an int32)")
        if self.steps % self.log_every:
            raise ConfigError("log_every", self.log_every, f"must divide steps={self.steps}")
        if self.warmup_steps > self.steps:
            raise ConfigError("warmup_steps", self.warmup_steps, f"must be <= steps={self.steps}")
        for s in self.snapshot_steps:
            if s < 0 or s > self.steps or s % self.log_every:
                raise ConfigError(
                    "snapshot_steps", self.snapshot_steps,
                    f"each step must be a multiple of log_every={self.log_every} in [0, steps={self.steps}]",
                )
        if len(set(self.snapshot_steps)) != len(self.snapshot_steps) or list(self.snapshot_steps) != sorted(self.snapshot_steps):
            raise ConfigError("snapshot_steps", self.snapshot_steps, "must be increasing with no repeats")

    # -- field introspection
    @classmethod
    def field_info(cls) -> dict[str, dataclasses.Field]:
        return {f.name: f for f in dataclasses.fields(cls)}

    @classmethod
    def names(cls, kind: str | None = None) -> list[str]:
        return [n for n, f in cls.field_info().items() if kind is None or f.metadata["kind"] == kind]

    @classmethod
    def parse_field(cls, name: str, raw: Any) -> Any:
        """Parse and check one field's value (a Python value or a command-line string)."""
        info = cls.field_info()
        if name not in info:
            raise ConfigError(name, raw, f"unknown field; {cls.__name__} has: {', '.join(info)}")
        meta = info[name].metadata
        try:
            value = meta["parse"](raw)
        except (ValueError, TypeError):
            raise ConfigError(name, raw, f"must be {meta['type_name']}") from None
        # A number is shown parsed (n_hidden=10, not n_hidden='10'); other values as given.
        numeric = isinstance(value, (int, float)) and not isinstance(value, bool)
        shown = raw if isinstance(raw, str) and not numeric else value
        if meta["kind"] == SWEEPABLE and math.isfinite(value):
            # Traced as float32: a larger number would train as inf, a fraction of a count
            # would be rounded inside the program; both are refused here instead.
            if abs(value) > FLOAT32_MAX:
                raise ConfigError(name, shown, f"must be at most {FLOAT32_MAX:.4g} in size (it is traced as float32)")
            if meta.get("whole") and not value.is_integer():
                raise ConfigError(name, shown, "must be a whole number")
        if meta["check"] is not None and value is not None:
            problem = meta["check"](value)
            if problem:
                raise ConfigError(name, shown, problem)
        return value

    def replace(self, **changes) -> "TrainConfig":
        unknown = [k for k in changes if k not in self.field_info()]
        if unknown:
            raise ConfigError(unknown[0], changes[unknown[0]], f"unknown field; {type(self).__name__} has: {', '.join(self.field_info())}")
        if self._auto_log_every and "log_every" not in changes:
            changes["log_every"] = None  # still the adapting default
        return dataclasses.replace(self, **changes)

    @property
    def log_every_was_chosen(self) -> bool:
        """True when log_every was picked by default for these steps, not given."""
        return self._auto_log_every

    def to_dict(self) -> dict:
        """The fields as given (log_every None when it adapts to steps), JSON-able."""
        out = {n: (list(v) if isinstance(v, tuple) else v) for n, v in ((n, getattr(self, n)) for n in self.field_info())}
        if self._auto_log_every:
            out["log_every"] = None
        return out

    def static_key(self) -> tuple:
        """Hashable identity of the compiled program this config needs."""
        return tuple((n, getattr(self, n)) for n in self.names(STATIC))

    def hparams(self) -> dict[str, np.ndarray]:
        """The sweepable fields as float32 scalars: the traced argument of ``train``."""
        return {n: np.float32(getattr(self, n)) for n in self.names(SWEEPABLE)}


# ----------------------------------------------------------------------------- introspection


def fields(family) -> dict[str, dict]:
    """A family's config fields as data (what ``toylab fields FAMILY`` prints).

    Args:
        family: a family name, a :class:`~toylab.core.family.Family`, or a config class.
    Returns:
        ``{name: {"kind", "type", "default", "help", "choices"}}`` in declaration order;
        kind is "static" (picks the compiled program), "sweepable" (traced, so a grid over it
        is one program) or "seed"; choices is a tuple of allowed strings, or None.
    """
    if isinstance(family, type) and issubclass(family, TrainConfig):
        cfg_cls = family
    else:
        from .family import Family, family_names, get_family

        if not isinstance(family, (str, Family)):
            raise ConfigError("family", family, f"must be a family name ({', '.join(family_names())}), a Family "
                                                "or a config class")
        cfg_cls = get_family(family).config
    out = {}
    for name, f in cfg_cls.field_info().items():
        meta = f.metadata
        default = list(f.default) if isinstance(f.default, tuple) else f.default
        out[name] = {"kind": meta["kind"], "type": meta["type_name"], "default": default, "help": meta["help"],
                     "choices": getattr(meta["check"], "choices", None)}
    return out


# ----------------------------------------------------------------------------- messages
# Advice in an error names an option as its reader types it: resume=True from Python,
# --resume on the command line (which sets this while it runs).
_CLI_SPELLING: contextvars.ContextVar = contextvars.ContextVar("toylab_cli_spelling", default=False)


def spelled(python: str, cli: str) -> str:
    """``python`` (``"resume=True"``), or ``cli`` (``"--resume"``) inside :func:`cli_spelling`."""
    return cli if _CLI_SPELLING.get() else python


class cli_spelling:
    """Context in which error messages name options as the command line spells them."""

    def __enter__(self):
        self._token = _CLI_SPELLING.set(True)
        return self

    def __exit__(self, *exc):
        _CLI_SPELLING.reset(self._token)
        return False
