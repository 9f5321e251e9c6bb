"""The kit for testing theory: hypothesis strategies, known-answer cases, statistical
assertions and a pytest plugin.

    from toylab.testing import strategies, cases, assert_estimate

``strategies`` and the plugin's profiles need hypothesis (``pip install toylab[testing]``).
"""

from __future__ import annotations

import importlib

__all__ = ["strategies", "cases", "assert_estimate", "compare_estimate", "expected_estimate", "Truth"]

_LAZY = {name: "toylab.testing.assertions" for name in ("assert_estimate", "compare_estimate", "expected_estimate",
                                                         "Truth")}


def __getattr__(name):
    if name in ("strategies", "cases"):
        module = importlib.import_module(f"toylab.testing.{name}")
        globals()[name] = module
        return module
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'toylab.testing' has no attribute {name!r}")


def __dir__():
    return __all__
