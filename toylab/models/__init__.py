"""Models: one module per family; equinox Modules with weights named as the papers name them.

Analyses read a model through what it declares of itself, never by checking its class:

- :class:`PairModel`: the pieces of a binary-operation model (embeddings, neurons, unembedding).
- :class:`LayeredModel`: its node layers and the maps between them (:class:`LayerMaps`), read
  by the interaction basis (:mod:`toylab.analysis.interaction`) and by a dictionary reading
  one of its layers; optionally its dense ReLU layer (:class:`DenseLayer`, for the layer
  degeneracies) and its known features at a layer (``known_features``).
- :class:`HeadedModel`: its attention heads (patterns, OV and QK circuits, the mask of one
  head's or one layer's weights), read by :mod:`toylab.analysis.heads` and by the
  weight-refined LLC.
- non-trainable state: a model lists the fields it updates without gradients in the class
  attribute ``state_fields``; :func:`split_state` / :func:`merge_state` take them apart, so
  an optimizer, an LLC chain or a Hessian sees the trained arrays alone.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, Protocol, runtime_checkable

import equinox as eqx

__all__ = ["PairModel", "LayeredModel", "HeadedModel", "LayerMaps", "DenseLayer", "layer_maps", "state_fields", "split_state",
           "merge_state"]


@runtime_checkable
class PairModel(Protocol):
    """What the analyses of a binary operation (tokens [a, b, =], modular arithmetic or a
    group) read of a model, so they never look inside a particular architecture. The
    one-layer transformer and the embedding MLPs implement it; a model of your own that does
    works with :mod:`toylab.analysis.fourier` and :mod:`toylab.analysis.representations`.
    """

    W_L: Any  # (n_out, n_neurons): each neuron's direct effect on the logits

    @property
    def n_operands(self) -> int: ...  # values each of a and b takes

    @property
    def n_neurons(self) -> int: ...

    def operand_embeddings(self) -> tuple[Any, Any]: ...  # (left, right), (d, n_operands) each

    def neuron_inputs(self) -> tuple[Any, Any] | None: ...  # per-neuron weights on a and b, if any

    def unembedding(self) -> Any: ...  # (n_out, d)

    def without_neurons(self, keep) -> "PairModel": ...  # neurons where keep is false cut off


@dataclasses.dataclass(frozen=True)
class LayerMaps:
    """A model cut into pure functions between its node layers.

    ``names``: the node layers, input to output. ``embed(model, example) -> vector``: the
    first node layer's activation for one example. ``steps[i](model, vector) -> vector``:
    node layer i+1 from node layer i. ``check_inputs(inputs) -> None or what is wrong`` with
    a batch of examples (optional). ``extras``: further layers a dictionary may read, each
    ``(name, after, read)`` with ``read(model, acts) -> (n, d)`` from the (n, d) activations
    of node layer ``after`` (a transformer's MLP neurons, read from ``resid_mid.i``); listed
    right after ``after``. The model is an argument of every function, not captured, so one
    LayerMaps serves a whole vmapped stack of models."""

    names: tuple
    embed: Callable
    steps: tuple
    check_inputs: Callable | None = None
    extras: tuple = ()

    def __post_init__(self):
        from ..core.config import ConfigError, described

        names, steps = tuple(self.names), tuple(self.steps)
        if len(names) < 2 or len(set(names)) != len(names) or not all(isinstance(n, str) and n for n in names):
            raise ConfigError("names", names, "must be at least two distinct non-empty strings")
        if len(steps) != len(names) - 1 or not all(callable(f) for f in steps):
            raise ConfigError("steps", described(f"{len(steps)} item(s)"),
                              f"must be {len(names) - 1} callables, one between each pair of node layers")
        if not callable(self.embed):
            raise ConfigError("embed", self.embed, "must be a callable (model, example) -> vector")
        extras = tuple(tuple(e) for e in self.extras)
        for e in extras:
            if len(e) != 3 or e[1] not in names or not callable(e[2]) or e[0] in names:
                raise ConfigError("extras", described(f"an entry {e[:2]}"),
                                  "must be (new name, a node layer name, read(model, acts) -> (n, d)) triples")
        object.__setattr__(self, "names", names)
        object.__setattr__(self, "steps", steps)
        object.__setattr__(self, "extras", extras)

    def readable(self) -> tuple:
        """The node layers and the extra layers, in model order."""
        out = []
        for name in self.names:
            out.append(name)
            out.extend(e[0] for e in self.extras if e[1] == name)
        return tuple(out)

    def activations(self, model, inputs, names=None) -> dict:
        """{name: (n, d) activations} of ``model`` on the examples ``inputs`` (n, ...) at the
        layers ``names`` (from :meth:`readable`; None: all), the model run only as far as the
        last of them. Inputs are checked by ``check_inputs`` where the values are known."""
        from ..core.config import ConfigError, described

        readable = self.readable()
        names = readable if names is None else ((names,) if isinstance(names, str) else tuple(names))
        unknown = [n for n in names if n not in readable]
        if unknown or not names:
            raise ConfigError("names", names, f"must be layers of the model: {', '.join(readable)}")
        problem = self.check_inputs(inputs) if self.check_inputs is not None else None
        if problem:
            raise ConfigError("inputs", described(f"shape {getattr(inputs, 'shape', None)}"), problem)
        extras = {e[0]: e for e in self.extras}
        node = lambda n: self.names.index(extras[n][1] if n in extras else n)  # noqa: E731
        last = max(node(n) for n in names)

        def one(x):
            acts = [self.embed(model, x)]
            for step in self.steps[:last]:
                acts.append(step(model, acts[-1]))
            return acts
        import jax

        acts = jax.vmap(one)(inputs)
        return {n: extras[n][2](model, acts[node(n)]) if n in extras else acts[node(n)] for n in names}


@dataclasses.dataclass(frozen=True)
class DenseLayer:
    """One dense layer z = W x + b of a model, as the layer degeneracies read it:
    ``read(model, example) -> x`` the layer's input for one example, ``weight(model)`` W
    (d_layer, d_in), ``bias(model)`` b (d_layer,) or None, ``head(model, z) -> outputs`` the
    rest of the network from the pre-activations, ``activation`` the nonlinearity's name."""

    read: Callable
    weight: Callable
    bias: Callable
    head: Callable
    activation: str = "relu"

    def __post_init__(self):
        from ..core.config import ConfigError

        for name in ("read", "weight", "bias", "head"):
            if not callable(getattr(self, name)):
                raise ConfigError(name, getattr(self, name), "must be a function of the model (see DenseLayer)")
        if not isinstance(self.activation, str):
            raise ConfigError("activation", self.activation, "must be the nonlinearity's name, e.g. 'relu'")


@runtime_checkable
class LayeredModel(Protocol):
    """A model the interaction basis, the layer degeneracies and the dictionaries can read.

    Required: ``layer_maps() -> LayerMaps``. Optional, looked up by name:
    ``dense_layer() -> DenseLayer`` (the layer :func:`toylab.analysis.degeneracy.mlp_degeneracy`
    reads); ``known_features(node, target_node, inputs) -> (directions, activations) or None``
    (the true features at a layer, for scoring a dictionary); ``state_fields`` (names of the
    fields updated without gradients)."""

    def layer_maps(self) -> LayerMaps: ...


@runtime_checkable
class HeadedModel(Protocol):
    """A model whose attention heads the analyses read (:mod:`toylab.analysis.heads`, the
    weight-refined LLC). The sequence transformers of :mod:`toylab.models.sequence`
    implement it; a model of your own that does works with those analyses.

    ``attention_patterns(inputs)``: (n_layers, n_heads, n, n) for one sequence, rows the
    queries. ``head_ov`` / ``head_qk``: (d_model, d_model) circuits of one head.
    ``token_embedding()``: (d_model, d_in); ``unembedding()``: (d_out, d_model).
    ``head_mask(layer, head)`` / ``layer_mask(layer)``: pytrees of bools like the model, True
    on that head's (that block's) weights. A layer or head out of range raises ConfigError."""

    n_layers: int
    n_heads: int

    def attention_patterns(self, inputs) -> Any: ...

    def head_ov(self, layer: int, head: int) -> Any: ...

    def head_qk(self, layer: int, head: int) -> Any: ...

    def token_embedding(self) -> Any: ...

    def unembedding(self) -> Any: ...

    def head_mask(self, layer: int, head: int) -> Any: ...

    def layer_mask(self, layer: int) -> Any: ...


def layer_maps(model) -> LayerMaps:
    """``model.layer_maps()``, checked; a model without one is refused by name."""
    from ..core.config import ConfigError, described

    get = getattr(model, "layer_maps", None)
    if not callable(get):
        raise ConfigError("model", described(f"a {type(model).__name__}"),
                          "must implement toylab.models.LayeredModel (a layer_maps() method); for another model "
                          "give Sections.from_functions(names, embed, maps)")
    maps = get()
    if not isinstance(maps, LayerMaps):
        raise ConfigError("model", described(f"a {type(model).__name__} whose layer_maps() gave a "
                                             f"{type(maps).__name__}"), "layer_maps() must return a LayerMaps")
    return maps


def state_fields(model) -> tuple:
    """The names of ``model``'s non-trainable state fields (``()`` for most models)."""
    names = getattr(type(model), "state_fields", ())
    return tuple(names) if isinstance(names, (tuple, list)) else ()


def _set_fields(model, values: dict):
    names = list(values)
    return eqx.tree_at(lambda m: [getattr(m, n) for n in names], model, [values[n] for n in names],
                       is_leaf=lambda x: x is None)


def split_state(model):
    """(model without its state, state): the state fields set to None in the first, and a
    dict {field: value} in the second ({} for a model without state)."""
    names = state_fields(model)
    if not names:
        return model, {}
    state = {n: getattr(model, n) for n in names}
    return _set_fields(model, dict.fromkeys(names)), state


def merge_state(model, state: dict):
    """The model with its state fields set from ``state`` (the inverse of :func:`split_state`)."""
    from ..core.config import ConfigError, described

    if not isinstance(state, dict):
        raise ConfigError("state", described(type(state).__name__), "must be a dict {state field: value}")
    if not state:
        return model
    unknown = sorted(set(state) - set(state_fields(model)))
    if unknown:
        raise ConfigError("state", described(f"fields {sorted(state)}"),
                          f"must name state fields of a {type(model).__name__} "
                          f"({', '.join(state_fields(model)) or 'it has none'})")
    return _set_fields(model, dict(state))
