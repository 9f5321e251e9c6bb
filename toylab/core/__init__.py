"""The spine every family uses: configs, training loop, sweeps, results store. Knows no family."""

from .config import ConfigError, TrainConfig, seed_field, static, sweepable
from .family import Family, family_names, get_family, register_family
from .train import Trainer, TrainResult, make_key, make_train

__all__ = ["ConfigError", "TrainConfig", "static", "sweepable", "seed_field", "Family", "register_family",
           "get_family", "family_names", "Trainer", "TrainResult", "make_train", "make_key"]
