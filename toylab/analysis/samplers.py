"""Samplers of the LLC's tempered, localized posterior p(w) ∝ exp(−U(w)),
U(w) = nβ·L_n(w) + γ/2·‖w − w*‖², as small objects in the blackjax/optax style: made once
with their own settings (``sgld()``, ``rmsprop_sgld(decay=0.9)``, ``hmc()``), passed to
:func:`~toylab.analysis.llc.learning_coefficient` as one argument.

A Langevin sampler has ``init(w) -> state`` and
``step(key, state, w, here, potential, step_size, move) -> (w_new, state, acceptance)``:
``here`` = (loss, U, ∇U) at w on the current batch, ``potential(w)`` the same triple at another
point on that batch, ``move`` the 0/1 mask of coordinates that move. :class:`HMC` samples the
full-data posterior exactly by NUTS (blackjax): ``chain(key, w, logdensity, draws)``.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ..core.config import ConfigError
from ._validate import positive

__all__ = ["SGLD", "RMSPropSGLD", "HMC", "sgld", "rmsprop_sgld", "sgld_mala", "hmc", "as_sampler", "SAMPLERS"]


@dataclasses.dataclass(frozen=True)
class SGLD:
    """Stochastic-gradient Langevin dynamics: Δw = −(ε/2)·∇U + √ε·N(0, I) on the moving
    coordinates. ``noise=False``: gradient descent on U at step ε/2 (a check, not a sampler).
    ``mala``: also score each proposal by the Metropolis–Hastings acceptance of MALA on the
    same batch (a diagnostic of the step size: nothing is rejected)."""

    noise: bool = True
    mala: bool = False
    name: str = dataclasses.field(default="sgld", init=False)
    exact: bool = dataclasses.field(default=False, init=False)  # samples the posterior without step-size bias

    def __post_init__(self):
        object.__setattr__(self, "name", "sgld_mala" if self.mala else "sgld")

    def init(self, w):
        return ()

    def preconditioner(self, state, grad):
        return state, jnp.ones_like(grad)

    def step(self, key, state, w, here, potential: Callable, step_size, move):
        _, u, grad = here
        state, pre = self.preconditioner(state, grad)
        xi = jax.random.normal(key, w.shape, w.dtype) if self.noise else jnp.zeros_like(w)
        w_new = w - 0.5 * step_size * pre * grad + jnp.sqrt(step_size * pre) * xi * move
        accept = jnp.asarray(jnp.nan, w.dtype)
        if self.mala:
            _, u_new, grad_new = potential(w_new)
            fwd = jnp.sum(move * (w_new - w + 0.5 * step_size * pre * grad) ** 2 / pre) / (2 * step_size)
            back = jnp.sum(move * (w - w_new + 0.5 * step_size * pre * grad_new) ** 2 / pre) / (2 * step_size)
            accept = jnp.minimum(1.0, jnp.exp(u - u_new + fwd - back))
        return w_new, state, accept


@dataclasses.dataclass(frozen=True)
class RMSPropSGLD(SGLD):
    """SGLD preconditioned by RMSProp (Li et al. 2016): each coordinate steps by
    ε/(√V + δ), V the bias-corrected moving average (``decay``) of the squared gradient of
    U. δ = ``eps`` = 1 never steps further than plain SGLD (at w* the gradient is zero, and a
    small δ would send the first steps far away); stiff directions step less. The estimate's
    diagnostics model plain SGLD at ε: for this sampler the predicted step-size bias is an upper
    bound (every step is at most ε), while the fill, the effective draws and draws chosen by
    rule are optimistic (its chains move more slowly than plain SGLD's)."""

    decay: float = 0.99
    eps: float = 1.0

    def __post_init__(self):
        if isinstance(self.decay, bool) or not isinstance(self.decay, (int, float)) or not 0 <= self.decay < 1:
            raise ConfigError("decay", self.decay, "must be in [0, 1)")
        positive("eps", self.eps)
        object.__setattr__(self, "name", "rmsprop_sgld")

    def init(self, w):
        return jnp.zeros_like(w), jnp.zeros((), w.dtype)

    def preconditioner(self, state, grad):
        v, t = state
        v, t = self.decay * v + (1 - self.decay) * grad ** 2, t + 1
        return (v, t), 1.0 / (jnp.sqrt(v / (1 - self.decay ** t)) + self.eps)


@dataclasses.dataclass(frozen=True)
class HMC:
    """Exact sampling of the full-data posterior by NUTS (blackjax, the optional ``hmc``
    extra): per chain, ``warmup`` steps of Stan's window adaptation (step size and a diagonal
    mass matrix, to ``target_accept``: 0.95, as singular posteriors are funnels where a
    larger step diverges), then the draws. No step-size bias: the gold standard
    the SGLD estimates are checked against on small models. ``max_doublings`` bounds each
    trajectory at 2^max_doublings − 1 gradient evaluations."""

    warmup: int = 500
    target_accept: float = 0.95
    max_doublings: int = 8
    name: str = dataclasses.field(default="hmc", init=False)
    exact: bool = dataclasses.field(default=True, init=False)

    def __post_init__(self):
        positive("warmup", self.warmup, integer=True)
        positive("max_doublings", self.max_doublings, integer=True)
        if isinstance(self.target_accept, bool) or not isinstance(self.target_accept, (int, float)) or not (
                0 < self.target_accept < 1):
            raise ConfigError("target_accept", self.target_accept, "must be in (0, 1)")

    @staticmethod
    def _blackjax():
        try:
            import blackjax
        except ImportError:
            raise ConfigError("sampler", "hmc", "needs blackjax: pip install 'toylab[hmc]'") from None
        return blackjax

    def chain(self, key, position, logdensity: Callable, draws: int, step_size=None):
        """(last position, positions (draws, d), acceptance rate, share of divergent
        trajectories, step size used) of one chain started at ``position``; ``step_size``
        None: adapted in the warmup."""
        bj = self._blackjax()
        k_warm, k_draw = jax.random.split(key)
        if step_size is None:
            from blackjax.adaptation.base import get_filter_adapt_info_fn

            adapt = bj.window_adaptation(bj.nuts, logdensity, target_acceptance_rate=self.target_accept,
                                         adaptation_info_fn=get_filter_adapt_info_fn(),  # keep no warmup trace
                                         max_num_doublings=self.max_doublings)
            (state, adapted), _ = adapt.run(k_warm, position, num_steps=self.warmup)
            params = {k: adapted[k] for k in ("step_size", "inverse_mass_matrix")}
        else:
            params = {"step_size": step_size, "inverse_mass_matrix": jnp.ones_like(position)}
            state = bj.nuts(logdensity, **params, max_num_doublings=self.max_doublings).init(position)
        kernel = bj.nuts(logdensity, **params, max_num_doublings=self.max_doublings)

        def body(s, k):
            s, info = kernel.step(k, s)
            return s, (s.position, info.acceptance_rate, info.is_divergent)
        state, (positions, accept, divergent) = jax.lax.scan(body, state, jax.random.split(k_draw, draws))
        return state.position, positions, jnp.mean(accept), jnp.mean(divergent), jnp.asarray(params["step_size"])


def sgld(noise: bool = True) -> SGLD:
    """Plain SGLD (see :class:`SGLD`)."""
    return SGLD(noise=bool(noise))


def sgld_mala() -> SGLD:
    """SGLD whose proposals are also scored by MALA's acceptance (a step-size diagnostic)."""
    return SGLD(mala=True)


def rmsprop_sgld(decay: float = 0.99, eps: float = 1.0) -> RMSPropSGLD:
    """RMSProp-preconditioned SGLD (see :class:`RMSPropSGLD`)."""
    return RMSPropSGLD(decay=decay, eps=eps)


def hmc(warmup: int = 500, target_accept: float = 0.95, max_doublings: int = 8) -> HMC:
    """NUTS on the full data with window adaptation (see :class:`HMC`); needs blackjax."""
    return HMC(warmup=warmup, target_accept=target_accept, max_doublings=max_doublings)


SAMPLERS = {"sgld": sgld, "sgld_mala": sgld_mala, "rmsprop_sgld": rmsprop_sgld, "hmc": hmc}


def as_sampler(sampler):
    """A sampler object from an object or one of the names in SAMPLERS."""
    if sampler is None:
        return SGLD()
    if isinstance(sampler, (SGLD, HMC)):
        return sampler
    if isinstance(sampler, str) and sampler in SAMPLERS:
        return SAMPLERS[sampler]()
    raise ConfigError("sampler", sampler, f"must be a sampler object (sgld(), rmsprop_sgld(), sgld_mala(), hmc()) "
                      f"or one of {', '.join(SAMPLERS)}")
