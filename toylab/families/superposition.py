"""toy models of superposition: sparse features through a bottleneck (Elhage et al. 2022)

The superposition family record: config, data, model, loss and final measures."""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ..analysis.superposition import superposition_summary
from ..core.config import (ConfigError, TrainConfig, in_interval, nonnegative, nonnegative_int,
                           one_of, positive, positive_int, static, sweepable)
from ..core.family import Family, register_family
from ..models.superposition import MODEL_KINDS, init_toy_model
from ..tasks.sparse_features import importance_weights, sparse_features

__all__ = ["SuperpositionConfig", "SUPERPOSITION"]


@dataclasses.dataclass(frozen=True)
class SuperpositionConfig(TrainConfig):
    """Toy model of superposition. Defaults follow the reference notebook: n=20, m=5,
    I_i = 0.7^i, AdamW lr 1e-3 with torch's default weight decay 0.01, batch 1024,
    10 000 steps, constant lr."""

    n_features: int = static(20, check=positive_int, help="number of features n")
    n_hidden: int = static(5, check=positive_int, help="hidden dimensions m")
    model: str = static("relu_output", check=one_of(*MODEL_KINDS), help="model kind")
    batch_size: int = static(1024, check=positive_int, help="samples per step")
    correlated_sets: int = static(0, check=nonnegative_int, help="sets of features present together (laid out first)")
    anticorrelated_sets: int = static(0, check=nonnegative_int, help="sets with at most one feature present (after the correlated)")
    set_size: int = static(2, check=positive_int, help="features per (anti-)correlated set")
    importance: tuple | None = static(None, type="optional floats", help="explicit importance vector (overrides importance_decay)")
    feature_probability: float = sweepable(0.1, check=in_interval(0, 1), help="probability 1−S that a feature is nonzero")
    importance_decay: float = sweepable(0.7, check=positive, help="importance I_i = decay**i")
    weight_decay: float = sweepable(0.01, check=nonnegative, help="decoupled AdamW weight decay (torch's default 0.01, as the reference notebook)")

    def validate(self):
        super().validate()
        used = (self.correlated_sets + self.anticorrelated_sets) * self.set_size
        if used > self.n_features:
            raise ConfigError("set_size", self.set_size,
                              f"(correlated_sets + anticorrelated_sets) * set_size must be <= n_features={self.n_features}")
        if self.importance is not None:
            if len(self.importance) != self.n_features:
                raise ConfigError("importance", self.importance, f"must have n_features={self.n_features} entries")
            if any(not (v >= 0) for v in self.importance):
                raise ConfigError("importance", self.importance, "entries must be >= 0")


def _init(cfg: SuperpositionConfig, hparams, key):
    return init_toy_model(key, cfg.n_features, cfg.n_hidden, cfg.model)


def _batch(cfg: SuperpositionConfig, hparams, key):
    return sparse_features(key, cfg.batch_size, cfg.n_features, hparams["feature_probability"],
                           signed=cfg.model == "abs", correlated_sets=cfg.correlated_sets,
                           anticorrelated_sets=cfg.anticorrelated_sets, set_size=cfg.set_size)


def reconstruction_loss(model, x, cfg: SuperpositionConfig, hparams):
    """Importance-weighted squared error, mean over batch and features (target |x| for abs)."""
    target = jnp.abs(x) if cfg.model == "abs" else x
    importance = importance_weights(cfg.n_features, hparams["importance_decay"], cfg.importance)
    return jnp.mean(importance * (target - model(x)) ** 2)


def _loss(model, x, cfg, hparams):
    return reconstruction_loss(model, x, cfg, hparams), {}


def _summary(model, cfg, hparams):
    return superposition_summary(model.W)


SUPERPOSITION = register_family(Family(
    name="superposition",
    config=SuperpositionConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    summary=_summary,
    description=__doc__.splitlines()[0],
))
