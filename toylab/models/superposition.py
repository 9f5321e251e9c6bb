"""The toy models of superposition (Elhage et al. 2022), one instance each.

- linear:       x' = WᵀW x + b
- relu_output:  x' = ReLU(WᵀW x + b)            (tied decoder, output bias)
- relu_hidden:  h = ReLU(W x), x' = ReLU(Wᵀ h + b)
- abs:          h = ReLU(W x), y' = ReLU(W_out h + b), untied; trained to compute |x|

W is (n_hidden, n_features): column i is feature i's direction in the hidden space.
Ensembles are vmaps over these single instances.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from ..core.config import ConfigError

__all__ = ["MODEL_KINDS", "ToyModel", "init_toy_model"]

MODEL_KINDS = ("linear", "relu_output", "relu_hidden", "abs")


class ToyModel(eqx.Module):
    W: jax.Array  # (n_hidden, n_features)
    b: jax.Array  # (n_features,)
    W_out: jax.Array | None  # (n_features, n_hidden), only for the untied abs model
    kind: str = eqx.field(static=True)

    def hidden(self, x):
        """Hidden activations (batch, n_hidden) for inputs x (batch, n_features)."""
        h = x @ self.W.T
        return h if self.kind in ("linear", "relu_output") else jax.nn.relu(h)

    def __call__(self, x):
        h = self.hidden(x)
        decoder = self.W_out.T if self.kind == "abs" else self.W
        out = h @ decoder + self.b
        return out if self.kind == "linear" else jax.nn.relu(out)

    # -- the layered-model protocol (toylab.models.LayeredModel)
    def layer_maps(self):
        """Node layers ``input``, ``hidden``, ``output``."""
        from . import LayerMaps

        n_features = self.W.shape[1]

        def hidden(m, x):
            h = m.W @ x
            return h if m.kind in ("linear", "relu_output") else jax.nn.relu(h)

        def output(m, h):
            out = (m.W_out @ h if m.kind == "abs" else m.W.T @ h) + m.b
            return out if m.kind == "linear" else jax.nn.relu(out)

        def check(x):
            if x.ndim != 2 or x.shape[1] != n_features or not jnp.issubdtype(x.dtype, jnp.floating):
                return f"must be float feature vectors of shape (n, {n_features})"
            return None
        return LayerMaps(("input", "hidden", "output"), lambda m, x: x, (hidden, output), check)

    def known_features(self, node: str, target_node: str, inputs):
        """The true features at ``hidden`` (column i of W, active by x_i) and, for a map from
        ``hidden`` to ``output``, the unit vectors; None elsewhere or when the hidden layer
        is not linear in the features (relu_hidden, abs)."""
        if node != "hidden" or self.kind not in ("linear", "relu_output"):
            return None
        if target_node == "output":
            return jnp.eye(self.W.shape[1], dtype=jnp.float32), inputs
        if not target_node:
            return self.W.T, inputs
        return None


def init_toy_model(key, n_features: int, n_hidden: int, kind: str = "relu_output") -> ToyModel:
    """Per-instance Xavier-normal weights, std √(2/(n+m)) (independent of the ensemble
    size, unlike xavier_normal_ on a stacked torch tensor), zero bias."""
    if kind not in MODEL_KINDS:
        raise ConfigError("kind", kind, f"must be one of {', '.join(MODEL_KINDS)}")
    k_w, k_out = jax.random.split(key)
    std = (2.0 / (n_features + n_hidden)) ** 0.5
    W = std * jax.random.normal(k_w, (n_hidden, n_features), jnp.float32)
    W_out = std * jax.random.normal(k_out, (n_features, n_hidden), jnp.float32) if kind == "abs" else None
    return ToyModel(W, jnp.zeros((n_features,), jnp.float32), W_out, kind)
