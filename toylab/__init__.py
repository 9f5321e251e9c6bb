"""toylab: a JAX laboratory for the toy models of mechanistic interpretability.

The names below load on first use, so ``import toylab`` (and ``toylab --help``) does not
pay for JAX until something needs it.
"""

__version__ = "0.1.0"

from . import families  # noqa: F401,E402  (lists the built-in families; loads none of them)

_LAZY = {
    "ConfigError": "toylab.core.config", "TrainConfig": "toylab.core.config", "static": "toylab.core.config",
    "sweepable": "toylab.core.config", "fields": "toylab.core.config",
    "Family": "toylab.core.family", "family_names": "toylab.core.family", "get_family": "toylab.core.family",
    "register_family": "toylab.core.family",
    "Trainer": "toylab.core.train", "TrainResult": "toylab.core.train", "make_key": "toylab.core.train",
    "make_train": "toylab.core.train",
    "run_sweep": "toylab.core.sweep", "load_results": "toylab.core.results", "Results": "toylab.core.results",
    "init_distributed": "toylab.core.devices",
}

__all__ = sorted(_LAZY) + ["__version__"]


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'toylab' has no attribute {name!r}")


def __dir__():
    return __all__
