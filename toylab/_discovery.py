"""Finding the lab's parts by their files: a family, a reproduction or a benchmark is a public
module (or package) of its folder, so adding one is adding a file — no table to edit.

Discovery reads names and docstrings from the files without importing them (listing them costs
no JAX import); a module is imported when it is first asked for."""

from __future__ import annotations

import ast
import pkgutil
from pathlib import Path

__all__ = ["public_modules", "summary_line"]


def public_modules(package) -> dict[str, str]:
    """``{name: dotted module path}`` of the public modules and subpackages of ``package`` (an
    imported package), sorted by name; names starting with ``_`` are the folder's helpers."""
    found = {info.name: f"{package.__name__}.{info.name}" for info in pkgutil.iter_modules(package.__path__)
             if not info.name.startswith("_")}
    return dict(sorted(found.items()))


def summary_line(module_path: str) -> str:
    """The first line of a module's docstring, read from its file without importing it."""
    import importlib.util

    spec = importlib.util.find_spec(module_path)
    if spec is None or spec.origin is None:
        return ""
    try:
        doc = ast.get_docstring(ast.parse(Path(spec.origin).read_text(encoding="utf-8")))
    except (OSError, SyntaxError, UnicodeDecodeError):
        return ""
    return doc.strip().splitlines()[0].strip() if doc else ""
