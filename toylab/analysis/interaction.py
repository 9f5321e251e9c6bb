"""The Local Interaction Basis (Bushnaq et al. 2024): features and interaction graphs that do
not change when a layer's activations are reparametrised by an invertible linear map.

A model is cut at named *node layers* into pure functions between them (:func:`cut`). Per
node layer l, with activations a (centred: the mean μ is held apart as the layer's
baseline, so the constant direction of the bias is never mixed into a feature):

    G  = E[(a − μ)(a − μ)ᵀ] = U D Uᵀ          the Gram matrix; directions with D ≤ t·max D dropped
    J  = ∂ f̂^{l+1} / ∂a                       per example, vmap(jacrev), the next layer's features
    M′ = E[JᵀJ],  M = D^½ Uᵀ M′ U D^½ = V Λ Vᵀ  the Jacobian Gram, in whitened coordinates
    C  = U D^-½ V Λ^½,  f̂^l = Cᵀ(a − μ)       the rotation; Λ are the importances (Λ ≤ t·max Λ dropped)
    C⁺ = Λ^-½ Vᵀ D^½ Uᵀ                        its pseudo-inverse: a = μ + C⁺ᵀ f̂ on the kept span

so that CᵀGC = diag(Λ) and C⁺M′C⁺ᵀ = I on the kept features. The bases are built from the
output backwards (f̂^{l+1} is needed for J); the output layer is rotated into its PCA basis
without whitening (its scale is the model's output). Because everything above transforms
covariantly, a layer reparametrised a → A a (with the next layer reading A⁻¹) has the same
features and Λ, up to sign (and rotations within exactly equal Λ). The PCA baseline
(:func:`pca_basis`) is U alone: the same centring and truncation, no Jacobians.

Edges between adjacent layers' features are mean squared integrated-gradient attributions,

    E[j, i] = mean_x ( f̂^l_i(x) · ∫₀¹ ∂f̂^{l+1}_j/∂f̂^l_i (α f̂^l(x)) dα )²,

the path running from the baseline (every feature 0: the mean activation) to the example;
the integral is Gauss–Legendre quadrature on [0, 1] with ``n_alpha`` nodes, exact when the
section is a polynomial of degree ≤ 2·n_alpha (its derivative along the path then has degree
≤ 2·n_alpha − 1): linear and bilinear sections are exact with one node.

Everything numeric here is a pure function of (model, inputs) with fixed shapes (dropped
directions are zero columns and a ``kept`` mask, not a shorter array), so a basis vmaps over
a sweep's seeds or a run's snapshots. Grams and eigendecompositions run in float64 in a
scoped ``enable_x64`` (``precision="float64"``, the default); activations and Jacobians stay
in the model's dtype.

Concrete inputs, models, bases, edges and targets holding NaN or inf are refused with a
:class:`~toylab.core.config.ConfigError` naming the argument. Traced ones (under jit or vmap)
cannot be inspected: a layer whose Gram or Jacobian Gram is not finite then gets NaN
importances and features (and no kept ones), and the graph, the ablations' accuracy and loss
and ``edges_for_mass`` come out NaN, never a finite-looking number.
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax import custom_batching

from ..core.config import ConfigError, described
from ..tasks.losses import x64_scope
from .dictionaries import _refuse_non_finite, _refuse_non_finite_tree
from ..core.tracing import is_traced

__all__ = ["Sections", "cut", "node_layers", "Basis", "interaction_basis", "pca_basis", "interaction_graph",
           "edges_for_mass", "output_scores", "feature_ablation", "edge_ablation", "fewest_kept", "graph_modules",
           "modularity", "cross_module_share", "fourier_labels", "label_names", "PRECISIONS", "CLUSTER_METHODS"]

PRECISIONS = ("float64", "float32")
CLUSTER_METHODS = ("spectral", "leiden")


# ----------------------------------------------------------------------------- models as sections


@dataclasses.dataclass(frozen=True)
class Sections:
    """A model cut at node layers: ``embed(model, example)`` gives the first node layer's
    activation vector for one example, ``maps[i](model, a)`` the (i+1)-th node layer's from
    the i-th. The model is an argument, not a field, so one ``Sections`` serves a whole
    stack of models under vmap. ``check_inputs(inputs)`` returns None or what is wrong."""

    names: tuple
    embed: Callable
    maps: tuple
    check_inputs: Callable | None = None

    @classmethod
    def from_functions(cls, names, embed: Callable, maps, check_inputs: Callable | None = None) -> "Sections":
        """Sections of a model of your own: ``names`` of len(maps) + 1 node layers,
        ``embed(model, example) -> vector``, ``maps[i](model, vector) -> vector``."""
        names = tuple(names)
        maps = tuple(maps)
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("names", names, "must be at least two distinct non-empty strings")
        if len(maps) != len(names) - 1 or not all(callable(f) for f in maps):
            raise ConfigError("maps", described(f"{len(maps)} item(s)"),
                              f"must be {len(names) - 1} callables, one between each pair of node layers")
        if not callable(embed):
            raise ConfigError("embed", embed, "must be a callable (model, example) -> vector")
        return cls(names, embed, maps, check_inputs)

    def __len__(self):
        return len(self.names)

    def _check(self, inputs):
        _refuse_non_finite_tree(inputs, "inputs")
        inputs = jnp.asarray(inputs) if not isinstance(inputs, (dict, tuple, list)) else inputs
        if self.check_inputs is not None:
            problem = self.check_inputs(inputs)
            if problem:
                shape = getattr(inputs, "shape", None)
                raise ConfigError("inputs", described(f"shape {shape}" if shape is not None else type(inputs).__name__),
                                  problem)
        return inputs

    def activations(self, model, inputs, batch_size: int | None = None) -> list:
        """The node layers' activations [(n, d_0), (n, d_1), ...] for ``inputs`` (n, ...)."""
        _refuse_non_finite_tree(model, "model")
        inputs = self._check(inputs)

        def one(x):
            acts = [self.embed(model, x)]
            for f in self.maps:
                acts.append(f(model, acts[-1]))
            return acts
        return _map_examples(one, inputs, batch_size)

    def forward(self, model, a, start: int):
        """The last node layer (the output) from node layer ``start``'s activation ``a``."""
        _refuse_non_finite_tree(model, "model")
        return self._forward(model, _refuse_non_finite(a, "a"), start)

    def _forward(self, model, a, start):
        for f in self.maps[start:]:
            a = f(model, a)
        return a


def _map_examples(fn, inputs, batch_size):
    """``vmap(fn)`` over examples, in chunks of ``batch_size`` (lax.map) when given."""
    if batch_size is None:
        return jax.vmap(fn)(inputs)
    return jax.lax.map(fn, inputs, batch_size=int(batch_size))


def _compose(fns):
    def composed(model, a):
        for f in fns:
            a = f(model, a)
        return a
    return composed


def _out_of_range(tokens, n):
    """What is wrong with integer ``tokens`` outside 0..n−1 (a gather would clamp them
    silently); None when traced, as the values are not known then."""
    if is_traced(tokens) or tokens.size == 0:
        return None
    values = np.asarray(tokens)  # numpy: inside a jit trace, jnp's min would be traced too
    lo, hi = int(values.min()), int(values.max())
    if lo < 0 or hi >= n:
        return f"token values must be in 0..{n - 1} (got {lo}..{hi})"
    return None


def _transformer_steps(model):
    """(names, embed, steps) of the transformer: the residual stream before each block's
    attention (every position, flattened), before its MLP and after the last MLP (the answer
    position only from the last block on: that is all the logits read), and the logits."""
    n_layers = len(model.blocks)
    n_ctx, d_model = model.W_pos.shape
    names, steps = ["resid_pre.0"], []

    def embed(m, tokens):
        return (m.W_E.T[tokens] + m.W_pos[: tokens.shape[0]]).reshape(-1)

    for i in range(n_layers):
        last = i == n_layers - 1

        def attention(m, a, i=i, last=last):
            x = a.reshape(n_ctx, d_model)
            out, _ = m.blocks[i].attention(x, 1.0, last_only=last)
            return ((x[-1:] if last else x) + out).reshape(-1)

        def mlp(m, a, i=i, last=last):
            x = a.reshape(-1, d_model)
            out, _, _ = m.blocks[i].mlp(x, m.activation)
            return (x + out).reshape(-1)
        names.append(f"resid_mid.{i}")
        steps.append(attention)
        names.append(f"resid_post.{i}" if last else f"resid_pre.{i + 1}")
        steps.append(mlp)
    names.append("logits")
    steps.append(lambda m, a: a @ m.W_U)

    d_vocab = model.W_E.shape[1]

    def check(tokens):
        if tokens.ndim != 2 or tokens.shape[1] != n_ctx or not jnp.issubdtype(tokens.dtype, jnp.integer):
            return f"must be integer token sequences of shape (n, {n_ctx})"
        return _out_of_range(tokens, d_vocab)
    return names, embed, steps, check


def _embed_mlp_steps(model):
    n_in = model.n_operands

    def embed(m, tokens):
        a, b = tokens[0], tokens[1]
        if m.embed == "onehot":
            n = m.W_in.shape[1] // 2
            return jnp.concatenate([jax.nn.one_hot(a, n, dtype=m.W_in.dtype), jax.nn.one_hot(b, n, dtype=m.W_in.dtype)])
        left, right = m.W_E_left[:, a], m.W_E_right[:, b]
        return left + right if m.embed == "sum" else jnp.concatenate([left, right])

    def hidden(m, x):
        from ..models.transformer import neurons

        pre = m.W_in @ x + (0.0 if m.b_in is None else m.b_in)
        gate = m.W_gate @ x + (0.0 if m.b_gate is None else m.b_gate) if m.activation == "bilinear" else None
        return neurons(pre, gate, m.activation)

    def logits(m, h):
        out = m.W_out @ h
        return out if m.b_out is None else out + m.b_out

    def check(tokens):
        if tokens.ndim != 2 or tokens.shape[1] < 2 or not jnp.issubdtype(tokens.dtype, jnp.integer):
            return "must be integer pairs [a, b, ...] of shape (n, 2) or (n, 3)"
        return _out_of_range(tokens[:, :2], n_in)
    return ["input", "mlp_post", "logits"], embed, [hidden, logits], check


def _toy_steps(model):
    n_features = model.W.shape[1]

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
    return ["input", "hidden", "output"], (lambda m, x: x), [hidden, output], check


def _bilinear_steps(model):
    from ..models.bilinear import augment

    d_in = model.d_in
    names, steps = ["input"], []
    if model.W_E is not None:
        names.append("resid.0")
        steps.append(lambda m, x: m.W_E @ x)
    for i, block in enumerate(model.blocks):
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
    del augment

    def check(x):
        if x.ndim != 2 or x.shape[1] != d_in or not jnp.issubdtype(x.dtype, jnp.floating):
            return f"must be float inputs of shape (n, {d_in})"
        return None
    return names, (lambda m, x: x), steps, check


def _flax_steps(model):
    import flax.linen as linen  # the adapter exists, so flax is installed

    if model.kind != "linen" or not isinstance(model.spec, linen.Sequential):
        raise ConfigError("model", described(f"a flax {model.kind} {type(model.spec).__name__}"),
                          "cut() reads flax models built as linen.Sequential; for any other model give "
                          "Sections.from_functions(names, embed, maps)")
    layers = model.spec.layers
    names, steps = ["input"], []
    for i, layer in enumerate(layers):
        if isinstance(layer, linen.Module):
            def step(m, x, i=i, layer=layer):
                return layer.apply({"params": m.params[f"layers_{i}"]}, x) if f"layers_{i}" in m.params else \
                    layer.apply({}, x)
        else:
            def step(m, x, layer=layer):
                return layer(x)
        names.append(f"layers.{i}")
        steps.append(step)
    return names, (lambda m, x: jnp.asarray(x)), steps, None


def _steps_of(model):
    from ..models.bilinear import BilinearClassifier
    from ..models.mlp import EmbedMLP
    from ..models.superposition import ToyModel
    from ..models.transformer import Transformer

    if isinstance(model, Transformer):
        return _transformer_steps(model)
    if isinstance(model, EmbedMLP):
        return _embed_mlp_steps(model)
    if isinstance(model, ToyModel):
        return _toy_steps(model)
    if isinstance(model, BilinearClassifier):
        return _bilinear_steps(model)
    if type(model).__name__ == "FlaxModel":
        return _flax_steps(model)
    raise ConfigError("model", described(f"a {type(model).__name__}"),
                      "must be a lab model (Transformer, EmbedMLP, ToyModel, BilinearClassifier, a linen.Sequential "
                      "FlaxModel); for another model give Sections.from_functions(names, embed, maps)")


def node_layers(model) -> tuple:
    """The node layers ``cut`` can cut ``model`` at, in order (input to output)."""
    return tuple(_steps_of(model)[0])


def cut(model, nodes=None) -> Sections:
    """``model`` cut at the node layers ``nodes`` (names from :func:`node_layers`, in order,
    at least two; None: all of them). The last is the model's output for the ablations.

    Transformer: ``resid_pre.i`` (every position, flattened: attention reads them all),
    ``resid_mid.i`` and ``resid_post.{last}`` (from the last block on, the answer position
    only), ``logits``. EmbedMLP: ``input`` (one-hots or embeddings), ``mlp_post``, ``logits``.
    ToyModel: ``input``, ``hidden``, ``output``. BilinearClassifier: ``input``, ``resid.0``
    (with an embedding), ``hidden.i`` (non-residual blocks), ``resid.{i+1}``, ``logits``.
    A linen.Sequential FlaxModel: ``input``, ``layers.i``.
    """
    names, embed, steps, check = _steps_of(model)
    if nodes is None:
        chosen = list(range(len(names)))
    else:
        if isinstance(nodes, str) or not hasattr(nodes, "__iter__"):
            raise ConfigError("nodes", nodes, f"must be a list of node layer names, from: {', '.join(names)}")
        nodes = list(nodes)
        unknown = [n for n in nodes if n not in names]
        if unknown:
            raise ConfigError("nodes", nodes, f"{unknown[0]!r} is not a node layer of this model; it has: "
                              f"{', '.join(names)}")
        chosen = [names.index(n) for n in nodes]
        if len(chosen) < 2 or any(b <= a for a, b in zip(chosen, chosen[1:])):
            raise ConfigError("nodes", nodes, f"must be at least two node layers in model order: {', '.join(names)}")
    first = chosen[0]
    embed_to_first = (lambda m, x: _compose(steps[:first])(m, embed(m, x))) if first else embed
    maps = tuple(_compose(steps[a:b]) for a, b in zip(chosen, chosen[1:]))
    return Sections(tuple(names[i] for i in chosen), embed_to_first, maps, check)


# ----------------------------------------------------------------------------- the basis


class Basis(eqx.Module):
    """Per node layer: ``mean`` μ (d,), ``C`` (d, d) whose columns are the features
    (f̂ = Cᵀ(a − μ)), ``C_pinv`` (d, d) (a = μ + C⁺ᵀ f̂), ``importance`` Λ (d,), ``kept``
    (d,) bool. Features are sorted by importance, largest first; dropped ones are zero
    columns with importance 0 and kept False. ``kind`` is "lib" or "pca"."""

    mean: list
    C: list
    C_pinv: list
    importance: list
    kept: list
    names: tuple = eqx.field(static=True)
    kind: str = eqx.field(static=True)

    def n_features(self):
        """How many features each layer keeps (a list of int arrays)."""
        return [k.sum() for k in self.kept]

    def features(self, layer: int, activations):
        """f̂ (n, d) of layer ``layer`` from its activations (n, d)."""
        return self._features(layer, _refuse_non_finite(activations, "activations"))

    def reconstruct(self, layer: int, features):
        """Activations (n, d) from features (n, d): μ + f̂ C⁺."""
        return self._reconstruct(layer, _refuse_non_finite(features, "features"))

    # Unchecked, for this module: what it passes are its own intermediate values, not arguments.
    def _features(self, layer, activations):
        return (activations - self.mean[layer]) @ self.C[layer]

    def _reconstruct(self, layer, features):
        return self.mean[layer] + features @ self.C_pinv[layer]


def _check_truncation(truncation):
    if isinstance(truncation, bool) or not isinstance(truncation, (int, float, np.integer, np.floating)) \
            or not 0 <= float(truncation) < 1:
        raise ConfigError("truncation", truncation, "must be a number in [0, 1): eigenvalues at or below "
                          "truncation × the largest are dropped")
    return float(truncation)


def _check_precision(precision):
    if precision not in PRECISIONS:
        raise ConfigError("precision", precision, f"must be one of {', '.join(PRECISIONS)}")
    return precision


def _check_batch(batch_size):
    if batch_size is not None and (isinstance(batch_size, bool) or not isinstance(batch_size, (int, np.integer))
                                   or batch_size < 1):
        raise ConfigError("batch_size", batch_size, "must be a positive integer or None (all examples at once)")


@custom_batching.custom_vmap
def _eigh(S):
    w, v = jnp.linalg.eigh(S)
    return w, v


@_eigh.def_vmap
def _eigh_one_at_a_time(axis_size, in_batched, S):
    # Under vmap, eigh becomes one batched LAPACK call, which in jaxlib 0.10 on CPU can
    # deadlock XLA's thread pool (every pool thread waits on batch tasks none is free to
    # run: a vmapped basis of the p = 113 transformer hung for good). The eigendecompositions
    # are ~2% of a basis, so they run one after another instead.
    if not in_batched[0]:
        return _eigh(S), (False, False)
    return jax.lax.map(_eigh, S), (True, True)


def _desc_eigh(S):
    """Eigenvalues (descending) and eigenvectors (columns) of a symmetric matrix; all NaN when
    S is not finite (a traced NaN or inf reached it)."""
    finite = jnp.all(jnp.isfinite(S))
    # eigh of a non-finite matrix is undefined; decompose zeros instead and mark the result.
    w, v = _eigh(jnp.where(finite, (S + S.T) / 2, 0.0))
    return jnp.where(finite, w[::-1], jnp.nan), jnp.where(finite, v[:, ::-1], jnp.nan)


def _poisoned(values, *arrays):
    """arrays, each NaN throughout when ``values`` (eigenvalues) hold NaN: the layer's masks
    would otherwise turn a NaN basis into zero columns and zero importances."""
    bad = jnp.any(jnp.isnan(values))
    return tuple(jnp.where(bad, jnp.nan, a) for a in arrays)


def _keep(values, truncation):
    top = jnp.maximum(values[0], 0.0)
    return (values > truncation * top) & (values > 0)


def _gram(acts, wide):
    mean = jnp.mean(acts.astype(wide), axis=0)
    X = acts.astype(wide) - mean
    return mean, X.T @ X / acts.shape[0]


def _scope(precision):
    return x64_scope(True) if precision == "float64" else contextlib.nullcontext()


def _pca_layer(acts, truncation, precision, dtype):
    wide = jnp.float64 if precision == "float64" else jnp.float32
    with _scope(precision):
        mean, G = _gram(acts, wide)
        D, U = _desc_eigh(G)
        kept = _keep(D, truncation)
        U, importance = _poisoned(D, jnp.where(kept[None, :], U, 0.0), jnp.where(kept, D, 0.0))
        out = (mean.astype(dtype), U.astype(dtype), U.T.astype(dtype), importance.astype(dtype), kept)
    return out


def _chunked_mean(fn, xs, batch_size):
    """mean over the rows x of ``xs`` of ``fn(x)`` (an array), ``batch_size`` rows vmapped at
    a time and summed in a scan, so memory holds one chunk of per-example results."""
    n = xs.shape[0]
    b = n if batch_size is None else min(int(batch_size), n)
    chunks = -(-n // b)
    pad = chunks * b - n
    padded = jnp.concatenate([xs, jnp.repeat(xs[:1], pad, axis=0)]) if pad else xs
    weight = (jnp.arange(chunks * b) < n).astype(xs.dtype).reshape(chunks, b)

    def body(total, chunk):
        x, w = chunk
        out = jax.vmap(fn)(x)
        return total + jnp.tensordot(w, out, axes=1), None
    shape = jax.eval_shape(fn, xs[0])
    total, _ = jax.lax.scan(body, jnp.zeros(shape.shape, shape.dtype),
                            (padded.reshape(chunks, b, *xs.shape[1:]), weight))
    return total / n


def _jacobian_gram(fn, acts, batch_size, precision):
    """E[JᵀJ] over the rows of ``acts`` for J = jacrev(fn) at each row. With float64 the
    products and their sum are float64 (the lab's models keep their own dtype inside the
    scope; a model of your own that mixes in integer divisions may run in float64 there): a
    float32 sum of rank-deficient JᵀJ leaves rounding-level eigenvalues near 1e-6 of the
    largest, which a relative truncation could take for features."""
    jac = jax.jacrev(fn)
    wide = jnp.float64 if precision == "float64" else jnp.float32

    def one(a):
        J = jac(a).astype(wide)
        return J.T @ J
    with _scope(precision):
        return _chunked_mean(one, acts, batch_size)


def interaction_basis(sections: Sections, model, inputs, *, truncation: float = 1e-6, precision: str = "float64",
                      batch_size: int | None = 256) -> Basis:
    """The local interaction basis of every node layer of ``sections`` on ``inputs`` (n, ...).

    Args:
        sections: the model cut at its node layers (:func:`cut`).
        model: the model (or one of a vmapped stack).
        inputs: the examples the basis is built on (e.g. the training set).
        truncation: in [0, 1): Gram eigenvalues and importances at or below ``truncation`` ×
            the layer's largest are dropped (their features are zero columns).
        precision: "float64" (Grams and eigendecompositions in a scoped enable_x64) or "float32".
        batch_size: examples per chunk for the per-example Jacobians (None: all at once).
    Returns a :class:`Basis` (kind "lib")."""
    truncation = _check_truncation(truncation)
    precision = _check_precision(precision)
    _check_batch(batch_size)
    acts = sections.activations(model, inputs, batch_size)
    dtype = acts[-1].dtype
    L = len(acts)
    layers = [None] * L
    layers[-1] = _pca_layer(acts[-1], truncation, precision, dtype)
    wide = jnp.float64 if precision == "float64" else jnp.float32
    for i in range(L - 2, -1, -1):
        mean_n, C_n = layers[i + 1][0], layers[i + 1][1]
        f = sections.maps[i]
        Mp = _jacobian_gram(lambda a, f=f, mean_n=mean_n, C_n=C_n: (f(model, a) - mean_n) @ C_n, acts[i], batch_size,
                             precision)
        with _scope(precision):
            mean, G = _gram(acts[i], wide)
            D, U = _desc_eigh(G)
            kept_g = _keep(D, truncation)
            sqrtD = jnp.where(kept_g, jnp.sqrt(jnp.where(kept_g, D, 1.0)), 0.0)
            inv_sqrtD = jnp.where(kept_g, 1.0 / jnp.where(kept_g, sqrtD, 1.0), 0.0)
            Us = U * sqrtD[None, :]  # U D^½: whitened coordinates → activations
            M = Us.T @ Mp.astype(wide) @ Us
            lam, V = _desc_eigh(M)
            kept = _keep(lam, truncation)
            root = jnp.where(kept, jnp.sqrt(jnp.where(kept, lam, 1.0)), 0.0)
            inv_root = jnp.where(kept, 1.0 / jnp.where(kept, root, 1.0), 0.0)
            C = (U * inv_sqrtD[None, :]) @ V * root[None, :]
            C_pinv = (inv_root[:, None] * V.T) @ Us.T
            # NaN in G's eigenvalues reaches M's through Us, so lam carries both layers' poison.
            C, C_pinv, importance = _poisoned(lam, C, C_pinv, jnp.where(kept, lam, 0.0))
            layers[i] = (mean.astype(dtype), C.astype(dtype), C_pinv.astype(dtype), importance.astype(dtype), kept)
    return Basis(*[list(x) for x in zip(*layers)], names=sections.names, kind="lib")


def pca_basis(sections: Sections, model, inputs, *, truncation: float = 1e-6, precision: str = "float64",
              batch_size: int | None = None) -> Basis:
    """The PCA baseline on the same configuration as :func:`interaction_basis`: per node
    layer the eigenvectors of the centred Gram matrix, importances its eigenvalues (the
    variances), no whitening and no Jacobians. Returns a :class:`Basis` (kind "pca")."""
    truncation = _check_truncation(truncation)
    precision = _check_precision(precision)
    _check_batch(batch_size)
    acts = sections.activations(model, inputs, batch_size)
    dtype = acts[-1].dtype
    layers = [_pca_layer(a, truncation, precision, dtype) for a in acts]
    return Basis(*[list(x) for x in zip(*layers)], names=sections.names, kind="pca")


def _check_basis(sections, basis):
    if not isinstance(basis, Basis):
        raise ConfigError("basis", described(f"a {type(basis).__name__}"), "must be a Basis (interaction_basis, pca_basis)")
    if tuple(basis.names) != tuple(sections.names):
        raise ConfigError("basis", described(f"node layers {basis.names}"),
                          f"must be built on the same node layers as sections: {sections.names}")
    _refuse_non_finite_tree(basis, "basis")


# ----------------------------------------------------------------------------- the interaction graph


def _check_n_alpha(n_alpha):
    if isinstance(n_alpha, bool) or not isinstance(n_alpha, (int, np.integer)) or not 1 <= n_alpha <= 64:
        raise ConfigError("n_alpha", n_alpha, "must be an integer in 1..64 (Gauss–Legendre nodes on [0, 1])")


def _feature_map(sections, model, basis, i):
    """f̂^{l+1} as a function of f̂^l (the section in the two layers' bases)."""
    f = sections.maps[i]
    mean, C_pinv = basis.mean[i], basis.C_pinv[i]
    mean_n, C_n = basis.mean[i + 1], basis.C[i + 1]
    return lambda feats: (f(model, mean + feats @ C_pinv) - mean_n) @ C_n


def interaction_graph(sections: Sections, model, inputs, basis: Basis, *, n_alpha: int = 8,
                      batch_size: int | None = 256) -> list:
    """Edges between adjacent node layers' features: a list of (d_{l+1}, d_l) arrays,
    ``edges[l][j, i]`` from feature i of layer l to feature j of layer l+1 (see the module
    docstring for the formula; ``n_alpha`` Gauss–Legendre nodes on [0, 1]). Non-negative;
    zero for dropped features. Works with either basis (LIB or PCA)."""
    _check_basis(sections, basis)
    _check_n_alpha(n_alpha)
    _check_batch(batch_size)
    acts = sections.activations(model, inputs, batch_size)
    nodes, weights = np.polynomial.legendre.leggauss(int(n_alpha))
    alphas = jnp.asarray((nodes + 1) / 2, acts[0].dtype)
    w = jnp.asarray(weights / 2, acts[0].dtype)
    edges = []
    for i in range(len(acts) - 1):
        F = _feature_map(sections, model, basis, i)
        jac = jax.jacrev(F)

        def attribution(feats, jac=jac):
            grads = jax.vmap(lambda a: jac(a * feats))(alphas)  # (n_alpha, d_next, d)
            A = jnp.tensordot(w, grads, axes=1) * feats[None, :]
            return A ** 2
        E = _chunked_mean(attribution, basis._features(i, acts[i]), batch_size)
        edges.append(E * basis.kept[i + 1][:, None] * basis.kept[i][None, :])
    return edges


def edges_for_mass(edges, share: float = 0.9):
    """How many of the largest edges of one block (any shape) carry ``share`` of its total.

    A float scalar (a whole number), so that edges holding NaN or inf under a trace can give
    NaN rather than a count; concrete ones are refused."""
    if isinstance(share, bool) or not isinstance(share, (int, float, np.floating)) or not 0 < share <= 1:
        raise ConfigError("share", share, "must be a number in (0, 1]")
    _refuse_non_finite(edges, "edges")
    e = jnp.sort(jnp.ravel(jnp.asarray(edges)))[::-1]
    total = e.sum()
    csum = jnp.cumsum(e)
    count = jnp.where(total > 0, jnp.sum(csum < share * total * (1 - 1e-7)) + 1, 0)
    out = jnp.result_type(e.dtype, jnp.float32)
    return jnp.where(jnp.all(jnp.isfinite(e)), count.astype(out), jnp.nan)


# ----------------------------------------------------------------------------- ablations


def output_scores(outputs, labels):
    """(accuracy, loss) of model outputs (n, c): integer labels (n,) → argmax accuracy and
    mean cross-entropy; float targets (n, c) → accuracy NaN and the mean squared error.
    Both NaN when traced outputs or targets hold NaN or inf (concrete ones are refused)."""
    _refuse_non_finite(outputs, "outputs")
    _refuse_non_finite(labels, "labels")
    outputs, labels = jnp.asarray(outputs), jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        logp = jax.nn.log_softmax(outputs.astype(jnp.float32), axis=-1)
        loss = -jnp.mean(jnp.take_along_axis(logp, labels[:, None], axis=-1))
        # argmax picks a NaN entry as readily as the largest, which would look like an answer.
        finite = jnp.all(jnp.isfinite(outputs))
        accuracy = jnp.mean(jnp.argmax(outputs, axis=-1) == labels)
        return jnp.where(finite, accuracy, jnp.nan), jnp.where(finite, loss, jnp.nan)
    finite = jnp.all(jnp.isfinite(outputs)) & jnp.all(jnp.isfinite(labels))
    loss = jnp.mean(jnp.sum((outputs - labels) ** 2, axis=-1))
    return jnp.asarray(jnp.nan, jnp.float32), jnp.where(finite, loss, jnp.nan)


def _check_labels(labels, n, out_dim):
    _refuse_non_finite(labels, "labels")
    labels = jnp.asarray(labels)
    if jnp.issubdtype(labels.dtype, jnp.integer):
        ok = labels.shape == (n,)
    else:
        ok = labels.shape == (n, out_dim)
    if not ok:
        raise ConfigError("labels", described(f"shape {labels.shape}"),
                          f"must be integer class labels ({n},) or float targets ({n}, {out_dim})")
    return labels


def _check_layer(sections, layer, last_ok=False):
    top = len(sections) - (1 if last_ok else 2)
    if isinstance(layer, bool) or not isinstance(layer, (int, np.integer)) or not 0 <= layer <= top:
        raise ConfigError("layer", layer, f"must be a node layer index in 0..{top} ({', '.join(sections.names)})")
    return int(layer)


def _check_ks(ks, n):
    if is_traced(ks):  # traced (inside jit): only the shape can be checked
        if ks.ndim != 1:
            raise ConfigError("ks", described(f"shape {ks.shape}"), "must be a 1-D array of counts")
        return ks
    ks = np.atleast_1d(np.asarray(ks))
    if ks.ndim != 1 or not np.issubdtype(ks.dtype, np.integer) or ks.size == 0 or ks.min() < 0 or ks.max() > n:
        raise ConfigError("ks", described(f"{ks.size} value(s)"), f"must be integers in 0..{n}")
    return jnp.asarray(ks)


def feature_ablation(sections: Sections, model, inputs, labels, basis: Basis, layer: int, ks,
                     batch_size: int | None = None):
    """Keep the top-k features (by importance) of node layer ``layer`` and zero the rest
    (for centred features: the mean activation along them), for each k of ``ks``; run the
    rest of the model. Returns (accuracy, loss), each (len(ks),)."""
    _check_basis(sections, basis)
    layer = _check_layer(sections, layer, last_ok=True)
    inputs = sections._check(inputs)
    acts = sections.activations(model, inputs, batch_size)
    labels = _check_labels(labels, acts[0].shape[0], acts[-1].shape[-1])
    d = acts[layer].shape[-1]
    ks = _check_ks(ks, d)
    feats = basis._features(layer, acts[layer])

    def score(k):
        keep = (jnp.arange(d) < k) & basis.kept[layer]
        a = basis._reconstruct(layer, feats * keep)
        out = jax.vmap(lambda x: sections._forward(model, x, layer))(a)
        return output_scores(out, labels)
    return jax.lax.map(score, ks)


def edge_ablation(sections: Sections, model, inputs, labels, basis: Basis, edges, layer: int, ks,
                  batch_size: int | None = None):
    """Keep the k largest edges of the block from node layer ``layer`` to the next (``edges``
    from :func:`interaction_graph`, that block's (d_{l+1}, d_l) array), for each k of ``ks``:
    every feature j of layer l+1 is computed from the features i of layer l with a kept
    edge (i, j), the others at their baseline 0; the rest of the model runs as usual.
    Returns (accuracy, loss), each (len(ks),)."""
    _check_basis(sections, basis)
    layer = _check_layer(sections, layer)
    inputs = sections._check(inputs)
    acts = sections.activations(model, inputs, batch_size)
    labels = _check_labels(labels, acts[0].shape[0], acts[-1].shape[-1])
    edges = jnp.asarray(_refuse_non_finite(edges, "edges"))
    d, d_next = acts[layer].shape[-1], acts[layer + 1].shape[-1]
    if edges.shape != (d_next, d):
        raise ConfigError("edges", described(f"shape {edges.shape}"), f"must be the block's ({d_next}, {d}) edges")
    ks = _check_ks(ks, d * d_next)
    order = jnp.argsort(-edges.ravel())
    rank = jnp.empty_like(order).at[order].set(jnp.arange(order.size)).reshape(edges.shape)
    F = _feature_map(sections, model, basis, layer)
    feats = basis._features(layer, acts[layer])

    def next_features(x, keep):  # x (d,), keep (d_next, d) → (d_next,)
        return jax.vmap(lambda j, m: F(x * m)[j])(jnp.arange(d_next), keep)

    # NaN edges (traced) would leave which edges are kept arbitrary, yet the outputs finite.
    edges_finite = jnp.all(jnp.isfinite(edges))

    def score(k):
        keep = rank < k
        nf = _map_examples(lambda x: next_features(x, keep), feats, batch_size)
        a = basis._reconstruct(layer + 1, nf * basis.kept[layer + 1])
        out = jax.vmap(lambda x: sections._forward(model, x, layer + 1))(a)
        return tuple(jnp.where(edges_finite, v, jnp.nan) for v in output_scores(out, labels))
    return jax.lax.map(score, ks)


def fewest_kept(score: Callable, n: int, ok: Callable) -> int:
    """The smallest k in 0..n with ``ok(score(k))`` by bisection, assuming that keeping more
    never turns a pass into a fail (checked at n: if ``ok(score(n))`` fails, returns n + 1).
    ``score(k)`` may be any host function (e.g. one point of :func:`edge_ablation`)."""
    if not ok(score(n)):
        return n + 1
    lo, hi = -1, n  # ok fails at lo (or lo is below the range), holds at hi
    while hi - lo > 1:
        mid = (lo + hi) // 2
        if ok(score(mid)):
            hi = mid
        else:
            lo = mid
    return hi


# ----------------------------------------------------------------------------- modules of the graph


def _adjacency(edges):
    """The symmetric adjacency (N, N) of the whole graph, nodes layer by layer, and the
    offsets of each layer's block."""
    sizes = [np.asarray(edges[0]).shape[1]] + [np.asarray(e).shape[0] for e in edges]
    offsets = np.concatenate([[0], np.cumsum(sizes)])
    A = np.zeros((offsets[-1], offsets[-1]))
    for l, e in enumerate(edges):
        e = np.asarray(e, np.float64)
        A[offsets[l + 1]:offsets[l + 2], offsets[l]:offsets[l + 1]] = e
    return A + A.T, offsets


def _check_edges(edges):
    if not isinstance(edges, (list, tuple)) or not edges:
        raise ConfigError("edges", described(type(edges).__name__), "must be a non-empty list of per-block edge arrays")
    for l, (a, b) in enumerate(zip(edges, edges[1:])):
        if np.asarray(a).shape[0] != np.asarray(b).shape[1]:
            raise ConfigError("edges", described(f"blocks of shapes {[np.asarray(e).shape for e in edges]}"),
                              "must chain: block l's rows are block l+1's columns")
    _refuse_non_finite_tree({f"block {l}": np.asarray(e) for l, e in enumerate(edges)}, "edges")
    for e in edges:
        if np.asarray(e).ndim != 2 or np.any(np.asarray(e) < 0):
            raise ConfigError("edges", described("an entry that is negative or a block not 2-D"),
                              "must be non-negative finite 2-D arrays")


def _kmeans(X, k, seed, restarts=8, iters=100):
    rng = np.random.default_rng(seed)
    best, best_cost = None, np.inf
    for _ in range(restarts):
        # k-means++ start
        centres = [X[rng.integers(len(X))]]
        for _ in range(1, k):
            d2 = np.min(((X[:, None, :] - np.asarray(centres)[None]) ** 2).sum(-1), axis=1)
            p = d2 / d2.sum() if d2.sum() > 0 else None
            centres.append(X[rng.choice(len(X), p=p)])
        centres = np.asarray(centres)
        for _ in range(iters):
            labels = np.argmin(((X[:, None, :] - centres[None]) ** 2).sum(-1), axis=1)
            new = np.asarray([X[labels == c].mean(0) if np.any(labels == c) else centres[c] for c in range(k)])
            if np.allclose(new, centres):
                break
            centres = new
        cost = ((X - centres[labels]) ** 2).sum()
        if cost < best_cost:
            best, best_cost = labels, cost
    return best


def graph_modules(edges, n_modules: int | None = None, *, method: str = "spectral", min_weight: float = 0.0,
                  seed: int = 0) -> list:
    """Modules of the interaction graph: a label per feature, one int array per node layer
    (-1 for a feature with no edge above ``min_weight``, which is left out).

    ``method="spectral"``: the ``n_modules`` leading eigenvectors of the normalised adjacency
    D^-½ A D^-½ (A symmetric, edge weights), rows normalised, k-means (k-means++, 8 restarts).
    ``method="leiden"``: Leiden community detection maximising weighted modularity
    (``pip install leidenalg``; ``n_modules`` is ignored)."""
    _check_edges(edges)
    if method not in CLUSTER_METHODS:
        raise ConfigError("method", method, f"must be one of {', '.join(CLUSTER_METHODS)}")
    if method == "spectral" and (isinstance(n_modules, bool) or not isinstance(n_modules, (int, np.integer))
                                 or n_modules < 1):
        raise ConfigError("n_modules", n_modules, "must be a positive integer (the modules to find)")
    A, offsets = _adjacency(edges)
    A = np.where(A > min_weight, A, 0.0)
    alive = A.sum(1) > 0
    idx = np.flatnonzero(alive)
    labels = np.full(A.shape[0], -1)
    if idx.size:
        sub = A[np.ix_(idx, idx)]
        if method == "spectral":
            if isinstance(n_modules, bool) or not isinstance(n_modules, (int, np.integer)) or not 1 <= n_modules <= idx.size:
                raise ConfigError("n_modules", n_modules, f"must be an integer in 1..{idx.size} (the connected features)")
            d = sub.sum(1)
            S = sub / np.sqrt(np.outer(d, d))
            w, v = np.linalg.eigh(S)
            X = v[:, -int(n_modules):]
            X = X / np.maximum(np.linalg.norm(X, axis=1, keepdims=True), 1e-300)
            labels[idx] = _kmeans(X, int(n_modules), seed)
        else:
            try:
                import igraph
                import leidenalg
            except ImportError as e:
                raise ImportError("method='leiden' needs leidenalg: pip install leidenalg") from e
            rows, cols = np.nonzero(np.triu(sub))
            g = igraph.Graph(n=idx.size, edges=list(zip(rows.tolist(), cols.tolist())))
            part = leidenalg.find_partition(g, leidenalg.ModularityVertexPartition, weights=sub[rows, cols].tolist(),
                                            seed=seed)
            labels[idx] = np.asarray(part.membership)
    return [labels[offsets[l]:offsets[l + 1]] for l in range(len(offsets) - 1)]


def _flat_labels(edges, labels):
    _check_edges(edges)
    A, offsets = _adjacency(edges)
    if not isinstance(labels, (list, tuple)) or len(labels) != len(offsets) - 1 or any(
            np.asarray(lab).shape != (offsets[l + 1] - offsets[l],) for l, lab in enumerate(labels)):
        raise ConfigError("labels", described(f"{len(labels) if isinstance(labels, (list, tuple)) else type(labels).__name__}"),
                          "must be one label array per node layer, as graph_modules returns")
    # A NaN label compares False with everything, so it would be left out like -1.
    _refuse_non_finite_tree({f"layer {l}": np.asarray(lab) for l, lab in enumerate(labels)}, "labels")
    return A, np.concatenate([np.asarray(lab) for lab in labels])


def modularity(edges, labels) -> float:
    """Newman's weighted modularity Q = Σ_c [W_cc/W − (d_c/W)²] of the interaction graph
    under ``labels`` (W: total edge weight counted both ways; features labelled -1 left out):
    0 for a partition no better than chance, up to 1 − 1/k for k disconnected modules."""
    A, lab = _flat_labels(edges, labels)
    keep = lab >= 0
    A, lab = A[np.ix_(keep, keep)], lab[keep]
    W = A.sum()
    if W <= 0:
        return 0.0
    q = 0.0
    for c in np.unique(lab):
        m = lab == c
        q += A[np.ix_(m, m)].sum() / W - (A[m].sum() / W) ** 2
    return float(q)


def cross_module_share(edges, labels) -> float:
    """The share of the graph's edge weight between features of different modules (the
    quantity the degeneracy paper's modularity argument needs small: modules whose
    interactions are weak contribute their degeneracies independently)."""
    A, lab = _flat_labels(edges, labels)
    keep = lab >= 0
    A, lab = A[np.ix_(keep, keep)], lab[keep]
    W = A.sum()
    return float(A[lab[:, None] != lab[None, :]].sum() / W) if W > 0 else 0.0


# ----------------------------------------------------------------------------- Fourier labels


def fourier_labels(values, p: int) -> dict:
    """Each direction's function on Z_p × Z_p split into Fourier terms by share of power.

    ``values`` (p, p, n): n functions over the inputs (a, b) (e.g. features over
    ``fourier.grid_tokens(p)`` reshaped). Returns arrays of shares (they sum to 1 per
    direction): ``const`` (n,); ``unary`` (n, K): cos/sin(k a) and cos/sin(k b) terms;
    ``sum`` (n, K): cos/sin(k(a+b)); ``difference`` (n, K): cos/sin(k(a−b)); ``product``
    (n,): every other product cos/sin(k₁a)·cos/sin(k₂b), k₁ ≠ k₂. K = ⌊p/2⌋, index k−1 for
    frequency k (for even p, k = p/2 is cos(πx), whose product cos πa·cos πb is filed as the
    sum). Pure jnp: vmaps over models; traced values holding NaN or inf give NaN shares."""
    from . import fourier as fa

    values = jnp.asarray(_refuse_non_finite(values, "values"))
    if values.ndim != 3 or values.shape[:2] != (p, p):
        raise ConfigError("values", described(f"shape {values.shape}"), f"must be (p, p, n) = ({p}, {p}, n)")
    coeffs = fa.fourier_2d(values.astype(jnp.float32), p)  # (p, p, n); rows const, cos1, sin1, ...
    power = coeffs ** 2
    total = jnp.maximum(power.sum((0, 1)), 1e-30)
    K = (p - 1) // 2
    cos_i = 1 + 2 * jnp.arange(K)
    sin_i = cos_i + 1
    const = power[0, 0]
    unary = (power[cos_i, 0] + power[sin_i, 0] + power[0, cos_i] + power[0, sin_i])
    cc, ss = coeffs[cos_i, cos_i], coeffs[sin_i, sin_i]
    cs, sc = coeffs[cos_i, sin_i], coeffs[sin_i, cos_i]
    # cos k(a+b) = cc − ss, sin k(a+b) = sc + cs; cos k(a−b) = cc + ss, sin k(a−b) = sc − cs
    plus = ((cc - ss) ** 2 + (sc + cs) ** 2) / 2
    minus = ((cc + ss) ** 2 + (sc - cs) ** 2) / 2
    if p % 2 == 0:  # the Nyquist row cos(πx), k = p/2: cos π(a+b) = cos π(a−b) = cos πa·cos πb, filed as a sum
        ny = p - 1
        unary = jnp.concatenate([unary, (power[ny, 0] + power[0, ny])[None]])
        plus = jnp.concatenate([plus, power[ny, ny][None]])
        minus = jnp.concatenate([minus, jnp.zeros_like(minus[:1])])
    rest = total - const - unary.sum(0) - plus.sum(0) - minus.sum(0)
    return {"const": const / total, "unary": unary / total, "sum": plus / total, "difference": minus / total,
            "product": jnp.maximum(rest, 0.0) / total}


def label_names(labels: dict, top: int = 1) -> list:
    """A readable label per direction from :func:`fourier_labels`: its largest term(s) with
    their share, e.g. "cos(14(a+b)) 0.93"."""
    _refuse_non_finite_tree(labels, "labels")
    names = []
    n = np.asarray(labels["const"]).shape[0]
    for j in range(n):
        terms = [("const", float(labels["const"][j])), ("products k₁≠k₂", float(labels["product"][j]))]
        for kind, fmt in (("unary", "cos({k}a)+cos({k}b)"), ("sum", "cos({k}(a+b))"), ("difference", "cos({k}(a−b))")):
            col = np.asarray(labels[kind])[:, j]
            for k in np.argsort(-col)[:3]:
                terms.append((fmt.format(k=k + 1), float(col[k])))
        terms.sort(key=lambda t: -t[1])
        names.append(", ".join(f"{t} {s:.2f}" for t, s in terms[:top]))
    return names
