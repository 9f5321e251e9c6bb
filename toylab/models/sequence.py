"""Causal transformers over whole sequences, for the in-context learning toys: attention-only
(Olsson et al. 2022; Elhage et al. 2021) or with an MLP in each block, a prediction at every
position.

No LayerNorm, learned positions, attention without biases, weights named as in
:mod:`toylab.models.transformer`: W_E (d_model, d_in), W_pos (n_ctx, d_model), per block
W_Q/W_K/W_V (n_heads, d_head, d_model) and W_O (d_model, n_heads·d_head), optionally W_in
(d_mlp, d_model), b_in, W_out (d_model, d_mlp), b_out; W_U (d_model, d_out).

Two kinds of input (``embed``, static):

- ``"tokens"``: integer tokens, embedded by the columns of W_E (d_in = the vocabulary);
  the outputs are next-token logits.
- ``"vectors"``: real vectors (n_ctx, d_in), read in linearly by W_E (in-context linear
  regression: x and y interleaved as vectors); the outputs are real predictions.

A model maps one sequence to outputs (n_ctx, d_out) at every position; vmap it over a batch.
Its heads are exposed for the analyses (:class:`toylab.models.HeadedModel`): their attention
patterns, their OV and QK circuits, and the mask of one head's weights (the weight-refined
LLC's restriction).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.config import ConfigError
from .transformer import ACTIVATIONS

__all__ = ["AttentionBlock", "SequenceTransformer", "init_sequence_transformer", "EMBEDS"]

EMBEDS = ("tokens", "vectors")


class AttentionBlock(eqx.Module):
    W_Q: jax.Array  # (n_heads, d_head, d_model)
    W_K: jax.Array
    W_V: jax.Array
    W_O: jax.Array  # (d_model, n_heads·d_head)
    W_in: jax.Array | None = None  # (d_mlp, d_model); None: attention only
    b_in: jax.Array | None = None
    W_out: jax.Array | None = None  # (d_model, d_mlp)
    b_out: jax.Array | None = None

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[1]

    def pattern(self, x):
        """(n_heads, n_ctx, n_ctx) causal attention of every position over x (n_ctx, d_model)."""
        n_ctx = x.shape[0]
        q = jnp.einsum("hdm,qm->hqd", self.W_Q, x)
        k = jnp.einsum("hdm,km->hkd", self.W_K, x)
        scores = jnp.einsum("hqd,hkd->hqk", q, k) / math.sqrt(self.d_head)
        visible = jnp.tril(jnp.ones((n_ctx, n_ctx), bool))
        return jax.nn.softmax(jnp.where(visible, scores, -jnp.inf), axis=-1)

    def heads(self, x, pattern):
        """(n_heads, n_ctx, d_model): each head's output written into the residual stream."""
        v = jnp.einsum("hdm,km->hkd", self.W_V, x)
        z = jnp.einsum("hqk,hkd->hqd", pattern, v)
        W_O = self.W_O.reshape(self.W_O.shape[0], self.n_heads, self.d_head)  # (d_model, h, d_head)
        return jnp.einsum("mhd,hqd->hqm", W_O, z)

    def mlp(self, x, activation):
        """(out, neurons) of the MLP on x (n, d_model); (0, None) without one."""
        if self.W_in is None:
            return jnp.zeros_like(x), None
        post = ACTIVATIONS[activation](x @ self.W_in.T + self.b_in)
        return post @ self.W_out.T + self.b_out, post


class SequenceTransformer(eqx.Module):
    W_E: jax.Array  # (d_model, d_in)
    W_pos: jax.Array  # (n_ctx, d_model)
    blocks: tuple
    W_U: jax.Array  # (d_model, d_out)
    embed: str = eqx.field(static=True, default="tokens")
    activation: str = eqx.field(static=True, default="relu")

    @property
    def n_layers(self) -> int:
        return len(self.blocks)

    @property
    def n_heads(self) -> int:
        return self.blocks[0].n_heads

    @property
    def n_ctx(self) -> int:
        return self.W_pos.shape[0]

    def embedded(self, inputs):
        """(n, d_model): the residual stream before the first block, for n <= n_ctx positions."""
        n = inputs.shape[0]
        if self.embed == "tokens":
            return self.W_E.T[inputs] + self.W_pos[:n]
        return inputs @ self.W_E.T + self.W_pos[:n]

    def __call__(self, inputs, return_activations: bool = False):
        """Outputs (n, d_out) at every position of ``inputs`` (n tokens, or (n, d_in)
        vectors). With ``return_activations`` also a dict per block: ``pattern`` (n_heads,
        n, n), ``resid_pre``, ``resid_mid``, ``mlp_post`` (None without an MLP) and
        ``resid_post``."""
        x = self.embedded(inputs)
        cache = []
        for block in self.blocks:
            pattern = block.pattern(x)
            mid = x + block.heads(x, pattern).sum(0)
            mlp_out, post = block.mlp(mid, self.activation)
            out = mid + mlp_out
            if return_activations:
                cache.append(dict(pattern=pattern, resid_pre=x, resid_mid=mid, mlp_post=post, resid_post=out))
            x = out
        outputs = x @ self.W_U
        return (outputs, cache) if return_activations else outputs

    # -- the headed-model protocol (toylab.models.HeadedModel)
    def attention_patterns(self, inputs):
        """(n_layers, n_heads, n, n): every head's attention pattern on one sequence."""
        _, cache = self(inputs, return_activations=True)
        return jnp.stack([c["pattern"] for c in cache])

    def head_ov(self, layer: int, head: int):
        """(d_model, d_model) W_O^h W_V^h: what head ``head`` of block ``layer`` writes for what it reads."""
        block = self._block(layer, head)
        d = block.d_head
        return block.W_O[:, head * d:(head + 1) * d] @ block.W_V[head]

    def head_qk(self, layer: int, head: int):
        """(d_model, d_model) W_Q^hᵀ W_K^h: the bilinear form of queries against keys."""
        block = self._block(layer, head)
        return block.W_Q[head].T @ block.W_K[head]

    def token_embedding(self):
        """(d_model, d_in): W_E."""
        return self.W_E

    def unembedding(self):
        """(d_out, d_model): the map from the residual stream to the outputs."""
        return self.W_U.T

    def head_mask(self, layer: int, head: int):
        """A pytree of bools like the model: True on the weights of one head (its rows of
        W_Q, W_K, W_V and its columns of W_O), False elsewhere."""
        block = self._block(layer, head)
        d = block.d_head
        rows = jnp.arange(block.n_heads) == head
        cols = (jnp.arange(block.n_heads * d) // d) == head
        mask = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), bool), self)
        return eqx.tree_at(
            lambda m: (m.blocks[layer].W_Q, m.blocks[layer].W_K, m.blocks[layer].W_V, m.blocks[layer].W_O), mask,
            (jnp.broadcast_to(rows[:, None, None], block.W_Q.shape),) * 3
            + (jnp.broadcast_to(cols[None, :], block.W_O.shape),))

    def layer_mask(self, layer: int):
        """A pytree of bools like the model: True on every weight of block ``layer``."""
        self._block(layer, 0)
        mask = jax.tree.map(lambda x: jnp.zeros(jnp.shape(x), bool), self)
        return eqx.tree_at(lambda m: m.blocks[layer], mask,
                           jax.tree.map(lambda x: jnp.ones(jnp.shape(x), bool), self.blocks[layer]))

    # -- the layered-model protocol (toylab.models.LayeredModel)
    def layer_maps(self):
        """Node layers, every position flattened: the residual stream before each block
        (``resid_pre.i``), after its attention (``resid_mid.i``, only with an MLP), after the
        last block (``resid_post``) and the outputs. Extra layers a dictionary may read: each
        block's attention output ``attn_out.i`` (read from ``resid_pre.i``) and, with an MLP,
        its neurons ``mlp_post.i`` (read from ``resid_mid.i``)."""
        from . import LayerMaps
        from ._inputs import out_of_range

        n_ctx, d_model = self.W_pos.shape
        d_in = self.W_E.shape[1]
        mlp = self.blocks[0].W_in is not None
        names, steps, extras = ["resid_pre.0"], [], []

        def embed(m, inputs):
            return m.embedded(inputs).reshape(-1)

        def attn_out(m, x, i):
            block = m.blocks[i]
            return block.heads(x, block.pattern(x)).sum(0)

        for i in range(self.n_layers):
            def attention(m, a, i=i):
                x = a.reshape(n_ctx, d_model)
                return (x + attn_out(m, x, i)).reshape(-1)

            def read_attn(m, acts, i=i):
                xs = acts.reshape(acts.shape[0], n_ctx, d_model)
                return jax.vmap(lambda x: attn_out(m, x, i))(xs).reshape(acts.shape[0], -1)

            extras.append((f"attn_out.{i}", f"resid_pre.{i}", read_attn))
            after = f"resid_pre.{i + 1}" if i < self.n_layers - 1 else "resid_post"
            if mlp:
                def mlp_step(m, a, i=i):
                    x = a.reshape(n_ctx, d_model)
                    return (x + m.blocks[i].mlp(x, m.activation)[0]).reshape(-1)

                def read_mlp(m, acts, i=i):
                    xs = acts.reshape(-1, d_model)
                    return m.blocks[i].mlp(xs, m.activation)[1].reshape(acts.shape[0], -1)

                names.append(f"resid_mid.{i}")
                steps.append(attention)
                extras.append((f"mlp_post.{i}", f"resid_mid.{i}", read_mlp))
                names.append(after)
                steps.append(mlp_step)
            else:
                names.append(after)
                steps.append(attention)
        names.append("outputs")
        steps.append(lambda m, a: (a.reshape(n_ctx, d_model) @ m.W_U).reshape(-1))

        def check(inputs):
            if self.embed == "tokens":
                if inputs.ndim != 2 or inputs.shape[1] != n_ctx or not jnp.issubdtype(inputs.dtype, jnp.integer):
                    return f"must be integer token sequences of shape (n, {n_ctx})"
                return out_of_range(inputs, d_in)
            if inputs.ndim != 3 or inputs.shape[1:] != (n_ctx, d_in):
                return f"must be vector sequences of shape (n, {n_ctx}, {d_in})"
            return None
        return LayerMaps(tuple(names), embed, tuple(steps), check, tuple(extras))

    def _block(self, layer, head):
        if isinstance(layer, bool) or not isinstance(layer, int) or not 0 <= layer < self.n_layers:
            raise ConfigError("layer", layer, f"must be a block index in 0..{self.n_layers - 1}")
        if isinstance(head, bool) or not isinstance(head, int) or not 0 <= head < self.n_heads:
            raise ConfigError("head", head, f"must be a head index in 0..{self.n_heads - 1}")
        return self.blocks[layer]


def init_sequence_transformer(key, *, d_in: int, d_out: int, n_ctx: int, d_model: int = 64, n_heads: int = 4,
                              n_layers: int = 2, d_mlp: int = 0, embed: str = "tokens",
                              activation: str = "relu") -> SequenceTransformer:
    """Gaussian init: std 1/√d_model for the embeddings, positions, attention and MLP input;
    1/√d_mlp for the MLP output; 1/√d_model for W_U (the outputs start at unit scale); zero
    biases. ``d_mlp`` = 0: attention only."""
    for name, v, lo in (("d_in", d_in, 1), ("d_out", d_out, 1), ("n_ctx", n_ctx, 1), ("d_model", d_model, 1),
                        ("n_heads", n_heads, 1), ("n_layers", n_layers, 1), ("d_mlp", d_mlp, 0)):
        if isinstance(v, bool) or not isinstance(v, int) or v < lo:
            raise ConfigError(name, v, "must be a positive integer" if lo else "must be an integer >= 0")
    if d_model % n_heads:
        raise ConfigError("n_heads", n_heads, f"must divide d_model={d_model}")
    if embed not in EMBEDS:
        raise ConfigError("embed", embed, f"must be one of {', '.join(EMBEDS)}")
    if activation not in ACTIVATIONS:
        raise ConfigError("activation", activation, f"must be one of {', '.join(ACTIVATIONS)}")
    d_head = d_model // n_heads
    keys = jax.random.split(key, 3 + n_layers)
    s = 1.0 / math.sqrt(d_model)

    def block(k):
        kq, kk, kv, ko, ki, kout = jax.random.split(k, 6)
        mlp = d_mlp > 0
        return AttentionBlock(
            W_Q=jax.random.normal(kq, (n_heads, d_head, d_model)) * s,
            W_K=jax.random.normal(kk, (n_heads, d_head, d_model)) * s,
            W_V=jax.random.normal(kv, (n_heads, d_head, d_model)) * s,
            W_O=jax.random.normal(ko, (d_model, n_heads * d_head)) * s,
            W_in=jax.random.normal(ki, (d_mlp, d_model)) * s if mlp else None,
            b_in=jnp.zeros(d_mlp) if mlp else None,
            W_out=jax.random.normal(kout, (d_model, d_mlp)) / math.sqrt(d_mlp) if mlp else None,
            b_out=jnp.zeros(d_model) if mlp else None,
        )

    return SequenceTransformer(
        W_E=jax.random.normal(keys[0], (d_model, d_in)) * s,
        W_pos=jax.random.normal(keys[1], (n_ctx, d_model)) * s,
        blocks=tuple(block(k) for k in keys[3:]),
        W_U=jax.random.normal(keys[2], (d_model, d_out)) * s,
        embed=embed,
        activation=activation,
    )
