"""One question, asked in one place: is a value traced? With and without ``jax.core.Tracer``."""

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.core import tracing


@pytest.fixture(params=["jax.core.Tracer", "without it"])
def is_traced(request, monkeypatch):
    if request.param == "without it":  # as on a JAX release that no longer has the class
        monkeypatch.setattr(tracing, "_TRACER", None)
    return tracing.is_traced


def test_is_traced_inside_and_outside_transformations(is_traced):
    seen = []
    x = jnp.arange(6.0).reshape(2, 3)
    key = jax.random.key(0)

    def record(a, k):
        seen.append((is_traced(a), is_traced(k), is_traced(a.shape[0]), is_traced(3.0)))
        return a.sum()

    assert not is_traced(x) and not is_traced(key) and not is_traced(np.ones(2)) and not is_traced(2.0)
    assert not is_traced(jnp.zeros((0, 4)))  # an empty concrete array
    jax.jit(record)(x, key)
    jax.vmap(record, in_axes=(0, None))(x, key)
    jax.grad(record)(x, key)
    assert seen == [(True, True, False, False), (True, False, False, False), (True, False, False, False)]


def test_no_module_asks_jax_core_tracer_itself():
    root = Path(tracing.__file__).resolve().parents[1]
    users = [str(p.relative_to(root)) for p in root.rglob("*.py")
             if p.name != "tracing.py" and "jax.core.Tracer" in p.read_text(encoding="utf-8")]
    assert users == []
