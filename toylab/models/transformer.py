"""The small transformer of Nanda et al. (2023): no LayerNorm, learned positions, causal
attention without biases, a ReLU MLP with biases (or a bilinear MLP: ``activation="bilinear"``),
untied embed and unembed.

Weights are named and shaped as in the paper's code: W_E (d_model, d_vocab), W_pos (n_ctx,
d_model), W_Q/W_K/W_V (n_heads, d_head, d_model), W_O (d_model, n_heads·d_head), W_in (d_mlp,
d_model), b_in, W_out (d_model, d_mlp), b_out, W_U (d_model, d_vocab_out). A model maps one
token sequence to the logits at its last position; vmap it over a batch.

The answer is read at the last position only, so the last layer computes its query, its MLP
and the unembedding there alone (earlier positions still supply keys and values). This gives
the same logits as running every position, with a fraction of the work.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.config import ConfigError

__all__ = ["Block", "Transformer", "init_transformer", "ACTIVATIONS", "NONLINEARITIES"]

ACTIVATIONS = {"relu": jax.nn.relu, "quadratic": jnp.square}
# Elementwise activations, plus "bilinear": the MLP becomes (W_in x + b_in) ⊙ (W_gate x +
# b_gate) (Pearce et al. 2024), a drop-in with a second input matrix and no elementwise
# nonlinearity. W_in is the paper's W, W_gate its V, W_out its P.
NONLINEARITIES = (*ACTIVATIONS, "bilinear")


def neurons(pre, gate_pre, activation):
    """The MLP's neuron activations from the pre-activations of W_in (and of W_gate)."""
    return pre * gate_pre if activation == "bilinear" else ACTIVATIONS[activation](pre)


class Block(eqx.Module):
    W_Q: jax.Array
    W_K: jax.Array
    W_V: jax.Array
    W_O: jax.Array
    W_in: jax.Array
    b_in: jax.Array
    W_out: jax.Array
    b_out: jax.Array
    W_gate: jax.Array | None = None  # (d_mlp, d_model), only for the bilinear MLP
    b_gate: jax.Array | None = None

    @property
    def n_heads(self) -> int:
        return self.W_Q.shape[0]

    @property
    def d_head(self) -> int:
        return self.W_Q.shape[1]

    def attention(self, x, alpha, last_only: bool):
        """Causal attention of positions (all, or the last only) over x (n_ctx, d_model).

        alpha interpolates uniform attention over the visible positions (0) and the
        softmax pattern (1), as the attention rate of Zhong et al. Returns (out, pattern)."""
        n_ctx = x.shape[0]
        queries = x[-1:] if last_only else x
        q = jnp.einsum("hdm,qm->hqd", self.W_Q, queries)
        k = jnp.einsum("hdm,km->hkd", self.W_K, x)
        v = jnp.einsum("hdm,km->hkd", self.W_V, x)
        scores = jnp.einsum("hqd,hkd->hqk", q, k) / math.sqrt(self.d_head)
        q_pos = jnp.arange(n_ctx)[-queries.shape[0]:]
        visible = jnp.arange(n_ctx)[None, :] <= q_pos[:, None]  # (q, k) causal mask
        scores = jnp.where(visible, scores, -jnp.inf)
        softmax = jax.nn.softmax(scores, axis=-1)
        uniform = (visible / visible.sum(-1, keepdims=True)).astype(softmax.dtype)  # float32 under enable_x64 too
        pattern = alpha * softmax + (1.0 - alpha) * uniform
        z = jnp.einsum("hqk,hkd->qhd", pattern, v).reshape(queries.shape[0], -1)
        return z @ self.W_O.T, pattern

    def mlp(self, x, activation):
        pre = x @ self.W_in.T + self.b_in
        gate_pre = x @ self.W_gate.T + self.b_gate if activation == "bilinear" else None
        post = neurons(pre, gate_pre, activation)
        return post @ self.W_out.T + self.b_out, pre, post


class Transformer(eqx.Module):
    W_E: jax.Array
    W_pos: jax.Array
    blocks: tuple
    W_U: jax.Array
    activation: str = eqx.field(static=True, default="relu")

    def __call__(self, tokens, alpha=1.0, return_activations: bool = False):
        """Logits (d_vocab_out,) at the last position of ``tokens`` (n_ctx,) int.

        With ``return_activations``, also a dict per layer: ``pattern`` (n_heads, q, n_ctx)
        attention, ``resid_pre``, ``resid_mid``, ``mlp_pre``, ``mlp_post`` (the neurons) and
        ``resid_post`` — at every position for earlier layers, at the last for the last.
        """
        x = self.W_E.T[tokens] + self.W_pos[: tokens.shape[0]]
        cache = []
        for i, block in enumerate(self.blocks):
            last = i == len(self.blocks) - 1
            attn, pattern = block.attention(x, alpha, last_only=last)
            mid = (x[-1:] if last else x) + attn
            mlp_out, pre, post = block.mlp(mid, self.activation)
            out = mid + mlp_out
            if return_activations:
                cache.append(dict(pattern=pattern, resid_pre=x, resid_mid=mid, mlp_pre=pre, mlp_post=post,
                                  resid_post=out))
            x = out
        logits = x[-1] @ self.W_U
        return (logits, cache) if return_activations else logits

    # -- the pair-model protocol (toylab.models.PairModel) that analysis reads
    @property
    def W_L(self):
        """W_U·W_out of the last layer as (d_vocab_out, d_mlp): each neuron's direct effect on the logits."""
        return self.W_U.T @ self.blocks[-1].W_out

    @property
    def n_operands(self) -> int:
        """Values each operand takes: the vocabulary less the '=' token."""
        return self.W_E.shape[1] - 1

    def operand_embeddings(self):
        """(left, right), each (d_model, n_operands): the token embedding, shared by a and b."""
        emb = self.W_E[:, :self.n_operands]
        return emb, emb

    def neuron_inputs(self):
        """None: the neurons see a and b only through attention (no per-operand weights)."""
        return None

    def unembedding(self):
        """(d_vocab_out, d_model): the map from the residual stream to the logits."""
        return self.W_U.T

    def without_neurons(self, keep):
        """The model with the last MLP layer's neurons where ``keep`` (d_mlp,) is false cut
        off (their output weights zeroed)."""
        W_out = self.blocks[-1].W_out
        return eqx.tree_at(lambda m: m.blocks[-1].W_out, self, W_out * jnp.asarray(keep, W_out.dtype)[None, :])

    @property
    def n_neurons(self) -> int:
        return self.blocks[-1].W_out.shape[1]

    # -- the layered-model protocol (toylab.models.LayeredModel)
    def layer_maps(self):
        """Node layers: the residual stream before each block's attention (every position,
        flattened), before its MLP and after the last MLP (the answer position only from the
        last block on: that is all the logits read), and the logits. Extra layers a
        dictionary may read: each block's MLP neurons ``mlp_post.i`` and MLP output
        ``mlp_out.i``, at the positions ``resid_mid.i`` holds."""
        from . import LayerMaps
        from ._inputs import out_of_range

        n_layers = len(self.blocks)
        n_ctx, d_model = self.W_pos.shape
        d_vocab = self.W_E.shape[1]
        names, steps, extras = ["resid_pre.0"], [], []

        def embed(m, tokens):
            return (m.W_E.T[tokens] + m.W_pos[: tokens.shape[0]]).reshape(-1)

        for i in range(n_layers):
            last = i == n_layers - 1

            def attention(m, a, i=i, last=last):
                x = a.reshape(n_ctx, d_model)
                out, _ = m.blocks[i].attention(x, 1.0, last_only=last)
                return ((x[-1:] if last else x) + out).reshape(-1)

            def mlp(m, a, i=i):
                x = a.reshape(-1, d_model)
                out, _, _ = m.blocks[i].mlp(x, m.activation)
                return (x + out).reshape(-1)

            def read_mlp(m, mid, i=i, part=2):
                out = m.blocks[i].mlp(mid.reshape(mid.shape[0], -1, d_model), m.activation)[part]
                return out.reshape(mid.shape[0], -1)

            names.append(f"resid_mid.{i}")
            steps.append(attention)
            extras += [(f"mlp_post.{i}", f"resid_mid.{i}", read_mlp),
                       (f"mlp_out.{i}", f"resid_mid.{i}", lambda m, mid, read=read_mlp: read(m, mid, part=0))]
            names.append(f"resid_post.{i}" if last else f"resid_pre.{i + 1}")
            steps.append(mlp)
        names.append("logits")
        steps.append(lambda m, a: a @ m.W_U)

        def check(tokens):
            if tokens.ndim != 2 or tokens.shape[1] != n_ctx or not jnp.issubdtype(tokens.dtype, jnp.integer):
                return f"must be integer token sequences of shape (n, {n_ctx})"
            return out_of_range(tokens, d_vocab)
        return LayerMaps(tuple(names), embed, tuple(steps), check, tuple(extras))

    def dense_layer(self):
        """The last block's MLP at the answer position: its input the residual stream there."""
        from . import DenseLayer

        def read(m, tokens):
            _, cache = m(tokens, return_activations=True)
            return cache[-1]["resid_mid"][-1]

        def head(m, z):
            block = m.blocks[-1]
            return (block.W_out @ ACTIVATIONS[m.activation](z) + block.b_out) @ m.W_U
        return DenseLayer(read, lambda m: m.blocks[-1].W_in, lambda m: m.blocks[-1].b_in, head, self.activation)


def init_transformer(key, *, d_vocab: int, d_vocab_out: int, n_ctx: int = 3, d_model: int = 128, n_heads: int = 4,
                     d_mlp: int = 512, n_layers: int = 1, activation: str = "relu") -> Transformer:
    """Gaussian init as the paper's code: std 1/√d_model for the embeddings, attention and
    both MLP matrices, 1/√d_vocab_out for W_U; zero biases."""
    for name, v in (("d_vocab", d_vocab), ("d_vocab_out", d_vocab_out), ("n_ctx", n_ctx), ("d_model", d_model),
                    ("n_heads", n_heads), ("d_mlp", d_mlp), ("n_layers", n_layers)):
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, v, "must be a positive integer")
    if d_model % n_heads:
        raise ConfigError("n_heads", n_heads, f"must divide d_model={d_model}")
    if activation not in NONLINEARITIES:
        raise ConfigError("activation", activation, f"must be one of {', '.join(NONLINEARITIES)}")
    d_head = d_model // n_heads
    keys = jax.random.split(key, 3 + n_layers)
    s = 1.0 / math.sqrt(d_model)

    def block(k):
        kq, kk, kv, ko, ki, kout = jax.random.split(k, 6)
        bilinear = activation == "bilinear"
        kg = jax.random.fold_in(k, 1)  # a separate key, so the other weights' init is unchanged
        return Block(
            W_Q=jax.random.normal(kq, (n_heads, d_head, d_model)) * s,
            W_K=jax.random.normal(kk, (n_heads, d_head, d_model)) * s,
            W_V=jax.random.normal(kv, (n_heads, d_head, d_model)) * s,
            W_O=jax.random.normal(ko, (d_model, n_heads * d_head)) * s,
            W_in=jax.random.normal(ki, (d_mlp, d_model)) * s,
            b_in=jnp.zeros(d_mlp),
            W_out=jax.random.normal(kout, (d_model, d_mlp)) * s,
            b_out=jnp.zeros(d_model),
            W_gate=jax.random.normal(kg, (d_mlp, d_model)) * s if bilinear else None,
            b_gate=jnp.zeros(d_mlp) if bilinear else None,
        )

    return Transformer(
        W_E=jax.random.normal(keys[0], (d_model, d_vocab)) * s,
        W_pos=jax.random.normal(keys[1], (n_ctx, d_model)) * s,
        blocks=tuple(block(k) for k in keys[3:]),
        W_U=jax.random.normal(keys[2], (d_model, d_vocab_out)) / math.sqrt(d_vocab_out),
        activation=activation,
    )
