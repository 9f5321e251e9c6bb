"""Train flax models (linen or nnx) with toylab's own loop and sweep runner.

A :class:`FlaxModel` is an equinox Module whose only array field is ``params`` (the flax
parameters, trained) and whose static fields hold what is needed to call them (the linen
Module, or the nnx GraphDef). It is what a family's ``init`` returns; ``make_train`` and
``run_sweep`` then treat it like any other model::

    def init(cfg, hparams, key):                     # linen
        return from_linen(MLP(cfg.width), key, jnp.zeros((1, cfg.d_in)))

    def init(cfg, hparams, key):                     # nnx: build it from the key
        return from_nnx(lambda rngs: MLP(cfg.d_in, cfg.width, rngs=rngs), key)

    family = flax_family("my-mlp", MyConfig, init, batch, loss)

Only parameters are supported: toylab trains a pure function ``loss(params, batch)``, so
mutable flax state (linen collections other than ``params``; nnx variables other than
``nnx.Param``, e.g. BatchStat or an ``nnx.Rngs`` kept on the module) is refused with an
error. flax is imported only when one of these functions is called.
"""

from __future__ import annotations

from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.config import ConfigError, TrainConfig, described
from ..core.family import Family, register_family

__all__ = ["FlaxModel", "from_linen", "from_nnx", "as_flax_model", "flax_family"]

_INSTALL = "flax is not installed: pip install 'toylab[flax]'"


def _linen():
    try:
        import flax.linen as linen
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return linen


def _nnx():
    try:
        from flax import nnx
    except ImportError as e:
        raise ImportError(_INSTALL) from e
    return nnx


def _type_name(x) -> str:
    t = type(x)
    return f"{t.__module__}.{t.__qualname__}"


def _check_inexact(params, what: str):
    # The trainer trains the model's inexact arrays and treats every other leaf as a
    # compile-time constant, so an integer "parameter" could be neither trained nor kept.
    leaves = jax.tree_util.tree_leaves_with_path(params)
    if not leaves:
        raise ConfigError("module", described(what), "has no parameters to train")
    for path, leaf in leaves:
        if not (hasattr(leaf, "dtype") and jnp.issubdtype(leaf.dtype, jnp.inexact)):
            raise ConfigError("module", described(f"{what}, parameter {jax.tree_util.keystr(path)} of "
                                                  f"{getattr(leaf, 'dtype', type(leaf).__name__)}"),
                              "parameters must be floating-point arrays")


class FlaxModel(eqx.Module):
    """A flax model as an equinox Module: trainable ``params`` plus a static way to call them.

    ``model(*args, **kwargs)`` runs the flax model's ``__call__`` (for linen, keyword
    arguments go to ``Module.apply``, so ``method=`` and ``rngs=`` work). ``model.module``
    gives the flax object back, for analysis: a bound linen Module or a merged nnx Module.
    """

    params: Any
    spec: Any = eqx.field(static=True)  # linen: the unbound Module; nnx: the GraphDef
    kind: str = eqx.field(static=True)  # "linen" or "nnx"

    def __check_init__(self):
        if self.kind not in ("linen", "nnx"):
            raise ConfigError("kind", self.kind, "must be 'linen' or 'nnx' (build with from_linen / from_nnx)")

    def __call__(self, *args, **kwargs):
        if self.kind == "linen":
            return self.spec.apply({"params": self.params}, *args, **kwargs)
        return _nnx().merge(self.spec, self.params)(*args, **kwargs)

    @property
    def module(self):
        """The flax object: a linen Module bound to the params, or a fresh nnx Module
        (a copy: changing its variables does not change this model)."""
        if self.kind == "linen":
            return self.spec.bind({"params": self.params})
        return _nnx().merge(self.spec, self.params)

    def layer_maps(self):
        """Node layers of a ``linen.Sequential``: ``input`` and ``layers.i`` after each
        layer; any other flax model is refused (give Sections.from_functions)."""
        import flax.linen as linen  # the model exists, so flax is installed

        from . import LayerMaps

        if self.kind != "linen" or not isinstance(self.spec, linen.Sequential):
            raise ConfigError("model", described(f"a flax {self.kind} {type(self.spec).__name__}"),
                              "cut() reads flax models built as linen.Sequential; for any other model give "
                              "Sections.from_functions(names, embed, maps)")
        names, steps = ["input"], []
        for i, layer in enumerate(self.spec.layers):
            if isinstance(layer, linen.Module):
                def step(m, x, i=i, layer=layer):
                    return layer.apply({"params": m.params[f"layers_{i}"]}, x) if f"layers_{i}" in m.params else \
                        layer.apply({}, x)
            else:
                def step(m, x, layer=layer):
                    return layer(x)
            names.append(f"layers.{i}")
            steps.append(step)
        return LayerMaps(tuple(names), lambda m, x: jnp.asarray(x), tuple(steps), None)

    def __repr__(self):
        # The default equinox repr would print the whole nnx GraphDef.
        name = type(self.spec).__name__ if self.kind == "linen" else "GraphDef"
        n = sum(int(x.size) for x in jax.tree.leaves(self.params) if hasattr(x, "size"))
        return f"FlaxModel(kind={self.kind!r}, spec={name}, params={n} values)"


def from_linen(module, key, *sample_args, **sample_kwargs) -> FlaxModel:
    """Initialise a linen Module as a :class:`FlaxModel`.

    Args:
        module: an (unbound) ``flax.linen.Module``; its fields must be hashable (tuples,
            not lists), as it becomes a static field.
        key: PRNG key for ``module.init`` (or a dict of keys, one per rng stream); may be
            traced, so ``init`` can be vmapped over seeds.
        sample_args, sample_kwargs: example inputs for ``module.init`` (they fix shapes).
    """
    linen = _linen()
    if not isinstance(module, linen.Module):
        hint = " (for an nnx Module use from_nnx)" if _is_nnx_module(module) else ""
        raise TypeError(f"module must be a flax.linen.Module instance, got {_type_name(module)}{hint}")
    try:
        hash(module)
    except TypeError as e:
        raise TypeError(f"module {type(module).__name__} must be hashable to be a static field "
                        f"(use tuples, not lists or dicts, for its attributes): {e}") from None
    variables = module.init(key, *sample_args, **sample_kwargs)
    extra = sorted(k for k in variables if k != "params")
    if extra:
        raise ConfigError("module", described(f"{type(module).__name__}, variable collections {extra} besides 'params'"),
                          "toylab trains a pure function of the params and cannot carry mutable state")
    params = variables.get("params", {})
    _check_inexact(params, f"module {type(module).__name__}")
    return FlaxModel(params, module, "linen")


def _is_nnx_module(x) -> bool:
    try:
        from flax import nnx
    except ImportError:
        return False
    return isinstance(x, nnx.Module)


def _is_linen_module(x) -> bool:
    try:
        import flax.linen as linen
    except ImportError:
        return False
    return isinstance(x, linen.Module)


def from_nnx(model, key=None) -> FlaxModel:
    """An nnx Module as a :class:`FlaxModel` (its ``nnx.Param`` state becomes ``params``).

    Args:
        model: either ``make_model(rngs) -> nnx.Module``, called with ``nnx.Rngs(key)``, or
            an nnx Module instance. Inside a family's ``init`` build the module from the
            key (the factory form, or an instance made there), so init stays a pure
            function of the key that toylab can vmap over seeds.
        key: PRNG key (may be traced); required with a factory, not allowed with an instance.
    """
    nnx = _nnx()
    if _is_linen_module(model):
        raise TypeError(f"model must be an nnx Module or a function rngs -> nnx Module, got the linen Module "
                        f"{type(model).__name__} (use from_linen)")
    if isinstance(model, nnx.Module):
        if key is not None:
            raise TypeError("key must be None when model is an nnx Module instance (it is already initialised)")
        module = model
    elif callable(model):
        if key is None:
            raise TypeError("key is required when model is a function rngs -> nnx Module")
        module = model(nnx.Rngs(key))
        if not isinstance(module, nnx.Module):
            raise TypeError(f"model(rngs) must return an nnx Module, got {_type_name(module)}")
    else:
        raise TypeError(f"model must be an nnx Module or a function rngs -> nnx Module, got {_type_name(model)}")
    graphdef, params, rest = nnx.split(module, nnx.Param, ...)
    found = [(jax.tree_util.keystr(p), type(v).__name__)
             for p, v in jax.tree_util.tree_leaves_with_path(rest, is_leaf=lambda x: isinstance(x, nnx.Variable))]
    if found:
        listed = ", ".join(f"{t} at {p}" for p, t in found[:5]) + (" ..." if len(found) > 5 else "")
        raise ConfigError("module", described(f"nnx {type(module).__name__}, state other than nnx.Param ({listed})"),
                          "toylab trains a pure function of the params, so keep no nnx.Rngs, BatchStat or other "
                          "mutable variables on the module")
    _check_inexact(params, f"nnx module {type(module).__name__}")
    return FlaxModel(params, graphdef, "nnx")


def as_flax_model(obj, name: str = "model") -> FlaxModel:
    """``obj`` as a :class:`FlaxModel`: returned as is, or an nnx Module split by :func:`from_nnx`."""
    if isinstance(obj, FlaxModel):
        return obj
    if _is_nnx_module(obj):
        return from_nnx(obj)
    if _is_linen_module(obj):
        raise TypeError(f"{name} is an uninitialised linen Module ({type(obj).__name__}); "
                        "return from_linen(module, key, *sample_inputs) instead")
    raise TypeError(f"{name} must be a FlaxModel or an nnx Module, got {_type_name(obj)}")


def flax_family(name: str, config_cls: type[TrainConfig], init_fn: Callable, batch_fn: Callable,
                loss_fn: Callable, summary: Callable | None = None, description: str = "", *,
                register: bool = False) -> Family:
    """A :class:`Family` whose model is a flax model, for ``make_train`` and ``run_sweep``.

    Args:
        name: the family's name.
        config_cls: its config class, a frozen dataclass subclassing TrainConfig.
        init_fn: ``init_fn(config, hparams, key)`` returning a :class:`FlaxModel` (from
            :func:`from_linen` / :func:`from_nnx`) or an nnx Module built from ``key``.
        batch_fn: ``batch_fn(config, hparams, key) -> batch``.
        loss_fn: ``loss_fn(model, batch, config, hparams) -> (loss, dict of metrics)``; the
            model is a FlaxModel, called as ``model(x)``.
        summary: optional ``summary(model, config, hparams) -> dict of scalars``.
        description: one line for ``toylab --help``.
        register: also add it to the registry (replacing a family of the same name).
    """
    if not isinstance(name, str) or not name.strip():
        raise TypeError(f"name must be a non-empty string, got {name!r}")
    if not (isinstance(config_cls, type) and issubclass(config_cls, TrainConfig)):
        raise TypeError(f"config_cls must be a subclass of toylab TrainConfig, got {config_cls!r}")
    for arg, fn in (("init_fn", init_fn), ("batch_fn", batch_fn), ("loss_fn", loss_fn)):
        if not callable(fn):
            raise TypeError(f"{arg} must be callable, got {_type_name(fn)}")
    if summary is not None and not callable(summary):
        raise TypeError(f"summary must be callable or None, got {_type_name(summary)}")
    if not isinstance(description, str):
        raise TypeError(f"description must be a string, got {_type_name(description)}")

    def init(config, hparams, key):
        return as_flax_model(init_fn(config, hparams, key), "the value returned by init_fn")

    family = Family(name=name, config=config_cls, init=init, batch=batch_fn, loss=loss_fn,
                    summary=summary, description=description)
    return register_family(family) if register else family
