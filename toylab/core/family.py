"""The family record: what core/ needs to know of a model family, and the registry."""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

from .config import ConfigError, TrainConfig

__all__ = ["Family", "register_family", "register_lazy", "get_family", "family_names"]


@dataclasses.dataclass(frozen=True)
class Family:
    """One model family, as the training loop and sweep runner see it.

    Attributes:
        name: the CLI name (``toylab run NAME``).
        config: the family's frozen config class (a TrainConfig subclass).
        init: ``init(config, hparams, key) -> model`` (an equinox Module / pytree).
        batch: ``batch(config, hparams, key) -> batch`` — the training data of one step
            (a full-batch family ignores the key and returns its whole data set).
        loss: ``loss(model, batch, config, hparams) -> (scalar loss, dict of scalar metrics)``.
        summary: optional ``summary(model, config, hparams) -> dict of scalars``, the
            family's final measures (pure and vmappable), stored in summary.json.
        evaluate: optional ``evaluate(model, config, hparams) -> dict of scalars``, measured
            on the model at the end of every logging interval (held-out loss, progress
            measures) and logged beside the interval means of the loss's metrics.
        description: one line for ``toylab --help``.
        optimizer: optional ``optimizer(config, hparams) -> optax.GradientTransformation``
            (its hyperparameters may be traced); default: AdamW (:func:`make_optimizer`).
        program_config: optional ``program_config(configs) -> config``: the config whose
            static fields build the one program that trains ``configs`` (a group sharing
            ``static_key``) — e.g. a full-batch task sizing its rows for the largest train
            fraction of the group. Default: the first config.
        working_bytes: optional ``working_bytes(config) -> int``: an estimate of one
            instance's memory beyond its parameters and optimizer state (data, activations),
            computed without building anything, so a size that cannot fit is refused before
            any data is made or file written.
        skeleton: optional ``skeleton(config, hparams, key) -> model`` with the structure,
            shapes and dtypes ``init`` gives, built without reading any data (values do not
            matter). Loading a results folder uses it, so a family whose ``init`` reads data
            (a dictionary's initial decoder bias is the mean of its source's activations)
            loads without that data. Default: ``init``.

    Non-trainable state: a model whose class lists fields in ``state_fields``
    (:mod:`toylab.models`) keeps them out of the trained arrays. The optimizer is made for the
    other arrays only, gradients are taken in those alone, and the loss returns the state's
    next value beside its metrics: ``(loss, (metrics, new_state))``, ``new_state`` a dict
    ``{field: value}`` of every state field. The state is carried through the training scan,
    stored with the run's arrays (so the loaded model holds it) and left out of an LLC
    chain's or a Hessian's parameters. A model without state fields returns
    ``(loss, metrics)`` as usual.
    """

    name: str
    config: type[TrainConfig]
    init: Callable[..., Any]
    batch: Callable[..., Any]
    loss: Callable[..., Any]
    summary: Callable[..., dict] | None = None
    description: str = ""
    evaluate: Callable[..., dict] | None = None
    optimizer: Callable[..., Any] | None = None
    program_config: Callable[..., Any] | None = None
    working_bytes: Callable[..., int] | None = None
    skeleton: Callable[..., Any] | None = None


_REGISTRY: dict[str, Family] = {}
_LAZY: dict[str, str] = {}  # name -> module that registers it when imported


def register_family(family: Family) -> Family:
    _REGISTRY[family.name] = family
    return family


def register_lazy(name: str, module: str):
    """List a family whose module registers it on import, loaded when first asked for."""
    _LAZY[name] = module


def family_names() -> list[str]:
    return sorted(set(_REGISTRY) | set(_LAZY))


def get_family(name: str | Family) -> Family:
    if isinstance(name, Family):
        return name
    if name not in _REGISTRY and isinstance(name, str) and name in _LAZY:
        import importlib

        importlib.import_module(_LAZY[name])
    if name not in _REGISTRY:
        raise ConfigError("family", name, f"unknown family; choose from {', '.join(family_names()) or '(none registered)'}")
    return _REGISTRY[name]
