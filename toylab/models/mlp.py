"""Embedding MLPs for two-operand tasks: (a, b) -> logits over the answers.

Three input layouts:

- ``onehot``: the concatenated one-hots of a and b go straight into the hidden layer,
  h = act(W_in[:, a] + W_in[:, n_in + b] + b_in) — Gromov's f = W(Ux)² with a quadratic
  activation and Doshi et al.'s MLP (W_in is U, W_out is W).
- ``sum``: learned embeddings W_E_left[:, a] + W_E_right[:, b], then the hidden layer.
- ``concat``: the two embeddings concatenated, then the hidden layer.

Then logits = W_out h (+ b_out). Biases are optional (Gromov uses none). With
``activation="bilinear"`` the hidden layer is the bilinear MLP of Pearce et al. (2024):
h = (W_in x + b_in) ⊙ (W_gate x + b_gate), a second input matrix in place of a nonlinearity.
"""

from __future__ import annotations

import functools
import itertools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from .transformer import NONLINEARITIES, neurons

__all__ = ["EmbedMLP", "init_embed_mlp", "fourier_solution", "gcr_solution", "EMBEDDINGS"]

EMBEDDINGS = ("onehot", "sum", "concat")


class EmbedMLP(eqx.Module):
    W_E_left: jax.Array | None  # (d_embed, n_in), None for onehot
    W_E_right: jax.Array | None
    W_in: jax.Array  # (d_hidden, d_in)
    b_in: jax.Array | None
    W_out: jax.Array  # (n_out, d_hidden)
    b_out: jax.Array | None
    embed: str = eqx.field(static=True, default="onehot")
    activation: str = eqx.field(static=True, default="relu")
    W_gate: jax.Array | None = None  # (d_hidden, d_in), only for the bilinear MLP
    b_gate: jax.Array | None = None

    def hidden_pre(self, a, b, gate: bool = False):
        """Pre-activations of W_in (or of W_gate) for the pair (a, b)."""
        # The layers before the nonlinearity are linear, so each operand's effect on the
        # hidden layer is one column of W_in·W_E: under vmap over pairs that product does
        # not depend on the pair and is computed once per batch, not once per row.
        left, right = self.input_weights(gate)
        pre = left[:, a] + right[:, b]
        bias = self.b_gate if gate else self.b_in
        return pre if bias is None else pre + bias

    def __call__(self, tokens, alpha=1.0, return_activations: bool = False):
        """Logits for tokens [a, b, ...] (anything after b is ignored; alpha is unused)."""
        pre = self.hidden_pre(tokens[0], tokens[1])
        gate_pre = self.hidden_pre(tokens[0], tokens[1], gate=True) if self.activation == "bilinear" else None
        post = neurons(pre, gate_pre, self.activation)
        logits = self.W_out @ post
        if self.b_out is not None:
            logits = logits + self.b_out
        if return_activations:
            return logits, [dict(mlp_pre=pre[None], mlp_post=post[None])]
        return logits

    def input_weights(self, gate: bool = False):
        """Each neuron's weight on every value of a and of b: two (d_hidden, n_in) arrays
        (through W_in, or through W_gate for the bilinear MLP's second factor)."""
        W = self.W_gate if gate else self.W_in
        if self.embed == "onehot":
            n_in = W.shape[1] // 2
            return W[:, :n_in], W[:, n_in:]
        if self.embed == "sum":
            return W @ self.W_E_left, W @ self.W_E_right
        d = self.W_E_left.shape[0]
        return W[:, :d] @ self.W_E_left, W[:, d:] @ self.W_E_right

    # -- the pair-model protocol (toylab.models.PairModel) that analysis reads
    @property
    def W_L(self):
        """(n_out, d_hidden): each neuron's direct effect on the logits."""
        return self.W_out

    @property
    def n_operands(self) -> int:
        """Values each operand takes (a, b in 0..n_operands−1)."""
        return self.input_weights()[0].shape[1]

    def operand_embeddings(self):
        """(left, right), each (d_hidden, n_operands): how a and b enter the first hidden layer."""
        return self.input_weights()

    def neuron_inputs(self):
        """(left, right): each neuron's weight on every value of a and of b."""
        return self.input_weights()

    def unembedding(self):
        """(n_out, d_hidden): the map from the last hidden layer to the logits."""
        return self.W_out

    def without_neurons(self, keep):
        """The model with the neurons where ``keep`` (d_hidden,) is false cut off (their
        output weights zeroed)."""
        return eqx.tree_at(lambda m: m.W_out, self, self.W_out * jnp.asarray(keep, self.W_out.dtype)[None, :])

    @property
    def n_neurons(self) -> int:
        return self.W_out.shape[1]

    # -- the layered-model protocol (toylab.models.LayeredModel)
    def layer_input(self, tokens):
        """What the hidden layer reads for one pair [a, b, ...]: the concatenated one-hots,
        or the embeddings (summed or concatenated)."""
        a, b = tokens[0], tokens[1]
        if self.embed == "onehot":
            n = self.W_in.shape[1] // 2
            return jnp.concatenate([jax.nn.one_hot(a, n, dtype=self.W_in.dtype),
                                    jax.nn.one_hot(b, n, dtype=self.W_in.dtype)])
        left, right = self.W_E_left[:, a], self.W_E_right[:, b]
        return left + right if self.embed == "sum" else jnp.concatenate([left, right])

    def layer_maps(self):
        """Node layers ``input`` (one-hots or embeddings), ``mlp_post``, ``logits``."""
        from . import LayerMaps
        from ._inputs import out_of_range

        n_in = self.n_operands

        def hidden(m, x):
            pre = m.W_in @ x + (0.0 if m.b_in is None else m.b_in)
            gate = m.W_gate @ x + (0.0 if m.b_gate is None else m.b_gate) if m.activation == "bilinear" else None
            return neurons(pre, gate, m.activation)

        def logits(m, h):
            out = m.W_out @ h
            return out if m.b_out is None else out + m.b_out

        def check(tokens):
            if tokens.ndim != 2 or tokens.shape[1] < 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
                return "must be integer pairs [a, b, ...] of shape (n, 2) or (n, 3)"
            return out_of_range(tokens[:, :2], n_in)
        return LayerMaps(("input", "mlp_post", "logits"), lambda m, t: m.layer_input(t), (hidden, logits), check)

    def dense_layer(self):
        """The hidden layer z = W_in x + b_in, x the one-hots or embeddings of the pair."""
        from . import DenseLayer
        from .transformer import ACTIVATIONS

        def head(m, z):
            out = m.W_out @ ACTIVATIONS[m.activation](z)
            return out if m.b_out is None else out + m.b_out
        return DenseLayer(lambda m, t: m.layer_input(t), lambda m: m.W_in, lambda m: m.b_in, head, self.activation)


def init_embed_mlp(key, *, n_in: int, n_out: int, d_hidden: int = 512, d_embed: int = 128, embed: str = "onehot",
                   activation: str = "relu", bias: bool = True) -> EmbedMLP:
    """Gaussian init with std 1/√fan_in per layer (one-hot inputs count one active unit per
    operand, so W_in gets std 1/√2 there); zero biases."""
    if embed not in EMBEDDINGS:
        raise ConfigError("embed", embed, f"must be one of {', '.join(EMBEDDINGS)}")
    if activation not in NONLINEARITIES:
        raise ConfigError("activation", activation, f"must be one of {', '.join(NONLINEARITIES)}")
    for name, v in (("n_in", n_in), ("n_out", n_out), ("d_hidden", d_hidden), ("d_embed", d_embed)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, v, "must be a positive integer")
    k_l, k_r, k_in, k_out = jax.random.split(key, 4)
    bilinear = activation == "bilinear"
    if embed == "onehot":
        left = right = None
        d_in, s_in = 2 * n_in, 1.0 / math.sqrt(2)
    else:
        left = jax.random.normal(k_l, (d_embed, n_in))
        right = jax.random.normal(k_r, (d_embed, n_in))
        d_in = d_embed if embed == "sum" else 2 * d_embed
        s_in = 1.0 / math.sqrt(d_in)
    return EmbedMLP(
        W_E_left=left, W_E_right=right,
        W_in=jax.random.normal(k_in, (d_hidden, d_in)) * s_in,
        b_in=jnp.zeros(d_hidden) if bias else None,
        W_out=jax.random.normal(k_out, (n_out, d_hidden)) / math.sqrt(d_hidden),
        b_out=jnp.zeros(n_out) if bias else None,
        embed=embed, activation=activation,
        # a key of its own, so the other weights' init does not change with the activation
        W_gate=jax.random.normal(jax.random.fold_in(key, 1), (d_hidden, d_in)) * s_in if bilinear else None,
        b_gate=jnp.zeros(d_hidden) if bilinear and bias else None,
    )


def fourier_solution(p: int, freqs, scale: float = 1.0) -> EmbedMLP:
    """Gromov's closed-form solution of (a + b) mod p as weights of the quadratic one-hot MLP.

    For each frequency k (θ = 2πk/p), eight neurons h = (cos(θa+φ) + cos(θb+ψ))² with phase
    sums σ = φ+ψ in {0, π/2, π, 3π/2} and differences φ−ψ in {0, π}, read out by
    scale·cos(θc+σ). Summed over the eight, every term cancels except 4·scale·cos(θ(a+b−c)),
    so the logits are 4·scale·Σ_k cos(θ_k(a+b−c)), largest at c = (a+b) mod p for prime p.

    Args:
        p: modulus (≥ 3).
        freqs: frequencies k, each in 1..⌊(p−1)/2⌋, no repeats.
        scale: output weight scale (larger: more confident logits).
    """
    if isinstance(p, bool) or not isinstance(p, (int, np.integer)) or p < 3:
        raise ConfigError("p", p, "must be an integer >= 3")
    freqs = [int(k) for k in freqs]
    if not freqs or len(set(freqs)) != len(freqs) or any(not 1 <= k <= (p - 1) // 2 for k in freqs):
        raise ConfigError("freqs", freqs, f"must be distinct integers in 1..{(p - 1) // 2}, at least one")
    x = np.arange(p)
    rows_a, rows_b, outs = [], [], []
    for k in freqs:
        th = 2 * np.pi * k / p
        for sigma in (0, np.pi / 2, np.pi, 3 * np.pi / 2):
            for delta in (0, np.pi):
                phi, psi = (sigma + delta) / 2, (sigma - delta) / 2
                rows_a.append(np.cos(th * x + phi))
                rows_b.append(np.cos(th * x + psi))
                outs.append(np.cos(th * x + sigma) * scale)
    W_in = jnp.asarray(np.concatenate([np.stack(rows_a), np.stack(rows_b)], axis=1), jnp.float32)
    return EmbedMLP(None, None, W_in, None, jnp.asarray(np.stack(outs, axis=1), jnp.float32), None,
                    embed="onehot", activation="quadratic")


def gcr_solution(matrices, scale: float = 1.0) -> EmbedMLP:
    """The group composition via representations (GCR) algorithm of Chughtai et al. as weights
    of the concat-embedding MLP with a quadratic activation.

    The embeddings hold ρ(a) and ρ(b) (d² entries each) for a real orthogonal representation
    ``matrices`` (|G|, d, d). For each (i, j, k) two neurons (ρ(a)_ij ± ρ(b)_jk)² give, with
    opposite signs, 4·ρ(a)_ij ρ(b)_jk; the unembedding sums them into
    scale·Σ_ik (ρ(a)ρ(b))_ik ρ(c)_ik = scale·tr ρ(a∘b∘c⁻¹) = scale·χ(a∘b∘c⁻¹), which is largest
    exactly at c = a∘b when ρ is faithful. 2d³ neurons.
    """
    m = np.asarray(matrices, np.float64)
    if m.ndim != 3 or m.shape[1] != m.shape[2] or np.iscomplexobj(m):
        raise ConfigError("matrices", described(f"got an array of shape {m.shape}"), "must be real (|G|, d, d)")
    if not np.allclose(np.einsum("gij,gkj->gik", m, m), np.eye(m.shape[1]), atol=1e-6):
        raise ConfigError("matrices", "not orthogonal", "must be a real orthogonal representation (e.g. from real_irreps)")
    if isinstance(scale, bool) or not isinstance(scale, (int, float, np.integer, np.floating)) or not np.isfinite(scale) \
            or scale <= 0:
        raise ConfigError("scale", scale, "must be a finite number > 0")
    n, d = m.shape[0], m.shape[1]
    emb = m.reshape(n, d * d).T  # (d², |G|): entry (i, j) of ρ(g) at row i·d + j
    rows, outs = [], []
    for i, j, k in itertools.product(range(d), repeat=3):
        for sign in (1.0, -1.0):
            row = np.zeros(2 * d * d)
            row[i * d + j] = 1.0
            row[d * d + j * d + k] = sign
            rows.append(row)
            outs.append(sign * scale / 4.0 * m[:, i, k])
    as32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    return EmbedMLP(as32(emb), as32(emb), as32(np.stack(rows)), None, as32(np.stack(outs, axis=1)), None,
                    embed="concat", activation="quadratic")
