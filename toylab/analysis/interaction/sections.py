"""A model cut at its node layers into pure functions between them (:class:`Sections`)."""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ...core.config import ConfigError, described
from ...models import layer_maps
from .._validate import _refuse_non_finite, _refuse_non_finite_tree

__all__ = ["Sections", "cut", "node_layers"]


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


def node_layers(model) -> tuple:
    """The node layers ``cut`` can cut ``model`` at, in order (input to output): the names of
    the model's :class:`~toylab.models.LayerMaps`."""
    return layer_maps(model).names


def cut(model, nodes=None) -> Sections:
    """``model`` cut at the node layers ``nodes`` (names from :func:`node_layers`, in order,
    at least two; None: all of them). The last is the model's output for the ablations.

    The model says where it can be cut (:class:`toylab.models.LayeredModel`). The lab's:
    Transformer: ``resid_pre.i`` (every position, flattened: attention reads them all),
    ``resid_mid.i`` and ``resid_post.{last}`` (from the last block on, the answer position
    only), ``logits``. EmbedMLP: ``input`` (one-hots or embeddings), ``mlp_post``, ``logits``.
    ToyModel: ``input``, ``hidden``, ``output``. BilinearClassifier: ``input``, ``resid.0``
    (with an embedding), ``hidden.i`` (non-residual blocks), ``resid.{i+1}``, ``logits``.
    A linen.Sequential FlaxModel: ``input``, ``layers.i``.
    """
    lm = layer_maps(model)
    names, embed, steps, check = lm.names, lm.embed, lm.steps, lm.check_inputs
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
