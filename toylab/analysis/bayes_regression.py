"""The Bayes predictors of in-context linear regression (Raventós et al. 2023), to set a
model's predictions beside.

At each point k of a sequence, from the k − 1 pairs before it (y = w·x + ε, ε ~ N(0, σ²)):

- ``ridge_predictions``: the posterior mean under the Gaussian prior w ~ N(0, I), ridge
  regression with penalty σ² — Bayes-optimal when tasks are fresh Gaussians (M = ∞);
- ``task_posterior_predictions``: the posterior mean when w is one of M known tasks, uniform
  a priori (the discrete minimum-mean-squared-error predictor, dMMSE) — Bayes-optimal for the
  pretraining distribution of M tasks.

Both are pure and vmappable; the number of tasks used may be traced (a mask over a pool).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.tracing import concrete

__all__ = ["ridge_predictions", "task_posterior_predictions"]

_HI = jax.lax.Precision.HIGHEST


def _check(x, y):
    x, y = jnp.asarray(x, jnp.float32), jnp.asarray(y, jnp.float32)
    if x.ndim != 2 or y.shape != x.shape[:1]:
        raise ConfigError("x", described(f"shape {x.shape} beside y {y.shape}"),
                          "must be one sequence: x (n_points, dim) and y (n_points,)")
    return x, y


def _check_noise(noise_std):
    try:
        value = concrete(noise_std)  # None when traced
    except (TypeError, ValueError):
        value = np.asarray(np.nan)
    if value is not None and not (np.ndim(value) == 0 and np.issubdtype(np.asarray(value).dtype, np.number)
                                  and float(value) > 0):
        raise ConfigError("noise_std", noise_std, "must be a number > 0 (the likelihood's σ)")
    return jnp.asarray(noise_std, jnp.float32)


def ridge_predictions(x, y, noise_std):
    """(n_points,) the prediction of y_k from the pairs before k: w_k·x_k with
    w_k = (X_{<k}ᵀX_{<k} + σ²I)⁻¹ X_{<k}ᵀ y_{<k} (0 at k = 0)."""
    x, y = _check(x, y)
    s2 = _check_noise(noise_std) ** 2
    dim = x.shape[1]
    outer = jnp.einsum("ki,kj->kij", x, x, precision=_HI)
    A = jnp.cumsum(outer, axis=0) - outer + s2 * jnp.eye(dim)  # exclusive sums: pairs before k
    xy = x * y[:, None]
    b = jnp.cumsum(xy, axis=0) - xy
    w = jnp.linalg.solve(A, b[..., None])[..., 0]
    return jnp.sum(w * x, axis=1)


def task_posterior_predictions(x, y, tasks, noise_std, n_tasks=None):
    """(n_points,) the prediction of y_k from the pairs before k when w is one of ``tasks``
    (M, dim), uniform a priori: Σ_m p_k(m) w_m·x_k, p_k(m) ∝ exp(−Σ_{j<k} (y_j − w_m·x_j)² / 2σ²).
    ``n_tasks`` (traceable): use the first that many rows only (None: all)."""
    x, y = _check(x, y)
    tasks = jnp.asarray(tasks, jnp.float32)
    if tasks.ndim != 2 or tasks.shape[1] != x.shape[1]:
        raise ConfigError("tasks", described(f"shape {tasks.shape}"), f"must be (M, dim={x.shape[1]})")
    s2 = _check_noise(noise_std) ** 2
    preds = jnp.einsum("kd,md->km", x, tasks, precision=_HI)  # w_m·x_k
    sq = (y[:, None] - preds) ** 2
    log_w = -(jnp.cumsum(sq, axis=0) - sq) / (2 * s2)  # exclusive: pairs before k
    if n_tasks is not None:
        log_w = jnp.where(jnp.arange(tasks.shape[0])[None, :] < jnp.asarray(n_tasks), log_w, -jnp.inf)
    p = jax.nn.softmax(log_w, axis=1)
    return jnp.sum(p * preds, axis=1)
