"""Losses computed in float64 inside float32 programs, without turning x64 on globally.

A grokked model's training loss reaches 1e-7 and below, where float32's log-softmax is all
rounding error (and its gradient with it). Here the loss and its gradient are computed in
float64 inside a scoped ``jax.enable_x64`` and handed back as float32. A custom VJP keeps the
backward pass inside the scope too: JAX transposes outside the scope, where float64
constants it creates would be truncated.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from ..core.config import ConfigError

__all__ = ["weighted_cross_entropy", "masked_mean", "x64_scope"]


def x64_scope(enabled: bool = True):
    """A context in which float64 arrays are real float64 (JAX's enable_x64)."""
    return jax.enable_x64(enabled)


def _forward64(logits, labels, weights):
    x = logits.astype(jnp.float64)
    lse = jax.nn.logsumexp(x, axis=-1)
    onehot = jax.nn.one_hot(labels, x.shape[-1], dtype=jnp.float64)
    nll = lse - jnp.sum(x * onehot, axis=-1)
    w = weights.astype(jnp.float64)
    total = jnp.maximum(jnp.sum(w), 1.0)
    return x, lse, onehot, w, total, jnp.sum(w * nll) / total


@jax.custom_vjp
def _wce64(logits, labels, weights):
    with x64_scope():
        return _forward64(logits, labels, weights)[-1].astype(jnp.float32)


def _wce64_fwd(logits, labels, weights):
    with x64_scope():
        out = _forward64(logits, labels, weights)[-1].astype(jnp.float32)
    return out, (logits, labels, weights)


def _wce64_bwd(res, g):
    logits, labels, weights = res
    with x64_scope():
        x, lse, onehot, w, total, _ = _forward64(logits, labels, weights)
        grad = (jnp.exp(x - lse[..., None]) - onehot) * (w / total)[..., None] * g.astype(jnp.float64)
        return grad.astype(logits.dtype), None, None


_wce64.defvjp(_wce64_fwd, _wce64_bwd)


def weighted_cross_entropy(logits, labels, weights=None, precision: str = "float64"):
    """Σ_i w_i · (−log softmax(logits_i)[labels_i]) / max(Σ_i w_i, 1), as float32.

    Differentiable in ``logits`` by reverse mode (grad, vjp); the float64 path has a custom
    VJP, so forward mode (jacfwd) is not available, and it passes no gradient to ``weights``.

    Args:
        logits: (..., n_classes) float32.
        labels: (...) integer classes in 0..n_classes−1 (not checked inside traced code).
        weights: (...) row weights (a 0/1 mask selects rows); None weighs all rows 1.
        precision: "float64" (computed, and differentiated, in float64) or "float32".
    """
    labels = jnp.asarray(labels)
    weights = jnp.ones(labels.shape, jnp.float32) if weights is None else jnp.asarray(weights, jnp.float32)
    if precision == "float64":
        return _wce64(logits, labels, weights)
    if precision != "float32":
        raise ConfigError("precision", precision, "must be float64 or float32")
    lp = jax.nn.log_softmax(logits, axis=-1)
    nll = -jnp.sum(lp * jax.nn.one_hot(labels, logits.shape[-1], dtype=lp.dtype), axis=-1)
    return jnp.sum(weights * nll) / jnp.maximum(jnp.sum(weights), 1.0)


def masked_mean(values, mask):
    """Mean of ``values`` over the rows where ``mask`` is true (0 when none is)."""
    m = mask.astype(values.dtype)
    return jnp.sum(values * m) / jnp.maximum(jnp.sum(m), 1.0)
