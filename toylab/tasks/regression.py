"""In-context linear regression with a finite task pool (Raventós et al. 2023), generated here.

A task is a weight vector w ∈ R^dim. The pool holds ``pool_size`` tasks drawn once from
``task_seed`` (w ~ N(0, I)); a sequence picks one of the first ``n_tasks`` (M, traceable: a
sweep over M is one program) uniformly, or, with ``n_tasks`` = 0, draws a fresh w ~ N(0, I)
(M = ∞). It then shows ``n_points`` pairs x_k ~ N(0, I), y_k = w·x_k + ε_k, ε_k ~ N(0, σ²).

As a transformer reads them, the pairs are interleaved tokens of dim + 1 numbers: x_k as (0,
x_k) and y_k as (y_k, 0, …, 0); the prediction of y_k is read at x_k's position, which has
seen the k − 1 pairs before it.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.tracing import concrete, is_traced

__all__ = ["task_pool", "regression_batch", "interleave", "check_regression_task"]


def check_regression_task(dim: int, n_points: int, pool_size: int, n_tasks=None):
    for name, v in (("dim", dim), ("n_points", n_points), ("pool_size", pool_size)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ConfigError(name, v, "must be a positive integer")
    if n_tasks is not None and not is_traced(n_tasks):
        try:
            m = float(np.asarray(n_tasks))
        except (TypeError, ValueError):
            m = float("nan")
        if not (np.isfinite(m) and m == int(m) and 0 <= m <= pool_size):
            raise ConfigError("n_tasks", n_tasks, f"must be a whole number of tasks in 0..pool_size={pool_size} "
                                                  "(0: a fresh task every sequence)")


@functools.lru_cache(maxsize=16)
def task_pool(task_seed: int, pool_size: int, dim: int) -> np.ndarray:
    """(pool_size, dim) float32 tasks w ~ N(0, I), the same for every run with ``task_seed``."""
    rng = np.random.default_rng(task_seed)
    return rng.standard_normal((pool_size, dim)).astype(np.float32)


def regression_batch(key, batch_size: int, n_points: int, pool, n_tasks, noise_std):
    """(x (batch, n_points, dim), y (batch, n_points), w (batch, dim)): sequences of one task
    each, from the first ``n_tasks`` of ``pool`` (0: fresh Gaussian tasks)."""
    pool = jnp.asarray(pool, jnp.float32)
    if pool.ndim != 2 or pool.shape[0] < 1:
        raise ConfigError("pool", described(f"shape {pool.shape}"), "must be tasks (pool_size >= 1, dim)")
    check_regression_task(pool.shape[1], n_points, pool.shape[0], n_tasks)
    if isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer)) or batch_size < 1:
        raise ConfigError("batch_size", batch_size, "must be a positive integer")
    noise = concrete(noise_std)
    if noise is not None and not (noise.ndim == 0 and noise >= 0):
        raise ConfigError("noise_std", noise_std, "must be a number >= 0")
    dim = pool.shape[1]
    k_pick, k_fresh, k_x, k_noise = jax.random.split(key, 4)
    m = jnp.asarray(n_tasks, jnp.float32)
    pick = jnp.floor(jax.random.uniform(k_pick, (batch_size,)) * jnp.maximum(m, 1.0)).astype(jnp.int32)
    pick = pick.clip(0, pool.shape[0] - 1)
    fresh = jax.random.normal(k_fresh, (batch_size, dim))
    w = jnp.where(m > 0, pool[pick], fresh)
    x = jax.random.normal(k_x, (batch_size, n_points, dim))
    y = jnp.einsum("bkd,bd->bk", x, w, precision=jax.lax.Precision.HIGHEST)
    y = y + jnp.asarray(noise_std, jnp.float32) * jax.random.normal(k_noise, (batch_size, n_points))
    return x, y, w


def interleave(x, y):
    """(…, 2·n_points, dim + 1) tokens: x_k as (0, x_k) at even positions, y_k as (y_k, 0…)
    at odd ones."""
    if jnp.ndim(x) < 2 or jnp.shape(y) != jnp.shape(x)[:-1]:
        raise ConfigError("y", described(f"shape {jnp.shape(y)} beside x {jnp.shape(x)}"),
                          "must be (…, n_points) beside x (…, n_points, dim)")
    dim = x.shape[-1]
    xs = jnp.concatenate([jnp.zeros(x.shape[:-1] + (1,), x.dtype), x], axis=-1)
    ys = jnp.concatenate([y[..., None], jnp.zeros(y.shape + (dim,), y.dtype)], axis=-1)
    return jnp.stack([xs, ys], axis=-2).reshape(x.shape[:-2] + (2 * x.shape[-2], dim + 1))
