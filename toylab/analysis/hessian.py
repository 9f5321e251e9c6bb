"""The Hessian of a loss at given parameters: the full matrix for small models; for large
ones only Hessian-vector products (forward over reverse mode) — the top eigenvalues by
Lanczos, the trace by Hutchinson, the spectral density by stochastic Lanczos quadrature,
several probe vectors batched through one vmapped product.

Every function takes ``loss(params, batch) -> scalar`` (the mean loss over the batch),
``params`` (any pytree of float arrays) and ``data`` (the batch the Hessian is taken on),
and ``precision``: the matrix-product policy of its programs (:mod:`toylab.core.precision`;
"float32", HIGHEST, by default — eigenvalues near zero are what the degeneracy analyses
count, and a fast mode's rounding moves them).
"""

from __future__ import annotations

import functools
from typing import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.flatten_util import ravel_pytree

from ..core.config import ConfigError, described
from ..core.precision import check_precision, precision_scope, reduced_loss
from ._validate import finite_tree
from ._validate import positive as _positive

__all__ = ["hessian", "hessian_vector_product", "lanczos", "top_eigenvalues", "hessian_trace", "spectral_density",
           "near_zero_count", "spectrum_quadrature", "MAX_EXACT_HESSIAN", "EXACT_SPECTRUM"]

MAX_EXACT_HESSIAN = 10_000  # parameters up to which the full matrix is built (d² floats)


def _flat_loss(loss, params, data):
    flat, unravel = ravel_pytree(params)
    if flat.size == 0 or not jnp.issubdtype(flat.dtype, jnp.floating):
        raise ConfigError("params", described(f"{flat.size} values of {flat.dtype}"),
                          "must hold at least one floating-point array")
    finite_tree("params", params)
    finite_tree("data", data)
    out = jax.eval_shape(lambda w: loss(unravel(w), data), flat)
    if not hasattr(out, "shape") or out.shape != ():
        raise ConfigError("loss", described(f"a function returning {getattr(out, 'shape', type(out).__name__)}"),
                          "must return a scalar (the mean loss over the batch)")
    return (lambda w: loss(unravel(w), data)), flat


def hessian(loss: Callable, params, data, precision: str = "float32"):
    """The full (d, d) Hessian of ``loss(params, data)`` in the flattened parameters
    (``jax.flatten_util.ravel_pytree`` order), for d up to MAX_EXACT_HESSIAN."""
    precision = check_precision(precision)
    f, w = _flat_loss(reduced_loss(loss, precision), params, data)
    if w.size > MAX_EXACT_HESSIAN:
        raise ConfigError("params", described(f"{w.size} parameters"),
                          f"the full Hessian is built for at most {MAX_EXACT_HESSIAN}; use top_eigenvalues, "
                          "hessian_trace or spectral_density (Hessian-vector products) instead")
    with precision_scope(precision):
        return jax.hessian(f)(w)


def hessian_vector_product(loss: Callable, params, data, precision: str = "float32"):
    """``(hvp, w)``: v ↦ H v at the flattened parameters w (forward over reverse mode, no
    d × d matrix), and w itself. ``hvp`` traces its products under ``precision`` wherever
    it is called (jitted or not)."""
    precision = check_precision(precision)
    f, w = _flat_loss(reduced_loss(loss, precision), params, data)

    def hvp(v):
        with precision_scope(precision):
            return jax.jvp(jax.grad(f), (w,), (v.astype(w.dtype),))[1]
    return hvp, w


def _hvp_at(loss, params, data, v):
    """H v at ``params`` on ``data`` (flattened), all of them arguments: traced, not constants."""
    w, unravel = ravel_pytree(params)
    return jax.jvp(jax.grad(lambda x: loss(unravel(x), data)), (w,), (v,))[1]


@functools.lru_cache(maxsize=32)
def _program(kind: str, loss: Callable, iters: int, precision: str = "float32"):
    """One compiled program per (kind, loss, iters, precision), params and data passed in (so
    XLA does not constant-fold the data, and a second call with the same loss does not
    recompile), its products traced under the ``precision`` policy."""
    return _Scoped(_jitted(kind, reduced_loss(loss, precision), iters), precision)


class _Scoped:
    """A jitted function called (and lowered) under a precision policy: the policy acts at
    trace time, and jit's cache keys on it, so each policy is its own compiled program."""

    def __init__(self, fn, precision):
        self.fn, self.precision = fn, precision

    def __call__(self, *args):
        with precision_scope(self.precision):
            return self.fn(*args)

    def lower(self, *args):
        with precision_scope(self.precision):
            return self.fn.lower(*args)


def _jitted(kind: str, loss: Callable, iters: int):
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


def _converged_lanczos(loss: Callable, params, data, v0, k: int, max_iters: int, tol: float, every: int = 4,
                       precision: str = "float32"):
    """Lanczos in compiled segments of ``every`` steps; between them the host checks whether
    each of the k largest Ritz values has a residual ‖Hy − θy‖ at most ``tol``·|θ| and stops
    there (or at ``max_iters``). Returns (values (k,), steps = Hessian-vector products)."""
    every = int(min(every, max_iters))
    segment = _segment_program(loss, every, precision)
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
def _segment_program(loss: Callable, every: int, precision: str = "float32"):
    """``every`` Lanczos steps from step m0 on, compiled once per (loss, every, precision)."""
    loss = reduced_loss(loss, precision)

    def run(p, d, state, m0):
        return jax.lax.scan(_lanczos_step(lambda u: _hvp_at(loss, p, d, u)), state, m0 + jnp.arange(every))
    return _Scoped(jax.jit(run, donate_argnums=(2,)), precision)  # the state (the basis) is updated in place


def top_eigenvalues(loss: Callable, params, data, key, k: int = 5, iters: int | None = None,
                    tol: float | None = None, return_steps: bool = False, precision: str = "float32"):
    """The k largest Hessian eigenvalues, (k,) in decreasing order: exact (``eigh``) up to
    MAX_EXACT_HESSIAN parameters when neither ``iters`` nor ``tol`` is given; else Lanczos
    from a random start — ``iters`` steps (default max(4k, 64)), or with ``tol`` only as many
    as it takes for each of the k Ritz values to have a residual below ``tol``·|value| (at
    most ``iters``; the basis of ``iters`` vectors is held in memory, and each step
    reorthogonalises against it). ``return_steps``: also return the number of
    Hessian-vector products (d², for the exact path)."""
    precision = check_precision(precision)
    k = _positive("k", k, integer=True)
    _, w = _flat_loss(loss, params, data)
    if k > w.size:
        raise ConfigError("k", k, f"must be at most the number of parameters ({w.size})")
    if tol is not None:
        tol = _positive("tol", tol)
    if w.size <= MAX_EXACT_HESSIAN and iters is None and tol is None:
        values = jnp.linalg.eigvalsh(hessian(loss, params, data, precision))[::-1][:k]
        return (values, w.size) if return_steps else values
    v0 = jax.random.normal(key, w.shape, w.dtype)
    if tol is not None:
        iters = max(4 * k, 64) if iters is None else _positive("iters", iters, integer=True)
        values, steps = _converged_lanczos(loss, params, data, v0, k, int(min(iters, w.size)), float(tol),
                                           precision=precision)
        return (values, steps) if return_steps else values
    iters = max(4 * k, 64) if iters is None else _positive("iters", iters, integer=True)
    alphas, betas = _program("lanczos", loss, int(min(iters, w.size)), precision)(params, data, v0)
    values = jnp.linalg.eigvalsh(_tridiagonal(alphas, betas))[::-1][:k]
    return (values, int(min(iters, w.size))) if return_steps else values


def _probes(key, probes: int, d: int, dtype):
    return jax.random.rademacher(key, (probes, d)).astype(dtype)


def hessian_trace(loss: Callable, params, data, key, probes: int = 64, precision: str = "float32"):
    """Hutchinson's estimate of tr H with ``probes`` Rademacher vectors, pushed through one
    vmapped Hessian-vector product: (estimate, its standard error)."""
    precision = check_precision(precision)
    probes = _positive("probes", probes, integer=True)
    _, w = _flat_loss(loss, params, data)
    samples = _program("hutchinson", loss, 0, precision)(params, data, _probes(key, probes, w.size, w.dtype))
    return samples.mean(), samples.std() / jnp.sqrt(probes)


def spectral_density(loss: Callable, params, data, key, grid, probes: int = 8, iters: int = 64,
                     width: float | None = None, precision: str = "float32"):
    """Stochastic Lanczos quadrature: the Hessian's eigenvalue density on ``grid`` (a
    Gaussian of std ``width`` at each Ritz value, weighted by its squared first component,
    averaged over ``probes`` Rademacher starts run as one vmapped Lanczos). Integrates to 1
    over a grid that covers the spectrum. Returns (density on grid, nodes, weights)."""
    precision = check_precision(precision)
    probes = _positive("probes", probes, integer=True)
    iters = _positive("iters", iters, integer=True)
    _, w = _flat_loss(loss, params, data)
    grid = jnp.asarray(grid, w.dtype)
    if grid.ndim != 1 or grid.shape[0] < 2:
        raise ConfigError("grid", described(f"shape {grid.shape}"), "must be a 1-D array of at least 2 points")
    z = _probes(key, probes, w.size, w.dtype)
    alphas, betas = _program("slq", loss, int(min(iters, w.size)), precision)(params, data, z)
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


# ----------------------------------------------------------------------------- spectrum quadrature

EXACT_SPECTRUM = 48  # parameters up to which spectrum_quadrature takes the exact eigenvalues (d products)


def spectrum_quadrature(hvp: Callable, d: int, key, *, move=None, probes: int = 2, steps: int = 20):
    """Nodes θ and weights τ with Σ_j τ_j f(θ_j) ≈ Σ_i f(h_i) over the eigenvalues h_i of the
    Hessian restricted to the moving coordinates (``move``: a (d,) 0/1 mask; None: all), for
    any smooth f — the quadrature the LLC's bias diagnostics integrate over. Exact (the
    eigenvalues, weight 1 each) for d <= EXACT_SPECTRUM; else stochastic Lanczos quadrature
    with ``probes`` Rademacher starts of ``steps`` steps (exact for polynomials of degree
    2·steps − 1 in expectation over the starts; the largest node converges to h_max first).
    ``hvp``: v ↦ H v on the flat (d,) parameters. Traceable; returns ((n,), (n,)) arrays."""
    d = _positive("d", d, integer=True)
    probes = _positive("probes", probes, integer=True)
    steps = _positive("steps", steps, integer=True)
    if not callable(hvp):
        raise ConfigError("hvp", described(f"a {type(hvp).__name__}"), "must be a function v ↦ H v")
    move = jnp.ones((d,), jnp.float32) if move is None else jnp.asarray(move)
    if move.shape != (d,):
        raise ConfigError("move", described(f"shape {move.shape}"), f"must be a (d,) = ({d},) 0/1 mask")
    dtype = jax.eval_shape(hvp, jax.ShapeDtypeStruct((d,), move.dtype)).dtype
    move = move.astype(dtype)
    restricted = lambda v: move * hvp(move * v)  # noqa: E731  (P H P: the frozen block is zero)
    if d <= EXACT_SPECTRUM:
        H = jax.vmap(restricted)(jnp.eye(d, dtype=dtype))
        nodes, vecs = jnp.linalg.eigh(0.5 * (H + H.T))
        # an eigenvector's mass on the moving coordinates: 0 for a frozen unit vector, 1 otherwise
        return nodes, jnp.sum((move[:, None] * vecs) ** 2, axis=0)
    steps = int(min(steps, d))
    starts = move * jax.random.rademacher(key, (probes, d)).astype(dtype)

    def one_probe(v):
        _, (alphas, betas) = jax.lax.scan(_lanczos_step(restricted), _lanczos_start(v, steps), jnp.arange(steps))
        theta, S = jnp.linalg.eigh(_tridiagonal(alphas, betas[:-1]))
        return theta, S[0] ** 2
    nodes, tau = jax.vmap(one_probe)(starts)
    scale = jnp.sum(move) / probes  # E vᵀf(PHP)v = tr P f(PHP) P for Rademacher v on the moving block
    return nodes.ravel(), (tau * scale).ravel()

