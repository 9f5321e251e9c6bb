"""The spine every family uses: configs, training loop, sweeps, results store, results,
devices and progress. Knows no family. Submodules load on first use."""

_LAZY = {
    "ConfigError": "config", "TrainConfig": "config", "static": "config", "sweepable": "config", "seed_field": "config",
    "Family": "family", "register_family": "family", "get_family": "family", "family_names": "family",
    "Trainer": "train", "TrainResult": "train", "make_train": "train", "make_key": "train",
    "run_sweep": "sweep", "Results": "results", "load_results": "results",
}

__all__ = sorted(_LAZY)


def __getattr__(name):
    if name in _LAZY:
        import importlib

        value = getattr(importlib.import_module(f"{__name__}.{_LAZY[name]}"), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
