"""Known-answer cases: each carries the loss (or model), the data, the point to evaluate at
and the theoretical value, so a test compares a measurement with theory in a few lines.

- learning coefficients (:mod:`.learning_coefficient`): reduced-rank regressions and deep linear
  networks at their most singular true parameter, potentials (sums of powers, normal crossings);
- the toy model of superposition's n = 2, m = 1 phases with their closed-form losses
  (:mod:`.superposition`);
- hand-built Fourier solutions of modular addition (:mod:`.modular`);
- planted dictionaries whose true dictionary scores perfectly (:mod:`.dictionaries`).
"""

from __future__ import annotations

from .dictionaries import *  # noqa: F401,F403
from .dictionaries import __all__ as _dictionaries
from .learning_coefficient import *  # noqa: F401,F403
from .learning_coefficient import __all__ as _learning_coefficient
from .modular import *  # noqa: F401,F403
from .modular import __all__ as _modular
from .superposition import *  # noqa: F401,F403
from .superposition import __all__ as _superposition

__all__ = [*_learning_coefficient, *_superposition, *_modular, *_dictionaries]
