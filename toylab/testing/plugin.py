"""The pytest plugin of toylab (registered by entry point, so it loads in every pytest run
where toylab is installed; importing it imports neither hypothesis nor JAX).

Hypothesis profiles for JAX work, registered at configure time when hypothesis is installed:

- ``ci``: derandomized, no deadline (compile times vary), failing examples printed as blobs,
  the too_slow health check off; loaded when the ``CI`` environment variable is set;
- ``dev``: no deadline, the too_slow health check off; loaded otherwise.

``HYPOTHESIS_PROFILE`` names the profile to load instead (any registered one), and pytest's
``--hypothesis-profile`` overrides both. A profile a conftest has already loaded is kept.

Fixtures:

- ``prng_key``: a JAX PRNG key, fixed for each test (seeded from the test's id);
- ``float64``: the test runs with JAX's 64-bit types enabled (restored after); gives
  ``jnp.float64``;
- ``compile_counter``: a :class:`CompileCounter`; ``with compile_counter: ...`` counts the
  XLA programs built inside the block.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
import zlib

import pytest

__all__ = ["CompileCounter", "profile_name", "register_profiles", "enable_x64", "prng_key", "float64",
           "compile_counter"]

PROFILES = ("ci", "dev")


def register_profiles() -> bool:
    """Register the "ci" and "dev" hypothesis profiles; False when hypothesis is missing."""
    try:
        from hypothesis import HealthCheck, settings
    except ImportError:
        return False
    # Both inherit hypothesis's own defaults, not the profile loaded now: hypothesis loads its
    # built-in "ci" profile (derandomized) by itself when CI is set, and "dev" must not inherit that.
    base = settings.get_profile("default")
    settings.register_profile("ci", parent=base, derandomize=True, deadline=None, print_blob=True,
                              suppress_health_check=[HealthCheck.too_slow])
    settings.register_profile("dev", parent=base, derandomize=False, deadline=None,
                              suppress_health_check=[HealthCheck.too_slow])
    return True


def profile_name(environ=None) -> str:
    """The profile to load: ``HYPOTHESIS_PROFILE`` if set, else "ci" when ``CI`` is set (and
    not "0" or "false"), else "dev"."""
    env = os.environ if environ is None else environ
    chosen = env.get("HYPOTHESIS_PROFILE", "").strip()
    if chosen:
        return chosen
    ci = env.get("CI", "").strip().lower()
    return "ci" if ci not in ("", "0", "false", "no") else "dev"


@pytest.hookimpl(tryfirst=True)  # before hypothesis's own plugin, which loads --hypothesis-profile
def pytest_configure(config):
    if not register_profiles():  # hypothesis is not installed
        return
    from hypothesis import settings
    from hypothesis.errors import InvalidArgument

    explicit = bool(os.environ.get("HYPOTHESIS_PROFILE", "").strip())
    if not explicit and _current_profile() != "default":
        return  # a conftest chose a profile already
    name = profile_name()
    try:
        settings.load_profile(name)
    except InvalidArgument as err:
        raise pytest.UsageError(f"HYPOTHESIS_PROFILE={name!r}: {err}; registered here: {', '.join(PROFILES)}") from None


def _current_profile() -> str:
    from hypothesis import settings

    if hasattr(settings, "get_current_profile_name"):
        return settings.get_current_profile_name()
    return getattr(settings, "_current_profile", None) or "default"  # older hypothesis


def pytest_report_header(config):
    if config.option.verbose >= 1 and "hypothesis" in sys.modules:
        return f"toylab: hypothesis profile {_current_profile()!r}"
    return None


# ----------------------------------------------------------------------------- fixtures


@pytest.fixture
def prng_key(request):
    """A JAX PRNG key seeded from the test's id: the same key every run, a different one
    for each test."""
    import jax

    return jax.random.key(zlib.crc32(request.node.nodeid.encode()))


def enable_x64(enabled: bool = True):
    """A context in which JAX's 64-bit types are on (or off), restored on exit."""
    import jax

    if hasattr(jax, "enable_x64"):  # jax >= 0.7
        return jax.enable_x64(enabled)
    try:
        from jax.experimental import enable_x64 as scoped, disable_x64
    except ImportError:  # neither scoped API: set the flag and put it back
        return _x64_flag(enabled)
    return scoped() if enabled else disable_x64()


@contextlib.contextmanager
def _x64_flag(enabled: bool):
    import jax

    before = jax.config.read("jax_enable_x64")
    jax.config.update("jax_enable_x64", enabled)
    try:
        yield
    finally:
        jax.config.update("jax_enable_x64", before)


@pytest.fixture
def float64():
    """Runs the test with JAX's 64-bit types enabled and restores the setting after;
    gives ``jnp.float64``."""
    import jax.numpy as jnp

    with enable_x64(True):
        yield jnp.float64


# jax.monitoring records this duration once for every XLA executable a jit builds (a fresh
# compile or a persistent-cache hit), with the program's name.
_COMPILE_EVENT = "/jax/core/compile/backend_compile_duration"
_ACTIVE: list = []
_LOCK = threading.Lock()
_LISTENING = False


def _on_duration(event, duration, **kwargs):
    if event != _COMPILE_EVENT:
        return
    with _LOCK:
        for counter in _ACTIVE:
            counter.names.append(str(kwargs.get("fun_name", "?")))


def _listen():
    """Register one process-wide listener (once; jax offers no portable way to remove one)."""
    global _LISTENING
    with _LOCK:
        if _LISTENING:
            return
        from jax import monitoring

        monitoring.register_event_duration_secs_listener(_on_duration)
        _LISTENING = True


class CompileCounter:
    """Counts the XLA programs built inside ``with counter:`` blocks.

    ``count`` is the number built in the latest block, ``names`` their names (``jit(f)``
    for ``jax.jit(f)``); ``count_of(text)`` counts those whose name contains ``text``. A
    program already compiled in this process (same function, shapes and dtypes) is not
    built again and does not count; one loaded from the persistent compilation cache does.
    """

    def __init__(self):
        self.names: list[str] = []

    @property
    def count(self) -> int:
        return len(self.names)

    def count_of(self, text: str) -> int:
        """How many programs built in the block have ``text`` in their name."""
        if not isinstance(text, str):
            from ..core.config import ConfigError

            raise ConfigError("text", text, "must be a string (part of a program name, e.g. 'train_segment')")
        return sum(text in name for name in self.names)

    def __enter__(self):
        _listen()
        with _LOCK:
            self.names = []
            _ACTIVE.append(self)
        return self

    def __exit__(self, *exc):
        with _LOCK:
            _ACTIVE.remove(self)
        return False

    def __repr__(self):
        return f"CompileCounter(count={self.count}, names={self.names})"


@pytest.fixture
def compile_counter():
    """A :class:`CompileCounter`: ``with compile_counter: ...`` counts the XLA programs
    built in the block."""
    return CompileCounter()
