"""Representation-theoretic analysis of networks trained on group composition (Chughtai et al.).

The group composition representation (GCR) algorithm: embeddings hold ρ(a) and ρ(b) for a
real irrep ρ, the hidden layer forms ρ(a∘b), the unembedding holds ρ(c⁻¹), and the logit of c
is ∝ tr ρ(a∘b∘c⁻¹) = χ_ρ(a∘b∘c⁻¹), largest at c = a∘b. The measures here ask how much of a
network is this, irrep by irrep:

- the character cube χ_ρ(a∘b∘c⁻¹) over all (a, b, c), built by one gather;
- logit similarity: cosine of the logits with each cube, both centred over c (the softmax
  ignores a constant per pair); the cubes of distinct irreps are orthogonal, so the squares
  add up to the share of logit variance the irreps explain;
- key irreps (similarity above a threshold), and when each first becomes key in training;
- the share of the embeddings and unembedding (functions of one element) and of the hidden
  activations (functions of the pair, through a∘b) lying in each irrep's span of matrix
  elements {g ↦ ρ(g)_ij}; these spans are orthogonal and fill R^G (Peter–Weyl);
- restricted and excluded loss: the logits projected onto, or with removed, the key irreps'
  functions of a∘b, per answer c.

Everything is computed with real irreps (:func:`toylab.groups.real_irreps`): a complex
conjugate pair counts as one irrep of twice the dimension, which for a cyclic group is the
frequency-k rotation, so the measures reduce to the Fourier analysis of
:mod:`toylab.analysis.fourier`. Functions taking arrays are pure jnp: ``jax.vmap`` them over
seeds and snapshots.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described
from ..models import PairModel
from ..groups import Group, real_irreps
from .fourier import cross_entropy, grid_logits, grid_neurons

__all__ = ["real_irreps_of", "irrep_labels", "irrep_dims", "composition_index", "character_cube", "character_cubes",
           "span_bases", "group_logits", "group_neurons", "logit_similarity", "key_irreps", "logit_variance_explained",
           "span_shares", "embedding_shares", "hidden_shares", "project_pair_functions", "restricted_logits",
           "excluded_logits", "composition_labels", "restricted_loss", "excluded_loss", "learning_order",
           "KEY_THRESHOLD"]

KEY_THRESHOLD = 0.1  # logit similarity above which an irrep counts as key (1% of logit variance)


def _check_group(g) -> Group:
    if not isinstance(g, Group):
        raise ConfigError("g", type(g).__name__, "must be a toylab.groups.Group")
    return g


@functools.lru_cache(maxsize=32)
def real_irreps_of(g: Group) -> tuple:
    """The group's real irreps (cached per Group object), trivial first."""
    return tuple(real_irreps(_check_group(g)))


def irrep_labels(g: Group) -> list[str]:
    return [r.name for r in real_irreps_of(g)]


def irrep_dims(g: Group) -> np.ndarray:
    return np.asarray([r.dim for r in real_irreps_of(g)])


def _reps(g: Group, reps):
    reps = real_irreps_of(_check_group(g)) if reps is None else tuple(reps)
    for r in reps:
        if r.matrices.shape[0] != g.order or np.iscomplexobj(r.matrices):
            raise ConfigError("reps", r.name, f"each irrep must hold one real matrix per element of {g.name} "
                                             f"({g.order}); use toylab.groups.real_irreps")
    return reps


def _characters(reps) -> np.ndarray:
    return np.stack([np.trace(r.matrices, axis1=1, axis2=2) for r in reps]).astype(np.float32)


# ----------------------------------------------------------------------------- character cubes


@functools.lru_cache(maxsize=8)
def composition_index(g: Group) -> np.ndarray:
    """(|G|, |G|, |G|) the element a∘b∘c⁻¹ at [a, b, c]: one gather ``mul[mul[a, b], inv[c]]``."""
    g = _check_group(g)
    index = g.mul[g.mul[:, :, None], g.inverse[None, None, :]]
    index.setflags(write=False)
    return index


def character_cube(g: Group, character) -> np.ndarray:
    """(|G|, |G|, |G|) χ(a∘b∘c⁻¹) for one character (|G|,), the gather χ[mul[mul[a, b], inv[c]]]
    done as a gather of whole rows: X[x, c] = χ(x∘c⁻¹) is |G|², and row a∘b of it is the
    cube's [a, b, :] (contiguous copies, and no |G|³ index array)."""
    character = np.asarray(character)
    if character.shape != (g.order,):
        raise ConfigError("character", described(f"array of shape {character.shape}"), f"must have shape ({g.order},)")
    return np.take(character[g.mul[:, g.inverse]], g.mul, axis=0)


def character_cubes(g: Group, reps=None) -> np.ndarray:
    """(n_irreps, |G|, |G|, |G|) the character cubes of the real irreps (|G|³ floats each: for
    S_6 use :func:`logit_similarity`, which never builds them)."""
    return np.stack([character_cube(g, chi) for chi in _characters(_reps(g, reps))])


# ----------------------------------------------------------------------------- logits


def group_logits(model, g: Group):
    """(|G|, |G|, |G|) logits [a, b, c] over every pair (a, b)."""
    return grid_logits(model, _check_group(g).order)


def group_neurons(model, g: Group):
    """(|G|, |G|, d) hidden activations (after the nonlinearity) over every pair."""
    return grid_neurons(model, _check_group(g).order)


def _fiber_sums(values, mul):
    """Σ over the pairs with a∘b = x of values[a, b, ...]: (|G|, ...) (``mul`` the table)."""
    n = mul.shape[0]
    flat = values.reshape(n * n, *values.shape[2:])
    return jax.ops.segment_sum(flat, mul.reshape(-1), num_segments=n)


@jax.jit
def _similarity(logits, mul, chi_xc, cube_norm):
    centred = logits - logits.mean(-1, keepdims=True)
    dots = jnp.einsum("xc,rxc->r", _fiber_sums(centred, mul), chi_xc)
    norm = jnp.sqrt(jnp.sum(centred ** 2))
    ok = cube_norm > 1e-6
    return jnp.where(ok, dots / (jnp.where(ok, cube_norm, 1.0) * jnp.maximum(norm, 1e-30)), 0.0)


@jax.jit
def _project(values, mul, B):
    """Fibre means over a∘b = x, projected onto B's columns, read back at a∘b."""
    fiber_mean = _fiber_sums(values, mul) / mul.shape[0]
    return jnp.tensordot(B, jnp.tensordot(B.T, fiber_mean, axes=1), axes=1)[mul]


def logit_similarity(logits, g: Group, reps=None):
    """(n_irreps,) cosine similarity of the logits [a, b, c] with each irrep's character cube,
    both centred over c (0 for the trivial irrep, whose centred cube vanishes).

    Never builds a cube: with F[x, c] the sums of the centred logits over the pairs with
    a∘b = x, ⟨L, χ(a∘b∘c⁻¹)⟩ = Σ_{x,c} F[x, c] χ(x∘c⁻¹), and the centred cube's norm² is
    |G|²·Σ_y (χ(y) − χ̄)² because c ↦ a∘b∘c⁻¹ is a bijection for each pair."""
    g = _check_group(g)
    reps = _reps(g, reps)
    n = g.order
    logits = jnp.asarray(logits, jnp.float32)
    if logits.shape != (n, n, n):
        raise ConfigError("logits", described(f"array of shape {logits.shape}"), f"must be ({n}, {n}, {n}): [a, b, c] for {g.name}")
    chi = _characters(reps)
    cube_norm = n * np.sqrt(((chi - chi.mean(1, keepdims=True)) ** 2).sum(1))  # (n_irreps,)
    chi_xc = chi[:, g.mul[:, g.inverse]]  # [r, x, c] = χ_r(x∘c⁻¹)
    return _similarity(logits, jnp.asarray(g.mul), jnp.asarray(chi_xc), jnp.asarray(cube_norm, jnp.float32))


def key_irreps(similarity, threshold: float = KEY_THRESHOLD):
    """Bool mask of the irreps whose logit similarity is above ``threshold``."""
    if not 0 < threshold < 1:
        raise ConfigError("threshold", threshold, "must be in (0, 1)")
    return jnp.asarray(similarity) > threshold


def logit_variance_explained(similarity, key=None):
    """Share of the centred logits' variance along the (key) irreps' cubes: Σ similarity²."""
    s = jnp.asarray(similarity) ** 2
    return jnp.sum(s if key is None else jnp.where(key, s, 0.0), axis=-1)


# ----------------------------------------------------------------------------- spans


@functools.lru_cache(maxsize=16)
def _span_bases_cached(g: Group) -> tuple:
    return tuple(_span_basis(r) for r in real_irreps_of(g))


def _span_basis(rep) -> np.ndarray:
    """(|G|, r) orthonormal basis of the span of g ↦ ρ(g)_ij."""
    m = rep.matrices.reshape(rep.matrices.shape[0], -1)
    u, s, _ = np.linalg.svd(m, full_matrices=False)
    rank = int((s > 1e-8 * s.max()).sum())
    return u[:, :rank]


def span_bases(g: Group, reps=None) -> list[np.ndarray]:
    """Per irrep, an orthonormal basis (|G|, r) of its matrix elements' span; the spans of the
    real irreps are orthogonal and together fill R^|G|."""
    if reps is None:
        return list(_span_bases_cached(_check_group(g)))
    return [_span_basis(r) for r in _reps(g, reps)]


def span_shares(W, g: Group, axis: int = -1, reps=None):
    """(n_irreps,) share of ‖W‖² in each irrep's span, W's ``axis`` (length |G|) being the group."""
    bases = span_bases(g, reps)
    W = jnp.asarray(W, jnp.float32)
    if isinstance(axis, bool) or not isinstance(axis, (int, np.integer)) or not -W.ndim <= axis < W.ndim:
        raise ConfigError("axis", axis, f"must be an axis of W (W has {W.ndim} dimensions)")
    W = jnp.moveaxis(W, axis, -1)
    if W.shape[-1] != g.order:
        raise ConfigError("W", described(f"array with {W.shape[-1]} entries along axis {axis}"), f"must have {g.order} ({g.name})")
    owner = np.concatenate([np.full(B.shape[1], i) for i, B in enumerate(bases)])
    return _shares(W, jnp.asarray(np.concatenate(bases, axis=1), jnp.float32), jnp.asarray(owner), len(bases))


@functools.partial(jax.jit, static_argnums=3)
def _shares(W, B, owner, n_irreps):
    coeffs = (W.reshape(-1, W.shape[-1]) @ B) ** 2  # (rows, |G|) in the irreps' bases
    return jax.ops.segment_sum(coeffs.sum(0), owner, num_segments=n_irreps) / jnp.maximum(jnp.sum(W ** 2), 1e-30)


def embedding_shares(model, g: Group, reps=None) -> dict:
    """Per irrep, the share of the left and right embeddings (their effect on the hidden layer)
    and of the unembedding in its span. MLP: W_in·W_E_left, W_in·W_E_right and W_out; a
    transformer: its token embedding W_E (one for a and b) and W_U."""
    _check_group(g)
    if not isinstance(model, PairModel):
        raise ConfigError("model", described(f"a {type(model).__name__}"), "must be a pair model (toylab.models.PairModel)")
    left, right = model.operand_embeddings()  # (d, |G|) each
    return {"left": span_shares(left, g, -1, reps), "right": span_shares(right, g, -1, reps),
            "unembed": span_shares(model.unembedding(), g, 0, reps)}  # (|G|, d)


def project_pair_functions(values, g: Group, bases):
    """Project functions of the pair (values[a, b, ...]) onto the functions of a∘b that lie in
    the span of ``bases`` (a list of (|G|, r) orthonormal bases): average each fibre
    {(a, b): a∘b = x}, project the result over x, read it back at a∘b."""
    values = jnp.asarray(values, jnp.float32)
    if not bases:
        return jnp.zeros_like(values)
    return _project(values, jnp.asarray(g.mul), jnp.asarray(np.concatenate(bases, axis=1), jnp.float32))


def hidden_shares(neurons, g: Group, reps=None):
    """(n_irreps,) share of the hidden activations' variance over the pairs (each neuron
    centred) that lies in each irrep's span of functions ρ(a∘b)_ij."""
    neurons = jnp.asarray(neurons, jnp.float32)
    n = g.order
    if neurons.shape[:2] != (n, n):
        raise ConfigError("neurons", described(f"array of shape {neurons.shape}"), f"must be ({n}, {n}, d) over pairs of {g.name}")
    centred = neurons - neurons.mean((0, 1), keepdims=True)
    total = jnp.maximum(jnp.sum(centred ** 2), 1e-30)
    shares = [jnp.sum(project_pair_functions(centred, g, [B]) ** 2) for B in span_bases(g, reps)]
    return jnp.stack(shares) / total


# ----------------------------------------------------------------------------- ablations


def _selected_bases(g: Group, key, reps, with_trivial: bool):
    key = np.asarray(key, bool)
    bases = span_bases(g, reps)
    if key.shape != (len(bases),):
        raise ConfigError("key", described(f"mask of shape {key.shape}"), f"must be ({len(bases)},), one entry per real irrep")
    chosen = [B for B, k in zip(bases, key) if k]
    if with_trivial and not key[0]:
        chosen = [bases[0]] + chosen  # the trivial irrep (constants) comes first
    return chosen


def restricted_logits(logits, g: Group, key, reps=None):
    """Logits [a, b, c] with only the key irreps' functions of a∘b (and the constant) kept, per c.
    ``key`` must be concrete (a numpy mask): it picks the projection."""
    return project_pair_functions(logits, g, _selected_bases(g, key, reps, with_trivial=True))


def excluded_logits(logits, g: Group, key, reps=None):
    """Logits with the key irreps' functions of a∘b removed, per c."""
    logits = jnp.asarray(logits, jnp.float32)
    return logits - project_pair_functions(logits, g, _selected_bases(g, key, reps, with_trivial=False))


def composition_labels(g: Group) -> np.ndarray:
    """(|G|, |G|) the answers a∘b."""
    return np.asarray(_check_group(g).mul)


_cross_entropy = jax.jit(cross_entropy)


def restricted_loss(logits, g: Group, key, reps=None):
    """Cross-entropy over every pair with only the key irreps' logit components."""
    return _cross_entropy(restricted_logits(logits, g, key, reps), composition_labels(g))


def excluded_loss(logits, g: Group, key, train_mask, reps=None):
    """Cross-entropy on the training pairs ((|G|, |G|) bool) with the key irreps' components removed."""
    return _cross_entropy(excluded_logits(logits, g, key, reps), composition_labels(g), jnp.asarray(train_mask))


def learning_order(similarity, steps, threshold: float = KEY_THRESHOLD):
    """When each irrep first becomes key: ``similarity`` (..., n_logs, n_irreps) over training
    (for example the ``sim/<irrep>`` metrics stacked), ``steps`` (n_logs,). Returns
    (..., n_irreps) the first step with similarity above ``threshold`` (and staying there to
    the end), or -1 for irreps never key at the end."""
    if not 0 < threshold < 1:
        raise ConfigError("threshold", threshold, "must be in (0, 1)")
    s = np.asarray(similarity)
    steps = np.asarray(steps)
    if s.ndim < 2 or s.shape[-2] != steps.shape[0]:
        raise ConfigError("steps", described(f"{steps.shape[0]} steps"), f"must match the similarity's log axis ({s.shape})")
    above = s > threshold
    # Staying above from step t on: reversed cumulative AND.
    stays = np.flip(np.logical_and.accumulate(np.flip(above, -2), axis=-2), -2)
    first = np.argmax(stays, axis=-2)
    return np.where(stays.any(-2), steps[first], -1)
