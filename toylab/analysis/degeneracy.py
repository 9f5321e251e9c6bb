"""Degeneracy of the loss landscape: the local learning coefficient (LLC).

The LLC at parameters w* (Lau et al., "The local learning coefficient") is

    λ̂(w*) = nβ · (E_w[L_n(w)] − L_n(w*)),

the expectation over the tempered, localized posterior exp(−nβ·L_n(w) − (γ/2)‖w − w*‖²),
sampled by stochastic-gradient Langevin dynamics started at w*:

    Δw = −(ε/2)·(nβ·∇L_batch(w) + γ·(w − w*)) + √ε·N(0, I).

Chains are vmapped and draws are one ``lax.scan``, so a call is one compiled program, and
the same call vmaps over a run's snapshots (the LLC over training) or a sweep's runs. The
result carries the diagnostics a reader needs to trust the number: the loss traces, R-hat
across chains, the MALA acceptance rate of the proposals (with ``sampler="sgld_mala"``), and
flags for diverged chains, traces that sit below L(w*) and negative estimates.
"""

from __future__ import annotations

import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..core.config import ConfigError, described

__all__ = ["learning_coefficient", "LLCResult", "SAMPLERS", "default_nbeta", "rhat"]

SAMPLERS = ("sgld", "rmsprop_sgld", "sgld_mala")


def default_nbeta(n: int) -> float:
    """n / log n: the inverse temperature nβ with β = 1/log n (Watanabe's WBIC choice)."""
    return n / math.log(n)


class LLCResult(eqx.Module):
    """The estimate and what it rests on (arrays; a leading axis when vmapped).

    mean, std: the LLC over chains (std across the chains' estimates).
    per_chain: (chains,) each chain's estimate nβ·(mean of its kept losses − L(w*)).
    traces: (chains, draws) the loss at every draw, burn-in included.
    init_loss: L(w*) on the full data. nbeta: the inverse temperature used; n: examples.
    rhat: Gelman–Rubin R-hat of the kept loss draws across chains (near 1: chains agree).
    acceptance: mean MALA acceptance probability of the proposals (NaN unless sgld_mala).
    diverged: (chains,) a NaN or infinite loss appeared. below_init: (chains,) share of kept
    draws below L(w*) (a chain that found lower loss: w* was not a local minimum).
    final: the chains' last parameters (the pytree of ``params`` with a (chains,) axis).
    """

    mean: jax.Array
    std: jax.Array
    per_chain: jax.Array
    traces: jax.Array
    init_loss: jax.Array
    nbeta: jax.Array
    n: int = eqx.field(static=True)
    burnin: int = eqx.field(static=True)
    rhat: jax.Array = None
    acceptance: jax.Array = None
    diverged: jax.Array = None
    below_init: jax.Array = None
    final: Any = None

    @property
    def warnings(self) -> list[str]:
        """Plain-language warnings (read on concrete results, not inside jit)."""
        out = []
        if bool(np.any(np.asarray(self.diverged))):
            out.append("a chain diverged (NaN or infinite loss): lower the step size")
        if bool(np.any(np.asarray(self.below_init) > 0.5)):
            out.append("a chain spent most draws below L(w*): w* is not a local minimum, or the step is too large")
        if bool(np.any(np.asarray(self.mean) < 0)):
            out.append("the estimate is negative: w* is not a local minimum, or the chains are too short")
        if bool(np.any(np.asarray(self.rhat) > 1.1)):
            out.append("R-hat above 1.1: the chains disagree; draw longer or lower the step size")
        return out


def rhat(traces):
    """Gelman–Rubin R-hat of (..., chains, draws) traces (1 when chains agree)."""
    traces = jnp.asarray(traces)
    n = traces.shape[-1]
    chain_means = traces.mean(-1)
    within = traces.var(-1, ddof=1).mean(-1)
    between = n * chain_means.var(-1, ddof=1)
    pooled = (n - 1) / n * within + between / n
    return jnp.sqrt(pooled / jnp.maximum(within, 1e-30))


def _positive(name, value, integer=False):
    if isinstance(value, jax.core.Tracer):
        return value
    bad = isinstance(value, bool) or not isinstance(value, (int, float, np.integer, np.floating))
    if not bad:
        bad = not math.isfinite(float(value)) or value <= 0 or (integer and int(value) != value)
    if bad:
        raise ConfigError(name, value, "must be a positive integer" if integer else "must be a finite number > 0")
    return int(value) if integer else value


def learning_coefficient(loss: Callable, params, data, key, *, chains: int = 4, draws: int = 500,
                         burnin: int | None = None, step_size: float = 1e-4, nbeta: float | None = None,
                         localization: float = 100.0, batch_size: int | None = None, sampler: str = "sgld",
                         mask=None, rmsprop_decay: float = 0.99, rmsprop_eps: float = 1.0,
                         noise: bool = True) -> LLCResult:
    """Estimate the local learning coefficient of ``loss`` at ``params``.

    Args:
        loss: ``loss(params, batch) -> scalar`` mean loss over the batch's examples.
        params: the point w* (any pytree of float arrays: an equinox model's arrays, flax
            variables).
        data: a pytree of arrays with a leading example axis of length n (the training
            data; L(w*) is computed on all of it).
        key: a PRNG key (the same key gives the same numbers).
        chains, draws: chains run in parallel (vmapped), draws per chain (a scan).
        burnin: leading draws left out of the estimate (default: a tenth of the draws).
        step_size: SGLD step ε.
        nbeta: inverse temperature nβ (default n/log n, i.e. β = 1/log n with n the number
            of training examples; the value used is in the result).
        localization: γ, the strength of the pull back to w*.
        batch_size: examples per step, drawn with replacement (None: the full data every
            step, exact gradients).
        sampler: "sgld"; "rmsprop_sgld" (RMSProp-preconditioned SGLD, Li et al. 2016);
            "sgld_mala" (SGLD whose proposals are also scored by the Metropolis–Hastings
            acceptance of MALA on the same batch: a diagnostic, nothing is rejected).
        mask: a pytree of bools like ``params`` (or None): only the True coordinates move
            (the restricted LLC of those parameters; the rest stay at w*).
        rmsprop_decay, rmsprop_eps: RMSProp's moving-average decay of the squared gradient
            of the potential (bias-corrected) and its stabiliser δ: each coordinate steps by
            ε/(√V + δ), so δ = 1 never steps further than plain SGLD (at w* the gradient is
            zero, and a small δ would send the first steps far away) and stiff directions
            step less.
        noise: False turns the Langevin noise off (then SGLD at step 2η is gradient
            descent at step η on nβ·L + γ/2‖w − w*‖²; a check, not an estimator).
    Returns:
        An :class:`LLCResult`.
    """
    flat, unravel = ravel_pytree(params)
    if flat.size == 0 or not jnp.issubdtype(flat.dtype, jnp.floating):
        raise ConfigError("params", described(f"{flat.size} values of {flat.dtype}"),
                          "must hold at least one floating-point array")
    leaves = jax.tree.leaves(data)
    if not leaves or any(jnp.ndim(x) < 1 for x in leaves):
        raise ConfigError("data", described("arrays without a leading example axis" if leaves else "no arrays"),
                          "must be a pytree of arrays with a leading example axis")
    n = int(jnp.shape(leaves[0])[0])
    if any(jnp.shape(x)[0] != n for x in leaves) or n < 2:
        raise ConfigError("data", described(f"leading axes {[jnp.shape(x)[0] for x in leaves]}"),
                          "every array must share one leading example axis of at least 2 examples")
    chains = _positive("chains", chains, integer=True)
    draws = _positive("draws", draws, integer=True)
    burnin = draws // 10 if burnin is None else burnin
    if isinstance(burnin, bool) or not isinstance(burnin, (int, np.integer)) or not 0 <= burnin < draws:
        raise ConfigError("burnin", burnin, f"must be an integer in [0, draws={draws})")
    step_size = _positive("step_size", step_size)
    nbeta = default_nbeta(n) if nbeta is None else _positive("nbeta", nbeta)
    if not isinstance(localization, jax.core.Tracer) and (
            isinstance(localization, bool) or not math.isfinite(float(localization)) or localization < 0):
        raise ConfigError("localization", localization, "must be a finite number >= 0")
    if batch_size is not None:
        batch_size = _positive("batch_size", batch_size, integer=True)
    _positive("rmsprop_eps", rmsprop_eps)
    if not 0 <= rmsprop_decay < 1:
        raise ConfigError("rmsprop_decay", rmsprop_decay, "must be in [0, 1)")
    if sampler not in SAMPLERS:
        raise ConfigError("sampler", sampler, f"must be one of {', '.join(SAMPLERS)}")
    if mask is None:
        move = jnp.ones_like(flat)
    else:
        if jax.tree.structure(mask) != jax.tree.structure(params) or any(
                jnp.shape(m) != jnp.shape(p) for m, p in zip(jax.tree.leaves(mask), jax.tree.leaves(params))):
            raise ConfigError("mask", described(f"a tree {jax.tree.structure(mask)}"),
                              f"must have the structure and shapes of params ({jax.tree.structure(params)})")
        move = ravel_pytree(jax.tree.map(lambda m: jnp.asarray(m, flat.dtype), mask))[0]
    out = jax.eval_shape(lambda w: loss(unravel(w), data), flat)
    if not hasattr(out, "shape") or out.shape != ():
        raise ConfigError("loss", described(f"a function returning {getattr(out, 'shape', type(out).__name__)}"),
                          "must return a scalar (the mean loss over the batch)")
    return _sample(loss, unravel, flat, data, key, move, n=n, chains=chains, draws=draws, burnin=int(burnin),
                   step_size=step_size, nbeta=nbeta, localization=localization, batch_size=batch_size,
                   sampler=sampler, decay=rmsprop_decay, eps_rms=rmsprop_eps, noise=bool(noise))


def _sample(loss, unravel, w_star, data, key, move, *, n, chains, draws, burnin, step_size, nbeta, localization,
            batch_size, sampler, decay, eps_rms, noise) -> LLCResult:
    flat_loss = lambda w, batch: loss(unravel(w), batch)  # noqa: E731
    eps, nbeta_a, gamma = (jnp.asarray(x, w_star.dtype) for x in (step_size, nbeta, localization))
    init_loss = flat_loss(w_star, data)

    def batch_of(k):
        if batch_size is None:
            return data
        rows = jax.random.randint(k, (batch_size,), 0, n)
        return jax.tree.map(lambda x: jnp.asarray(x)[rows], data)

    def potential_and_grad(w, batch):
        # U(w) = nβ·L_batch(w) + γ/2·‖w − w*‖², and its gradient (frozen coordinates: zero)
        value, g = jax.value_and_grad(flat_loss)(w, batch)
        u = nbeta_a * value + 0.5 * gamma * jnp.sum(move * (w - w_star) ** 2)
        return value, u, move * (nbeta_a * g + gamma * (w - w_star))

    def chain(k_chain):
        def step(carry, k):
            w, v = carry
            k_batch, k_noise = jax.random.split(k)
            batch = batch_of(k_batch)
            value, u, grad_u = potential_and_grad(w, batch)
            if sampler == "rmsprop_sgld":
                v, t = decay * v[0] + (1 - decay) * grad_u ** 2, v[1] + 1
                precond = 1.0 / (jnp.sqrt(v / (1 - decay ** t)) + eps_rms)
                v = (v, t)
            else:
                precond = jnp.ones_like(w)
            xi = jax.random.normal(k_noise, w.shape, w.dtype) if noise else jnp.zeros_like(w)
            w_new = w - 0.5 * eps * precond * grad_u + jnp.sqrt(eps * precond) * xi * move
            accept = jnp.nan
            if sampler == "sgld_mala":
                # MH acceptance of the Langevin proposal w → w_new on the same batch.
                _, u_new, grad_new = potential_and_grad(w_new, batch)
                fwd = jnp.sum(move * (w_new - w + 0.5 * eps * grad_u) ** 2) / (2 * eps)
                back = jnp.sum(move * (w - w_new + 0.5 * eps * grad_new) ** 2) / (2 * eps)
                accept = jnp.minimum(1.0, jnp.exp(u - u_new + fwd - back))
            return (w_new, v), (value, accept)

        start = (w_star, (jnp.zeros_like(w_star), jnp.zeros((), w_star.dtype)))
        (w_last, _), (values, accepts) = jax.lax.scan(step, start, jax.random.split(k_chain, draws))
        return w_last, values, accepts

    finals, traces, accepts = jax.vmap(chain)(jax.random.split(key, chains))
    kept = traces[:, burnin:]
    per_chain = nbeta_a * (kept.mean(-1) - init_loss)
    return LLCResult(
        mean=per_chain.mean(), std=per_chain.std(), per_chain=per_chain, traces=traces, init_loss=init_loss,
        nbeta=nbeta_a, n=n, burnin=burnin, rhat=rhat(kept),
        acceptance=jnp.nanmean(accepts) if sampler == "sgld_mala" else jnp.asarray(jnp.nan, w_star.dtype),
        diverged=~jnp.all(jnp.isfinite(traces), axis=-1), below_init=jnp.mean(kept < init_loss, axis=-1),
        final=jax.vmap(unravel)(finals))
