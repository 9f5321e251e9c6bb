"""Bilinear layers and models (Pearce, Dooms, Rigg, Oramas, Sharkey 2024; Sharkey 2023).

A bilinear layer is g(x) = P((W x̃) ⊙ (V x̃)): two linear maps multiplied elementwise, then
an output projection P. With ``bias`` the input x̃ is x with a constant 1 appended, so the
biases are the last columns of W and V and the layer stays one third-order tensor
B[a, i, j] = Σ_k P[a, k] W[k, i] V[k, j] in the augmented input (analysis.eigen).

- :class:`BilinearLayer`: W, V (d_hidden, d_in [+1]), P (d_out, d_hidden).
- :class:`BilinearBlock`: a layer with an optional residual connection (x + g(x)).
- :class:`BilinearClassifier`: embedding W_E → bilinear block(s) → head W_U, as the paper's
  image models. With one non-residual block it is a single bilinear layer of the pixels
  (:meth:`BilinearClassifier.as_layer`), which is what the eigendecomposition reads.

The drop-in bilinear MLP of the transformer and of the embedding MLPs lives with those models
(``activation="bilinear"`` in models/transformer.py and models/mlp.py).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.config import ConfigError, described

__all__ = ["BilinearLayer", "BilinearBlock", "BilinearClassifier", "augment", "init_bilinear_layer",
           "init_bilinear_classifier"]


def augment(x, bias: bool):
    """x with a constant 1 appended on its last axis when ``bias`` (the biases' input)."""
    if not bias:
        return x
    return jnp.concatenate([x, jnp.ones(x.shape[:-1] + (1,), x.dtype)], axis=-1)


class BilinearLayer(eqx.Module):
    W: jax.Array  # (d_hidden, d_in + bias)
    V: jax.Array  # (d_hidden, d_in + bias)
    P: jax.Array  # (d_out, d_hidden)
    bias: bool = eqx.field(static=True, default=False)

    @property
    def d_in(self) -> int:
        """Width of the (unaugmented) input."""
        return self.W.shape[1] - int(self.bias)

    @property
    def d_hidden(self) -> int:
        return self.W.shape[0]

    @property
    def d_out(self) -> int:
        return self.P.shape[0]

    def hidden(self, x):
        """(W x̃) ⊙ (V x̃) for x (..., d_in): the layer's hidden activations."""
        xa = augment(x, self.bias)
        return (xa @ self.W.T) * (xa @ self.V.T)

    def __call__(self, x):
        """P((W x̃) ⊙ (V x̃)) for x (..., d_in) -> (..., d_out)."""
        return self.hidden(x) @ self.P.T


class BilinearBlock(eqx.Module):
    layer: BilinearLayer
    residual: bool = eqx.field(static=True, default=False)

    def __call__(self, x):
        out = self.layer(x)
        return x + out if self.residual else out


class BilinearClassifier(eqx.Module):
    W_E: jax.Array | None  # (d_model, d_in): embedding; None feeds the input straight in
    blocks: tuple  # BilinearBlock, ...
    W_U: jax.Array  # (n_classes, d_model): head

    def residual_stream(self, x):
        """The input to the head, for x (..., d_in)."""
        h = x if self.W_E is None else x @ self.W_E.T
        for block in self.blocks:
            h = block(h)
        return h

    def __call__(self, x):
        """Logits (..., n_classes) for flattened inputs x (..., d_in)."""
        return self.residual_stream(x) @ self.W_U.T

    @property
    def d_in(self) -> int:
        return self.blocks[0].layer.d_in if self.W_E is None else self.W_E.shape[1]

    def as_layer(self) -> BilinearLayer:
        """The model as one bilinear layer from the inputs to the logits: W_E folded into W
        and V (the bias column stays), W_U into P. Exact for one non-residual block, the
        paper's image model; a deeper or residual model is not a single bilinear layer."""
        if len(self.blocks) != 1 or self.blocks[0].residual:
            raise ConfigError("model", described(f"{len(self.blocks)} block(s), residual={self.blocks[0].residual}"),
                              "as_layer needs exactly one non-residual bilinear block "
                              "(analyse a deeper model one block at a time)")
        layer = self.blocks[0].layer
        W, V = layer.W, layer.V
        if self.W_E is not None:
            d = self.W_E.shape[0]
            W = jnp.concatenate([W[:, :d] @ self.W_E, W[:, d:]], axis=1)
            V = jnp.concatenate([V[:, :d] @ self.W_E, V[:, d:]], axis=1)
        return BilinearLayer(W, V, self.W_U @ layer.P, bias=layer.bias)

    # -- the layered-model protocol (toylab.models.LayeredModel)
    def layer_maps(self):
        """Node layers ``input``, ``resid.0`` (with an embedding), ``hidden.i`` (a block
        without a skip around it), ``resid.{i+1}``, ``logits``."""
        from . import LayerMaps

        d_in = self.d_in
        names, steps = ["input"], []
        if self.W_E is not None:
            names.append("resid.0")
            steps.append(lambda m, x: m.W_E @ x)
        for i, block in enumerate(self.blocks):
            if block.residual:
                names.append(f"resid.{i + 1}")
                steps.append(lambda m, x, i=i: m.blocks[i](x))
            else:  # the hidden layer is a cut point only when the block has no skip around it
                names.append(f"hidden.{i}")
                steps.append(lambda m, x, i=i: m.blocks[i].layer.hidden(x))
                names.append(f"resid.{i + 1}")
                steps.append(lambda m, h, i=i: m.blocks[i].layer.P @ h)
        names.append("logits")
        steps.append(lambda m, x: m.W_U @ x)

        def check(x):
            if x.ndim != 2 or x.shape[1] != d_in or not jnp.issubdtype(x.dtype, jnp.floating):
                return f"must be float inputs of shape (n, {d_in})"
            return None
        return LayerMaps(tuple(names), lambda m, x: x, tuple(steps), check)


def _check_positive(**sizes):
    for name, v in sizes.items():
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise ConfigError(name, v, "must be a positive integer")


def init_bilinear_layer(key, *, d_in: int, d_hidden: int, d_out: int, bias: bool = False) -> BilinearLayer:
    """W, V Gaussian with std 1/√d_in (each factor keeps unit scale, so the product does
    too); P with std 1/√d_hidden; bias columns zero."""
    _check_positive(d_in=d_in, d_hidden=d_hidden, d_out=d_out)
    k_w, k_v, k_p = jax.random.split(key, 3)
    s = 1.0 / math.sqrt(d_in)

    def factor(k):
        m = jax.random.normal(k, (d_hidden, d_in)) * s
        return jnp.concatenate([m, jnp.zeros((d_hidden, 1))], axis=1) if bias else m

    return BilinearLayer(factor(k_w), factor(k_v), jax.random.normal(k_p, (d_out, d_hidden)) / math.sqrt(d_hidden),
                         bias=bias)


def init_bilinear_classifier(key, *, d_in: int, n_classes: int, d_hidden: int = 512, d_model: int | None = 512,
                             n_layers: int = 1, residual: bool = False, bias: bool = False) -> BilinearClassifier:
    """Embedding (d_in -> d_model; ``d_model=None``: no embedding, the blocks read the
    input), ``n_layers`` bilinear blocks of width d_hidden, head (-> n_classes). Residual
    blocks keep the stream width; without them the stream is d_model throughout too."""
    _check_positive(d_in=d_in, n_classes=n_classes, d_hidden=d_hidden, n_layers=n_layers)
    if d_model is not None:
        _check_positive(d_model=d_model)
    width = d_in if d_model is None else d_model
    k_e, k_u, *k_blocks = jax.random.split(key, 2 + n_layers)
    W_E = None if d_model is None else jax.random.normal(k_e, (d_model, d_in)) / math.sqrt(d_in)
    blocks = tuple(BilinearBlock(init_bilinear_layer(k, d_in=width, d_hidden=d_hidden, d_out=width, bias=bias),
                                 residual=residual) for k in k_blocks)
    return BilinearClassifier(W_E, blocks, jax.random.normal(k_u, (n_classes, width)) / math.sqrt(width))
