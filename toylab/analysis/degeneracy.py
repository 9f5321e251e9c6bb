"""Degeneracy of the loss landscape: the local learning coefficient (LLC) and the Hessian.

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

The Hessian at w*: the full matrix for small models; for large ones only Hessian-vector
products (forward over reverse mode) — the top eigenvalues by Lanczos, the trace by
Hutchinson, the spectral density by stochastic Lanczos quadrature, several probe vectors
batched through one vmapped product.
"""

from __future__ import annotations

import dataclasses
import functools
import math
from typing import Any, Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..core.config import ConfigError, described

__all__ = ["learning_coefficient", "LLCResult", "SAMPLERS", "default_nbeta", "rhat", "hessian",
           "hessian_vector_product", "lanczos", "top_eigenvalues", "hessian_trace", "spectral_density",
           "near_zero_count", "MAX_EXACT_HESSIAN", "calibrate", "Calibration", "family_learning_coefficient", "family_llc_inputs",
           "activation_nullity", "jacobian_nullity", "synchronized_relus", "layer_degeneracy", "mlp_degeneracy",
           "behavioural_loss", "effective_parameter_count", "quadratic_estimate"]

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


# ----------------------------------------------------------------------------- the Hessian

MAX_EXACT_HESSIAN = 10_000  # parameters up to which the full matrix is built (d² floats)


def _flat_loss(loss, params, data):
    flat, unravel = ravel_pytree(params)
    if flat.size == 0 or not jnp.issubdtype(flat.dtype, jnp.floating):
        raise ConfigError("params", described(f"{flat.size} values of {flat.dtype}"),
                          "must hold at least one floating-point array")
    out = jax.eval_shape(lambda w: loss(unravel(w), data), flat)
    if not hasattr(out, "shape") or out.shape != ():
        raise ConfigError("loss", described(f"a function returning {getattr(out, 'shape', type(out).__name__)}"),
                          "must return a scalar (the mean loss over the batch)")
    return (lambda w: loss(unravel(w), data)), flat


def hessian(loss: Callable, params, data):
    """The full (d, d) Hessian of ``loss(params, data)`` in the flattened parameters
    (``jax.flatten_util.ravel_pytree`` order), for d up to MAX_EXACT_HESSIAN."""
    f, w = _flat_loss(loss, params, data)
    if w.size > MAX_EXACT_HESSIAN:
        raise ConfigError("params", described(f"{w.size} parameters"),
                          f"the full Hessian is built for at most {MAX_EXACT_HESSIAN}; use top_eigenvalues, "
                          "hessian_trace or spectral_density (Hessian-vector products) instead")
    return jax.hessian(f)(w)


def hessian_vector_product(loss: Callable, params, data):
    """``(hvp, w)``: v ↦ H v at the flattened parameters w (forward over reverse mode, no
    d × d matrix), and w itself."""
    f, w = _flat_loss(loss, params, data)

    def hvp(v):
        return jax.jvp(jax.grad(f), (w,), (v.astype(w.dtype),))[1]
    return hvp, w


def _hvp_at(loss, params, data, v):
    """H v at ``params`` on ``data`` (flattened), all of them arguments: traced, not constants."""
    w, unravel = ravel_pytree(params)
    return jax.jvp(jax.grad(lambda x: loss(unravel(x), data)), (w,), (v,))[1]


@functools.lru_cache(maxsize=32)
def _program(kind: str, loss: Callable, iters: int):
    """One compiled program per (kind, loss, iters), params and data passed in (so XLA does
    not constant-fold the data, and a second call with the same loss does not recompile)."""
    if kind == "lanczos":
        return jax.jit(lambda p, d, v: lanczos(lambda u: _hvp_at(loss, p, d, u), v, iters))
    if kind == "slq":
        return jax.jit(lambda p, d, z: jax.vmap(lambda v: lanczos(lambda u: _hvp_at(loss, p, d, u), v, iters))(z))
    return jax.jit(lambda p, d, z: jax.vmap(lambda v: jnp.dot(v, _hvp_at(loss, p, d, v)))(z))  # hutchinson


def lanczos(matvec: Callable, v0, iters: int):
    """``iters`` steps of Lanczos with full reorthogonalisation from ``v0`` (d,): the
    tridiagonal (alphas (iters,), betas (iters − 1,)) of the symmetric operator ``matvec``."""
    iters = _positive("iters", iters, integer=True)
    if jnp.ndim(v0) != 1 or v0.shape[0] < 1:
        raise ConfigError("v0", described(f"shape {jnp.shape(v0)}"), "must be a non-empty vector (d,)")
    d = v0.shape[0]
    iters = int(min(iters, d))
    _, (alphas, betas) = jax.lax.scan(_lanczos_step(matvec), _lanczos_start(v0, iters), jnp.arange(iters))
    return alphas, betas[:-1]


def _lanczos_start(v0, size: int):
    """(basis (size, d) holding v0/‖v0‖, v, v_prev, β): the state before the first step."""
    v0 = v0 / jnp.linalg.norm(v0)
    basis = jnp.zeros((size, v0.shape[0]), v0.dtype).at[0].set(v0)
    return basis, v0, jnp.zeros_like(v0), jnp.zeros((), v0.dtype)


def _lanczos_step(matvec: Callable):
    """One Lanczos step i (a scan body): state → state, (α_i, β_{i+1})."""
    def step(carry, i):
        basis, v, v_prev, beta = carry
        w = matvec(v) - beta * v_prev
        alpha = jnp.dot(w, v)
        w = w - alpha * v
        w = w - basis.T @ (basis @ w)  # against every earlier vector: no ghost eigenvalues
        w = w - basis.T @ (basis @ w)
        beta_new = jnp.linalg.norm(w)
        v_new = jnp.where(beta_new > 1e-10, w / jnp.where(beta_new > 1e-10, beta_new, 1.0), 0.0)
        basis = basis.at[i + 1].set(v_new, mode="drop")
        return (basis, v_new, v, beta_new), (alpha, beta_new)
    return step


def _tridiagonal(alphas, betas):
    return jnp.diag(alphas) + jnp.diag(betas, 1) + jnp.diag(betas, -1)


def _ritz_top(alphas, betas, k: int):
    """The k largest Ritz values of the tridiagonal (alphas (m,), betas (m,): betas[m−1] is
    the norm of the next residual) and their residual bounds β_m·|last component|."""
    m = len(alphas)
    T = np.diag(alphas) + np.diag(betas[:m - 1], 1) + np.diag(betas[:m - 1], -1)
    theta, S = np.linalg.eigh(T.astype(np.float64))
    return theta[::-1][:k], np.abs(betas[m - 1] * S[m - 1, ::-1][:k])


def _converged_lanczos(loss: Callable, params, data, v0, k: int, max_iters: int, tol: float, every: int = 4):
    """Lanczos in compiled segments of ``every`` steps; between them the host checks whether
    each of the k largest Ritz values has a residual ‖Hy − θy‖ at most ``tol``·|θ| and stops
    there (or at ``max_iters``). Returns (values (k,), steps = Hessian-vector products)."""
    every = int(min(every, max_iters))
    segment = _segment_program(loss, every)
    state = _lanczos_start(v0, max_iters)
    alphas, betas, m = [], [], 0
    while m < max_iters:
        state, (a, b) = segment(params, data, state, jnp.asarray(m))
        take = min(every, max_iters - m)  # the steps past max_iters wrote nothing (dropped)
        alphas += np.asarray(a)[:take].tolist()
        betas += np.asarray(b)[:take].tolist()
        m += take
        if m >= k:
            top, resid = _ritz_top(np.asarray(alphas), np.asarray(betas), k)
            if np.all(resid <= tol * np.abs(top)):
                break
    return jnp.asarray(_ritz_top(np.asarray(alphas), np.asarray(betas), k)[0], v0.dtype), m


@functools.lru_cache(maxsize=32)
def _segment_program(loss: Callable, every: int):
    """``every`` Lanczos steps from step m0 on, compiled once per (loss, every)."""
    def run(p, d, state, m0):
        return jax.lax.scan(_lanczos_step(lambda u: _hvp_at(loss, p, d, u)), state, m0 + jnp.arange(every))
    return jax.jit(run, donate_argnums=(2,))  # the state (the basis) is updated in place


def top_eigenvalues(loss: Callable, params, data, key, k: int = 5, iters: int | None = None,
                    tol: float | None = None, return_steps: bool = False):
    """The k largest Hessian eigenvalues, (k,) in decreasing order: exact (``eigh``) up to
    MAX_EXACT_HESSIAN parameters when neither ``iters`` nor ``tol`` is given; else Lanczos
    from a random start — ``iters`` steps (default max(4k, 64)), or with ``tol`` only as many
    as it takes for each of the k Ritz values to have a residual below ``tol``·|value| (at
    most ``iters``; the basis of ``iters`` vectors is held in memory, and each step
    reorthogonalises against it). ``return_steps``: also return the number of
    Hessian-vector products (d², for the exact path)."""
    k = _positive("k", k, integer=True)
    _, w = _flat_loss(loss, params, data)
    if k > w.size:
        raise ConfigError("k", k, f"must be at most the number of parameters ({w.size})")
    if tol is not None:
        tol = _positive("tol", tol)
    if w.size <= MAX_EXACT_HESSIAN and iters is None and tol is None:
        values = jnp.linalg.eigvalsh(hessian(loss, params, data))[::-1][:k]
        return (values, w.size) if return_steps else values
    v0 = jax.random.normal(key, w.shape, w.dtype)
    if tol is not None:
        iters = max(4 * k, 64) if iters is None else _positive("iters", iters, integer=True)
        values, steps = _converged_lanczos(loss, params, data, v0, k, int(min(iters, w.size)), float(tol))
        return (values, steps) if return_steps else values
    iters = max(4 * k, 64) if iters is None else _positive("iters", iters, integer=True)
    alphas, betas = _program("lanczos", loss, int(min(iters, w.size)))(params, data, v0)
    values = jnp.linalg.eigvalsh(_tridiagonal(alphas, betas))[::-1][:k]
    return (values, int(min(iters, w.size))) if return_steps else values


def _probes(key, probes: int, d: int, dtype):
    return jax.random.rademacher(key, (probes, d)).astype(dtype)


def hessian_trace(loss: Callable, params, data, key, probes: int = 64):
    """Hutchinson's estimate of tr H with ``probes`` Rademacher vectors, pushed through one
    vmapped Hessian-vector product: (estimate, its standard error)."""
    probes = _positive("probes", probes, integer=True)
    _, w = _flat_loss(loss, params, data)
    samples = _program("hutchinson", loss, 0)(params, data, _probes(key, probes, w.size, w.dtype))
    return samples.mean(), samples.std() / jnp.sqrt(probes)


def spectral_density(loss: Callable, params, data, key, grid, probes: int = 8, iters: int = 64,
                     width: float | None = None):
    """Stochastic Lanczos quadrature: the Hessian's eigenvalue density on ``grid`` (a
    Gaussian of std ``width`` at each Ritz value, weighted by its squared first component,
    averaged over ``probes`` Rademacher starts run as one vmapped Lanczos). Integrates to 1
    over a grid that covers the spectrum. Returns (density on grid, nodes, weights)."""
    probes = _positive("probes", probes, integer=True)
    iters = _positive("iters", iters, integer=True)
    _, w = _flat_loss(loss, params, data)
    grid = jnp.asarray(grid, w.dtype)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ConfigError("grid", described(f"shape {grid.shape}"), "must be a 1-D array of at least 2 points")
    z = _probes(key, probes, w.size, w.dtype)
    alphas, betas = _program("slq", loss, int(min(iters, w.size)))(params, data, z)
    nodes, vecs = jnp.linalg.eigh(jax.vmap(_tridiagonal)(alphas, betas))
    weights = vecs[:, 0, :] ** 2  # (probes, iters)
    if width is None:
        width = float(grid[-1] - grid[0]) / 100
    width = _positive("width", width)
    gauss = jnp.exp(-0.5 * ((grid[None, None, :] - nodes[..., None]) / width) ** 2) / (width * jnp.sqrt(2 * jnp.pi))
    density = jnp.mean(jnp.sum(weights[..., None] * gauss, axis=1), axis=0)
    return density, nodes, weights


def near_zero_count(eigenvalues, tol: float = 1e-4):
    """How many eigenvalues have |λ| <= tol · max|λ| (relative: the directions the loss does
    not curve in, to that tolerance)."""
    ev = jnp.asarray(eigenvalues)
    tol = _positive("tol", tol)
    return jnp.sum(jnp.abs(ev) <= tol * jnp.max(jnp.abs(ev)), axis=-1)


def quadratic_estimate(hessian_eigenvalues, *, nbeta: float, localization: float, step_size: float, draws: int,
                       burnin: int):
    """The expected SGLD estimate (full batch) if the loss were its quadratic approximation
    ½ Σ hᵢ yᵢ² at w*, at exactly these settings — chains of ``draws`` steps from w*, the
    first ``burnin`` left out — so finite chains and finite ε are in it, not just nβ and γ.

    Along an eigendirection with curvature h, k = nβh + γ and ρ = 1 − εk/2, the chain's
    variance after t steps is ε(1 − ρ^{2t})/(1 − ρ²), which tends to 1/(k(1 − εk/4)); the
    estimate is nβ·½·Σᵢ hᵢ·(mean over kept draws of that variance). Negative eigenvalues
    (numerical noise at a minimum) count as 0. NaN if a direction is unstable (εk >= 4)."""
    h = np.clip(np.asarray(hessian_eigenvalues, np.float64).ravel(), 0, None)
    nbeta, gamma, eps = (float(_positive("nbeta", nbeta)), float(localization), float(_positive("step_size", step_size)))
    draws = _positive("draws", draws, integer=True)
    if isinstance(burnin, bool) or not isinstance(burnin, (int, np.integer)) or not 0 <= burnin < draws:
        raise ConfigError("burnin", burnin, f"must be an integer in [0, draws={draws})")
    if not math.isfinite(gamma) or gamma < 0:
        raise ConfigError("localization", localization, "must be a finite number >= 0")
    k = nbeta * h + gamma
    if np.any(eps * k >= 4):
        return float("nan")
    q = (1 - eps * k / 2) ** 2
    t = np.arange(burnin, draws)
    kept = draws - burnin
    # mean over t of (1 − q^t), in closed form where q < 1 (q = 1 only for h = γ = 0: no term)
    with np.errstate(divide="ignore", invalid="ignore"):
        geo = np.where(q < 1, (q ** burnin - q ** draws) / ((1 - q) * kept), 1.0)
        var = np.where(q < 1, eps * (1 - geo) / (1 - q), eps * t.mean())
    return float(nbeta * 0.5 * np.sum(h * var))


# ----------------------------------------------------------------------------- calibration


class Calibration(eqx.Module):
    """LLC estimates over a grid of step sizes × nβ × γ, and the step each (nβ, γ) should use.

    results: an LLCResult whose arrays lead with (n_step_sizes, n_nbetas, n_localizations).
    step_sizes, nbetas, localizations: the grid. stable: bool over the grid — no chain
    diverged, R-hat <= ``max_rhat``, the estimate positive and the kept draws at most
    ``max_below`` of the time below L(w*). chosen: (n_nbetas, n_localizations) the largest
    stable step size (NaN where none is stable).
    """

    results: LLCResult
    step_sizes: jax.Array
    nbetas: jax.Array
    localizations: jax.Array
    stable: jax.Array
    chosen: jax.Array


def calibrate(loss: Callable, params, data, key, step_sizes, nbetas=None, localizations=(100.0,), *,
              max_rhat: float = 1.1, max_below: float = 0.2, **sampler) -> Calibration:
    """Run :func:`learning_coefficient` over the grid step_sizes × nbetas × localizations in
    one vmapped program (same key everywhere, so cells differ only by their settings) and
    pick, per (nβ, γ), the largest step size whose chains are stable (see Calibration).
    ``nbetas`` defaults to (n/log n,). Other keywords go to learning_coefficient."""
    n = int(jnp.shape(jax.tree.leaves(data)[0])[0]) if jax.tree.leaves(data) else 0

    def grid_of(name, values):
        values = np.asarray(values, np.float64).ravel()
        if values.size == 0 or not np.all(np.isfinite(values)) or np.any(values < 0) or (
                name != "localizations" and np.any(values <= 0)):
            raise ConfigError(name, values.tolist(), "must be a non-empty list of finite positive numbers")
        return jnp.asarray(values, jnp.float32)

    eps = grid_of("step_sizes", step_sizes)
    nbs = grid_of("nbetas", [default_nbeta(max(n, 2))] if nbetas is None else nbetas)
    gammas = grid_of("localizations", localizations)
    # Validate everything once on concrete values (the vmapped call sees tracers).
    learning_coefficient(loss, params, data, key, **{**sampler, "draws": 2, "burnin": 0, "chains": 1,
                                                      "step_size": float(eps[0]), "nbeta": float(nbs[0]),
                                                      "localization": float(gammas[0])})
    E, B, G = jnp.meshgrid(eps, nbs, gammas, indexing="ij")

    def one(e, b, g):
        return learning_coefficient(loss, params, data, key, step_size=e, nbeta=b, localization=g, **sampler)
    results = jax.jit(jax.vmap(one))(E.ravel(), B.ravel(), G.ravel())
    results = jax.tree.map(lambda x: x.reshape(E.shape + x.shape[1:]), results)
    stable = (~jnp.any(results.diverged, axis=-1)) & (results.rhat <= max_rhat) & (results.mean > 0) & \
        jnp.all(results.below_init <= max_below, axis=-1)
    chosen = jnp.max(jnp.where(stable, E, -jnp.inf), axis=0)
    chosen = jnp.where(jnp.isfinite(chosen), chosen, jnp.nan)
    return Calibration(results, eps, nbs, gammas, stable, chosen)


# ----------------------------------------------------------------------------- toylab runs


def family_llc_inputs(run, *, family=None, config=None, n_batches: int = 8):
    """``(loss, params, data, defaults)`` for :func:`learning_coefficient` from a trained
    toylab model: its family's own loss, its trainable arrays, its training data and the
    sampler defaults that data implies (nβ = n/log n with n the training examples; full
    batch for a full-batch family, one drawn batch per step otherwise). Jit-friendly: build
    these once, then ``jax.jit`` a call of learning_coefficient on them."""
    from ..core.family import get_family

    if hasattr(run, "config") and hasattr(run, "model") and hasattr(run, "_results"):
        model, config, family = run.model, run.config, run._results.family
    else:
        model = run
        if family is None or config is None:
            raise ConfigError("family", family, "give family= and config= with a model (or pass a RunResult)")
        family = get_family(family)
    n_batches = _positive("n_batches", n_batches, integer=True)
    hp = config.hparams()
    params, static = eqx.partition(model, eqx.is_inexact_array)
    keys = jax.random.split(jax.random.key(2**31 - 7), max(n_batches, 2))  # fixed: the data do not depend on `key`
    first, second = family.batch(config, hp, keys[0]), family.batch(config, hp, keys[1])
    full_batch = all(np.array_equal(np.asarray(a), np.asarray(b))
                     for a, b in zip(jax.tree.leaves(first), jax.tree.leaves(second)))
    if full_batch:
        # The whole training set: its rows are the examples (the rows a mask leaves out are
        # dropped), so a full batch computes the loss once and a minibatch draws rows.
        keep = np.asarray(first["mask"], bool) if isinstance(first, dict) and "mask" in first else None
        n_rows = int(jnp.shape(jax.tree.leaves(first)[0])[0])
        if keep is None or keep.shape != (n_rows,):
            keep = np.ones(n_rows, bool)
        data = jax.tree.map(lambda x: jnp.asarray(x)[keep], first)
        n_examples = int(keep.sum())
        defaults = {"batch_size": None}

        def loss(p, batch):
            return family.loss(eqx.combine(p, static), batch, config, hp)[0]
    else:
        data = jax.vmap(lambda k: family.batch(config, hp, k))(keys[:n_batches])
        n_examples = n_batches * int(jnp.shape(jax.tree.leaves(first)[0])[0])
        defaults = {"batch_size": 1}

        def loss(p, batches):
            return jnp.mean(jax.vmap(lambda b: family.loss(eqx.combine(p, static), b, config, hp)[0])(batches))
    defaults["nbeta"] = default_nbeta(n_examples)
    defaults["n_examples"] = n_examples
    return loss, params, data, defaults


def family_learning_coefficient(run, key, *, family=None, config=None, n_batches: int = 8, **sampler) -> LLCResult:
    """The LLC of a trained toylab model with its family's own loss and training data.

    ``run``: a RunResult (from run_sweep / load_results) or a model, then with ``family``
    and ``config``. The data: the family's training batch, once for a full-batch family
    (the whole training set every step), else ``n_batches`` batches drawn from its task,
    one per SGLD step. nβ defaults to n/log n with n the number of training examples (the
    table's training rows, or n_batches × batch size); the result's ``n`` says which.
    """
    loss, params, data, defaults = family_llc_inputs(run, family=family, config=config, n_batches=n_batches)
    n_examples = defaults.pop("n_examples")
    res = learning_coefficient(loss, params, data, key, **{**defaults, **sampler})
    return dataclasses.replace(res, n=n_examples)


# ----------------------------------------------------------------------------- behavioural loss


def behavioural_loss(apply: Callable, params_star) -> Callable:
    """The behavioural loss of Bushnaq et al. (2024) at ``params_star``:
    ``L_B(w) = mean over the batch of ‖apply(w, x) − apply(w*, x)‖²``, as
    ``loss(params, inputs)`` for :func:`learning_coefficient` (``inputs`` a pytree with a
    leading example axis, ``apply(params, x)`` the outputs on one example). w* is an exact
    global minimum of it (L_B(w*) = 0) whatever the training loss was, so its LLC counts
    the directions that change what the network computes on those inputs."""
    if not callable(apply):
        raise ConfigError("apply", described(f"a {type(apply).__name__}"), "must be a function apply(params, x)")

    def loss(params, inputs):
        ours = jax.vmap(lambda x: apply(params, x))(inputs)
        theirs = jax.lax.stop_gradient(jax.vmap(lambda x: apply(params_star, x))(inputs))
        diff = jax.tree.map(lambda a, b: jnp.reshape(a - b, (a.shape[0], -1)), ours, theirs)
        return jnp.mean(sum(jnp.sum(d ** 2, axis=-1) for d in jax.tree.leaves(diff)))
    return loss


def effective_parameter_count(apply: Callable, params, inputs, key, **sampler):
    """(N_eff, LLCResult): Bushnaq et al.'s effective parameter count N_eff = 2·λ̂ of the
    behavioural loss at ``params`` on ``inputs`` (see :func:`behavioural_loss`). nβ sets
    the resolution: behaviour changes much below 1/nβ in L_B count as no change (their
    finite-data cutoff ε plays that part). Keywords go to :func:`learning_coefficient`."""
    res = learning_coefficient(behavioural_loss(apply, params), params, inputs, key, **sampler)
    return 2 * res.mean, res


# ----------------------------------------------------------------------------- the three degeneracies
# Bushnaq et al. 2024 ("Using degeneracy in the loss landscape for mechanistic
# interpretability"): directions in parameter space that leave the network's outputs on the
# data unchanged, read off one layer z = W x + b at a time. Each count of freed directions
# below follows from the linear algebra of that layer on the data set:
#   - a null vector v of the Gram matrix of [x; 1] (v·[x; 1] = 0 on every input) lets W' =
#     W + u vᵀ for any u: d_out directions per null vector;
#   - a null vector u of E[JᵀJ], J = ∂(outputs)/∂z (the outputs do not move when z moves
#     along u), lets W' = W + u wᵀ for any w: d_in + 1 directions per null vector (to first
#     order), less the n_act·n_jac directions both of the above already count;
#   - k ReLUs that fire on exactly the same inputs act on the data as one linear map of
#     width k, so mixing them by a k×k matrix near the identity (beyond the k rescalings every
#     ReLU has) keeps the outputs: k² − k directions per group. A neuron that never fires
#     is a group of its own: its fan-in and bias (d_in + 1) and its fan-out are all free.


def _nullity(gram, tol):
    """(count of eigenvalues within ``tol``·max |eigenvalue| of 0, eigenvalues). ``tol`` None:
    100 machine epsilons of the Gram's dtype — the rounding of a float32 Gram and its eigh
    reaches ~10 eps of the largest eigenvalue, so 1e-6 would call a null direction alive."""
    tol = 100 * float(jnp.finfo(gram.dtype).eps) if tol is None else _positive("tol", tol)
    ev = jnp.linalg.eigvalsh(gram)
    top = jnp.max(jnp.abs(ev))
    return jnp.sum(jnp.abs(ev) <= tol * jnp.where(top > 0, top, 1.0)), ev


def activation_nullity(inputs, tol: float | None = None):
    """(nullity, eigenvalues) of the Gram matrix of a layer's inputs with the bias folded in:
    ``inputs`` (n, d_in) → the number of directions v with v·[x; 1] = 0 on every input (to the
    relative tolerance ``tol`` of the largest eigenvalue; default 100 epsilons of the dtype)."""
    x = jnp.asarray(inputs)
    if x.ndim != 2:
        raise ConfigError("inputs", described(f"shape {x.shape}"), "must be (n, d_in): one row per input")
    xa = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    return _nullity(xa.T @ xa / x.shape[0], tol)


def jacobian_nullity(jacobians, tol: float | None = None):
    """(nullity, eigenvalues) of E[JᵀJ] for ``jacobians`` (n, d_outputs, d_layer), each the
    Jacobian of the network's outputs with respect to the layer's pre-activations on one
    input: the directions of the layer the outputs never respond to."""
    J = jnp.asarray(jacobians)
    if J.ndim != 3:
        raise ConfigError("jacobians", described(f"shape {J.shape}"), "must be (n, d_outputs, d_layer)")
    return _nullity(jnp.einsum("noi,noj->ij", J, J) / J.shape[0], tol)


def synchronized_relus(preactivations):
    """Groups of ReLUs that fire on exactly the same inputs: ``preactivations`` (n, k) →
    (group sizes of the neurons that fire somewhere but share their firing set with another,
    the number of neurons that never fire). Concrete arrays (numpy), not traced."""
    z = np.asarray(preactivations)
    if z.ndim != 2:
        raise ConfigError("preactivations", described(f"shape {z.shape}"), "must be (n, k): one row per input")
    fires = z > 0
    dead = int(np.sum(~fires.any(axis=0)))
    groups: dict[bytes, int] = {}
    for j in np.flatnonzero(fires.any(axis=0)):
        key = np.packbits(fires[:, j]).tobytes()
        groups[key] = groups.get(key, 0) + 1
    return sorted((s for s in groups.values() if s > 1), reverse=True), dead


def layer_degeneracy(inputs, preactivations, jacobians, *, relu: bool = True, fan_out: int | None = None,
                     tol: float | None = None) -> dict:
    """The three degeneracies of one layer z = W x + b on a data set, each as the number of
    parameter directions of (W, b) — and, for dead neurons, of the next layer's weights —
    that it frees (see the comment above for why each count is what it is).

    Args:
        inputs: (n, d_in) the layer's inputs x.
        preactivations: (n, d_layer) z.
        jacobians: (n, d_outputs, d_layer) ∂outputs/∂z on each input.
        relu: whether z feeds ReLUs (for the synchronised-firing count).
        fan_out: outputs each neuron feeds (a dead neuron's fan-out is free too); default 0.
        tol: relative eigenvalue tolerance of the two null spaces (default: 100 machine
            epsilons of the arrays' dtype, 1.2e-5 for float32).
    Returns:
        dict: nullities (activation, jacobian), freed directions of each kind, the
        synchronised groups' sizes, dead neurons, and the total.
    """
    x = jnp.asarray(inputs)
    d_in, d_layer = x.shape[1], jnp.shape(preactivations)[1]
    n_act, _ = activation_nullity(x, tol)
    n_jac, _ = jacobian_nullity(jacobians, tol)
    n_act, n_jac = int(n_act), int(n_jac)
    freed_act = n_act * d_layer
    freed_jac = n_jac * (d_in + 1) - n_act * n_jac
    groups, dead = synchronized_relus(preactivations) if relu else ([], 0)
    freed_sync = sum(k * k - k for k in groups)
    freed_dead = dead * (d_in + 1 + (fan_out or 0))
    return {"activation_nullity": n_act, "jacobian_nullity": n_jac, "sync_groups": groups, "dead": dead,
            "freed_activation": freed_act, "freed_jacobian": freed_jac, "freed_sync": freed_sync,
            "freed_dead": freed_dead, "freed_total": freed_act + freed_jac + freed_sync + freed_dead,
            "parameters": d_layer * (d_in + 1)}


def mlp_degeneracy(model, tokens, tol: float | None = None) -> dict:
    """:func:`layer_degeneracy` of the hidden layer of a pair model's MLP on ``tokens``
    (n, 3): the embedding MLPs (inputs: the one-hot or embedded operands) and the
    transformer's last MLP (inputs: the residual stream at the answer position), ReLU ones."""
    from ..models import PairModel

    if not isinstance(model, PairModel):
        raise ConfigError("model", described(f"a {type(model).__name__}"), "must be a pair model (toylab.models.PairModel)")
    tokens = jnp.asarray(tokens)
    if getattr(model, "activation", "relu") != "relu":
        raise ConfigError("model", described(f"a {model.activation} MLP"), "the synchronised-firing count needs ReLU neurons")
    if hasattr(model, "W_in") and hasattr(model, "hidden_pre"):  # embedding MLP: z = W_in x + b_in
        def layer_input(t):
            a, b = t[0], t[1]
            if model.embed == "onehot":
                n = model.W_in.shape[1] // 2
                return jnp.concatenate([jax.nn.one_hot(a, n), jax.nn.one_hot(b, n)])
            left, right = model.W_E_left[:, a], model.W_E_right[:, b]
            return left + right if model.embed == "sum" else jnp.concatenate([left, right])

        def head(z):
            out = model.W_out @ jax.nn.relu(z)
            return out if model.b_out is None else out + model.b_out
        W, bias = model.W_in, model.b_in
    else:  # transformer: the last block's MLP at the answer position
        block = model.blocks[-1]

        def layer_input(t):
            _, cache = model(t, return_activations=True)
            return cache[-1]["resid_mid"][-1]

        def head(z):
            return (block.W_out @ jax.nn.relu(z) + block.b_out) @ model.W_U
        W, bias = block.W_in, block.b_in
    x = jax.vmap(layer_input)(tokens)
    z = x @ W.T + (0.0 if bias is None else bias)
    J = jax.vmap(jax.jacrev(head))(z)
    return layer_degeneracy(x, z, J, relu=True, fan_out=0, tol=tol)
