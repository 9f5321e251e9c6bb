"""The three degeneracies of Bushnaq et al. (2024, "Using degeneracy in the loss landscape for
mechanistic interpretability"), read off one layer z = W x + b at a time on a data set: linear
dependence among the layer's inputs, among the gradients passed back to it, and ReLUs that
fire on exactly the same inputs — each counted as the parameter directions it frees.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..core.precision import cast_compute, check_precision, precision_scope
from ._validate import finite_tree
from ._validate import positive as _positive

__all__ = ["activation_nullity", "jacobian_nullity", "synchronized_relus", "layer_degeneracy", "mlp_degeneracy"]

# Bushnaq et al. 2024 ("Using degeneracy in the loss landscape for mechanistic
# interpretability"): directions in parameter space that leave the network's outputs on the
# data unchanged, read off one layer z = W x + b at a time. Each count of freed directions
# below follows from the linear algebra of that layer on the data set:
#   - a null vector v of the Gram matrix of [x; 1] (v·[x; 1] = 0 on every input) lets W' =
#     W + u vᵀ for any u: d_out directions per null vector;
#   - a null vector u of E[JᵀJ], J = ∂(outputs)/∂z (the outputs do not move when z moves
#     along u), lets W' = W + u wᵀ for any w: d_in + 1 directions per null vector (to first
#     order), less the n_act·n_jac directions both of the above already count;
#   - k ReLUs that fire on exactly the same inputs act on the data as one linear map of
#     width k, so mixing them by a k×k matrix near the identity (beyond the k rescalings every
#     ReLU has) keeps the outputs: k² − k directions per group. A neuron that never fires
#     is a group of its own: its fan-in and bias (d_in + 1) and its fan-out are all free.


def _nullity(gram, tol):
    """(count of eigenvalues within ``tol``·max |eigenvalue| of 0, eigenvalues). ``tol`` None:
    100 machine epsilons of the Gram's dtype — the rounding of a float32 Gram and its eigh
    reaches ~10 eps of the largest eigenvalue, so 1e-6 would call a null direction alive."""
    tol = 100 * float(jnp.finfo(gram.dtype).eps) if tol is None else _positive("tol", tol)
    ev = jnp.linalg.eigvalsh(gram)
    top = jnp.max(jnp.abs(ev))
    return jnp.sum(jnp.abs(ev) <= tol * jnp.where(top > 0, top, 1.0)), ev


def _gram(a, b, spec, precision):
    """The einsum ``spec`` of ``a`` and ``b`` under the policy: HIGHEST ("float32"), DEFAULT
    ("tf32"), or bfloat16 operands accumulated into float32 ("bfloat16"), in the operands'
    float32 dtype in every case."""
    dtype = jnp.result_type(a, b)
    with precision_scope(precision):
        a, b = cast_compute((a, b), precision)
        return jnp.einsum(spec, a, b, preferred_element_type=dtype)


def activation_nullity(inputs, tol: float | None = None, precision: str = "float32"):
    """(nullity, eigenvalues) of the Gram matrix of a layer's inputs with the bias folded in:
    ``inputs`` (n, d_in) → the number of directions v with v·[x; 1] = 0 on every input (to the
    relative tolerance ``tol`` of the largest eigenvalue; default 100 epsilons of the dtype).
    ``precision``: the Gram's matrix-product policy (:mod:`toylab.core.precision`; "float32",
    HIGHEST, by default: a fast mode's rounding reads null directions as alive)."""
    precision = check_precision(precision)
    x = jnp.asarray(inputs)
    if x.ndim != 2:
        raise ConfigError("inputs", described(f"shape {x.shape}"), "must be (n, d_in): one row per input")
    finite_tree("inputs", x)
    xa = jnp.concatenate([x, jnp.ones((x.shape[0], 1), x.dtype)], axis=1)
    return _nullity(_gram(xa, xa, "ni,nj->ij", precision) / x.shape[0], tol)


def jacobian_nullity(jacobians, tol: float | None = None, precision: str = "float32"):
    """(nullity, eigenvalues) of E[JᵀJ] for ``jacobians`` (n, d_outputs, d_layer), each the
    Jacobian of the network's outputs with respect to the layer's pre-activations on one
    input: the directions of the layer the outputs never respond to. ``precision`` as
    :func:`activation_nullity`."""
    precision = check_precision(precision)
    J = jnp.asarray(jacobians)
    if J.ndim != 3:
        raise ConfigError("jacobians", described(f"shape {J.shape}"), "must be (n, d_outputs, d_layer)")
    finite_tree("jacobians", J)
    return _nullity(_gram(J, J, "noi,noj->ij", precision) / J.shape[0], tol)


def synchronized_relus(preactivations):
    """Groups of ReLUs that fire on exactly the same inputs: ``preactivations`` (n, k) →
    (group sizes of the neurons that fire somewhere but share their firing set with another,
    the number of neurons that never fire). Concrete arrays (numpy), not traced."""
    z = np.asarray(preactivations)
    if z.ndim != 2:
        raise ConfigError("preactivations", described(f"shape {z.shape}"), "must be (n, k): one row per input")
    finite_tree("preactivations", z)
    fires = z > 0
    dead = int(np.sum(~fires.any(axis=0)))
    groups: dict[bytes, int] = {}
    for j in np.flatnonzero(fires.any(axis=0)):
        key = np.packbits(fires[:, j]).tobytes()
        groups[key] = groups.get(key, 0) + 1
    return sorted((s for s in groups.values() if s > 1), reverse=True), dead


def layer_degeneracy(inputs, preactivations, jacobians, *, relu: bool = True, fan_out: int | None = None,
                     tol: float | None = None, precision: str = "float32") -> dict:
    """The three degeneracies of one layer z = W x + b on a data set, each as the number of
    parameter directions of (W, b) — and, for dead neurons, of the next layer's weights —
    that it frees (see the comment above for why each count is what it is).

    Args:
        inputs: (n, d_in) the layer's inputs x.
        preactivations: (n, d_layer) z.
        jacobians: (n, d_outputs, d_layer) ∂outputs/∂z on each input.
        relu: whether z feeds ReLUs (for the synchronised-firing count).
        fan_out: outputs each neuron feeds (a dead neuron's fan-out is free too); default 0.
        tol: relative eigenvalue tolerance of the two null spaces (default: 100 machine
            epsilons of the arrays' dtype, 1.2e-5 for float32).
        precision: the Grams' matrix-product policy (:mod:`toylab.core.precision`).
    Returns:
        dict: nullities (activation, jacobian), freed directions of each kind, the
        synchronised groups' sizes, dead neurons, and the total.
    """
    x = jnp.asarray(inputs)
    d_in, d_layer = x.shape[1], jnp.shape(preactivations)[1]
    n_act, _ = activation_nullity(x, tol, precision)
    n_jac, _ = jacobian_nullity(jacobians, tol, precision)
    n_act, n_jac = int(n_act), int(n_jac)
    freed_act = n_act * d_layer
    freed_jac = n_jac * (d_in + 1) - n_act * n_jac
    groups, dead = synchronized_relus(preactivations) if relu else ([], 0)
    freed_sync = sum(k * k - k for k in groups)
    freed_dead = dead * (d_in + 1 + (fan_out or 0))
    return {"activation_nullity": n_act, "jacobian_nullity": n_jac, "sync_groups": groups, "dead": dead,
            "freed_activation": freed_act, "freed_jacobian": freed_jac, "freed_sync": freed_sync,
            "freed_dead": freed_dead, "freed_total": freed_act + freed_jac + freed_sync + freed_dead,
            "parameters": d_layer * (d_in + 1)}


def mlp_degeneracy(model, tokens, tol: float | None = None, precision: str = "float32") -> dict:
    """:func:`layer_degeneracy` of the dense ReLU layer a model declares
    (``model.dense_layer()``, :class:`toylab.models.DenseLayer`) on its examples ``tokens``:
    the embedding MLPs' hidden layer (inputs: the one-hot or embedded operands), the
    transformer's last MLP (inputs: the residual stream at the answer position), or the
    layer of a model of your own that declares one. ``precision``: the matrix-product policy
    of the layer's inputs, pre-activations, Jacobians and Grams (:mod:`toylab.core.precision`)."""
    from ..models import DenseLayer

    precision = check_precision(precision)
    with precision_scope(precision):
        return _mlp_degeneracy(model, tokens, tol, precision)


def _mlp_degeneracy(model, tokens, tol, precision):
    from ..models import DenseLayer

    get = getattr(model, "dense_layer", None)
    if not callable(get):
        raise ConfigError("model", described(f"a {type(model).__name__}"),
                          "must declare its dense layer (a dense_layer() method returning toylab.models.DenseLayer)")
    layer = get()
    if not isinstance(layer, DenseLayer):
        raise ConfigError("model", described(f"a {type(model).__name__} whose dense_layer() gave a "
                                             f"{type(layer).__name__}"), "dense_layer() must return a DenseLayer")
    if layer.activation != "relu":
        raise ConfigError("model", described(f"a {layer.activation} MLP"), "the synchronised-firing count needs ReLU neurons")
    tokens = jnp.asarray(tokens)
    finite_tree("tokens", tokens)
    maps = getattr(model, "layer_maps", None)
    check = maps().check_inputs if callable(maps) else None
    problem = check(tokens) if check is not None else None
    if problem:  # e.g. tokens out of range, which a gather would clamp silently
        raise ConfigError("tokens", described(f"shape {tokens.shape}"), problem)
    W, bias = layer.weight(model), layer.bias(model)
    x = jax.vmap(lambda t: layer.read(model, t))(tokens)
    if x.ndim != 2 or x.shape[1] != W.shape[1]:
        raise ConfigError("tokens", described(f"shape {tokens.shape}"),
                          f"must be a batch of the model's examples (its layer reads {W.shape[1]} inputs each)")
    z = x @ W.T + (0.0 if bias is None else bias)
    J = jax.vmap(jax.jacrev(lambda zz: layer.head(model, zz)))(z)
    return layer_degeneracy(x, z, J, relu=True, fan_out=0, tol=tol, precision=precision)
