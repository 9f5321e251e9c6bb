"""One function per figure kind: arrays in, a matplotlib Figure out (the backend is never
switched, nothing is shown). Every module's functions are also here by name
(``toylab.plots.llc_over_training_plot``); each module of this folder is one family's or
analysis's figures."""

import importlib as _importlib
import sys as _sys

from .._discovery import public_modules as _public_modules

__all__ = []
for _name, _path in _public_modules(_sys.modules[__name__]).items():
    _module = _importlib.import_module(_path)
    for _fn in getattr(_module, "__all__", ()):
        if _fn in globals():
            raise ImportError(f"toylab.plots: {_fn} is defined by two modules ({_name} and another)")
        globals()[_fn] = getattr(_module, _fn)
        __all__.append(_fn)
__all__.sort()
