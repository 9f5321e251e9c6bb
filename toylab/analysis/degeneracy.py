"""Degeneracy of the loss landscape, in one namespace: the local learning coefficient and
its samplers (:mod:`.llc`, :mod:`.samplers`), the Hessian (:mod:`.hessian`) and the
per-layer degeneracies (:mod:`.layer_degeneracy`).

    from toylab.analysis import degeneracy as dg
    res = dg.learning_coefficient(loss, params, data, key)            # step size chosen by rule
    res = dg.learning_coefficient(loss, params, data, key, sampler=dg.hmc())   # exact NUTS
    res.warnings                                                        # what makes it unreliable
"""

from __future__ import annotations

from .hessian import *  # noqa: F401,F403
from .hessian import __all__ as _hessian
from .layer_degeneracy import *  # noqa: F401,F403
from .layer_degeneracy import __all__ as _layers
from .llc import *  # noqa: F401,F403
from .llc import __all__ as _llc
from .samplers import *  # noqa: F401,F403
from .samplers import __all__ as _samplers

__all__ = [*_llc, *_samplers, *_hessian, *_layers]
