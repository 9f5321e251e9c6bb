"""Sparse synthetic features for the toy models of superposition (Elhage et al. 2022).

Each feature is 0 with probability S = 1 − p, else Uniform[0, 1] (Uniform[−1, 1] for the
absolute-value task). Features may come in correlated sets (all present or all absent
together) or anti-correlated sets (at most one member present), laid out first.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

__all__ = ["uniform01", "sparse_features", "importance_weights"]


def uniform01(key, shape):
    """Uniform[0, 1) float32 from 23 random mantissa bits (one 32-bit draw per value)."""
    bits = jax.random.bits(key, shape, jnp.uint32)
    return jax.lax.bitcast_convert_type((bits >> 9) | jnp.uint32(0x3F800000), jnp.float32) - 1.0


def sparse_features(key, batch_size: int, n_features: int, feature_probability, *,
                    signed: bool = False, correlated_sets: int = 0, anticorrelated_sets: int = 0,
                    set_size: int = 2):
    """A (batch_size, n_features) batch; every feature is present with probability p.

    For independent features a single uniform u decides both presence (u < p) and value
    (u / p, which is Uniform[0, 1) given u < p) — half the random draws of sampling the two
    separately, with the same distribution. ``feature_probability`` may be traced.
    """
    p = jnp.asarray(feature_probability, jnp.float32)
    k_ind, k_corr, k_corr_val, k_anti = jax.random.split(key, 4)
    n_corr, n_anti = correlated_sets * set_size, anticorrelated_sets * set_size
    n_ind = n_features - n_corr - n_anti
    safe_p = jnp.maximum(p, 1e-30)
    parts = []
    if correlated_sets:
        present = uniform01(k_corr, (batch_size, correlated_sets, 1)) < p
        values = uniform01(k_corr_val, (batch_size, correlated_sets, set_size))
        parts.append(jnp.where(present, values, 0.0).reshape(batch_size, n_corr))
    if anticorrelated_sets:
        # The set is active with probability k·p (clipped to 1) and then one member,
        # chosen uniformly, is present: each feature keeps marginal probability p when k·p ≤ 1.
        u = uniform01(k_anti, (batch_size, anticorrelated_sets, 1))
        set_p = jnp.minimum(set_size * p, 1.0)
        member_width = jnp.maximum(set_p / set_size, 1e-30)
        member = jnp.floor(u / member_width)
        value = (u - member * member_width) / member_width
        onehot = member == jnp.arange(set_size)
        parts.append(jnp.where((u < set_p) & onehot, value, 0.0).reshape(batch_size, n_anti))
    if n_ind:
        u = uniform01(k_ind, (batch_size, n_ind))
        parts.append(jnp.where(u < p, u / safe_p, 0.0))
    x = jnp.concatenate(parts, axis=1) if len(parts) > 1 else parts[0]
    x = jnp.minimum(x, 1.0)  # guards float rounding of u / p at the top of the interval
    return 2.0 * x - jnp.where(x > 0, 1.0, 0.0) if signed else x


def importance_weights(n_features: int, decay, given=None):
    """I_i = decay**i, or the given vector."""
    if given is not None:
        return jnp.asarray(given, jnp.float32)
    return jnp.asarray(decay, jnp.float32) ** jnp.arange(n_features, dtype=jnp.float32)
