"""Hypothesis strategies for property tests of toylab.

    from hypothesis import given
    from toylab.testing import strategies as tst

    @given(tst.configs("superposition", max_size=4))
    def test_something(cfg): ...

- :func:`configs`: valid configs of every built-in family, small enough to train in seconds;
- :func:`group_names`, :func:`groups`, :func:`group_elements`, :func:`irreps`,
  :func:`group_irreps`: finite groups of the library (cyclic, dihedral, symmetric,
  alternating, products of two), their elements and irreducible representations;
- :func:`sparse_feature_batches`: the toy model of superposition's data;
- :func:`synthetic_generators`, :func:`planted_features`: planted-feature data sets;
- :func:`superposition_weights`, :func:`orthogonal_matrices`, :func:`bilinear_layers`: the
  weights the analyses read.

Every strategy checks its arguments when it is built and raises
:class:`~toylab.core.config.ConfigError` naming the bad one. :func:`planted_features` runs
JAX, which compiles once per distinct shape and structure: pin those to share the compiled
pieces across examples.
"""

from __future__ import annotations

import functools
import math
import numbers
import weakref
from typing import Any, NamedTuple

import numpy as np
from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from ..core.config import ConfigError, default_log_every, described

__all__ = ["configs", "CONFIG_FAMILIES", "group_names", "groups", "group_elements", "irreps", "group_irreps",
           "GROUP_KINDS", "sparse_feature_batches", "SparseBatch", "synthetic_generators", "planted_features",
           "PlantedFeatures", "superposition_weights", "orthogonal_matrices", "bilinear_layers"]

SearchStrategy = st.SearchStrategy


# ----------------------------------------------------------------------------- argument checks


def _int(name: str, value, lo: int, hi: int | None = None) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo or \
            (hi is not None and value > hi):
        raise ConfigError(name, value, f"must be an integer >= {lo}" if hi is None else f"must be an integer in {lo}..{hi}")
    return int(value)


def _number(name: str, value, lo: float, hi: float) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not (lo <= value <= hi):
        raise ConfigError(name, value, f"must be a number in [{lo}, {hi}]")
    return float(value)


def _bool_or_none(name: str, value) -> bool | None:
    if value is not None and not isinstance(value, (bool, np.bool_)):
        raise ConfigError(name, value, "must be true, false or None (drawn)")
    return None if value is None else bool(value)


def _ordered(lo_name: str, lo, hi_name: str, hi):
    if lo > hi:
        raise ConfigError(lo_name, lo, f"must be <= {hi_name}={hi}")


def _flag(value: bool | None) -> SearchStrategy:
    return st.booleans() if value is None else st.just(value)


# ----------------------------------------------------------------------------- configs


def _log_uniform(lo: float, hi: float) -> SearchStrategy:
    return st.floats(math.log10(lo), math.log10(hi)).map(lambda e: float(10.0 ** e))


def _unit(lo=0.0, hi=1.0, **kw) -> SearchStrategy:
    return st.floats(lo, hi, allow_nan=False, **kw)


class _Picker:
    """Draws a config field: the caller's fixed value, its strategy, or the default strategy."""

    def __init__(self, draw, fixed: dict):
        self.draw, self.fixed = draw, fixed

    def __call__(self, name: str, default: SearchStrategy):
        if name in self.fixed:
            value = self.fixed[name]
            return self.draw(value) if isinstance(value, SearchStrategy) else value
        return self.draw(default)

    def __contains__(self, name):
        return name in self.fixed


def _accepts_none(cls, name: str) -> bool:
    try:
        return cls.parse_field(name, None) is None
    except ConfigError:
        return False


def _divisors(n: int) -> list[int]:
    return [d for d in range(1, n + 1) if n % d == 0]


def _train_fields(pick: _Picker, max_steps: int, cls) -> dict:
    """The fields every family shares (TrainConfig's), drawn consistently."""
    out = {}
    if "log_every" in pick and "steps" not in pick:  # steps: multiples of the given log_every
        log_every = pick("log_every", st.nothing())
        every = log_every or 1  # None adapts to any steps
        steps = pick("steps", st.integers(1, max(1, max_steps // every)).map(lambda k: k * every))
    else:
        steps = pick("steps", st.integers(1, max_steps))
        log_every = pick("log_every", st.sampled_from(_divisors(steps)))
    out["steps"], out["log_every"] = steps, log_every
    every = log_every or default_log_every(steps)  # None: the config picks it from steps
    out["snapshot_steps"] = pick("snapshot_steps", st.lists(st.sampled_from(range(0, steps + 1, every)), unique=True,
                                                            max_size=3).map(lambda s: tuple(sorted(s))))
    out["schedule"] = pick("schedule", st.sampled_from(("constant", "cosine")))
    out["warmup_steps"] = pick("warmup_steps", st.integers(0, steps))
    out["prng_impl"] = pick("prng_impl", st.sampled_from(("threefry2x32", "rbg", "unsafe_rbg")))
    seed_int = st.integers(0, 2**31 - 1)
    out["data_seed"] = pick("data_seed", st.one_of(st.none(), seed_int) if _accepts_none(cls, "data_seed") else seed_int)
    out["lr"] = pick("lr", _log_uniform(1e-4, 1e-1))
    out["weight_decay"] = pick("weight_decay", _unit(0.0, 1.0))
    out["beta1"] = pick("beta1", _unit(0.0, 0.99))
    out["beta2"] = pick("beta2", _unit(0.9, 0.999))
    out["seed"] = pick("seed", seed_int)
    return out


def _superposition(pick: _Picker, size: int) -> dict:
    from ..models.superposition import MODEL_KINDS

    n = pick("n_features", st.integers(1, size))
    set_size = pick("set_size", st.integers(1, n))
    correlated = pick("correlated_sets", st.integers(0, n // set_size))
    anti = pick("anticorrelated_sets", st.integers(0, max(0, n // set_size - correlated)))
    return dict(
        n_features=n, n_hidden=pick("n_hidden", st.integers(1, size)), model=pick("model", st.sampled_from(MODEL_KINDS)),
        batch_size=pick("batch_size", st.integers(1, 8 * size)), set_size=set_size, correlated_sets=correlated,
        anticorrelated_sets=anti,
        importance=pick("importance", st.one_of(st.none(), st.lists(_unit(0.0, 2.0), min_size=n, max_size=n).map(tuple))),
        feature_probability=pick("feature_probability", _unit()),
        importance_decay=pick("importance_decay", _unit(0.05, 2.0)),
    )


def _heads(pick: _Picker, size: int) -> tuple[int, int]:
    """(d_model, n_heads) with n_heads dividing d_model, d_model <= size."""
    n_heads = pick("n_heads", st.integers(1, min(4, size)))
    if "d_model" in pick:
        return pick("d_model", st.nothing()), n_heads
    return pick("d_model", st.integers(1, max(1, size // n_heads)).map(lambda k: k * n_heads)), n_heads


def _table_fields(pick: _Picker) -> dict:
    f = pick("train_fraction", _unit(0.1, 1.0))
    return dict(train_fraction=f, loss_precision=pick("loss_precision", st.sampled_from(("float64", "float32"))),
                train_capacity=pick("train_capacity", st.one_of(st.none(), _unit(f, 1.0))))


def _is_prime(p: int) -> bool:
    return p >= 2 and all(p % d for d in range(2, math.isqrt(p) + 1))


def _grokking(pick: _Picker, size: int) -> dict:
    from ..models.mlp import EMBEDDINGS
    from ..models.transformer import NONLINEARITIES

    p = pick("p", st.integers(2, size))
    d_model, n_heads = _heads(pick, size)
    return dict(
        p=p, op=pick("op", st.sampled_from(("+", "-", "*", "/") if _is_prime(p) else ("+", "-"))),
        model=pick("model", st.sampled_from(("transformer", "mlp"))), d_model=d_model, n_heads=n_heads,
        n_layers=pick("n_layers", st.integers(1, 2)), d_mlp=pick("d_mlp", st.integers(1, size)),
        activation=pick("activation", st.sampled_from(NONLINEARITIES)), alpha=pick("alpha", _unit()),
        embed=pick("embed", st.sampled_from(EMBEDDINGS)), d_embed=pick("d_embed", st.integers(1, size)),
        bias=pick("bias", st.booleans()), loss=pick("loss", st.sampled_from(("cross_entropy", "mse"))),
        label_noise=pick("label_noise", _unit(0.0, 0.9)), **_table_fields(pick),
    )


def _groups(pick: _Picker, size: int) -> dict:
    from ..models.transformer import NONLINEARITIES

    d_model, n_heads = _heads(pick, size)
    return dict(
        group=pick("group", group_names(max_order=size)), model=pick("model", st.sampled_from(("mlp", "transformer"))),
        d_embed=pick("d_embed", st.integers(1, size)), d_hidden=pick("d_hidden", st.integers(1, size)),
        d_model=d_model, n_heads=n_heads, d_mlp=pick("d_mlp", st.integers(1, size)),
        activation=pick("activation", st.sampled_from(NONLINEARITIES)), **_table_fields(pick),
    )


def _bilinear(pick: _Picker, size: int) -> dict:
    dataset = pick("dataset", st.sampled_from(("sparse", "modular") if size >= 2 else ("sparse",)))
    n_layers = pick("n_layers", st.integers(1, 2))
    residual = pick("residual", st.just(True) if n_layers > 1 else st.booleans())
    d_model = pick("d_model", st.integers(1 if residual else 0, size))
    return dict(
        dataset=dataset, test_fraction=pick("test_fraction", _unit(0.05, 0.95)), hidden=pick("hidden", st.integers(1, size)),
        d_model=d_model, n_layers=n_layers, residual=residual, bias=pick("bias", st.booleans()),
        batch_size=pick("batch_size", st.integers(1, 8 * size)), p=pick("p", st.integers(2, max(2, size))),
        n_features=pick("n_features", st.integers(1, size)), train_fraction=pick("train_fraction", _unit(0.1, 1.0)),
        feature_probability=pick("feature_probability", _unit()),
        importance_decay=pick("importance_decay", _unit(0.05, 2.0)), input_noise=pick("input_noise", _unit(0.0, 1.0)),
    )


def _dictionaries(pick: _Picker, size: int) -> dict:
    from ..models.dictionaries import DICTIONARY_KINDS

    kind = pick("kind", st.sampled_from(DICTIONARY_KINDS))
    latents = pick("n_latents", st.integers(1, size))
    prefixes = st.just(())
    if kind == "matryoshka":
        prefixes = st.lists(st.integers(1, latents - 1), unique=True, max_size=3).map(
            lambda s: tuple(sorted(s)) + (latents,)) if latents > 1 else st.just((latents,))
    n = pick("n_features", st.integers(1, size))
    parents = pick("n_parents", st.integers(0, n // 2))
    children = pick("children_per_parent", st.integers(1, n // parents - 1) if parents else st.just(0))
    rank = pick("correlation_rank", st.integers(0, n))
    return dict(
        kind=kind, n_latents=latents, batch_size=pick("batch_size", st.integers(1, 8 * size)),
        prefixes=pick("prefixes", prefixes), dead_steps=pick("dead_steps", st.integers(1, 100)),
        k_aux=pick("k_aux", st.integers(0, size)), eval_size=pick("eval_size", st.integers(2, 8 * size)),
        n_features=n, dim=pick("dim", st.integers(1, size)), n_parents=parents, children_per_parent=children,
        correlation_rank=rank, feature_seed=pick("feature_seed", st.integers(0, 2**31 - 1)),
        sparsity=pick("sparsity", _unit(0.0, 10.0)), k=pick("k", st.integers(1, latents).map(float)),
        aux_coefficient=pick("aux_coefficient", _unit()), bandwidth=pick("bandwidth", _unit(1e-3, 1.0)),
        threshold_init=pick("threshold_init", _unit(1e-3, 1.0)), mean_active=pick("mean_active", _unit(0.1, float(n))),
        zipf_exponent=pick("zipf_exponent", _unit(0.0, 3.0)), child_probability=pick("child_probability", _unit()),
        correlation_strength=pick("correlation_strength", _unit(0.0, 0.99) if rank else st.just(0.0)),
        magnitude_mean=pick("magnitude_mean", _unit(0.1, 2.0)), magnitude_std=pick("magnitude_std", _unit(0.0, 1.0)),
        noise_std=pick("noise_std", _unit(0.0, 0.5)),
    )


def _induction(pick: _Picker, size: int) -> dict:
    from ..tasks.sequences import TASKS

    task = pick("task", st.sampled_from(TASKS))
    d_vocab = pick("d_vocab", st.integers(2, max(2, size)))
    span = pick("span", st.integers(2, max(2, size)))
    d_model, n_heads = _heads(pick, size)
    ngram = pick("ngram", st.integers(2, 3))
    return dict(
        task=task, d_vocab=d_vocab, span=span, n_ctx=pick("n_ctx", st.integers(2 * span, 2 * span + size)),
        ngram=ngram, branching=pick("branching", st.integers(1, d_vocab)),
        language_seed=pick("language_seed", st.integers(0, 2**31 - 1)),
        repeat_probability=pick("repeat_probability", _unit()), n_layers=pick("n_layers", st.integers(1, 2)),
        n_heads=n_heads, d_model=d_model, d_mlp=pick("d_mlp", st.integers(0, size)),
        batch_size=pick("batch_size", st.integers(1, 8 * size)), eval_size=pick("eval_size", st.integers(1, 8 * size)),
    )


def _icl_regression(pick: _Picker, size: int) -> dict:
    from ..families.icl_regression import EVAL_CHUNK

    pool = pick("pool_size", st.integers(1, 8 * size))
    d_model, n_heads = _heads(pick, size)
    return dict(
        dim=pick("dim", st.integers(1, size)), n_points=pick("n_points", st.integers(1, size)), pool_size=pool,
        task_seed=pick("task_seed", st.integers(0, 2**31 - 1)),
        n_tasks=pick("n_tasks", st.integers(0, pool).map(float)), noise_std=pick("noise_std", _unit(0.05, 2.0)),
        n_layers=pick("n_layers", st.integers(1, 2)), n_heads=n_heads, d_model=d_model,
        d_mlp=pick("d_mlp", st.integers(0, size)), batch_size=pick("batch_size", st.integers(1, 8 * size)),
        eval_size=pick("eval_size", st.integers(1, 2).map(lambda k: k * EVAL_CHUNK)),
    )


# name -> (the smallest max_size it can draw, the drawer of its own fields)
_FAMILIES = {"superposition": (1, _superposition), "grokking": (2, _grokking), "groups": (1, _groups),
             "bilinear": (1, _bilinear), "dictionaries": (1, _dictionaries), "induction": (2, _induction),
             "icl_regression": (1, _icl_regression)}
CONFIG_FAMILIES = tuple(_FAMILIES)


def configs(family: str, *, max_size: int = 8, max_steps: int = 20, static_from=None, **fields) -> SearchStrategy:
    """Valid configs of a family (a frozen config object), small enough to train in seconds.

    Args:
        family: a family name of :data:`CONFIG_FAMILIES` (every built-in family).
        max_size: bound on every size: widths, feature counts, batch sizes (8×), the modulus
            p and the group order.
        max_steps: bound on ``steps``.
        static_from: a config of the family whose static fields every drawn config keeps, so
            that all examples train in one compiled program (only sweepable fields and the
            seed vary).
        **fields: fields to hold fixed (a value) or draw from a strategy of your own.

    Returns:
        a strategy of config objects of the family's config class.
    """
    if family not in _FAMILIES:
        raise ConfigError("family", family, f"must be a family with a config strategy: {', '.join(CONFIG_FAMILIES)}")
    smallest, drawer = _FAMILIES[family]
    max_size = _int("max_size", max_size, smallest)
    max_steps = _int("max_steps", max_steps, 1)
    from ..core.family import get_family

    cls = get_family(family).config
    known = cls.field_info()
    for name, value in fields.items():
        if name not in known:
            raise ConfigError(name, value, f"is not a field of {cls.__name__}; its fields: {', '.join(known)}")
    if static_from is not None:
        if not isinstance(static_from, cls):
            raise ConfigError("static_from", described(f"a {type(static_from).__name__}"), f"must be a {cls.__name__}")
        fields = {**{n: getattr(static_from, n) for n in cls.names("static")}, **fields}

    @st.composite
    def draw_config(draw):
        pick = _Picker(draw, fields)
        values = {**_train_fields(pick, max_steps, cls), **drawer(pick, max_size)}
        values.update({k: (draw(v) if isinstance(v, SearchStrategy) else v) for k, v in fields.items()
                       if k not in values})
        return cls(**values)

    return draw_config()


# ----------------------------------------------------------------------------- groups

GROUP_KINDS = ("cyclic", "dihedral", "symmetric", "alternating", "product")
_MAX_STRATEGY_ORDER = 5040  # S7, the largest symmetric group the library builds


def _factor_order(kind: str, n: int) -> int:
    return {"C": n, "D": 2 * n, "S": math.factorial(n), "A": max(1, math.factorial(n) // 2)}[kind]


@functools.lru_cache(maxsize=32)
def _names_by_order(max_order: int, kinds: tuple) -> tuple:
    """(order, name) of the library groups up to max_order, smallest first."""
    from ..groups.finite import MAX_SYMMETRIC_N

    singles = [(n, f"C{n}") for n in range(1, max_order + 1)]
    singles += [(2 * n, f"D{n}") for n in range(2, max_order // 2 + 1)]
    singles += [(_factor_order(k, n), f"{k}{n}") for k in "SA" for n in range(1, MAX_SYMMETRIC_N + 1)
                if _factor_order(k, n) <= max_order]
    kind_of = {"C": "cyclic", "D": "dihedral", "S": "symmetric", "A": "alternating"}
    out = [(o, name) for o, name in singles if kind_of[name[0]] in kinds]
    if "product" in kinds:
        factors = sorted((o, name) for o, name in singles if o >= 2)  # trivial factors add nothing
        for i, (o1, a) in enumerate(factors):
            if o1 * o1 > max_order:
                break
            out += [(o1 * o2, f"{a}x{b}") for o2, b in factors[i:] if o1 * o2 <= max_order]
    return tuple(sorted(out))


def _group_range(min_order, max_order, kinds) -> tuple:
    max_order = _int("max_order", max_order, 1, _MAX_STRATEGY_ORDER)
    min_order = _int("min_order", min_order, 1)
    _ordered("min_order", min_order, "max_order", max_order)
    kinds = (kinds,) if isinstance(kinds, str) else kinds
    if not isinstance(kinds, (tuple, list)) or not kinds or any(k not in GROUP_KINDS for k in kinds):
        raise ConfigError("kinds", kinds, f"must be a non-empty list of {', '.join(GROUP_KINDS)}")
    names = tuple(name for o, name in _names_by_order(max_order, tuple(sorted(set(kinds)))) if o >= min_order)
    if not names:
        raise ConfigError("max_order", max_order, f"no group of kinds {', '.join(kinds)} has an order in "
                                                  f"{min_order}..{max_order}; raise max_order")
    return names


def group_names(*, min_order: int = 1, max_order: int = 24, kinds=GROUP_KINDS) -> SearchStrategy:
    """Names of library groups (``C5``, ``D4``, ``S4``, ``A4``, ``S3xC2``) that
    :func:`toylab.groups.group` builds, shrinking towards the smallest.

    Args:
        min_order, max_order: bounds on the order (1 <= min_order <= max_order <= 5040).
        kinds: any of "cyclic", "dihedral", "symmetric", "alternating", "product" (direct
            products of two nontrivial library groups).
    """
    return st.sampled_from(_group_range(min_order, max_order, kinds))


@functools.lru_cache(maxsize=256)
def _group(name: str):
    from ..groups import group

    return group(name)


def groups(*, min_order: int = 1, max_order: int = 24, kinds=GROUP_KINDS) -> SearchStrategy:
    """Finite groups (:class:`toylab.groups.Group`) of the library; arguments as
    :func:`group_names`. Each group is built once and shared between examples."""
    return st.sampled_from(_group_range(min_order, max_order, kinds)).map(_group)


def _check_group(group):
    from ..groups import Group

    if not isinstance(group, Group):
        raise ConfigError("group", described(f"a {type(group).__name__}"), "must be a toylab.groups.Group")
    return group


def group_elements(group) -> SearchStrategy:
    """Elements of ``group`` as indices into its table (0 is the identity)."""
    return st.integers(0, _check_group(group).order - 1)


_IRREPS: "weakref.WeakKeyDictionary" = weakref.WeakKeyDictionary()


def _irreps_of(group, over: str) -> list:
    from ..groups import irreps as complex_irreps, real_irreps

    held = _IRREPS.setdefault(group, {})
    if over not in held:
        held[over] = (complex_irreps if over == "C" else real_irreps)(group)
    return held[over]


def _check_over(over):
    if over not in ("C", "R"):
        raise ConfigError("over", over, "must be 'C' (irreps over the complex numbers) or 'R' (over the reals)")


def irreps(group, *, over: str = "C") -> SearchStrategy:
    """Irreducible representations (:class:`toylab.groups.Irrep`) of ``group``: over "C"
    (:func:`toylab.groups.irreps`) or over "R" (:func:`toylab.groups.real_irreps`),
    computed once per group."""
    _check_group(group)
    _check_over(over)
    return st.sampled_from(_irreps_of(group, over))


def group_irreps(*, min_order: int = 1, max_order: int = 24, kinds=GROUP_KINDS, over: str = "C") -> SearchStrategy:
    """(group, irrep) pairs: a group as :func:`groups` draws it and one of its irreps."""
    _check_over(over)
    return groups(min_order=min_order, max_order=max_order, kinds=kinds).flatmap(
        lambda g: st.tuples(st.just(g), st.sampled_from(_irreps_of(g, over))))


# ----------------------------------------------------------------------------- data


class SparseBatch(NamedTuple):
    """A batch of the toy model of superposition's data."""

    x: np.ndarray  # (batch, n_features) float32
    feature_probability: float  # the probability p = 1 − S that a feature is present


def _probability_strategy(name: str, value) -> SearchStrategy:
    if value is None:
        return _unit()
    if isinstance(value, SearchStrategy):
        return value
    return st.just(_number(name, value, 0.0, 1.0))


def sparse_feature_batches(*, min_features: int = 1, max_features: int = 8, min_batch: int = 1, max_batch: int = 64,
                           feature_probability=None, signed: bool = False) -> SearchStrategy:
    """Batches distributed as :func:`toylab.tasks.sparse_features.sparse_features` makes them:
    each feature independently 0 with probability S = 1 − p, else Uniform[0, 1)
    (Uniform[−1, 1) with ``signed``, the absolute-value task's inputs), drawn with numpy from
    a drawn seed (no compiling per shape).

    Args:
        min_features, max_features, min_batch, max_batch: bounds on the shape.
        feature_probability: p in [0, 1], a strategy of it, or None (drawn from [0, 1]).
        signed: values Uniform[−1, 1) where present.

    Returns:
        a strategy of :class:`SparseBatch` (x float32, feature_probability).
    """
    min_features, max_features = _int("min_features", min_features, 1), _int("max_features", max_features, 1)
    min_batch, max_batch = _int("min_batch", min_batch, 1), _int("max_batch", max_batch, 1)
    _ordered("min_features", min_features, "max_features", max_features)
    _ordered("min_batch", min_batch, "max_batch", max_batch)
    if not isinstance(signed, (bool, np.bool_)):
        raise ConfigError("signed", signed, "must be true or false")
    probability = _probability_strategy("feature_probability", feature_probability)

    def make(args):
        batch, n, p, seed = args
        rng = np.random.default_rng(seed)
        present = rng.random((batch, n)) < p
        values = rng.random((batch, n))
        values = 2.0 * values - 1.0 if signed else values
        return SparseBatch(np.where(present, values, 0.0).astype(np.float32), p)

    return st.tuples(st.integers(min_batch, max_batch), st.integers(min_features, max_features), probability,
                     st.integers(0, 2**32 - 1)).map(make)


def _size_pair(prefix: str, lo, hi) -> tuple[int, int]:
    lo, hi = _int(f"min_{prefix}", lo, 1), _int(f"max_{prefix}", hi, 1)
    _ordered(f"min_{prefix}", lo, f"max_{prefix}", hi)
    return lo, hi


def synthetic_generators(*, min_features: int = 1, max_features: int = 8, min_dim: int = 1, max_dim: int = 8,
                         hierarchy: bool | None = None, correlation: bool | None = None, noise: bool | None = None,
                         orthogonal: bool | None = None, seed: int | None = None) -> SearchStrategy:
    """Valid planted-feature generators (:class:`toylab.tasks.synthetic_features.SyntheticFeatures`).

    Args:
        min_features, max_features, min_dim, max_dim: bounds on N and D.
        hierarchy, correlation, noise, orthogonal: with (True) or without (False) parents and
            children, low-rank presence correlation, Gaussian noise, orthonormal directions
            (which need N <= D); None draws it.
        seed: the directions' seed (a static field of the generator), or None to draw it.
    """
    n_lo, n_hi = _size_pair("features", min_features, max_features)
    d_lo, d_hi = _size_pair("dim", min_dim, max_dim)
    flags = {k: _bool_or_none(k, v) for k, v in
             dict(hierarchy=hierarchy, correlation=correlation, noise=noise, orthogonal=orthogonal).items()}
    if flags["hierarchy"] and n_hi < 2:
        raise ConfigError("max_features", max_features, "must be >= 2 for a hierarchy (a parent and a child)")
    if flags["orthogonal"] and max(n_lo, 2 if flags["hierarchy"] else 1) > d_hi:
        raise ConfigError("max_dim", max_dim, f"must be >= {max(n_lo, 2 if flags['hierarchy'] else 1)} "
                                              "features for orthonormal directions (N <= D)")
    seeds = st.integers(0, 2**31 - 1) if seed is None else st.just(_int("seed", seed, 0))

    @st.composite
    def draw_generator(draw):
        from ..tasks.synthetic_features import SyntheticFeatures

        orth = draw(_flag(flags["orthogonal"]))
        n_min = max(n_lo, 2) if flags["hierarchy"] else n_lo
        dim = draw(st.integers(max(d_lo, n_min) if orth else d_lo, d_hi))
        n = draw(st.integers(n_min, min(n_hi, dim) if orth else n_hi))
        parents = children = 0
        if draw(_flag(flags["hierarchy"] if n >= 2 else False)):
            parents = draw(st.integers(1, n // 2))
            children = draw(st.integers(1, n // parents - 1))
        rank = draw(st.integers(1, n)) if draw(_flag(flags["correlation"])) else 0
        return SyntheticFeatures(
            n_features=n, dim=dim, mean_active=draw(_unit(0.0, float(n))), zipf_exponent=draw(_unit(0.0, 3.0)),
            n_parents=parents, children_per_parent=children,
            child_probability=draw(_unit()) if parents else 1.0, correlation_rank=rank,
            correlation_strength=draw(_unit(0.0, 1.0)) if rank else 0.0, magnitude_mean=draw(_unit(0.0, 2.0)),
            magnitude_std=draw(_unit(0.0, 1.0)), noise_std=draw(_unit(0.0, 0.5)) if draw(_flag(flags["noise"])) else 0.0,
            orthogonal_directions=orth, seed=draw(seeds))

    return draw_generator()


class PlantedFeatures(NamedTuple):
    """A planted-feature data set: activations x = c @ directions + noise."""

    generator: Any  # the SyntheticFeatures that made it
    directions: np.ndarray  # (N, D) unit rows, the true features
    x: np.ndarray  # (batch, D) activations
    c: np.ndarray  # (batch, N) true feature activations, >= 0


def _planted(generator, key_seed: int, batch: int) -> PlantedFeatures:
    import jax

    # Eager: JAX compiles each operation once per shape, so examples that differ only in
    # their numbers and seeds share every compiled piece.
    x, c = generator.sample(jax.random.key(key_seed), batch)
    return PlantedFeatures(generator, np.asarray(generator.directions()), np.asarray(x), np.asarray(c))


def planted_features(*, batch_size: int = 64, **generator_args) -> SearchStrategy:
    """Planted-feature data sets: a generator as :func:`synthetic_generators` draws it (same
    arguments) and ``batch_size`` examples sampled from it with a drawn key.

    JAX compiles the sampler's operations once per shape and structure (seconds on a CPU,
    milliseconds after); pin ``min_features = max_features``, ``min_dim = max_dim`` and the
    structure flags to share them across examples.

    Returns:
        a strategy of :class:`PlantedFeatures` (numpy arrays).
    """
    batch_size = _int("batch_size", batch_size, 1)
    return st.tuples(synthetic_generators(**generator_args), st.integers(0, 2**31 - 1)).map(
        lambda args: _planted(args[0], args[1], batch_size))


# ----------------------------------------------------------------------------- weights


def superposition_weights(*, max_hidden: int = 4, max_features: int = 7, well_scaled: bool = False) -> SearchStrategy:
    """Weight matrices W (n_hidden, n_features) float32 of the toy model of superposition, some
    columns exactly zero (features not learned).

    Args:
        max_hidden, max_features: bounds on the shape (each at least 1).
        well_scaled: nonzero entries in 1/8 <= |w| <= 1, so column norms differ by at most
            ~16× and float32 rounding stays far below invariance tests' tolerances; otherwise
            entries in [−10, 10].
    """
    max_hidden, max_features = _int("max_hidden", max_hidden, 1), _int("max_features", max_features, 1)
    if not isinstance(well_scaled, (bool, np.bool_)):
        raise ConfigError("well_scaled", well_scaled, "must be true or false")
    if well_scaled:
        magnitude = st.floats(0.125, 1.0, width=32)
        elements = st.one_of(st.just(0.0), magnitude, magnitude.map(lambda x: -x))
    else:
        elements = st.floats(-10.0, 10.0, width=32, allow_subnormal=False)

    @st.composite
    def draw_weights(draw):
        m, n = draw(st.integers(1, max_hidden)), draw(st.integers(1, max_features))
        W = draw(hnp.arrays(np.float32, (m, n), elements=elements))
        W[:, draw(hnp.arrays(np.bool_, (n,)))] = 0.0
        return W

    return draw_weights()


def _haar(n: int, seed: int) -> np.ndarray:
    q, r = np.linalg.qr(np.random.default_rng(seed).normal(size=(n, n)))
    return q * np.sign(np.diag(r))  # the sign fix makes Q Haar-distributed


def orthogonal_matrices(n: int, *, dtype=np.float64) -> SearchStrategy:
    """Haar-random (n, n) orthogonal matrices, from a drawn seed.

    Args:
        n: the size (>= 1).
        dtype: a numpy floating dtype of the result.
    """
    n = _int("n", n, 1)
    if not (isinstance(dtype, type) and issubclass(dtype, np.floating)) and not (
            isinstance(dtype, np.dtype) and np.issubdtype(dtype, np.floating)):
        raise ConfigError("dtype", dtype, "must be a numpy floating dtype (np.float32, np.float64)")
    return st.integers(0, 2**32 - 1).map(lambda seed: _haar(n, seed).astype(dtype))


def _shape_list(shapes) -> tuple:
    ok = isinstance(shapes, (tuple, list)) and shapes and all(
        isinstance(s, (tuple, list)) and len(s) == 3 and all(
            isinstance(d, numbers.Integral) and not isinstance(d, bool) and d >= 1 for d in s) for s in shapes)
    if not ok:
        raise ConfigError("shapes", shapes, "must be a non-empty list of (d_in, d_hidden, d_out) positive integers")
    return tuple(tuple(int(d) for d in s) for s in shapes)


def bilinear_layers(*, shapes=((1, 1, 1), (4, 3, 3)), bias: bool | None = None) -> SearchStrategy:
    """Bilinear layers (:class:`toylab.models.bilinear.BilinearLayer`) with Gaussian W, V and P
    of unit scale (std 1/√fan-in; the bias columns nonzero), from a drawn seed.

    Args:
        shapes: the (d_in, d_hidden, d_out) to draw from: a few shapes, so that examples share
            compiled programs while the weights vary freely.
        bias: with (True) or without (False) the appended-1 bias input; None draws it.
    """
    shapes = _shape_list(shapes)
    bias = _bool_or_none("bias", bias)

    def make(args):
        import jax.numpy as jnp

        from ..models.bilinear import BilinearLayer

        (d_in, d_hidden, d_out), with_bias, seed = args
        rng = np.random.default_rng(seed)
        d = d_in + int(with_bias)

        def gauss(*shape):
            return jnp.asarray(rng.normal(size=shape) / np.sqrt(shape[-1]), jnp.float32)

        return BilinearLayer(gauss(d_hidden, d), gauss(d_hidden, d), gauss(d_out, d_hidden), bias=with_bias)

    return st.tuples(st.sampled_from(shapes), _flag(bias), st.integers(0, 2**31 - 1)).map(make)
