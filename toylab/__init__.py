"""toylab: a JAX laboratory for the toy models of mechanistic interpretability."""

__version__ = "0.1.0"

from .core import (ConfigError, Family, TrainConfig, Trainer, family_names, get_family,  # noqa: E402
                   make_key, make_train, register_family)
from . import families  # noqa: E402,F401  (registers the built-in families)

__all__ = ["ConfigError", "Family", "TrainConfig", "Trainer", "family_names", "get_family", "make_key",
           "make_train", "register_family", "__version__"]
