"""Sparse dictionaries: sparse autoencoders and transcoders, one instance each.

A dictionary reads a vector x (D_in), encodes it into L latents f and decodes x̂ (D_out):

    pre = (x − b_dec) W_enc + b_enc          (a transcoder reads x without subtracting b_dec)
    f   = σ(pre)                              (the kind's activation, below)
    x̂   = f · directions + b_dec             (directions: L rows of D_out)

Kinds, each trained as its paper trains it:

- ``relu``: f = ReLU(pre); sparsity penalty λ Σᵢ fᵢ‖W_dec,ᵢ‖ (Anthropic's April 2024 update:
  the decoder norms are free and weight the L1 penalty, so shrinking the code by growing a
  decoder row does not pay).
- ``topk``: f = ReLU(TopK_k(pre)) (Gao et al. 2024), unit-norm decoder rows, AuxK loss on
  the dead latents.
- ``batchtopk``: the k·B largest pre-activations over a batch of B (Bussmann et al. 2024);
  at inference f = pre · [pre > θ], θ the running mean of the smallest kept activation.
- ``jumprelu``: f = pre · H(pre − θ), θ = exp(log θ) per latent, penalty λ·L0, trained by
  straight-through estimators with a rectangle kernel of bandwidth ε (Rajamanoharan et al.
  2024); unit-norm decoder rows.
- ``matryoshka``: BatchTopK latents whose nested prefixes (sizes ``prefixes``) each
  reconstruct x on their own; the loss sums the prefixes' errors (Bussmann et al. 2025).

Unit-norm decoder rows are a parametrisation (``directions`` divides by the row norms), not
a projection after each step: the gradient is then the one the papers get by projecting out
the radial component, and the training loop stays the lab's plain optimizer loop.

Running state (``since_fired``, the steps since each latent last fired; ``threshold``,
BatchTopK's inference threshold; ``k``, the model's own k) is non-trainable state: the class
lists it in ``state_fields``, so the training loop keeps it out of the optimizer and the
gradients, and :func:`dictionary_loss` returns its next value beside the metrics.
"""

from __future__ import annotations

from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..core.config import ConfigError

__all__ = ["DICTIONARY_KINDS", "UNIT_NORM_KINDS", "Dictionary", "init_dictionary", "topk_mask", "batch_topk_mask",
           "jumprelu", "step_ste", "dictionary_loss", "state_pull", "STATE_FIELDS", "dictionary_optimizer"]

DICTIONARY_KINDS = ("relu", "topk", "batchtopk", "jumprelu", "matryoshka")
UNIT_NORM_KINDS = ("topk", "batchtopk", "jumprelu", "matryoshka")
STATE_FIELDS = ("since_fired", "threshold", "k")
THRESHOLD_DECAY = 0.99  # running mean of BatchTopK's smallest kept activation


class Dictionary(eqx.Module):
    W_enc: jax.Array  # (D_in, L)
    b_enc: jax.Array  # (L,)
    W_dec: jax.Array  # (L, D_out); rows normalised in `directions` for the unit-norm kinds
    b_dec: jax.Array  # (D_out,)
    log_threshold: jax.Array  # (L,) JumpReLU's log θ (unused by the other kinds)
    since_fired: jax.Array  # (L,) state: training steps since each latent last fired
    threshold: jax.Array  # () state: BatchTopK / Matryoshka inference threshold
    k: jax.Array  # () state: active latents per example (TopK, BatchTopK, Matryoshka), float
    kind: str = eqx.field(static=True)
    transcoder: bool = eqx.field(static=True)
    prefixes: tuple = eqx.field(static=True)  # Matryoshka prefix sizes, increasing, last = L
    state_fields: ClassVar[tuple] = STATE_FIELDS  # updated by the loss's output, not by gradients

    @property
    def n_latents(self) -> int:
        return self.W_enc.shape[-1]

    def directions(self):
        """(L, D_out) decoder directions: unit rows for the unit-norm kinds."""
        if self.kind in UNIT_NORM_KINDS:
            norm = jnp.sqrt(jnp.sum(self.W_dec ** 2, axis=-1, keepdims=True))
            return self.W_dec / jnp.maximum(norm, 1e-12)
        return self.W_dec

    def pre_activations(self, x):
        centred = x if self.transcoder else x - self.b_dec
        return centred @ self.W_enc + self.b_enc

    def encode(self, x):
        """Latent codes (..., L) at inference: BatchTopK kinds use their threshold."""
        pre = self.pre_activations(x)
        if self.kind == "relu":
            return jax.nn.relu(pre)
        if self.kind == "topk":
            return jnp.where(topk_mask(pre, self.k), jax.nn.relu(pre), 0.0)
        if self.kind in ("batchtopk", "matryoshka"):
            return jnp.where(pre > self.threshold, pre, 0.0)
        return jnp.where(pre > jnp.exp(self.log_threshold), pre, 0.0)  # jumprelu

    def decode(self, f):
        return f @ self.directions() + self.b_dec

    def __call__(self, x):
        return self.decode(self.encode(x))


def init_dictionary(key, d_in: int, n_latents: int, kind: str = "relu", *, d_out: int | None = None,
                    transcoder: bool = False, prefixes: tuple = (), k=1.0, decoder_norm: float = 0.1,
                    threshold: float = 1e-3, b_dec=None) -> Dictionary:
    """A dictionary with decoder rows in random directions of norm ``decoder_norm`` and the
    encoder their transpose (the tied initialisation of Conerly et al. and Gao et al.), zero
    encoder bias, ``b_dec`` (default 0; the data mean is a good choice), JumpReLU thresholds
    at ``threshold``. A transcoder's encoder is drawn on its own (input and output differ)."""
    if kind not in DICTIONARY_KINDS:
        raise ConfigError("kind", kind, f"must be one of {', '.join(DICTIONARY_KINDS)}")
    d_out = d_in if d_out is None else d_out
    for name, value in (("d_in", d_in), ("n_latents", n_latents), ("d_out", d_out)):
        if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < 1:
            raise ConfigError(name, value, "must be a positive integer")
    if not isinstance(decoder_norm, (int, float, np.integer, np.floating)) or not decoder_norm > 0:
        raise ConfigError("decoder_norm", decoder_norm, "must be a number > 0")
    if not transcoder and d_out != d_in:
        raise ConfigError("d_out", d_out, f"must equal d_in={d_in} for an autoencoder (a transcoder may differ)")
    prefixes = tuple(int(m) for m in prefixes)
    if kind == "matryoshka":
        if not prefixes or list(prefixes) != sorted(set(prefixes)) or prefixes[0] < 1 or prefixes[-1] != n_latents:
            raise ConfigError("prefixes", prefixes, f"must be increasing prefix sizes ending at n_latents={n_latents}")
    elif prefixes:
        raise ConfigError("prefixes", prefixes, "are only for kind='matryoshka'")
    k_dec, k_enc = jax.random.split(key)
    W_dec = jax.random.normal(k_dec, (n_latents, d_out), jnp.float32)
    W_dec = decoder_norm * W_dec / jnp.linalg.norm(W_dec, axis=-1, keepdims=True)
    if transcoder:
        W_enc = jax.random.normal(k_enc, (d_in, n_latents), jnp.float32)
        W_enc = decoder_norm * W_enc / jnp.linalg.norm(W_enc, axis=0, keepdims=True)
    else:
        W_enc = W_dec.T
    b_dec = jnp.zeros((d_out,), jnp.float32) if b_dec is None else jnp.asarray(b_dec, jnp.float32)
    return Dictionary(W_enc, jnp.zeros((n_latents,), jnp.float32), W_dec, b_dec,
                      jnp.full((n_latents,), jnp.log(threshold), jnp.float32),
                      jnp.zeros((n_latents,), jnp.float32), jnp.zeros((), jnp.float32),
                      jnp.asarray(k, jnp.float32), kind, bool(transcoder), prefixes)


# ----------------------------------------------------------------------------- activations


def _order_keys(x):
    """uint32 keys in the order of the float32 values ``x`` (−0 taken as +0, as ``>=`` does)."""
    x = jnp.where(x == 0, jnp.float32(0), x.astype(jnp.float32))
    u = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where(u >> 31 == 1, ~u, u | jnp.uint32(1 << 31))


def _at_least_kth_largest(x, k, axis):
    """Mask of the entries of ``x`` at or above the k-th largest along ``axis`` (None: all):
    exact, ties kept. The k-th largest key is found bit by bit, from the top, as the largest
    t with at least k keys >= t: 32 counting passes instead of a sort (several times faster
    on a CPU, and k may be traced)."""
    keys = _order_keys(x)
    shape = () if axis is None else keys.shape[:axis] + keys.shape[axis + 1:]
    expand = (lambda t: t) if axis is None else (lambda t: jnp.expand_dims(t, axis))

    def bit(i, t):
        candidate = t | (jnp.uint32(1) << (31 - i).astype(jnp.uint32))
        enough = jnp.sum(keys >= expand(candidate), axis=axis) >= k
        return jnp.where(enough, candidate, t)

    t = jax.lax.fori_loop(0, 32, bit, jnp.zeros(shape, jnp.uint32))
    return keys >= expand(t)


def topk_mask(pre, k):
    """Mask of each row's k largest entries (k may be traced, so a sweep over k is one
    program). Ties at the k-th value keep all tied entries."""
    n = pre.shape[-1]
    k = jnp.clip(jnp.round(jnp.asarray(k)).astype(jnp.int32), 1, n)
    return _at_least_kth_largest(pre, k, axis=pre.ndim - 1)


def batch_topk_mask(pre, k):
    """Mask of the k·B largest entries of a (B, L) batch of pre-activations, among the
    positive ones (BatchTopK: the k per example is an average over the batch)."""
    n = pre.size
    keep = jnp.clip(jnp.round(jnp.asarray(k) * pre.shape[0]).astype(jnp.int32), 1, n)
    return _at_least_kth_largest(pre, keep, axis=None) & (pre > 0)


def _rectangle(u):
    return (jnp.abs(u) < 0.5).astype(u.dtype)


@jax.custom_vjp
def jumprelu(pre, log_threshold, bandwidth):
    """pre · H(pre − θ), θ = exp(log_threshold); gradients: exact in pre (away from the
    jump), and in θ the straight-through estimate −(θ/ε)·K((pre − θ)/ε) (rectangle K)."""
    return jnp.where(pre > jnp.exp(log_threshold), pre, 0.0)


def _jumprelu_fwd(pre, log_threshold, bandwidth):
    return jumprelu(pre, log_threshold, bandwidth), (pre, log_threshold, bandwidth)


def _jumprelu_bwd(res, g):
    pre, log_threshold, bandwidth = res
    theta = jnp.exp(log_threshold)
    d_pre = jnp.where(pre > theta, g, 0.0)
    d_theta = -(theta / bandwidth) * _rectangle((pre - theta) / bandwidth) * g
    d_log = jnp.sum((d_theta * theta).reshape(-1, theta.shape[-1]), axis=0)  # chain rule through exp
    return d_pre, d_log, jnp.zeros_like(bandwidth)


jumprelu.defvjp(_jumprelu_fwd, _jumprelu_bwd)


@jax.custom_vjp
def step_ste(pre, log_threshold, bandwidth):
    """H(pre − θ) with the straight-through gradient −(1/ε)·K((pre − θ)/ε) in θ (none in pre),
    so Σ step_ste is an L0 penalty that trains the thresholds."""
    return (pre > jnp.exp(log_threshold)).astype(pre.dtype)


def _step_fwd(pre, log_threshold, bandwidth):
    return step_ste(pre, log_threshold, bandwidth), (pre, log_threshold, bandwidth)


def _step_bwd(res, g):
    pre, log_threshold, bandwidth = res
    theta = jnp.exp(log_threshold)
    d_theta = -(1.0 / bandwidth) * _rectangle((pre - theta) / bandwidth) * g
    d_log = jnp.sum((d_theta * theta).reshape(-1, theta.shape[-1]), axis=0)
    return jnp.zeros_like(pre), d_log, jnp.zeros_like(bandwidth)


step_ste.defvjp(_step_fwd, _step_bwd)


# ----------------------------------------------------------------------------- training loss


def state_pull(state, target):
    """A loss term with value 0 whose gradient in ``state`` is state − target: one step of
    −gradient (see :func:`dictionary_optimizer`) sets the state to ``target``. For a training
    loop without a state output; the lab's loop takes the state from the loss instead."""
    target = jax.lax.stop_gradient(target)
    term = 0.5 * jnp.sum((state - target) ** 2)
    return term - jax.lax.stop_gradient(term)


def _squared_error(target, x_hat):
    return jnp.mean(jnp.sum((target - x_hat) ** 2, axis=-1))


def dictionary_loss(model: Dictionary, x, target, *, sparsity=0.0, k=None, aux_coefficient=1 / 32,
                    bandwidth=1e-3, dead_steps: int = 1000, k_aux: int | None = None):
    """The training loss of one batch: (loss, (metrics, new_state)). ``x`` (B, D_in) is what
    the dictionary reads and ``target`` (B, D_out) what it reconstructs (x itself for an SAE).

    ``sparsity`` is λ (relu: of the norm-weighted L1; jumprelu: of L0); ``k`` the active
    latents per example (topk, batchtopk, matryoshka; default: the model's own); dead latents
    (no firing in ``dead_steps`` steps) get Gao et al.'s AuxK loss, reconstructing the
    residual with their ``k_aux`` largest pre-activations (default D_in // 2), weighted by
    ``aux_coefficient``. ``new_state`` holds the state fields' values after this step
    (``{"since_fired", "threshold", "k"}``); the loss does not depend on them through any
    gradient.
    """
    kind = model.kind
    k = model.k if k is None else jnp.asarray(k, jnp.float32)
    pre = model.pre_activations(x)
    dirs = model.directions()
    threshold_target = model.threshold
    metrics = {}
    if kind == "relu":
        f = jax.nn.relu(pre)
        penalty = sparsity * jnp.mean(jnp.sum(f * jnp.linalg.norm(model.W_dec, axis=-1), axis=-1))
    elif kind == "topk":
        f = jnp.where(topk_mask(pre, k), jax.nn.relu(pre), 0.0)
        penalty = 0.0
    elif kind == "jumprelu":
        f = jumprelu(pre, model.log_threshold, jnp.asarray(bandwidth, jnp.float32))
        l0 = jnp.mean(jnp.sum(step_ste(pre, model.log_threshold, jnp.asarray(bandwidth, jnp.float32)), axis=-1))
        penalty = sparsity * l0
    else:  # batchtopk, matryoshka
        mask = batch_topk_mask(pre, k)
        f = jnp.where(mask, pre, 0.0)
        smallest_kept = jnp.min(jnp.where(mask, pre, jnp.inf))
        smallest_kept = jnp.where(jnp.isfinite(smallest_kept), smallest_kept, model.threshold)
        threshold_target = THRESHOLD_DECAY * model.threshold + (1 - THRESHOLD_DECAY) * smallest_kept
        penalty = 0.0
    x_hat = f @ dirs + model.b_dec
    if kind == "matryoshka":
        # Each prefix reconstructs on its own; the loss is the sum of the prefixes' errors.
        reconstruction = 0.0
        for m in model.prefixes:
            reconstruction = reconstruction + _squared_error(target, f[:, :m] @ dirs[:m] + model.b_dec)
    else:
        reconstruction = _squared_error(target, x_hat)
    fired = jnp.any(f > 0, axis=0)
    since_fired = jnp.where(fired, 0.0, model.since_fired + 1.0)
    loss = reconstruction + penalty
    if kind in ("topk", "batchtopk", "matryoshka"):
        dead = model.since_fired >= dead_steps
        n_aux = min(k_aux or max(1, x.shape[-1] // 2), model.n_latents)
        residual = jax.lax.stop_gradient(target - x_hat)
        dead_pre = jnp.where(dead, pre, -jnp.inf)
        aux_mask = topk_mask(dead_pre, n_aux) & dead
        aux_f = jnp.where(aux_mask, jax.nn.relu(pre), 0.0)
        aux = jnp.where(jnp.any(dead), _squared_error(residual, aux_f @ dirs), 0.0)
        loss = loss + aux_coefficient * aux
        metrics["aux_loss"] = aux
    metrics.update(reconstruction=reconstruction, l0=jnp.mean(jnp.sum(f > 0, axis=-1)),
                   dead_fraction=jnp.mean(since_fired >= dead_steps))
    new_state = {"since_fired": since_fired, "threshold": jax.lax.stop_gradient(threshold_target),
                 "k": jnp.asarray(k, jnp.float32)}
    return loss, (metrics, new_state)


def dictionary_optimizer(base: optax.GradientTransformation) -> optax.GradientTransformation:
    """``base`` for the trained arrays; step −gradient for the state fields (their loss term
    from :func:`state_pull` then sets them to their targets). Only for a loop that trains
    the state fields as arrays; the lab's loop never gives them to an optimizer."""
    def labels(params):
        return jax.tree_util.tree_map_with_path(
            lambda path, _: "state" if getattr(path[-1], "name", None) in STATE_FIELDS else "train", params)
    return optax.multi_transform({"train": base, "state": optax.scale(-1.0)}, labels)
