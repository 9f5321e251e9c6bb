"""Family records: each joins a family's config, task, model and loss for core/ to run.

Every public module of this folder is a built-in family of the same name, registered when it is
first asked for (listing them costs no JAX import); the first line of its docstring is its
one-line description. A family of your own registers with :func:`toylab.core.family.register_family`."""

import sys

from .._discovery import public_modules, summary_line
from ..core.family import register_lazy

BUILTIN = {name: (module, summary_line(module)) for name, module in public_modules(sys.modules[__name__]).items()}
"""``{name: (module, description)}`` of the built-in families."""

for _name, (_module, _description) in BUILTIN.items():
    register_lazy(_name, _module)
