"""What attention heads do: previous-token, induction (prefix matching) and copying scores,
and the in-context learning score of a sequence model (Olsson et al. 2022).

A model is read through the headed-model protocol (:class:`toylab.models.HeadedModel`): its
``attention_patterns(inputs)`` (n_layers, n_heads, n, n), and for copying its
``head_ov(layer, head)``, ``token_embedding()`` and ``unembedding()``. Pattern scores are pure
and vmappable (over a batch, snapshots, seeds); the copying score is an eigendecomposition of
a non-symmetric matrix, computed on the host with numpy.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described

__all__ = ["previous_token_scores", "induction_targets", "induction_scores", "copying_scores", "token_losses",
           "position_losses", "icl_score", "head_scores", "head_labels"]


def _check_patterns(patterns):
    shape = jnp.shape(patterns)
    if len(shape) < 2 or shape[-1] != shape[-2] or shape[-1] < 2:
        raise ConfigError("patterns", described(f"shape {shape}"), "must end in (n, n) with n >= 2 positions")


def previous_token_scores(patterns):
    """(...) the mean attention of each query position i >= 1 on position i − 1, for
    patterns (..., n, n) (rows queries, columns keys). 1: a pure previous-token head."""
    _check_patterns(patterns)
    return jnp.mean(jnp.diagonal(patterns, offset=-1, axis1=-2, axis2=-1), axis=-1)


def induction_targets(tokens):
    """(n, n) bool: query i, key j is a prefix match, j − 1 < i holding the token at i (the
    key is the token after an earlier occurrence of the current one)."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 1 or tokens.shape[0] < 2:
        raise ConfigError("tokens", described(f"shape {tokens.shape}"), "must be one sequence (n,) with n >= 2")
    n = tokens.shape[0]
    i = jnp.arange(n)[:, None]
    j = jnp.arange(n)[None, :]
    before = jnp.concatenate([tokens[:1] * 0 - 1, tokens[:-1]])  # token at j − 1 (−1 at j = 0)
    return (j >= 1) & (j <= i) & (before[None, :] == tokens[:, None])


def induction_scores(patterns, tokens):
    """(...) each head's attention on prefix matches (:func:`induction_targets`), summed over
    the keys and averaged over the query positions that have one; patterns (..., n, n) for one
    sequence ``tokens`` (n,). On repeated random tokens an induction head scores near 1. NaN
    when no position has a match."""
    _check_patterns(patterns)
    target = induction_targets(tokens)
    if target.shape[-1] != jnp.shape(patterns)[-1]:
        raise ConfigError("tokens", described(f"{target.shape[-1]} tokens"),
                          f"must match the patterns' {jnp.shape(patterns)[-1]} positions")
    has = target.any(axis=1)
    per_query = jnp.sum(jnp.where(target, patterns, 0.0), axis=-1)
    count = jnp.sum(has)
    return jnp.where(count > 0, jnp.sum(jnp.where(has, per_query, 0.0), axis=-1) / jnp.maximum(count, 1), jnp.nan)


def head_scores(model, tokens):
    """{"previous_token": (n_layers, n_heads), "induction": (n_layers, n_heads)} of ``model``
    on a batch of sequences ``tokens`` (batch, n), averaged over the batch (vmappable over
    models: snapshots, seeds)."""
    tokens = jnp.asarray(tokens)
    if tokens.ndim != 2:
        raise ConfigError("tokens", described(f"shape {tokens.shape}"), "must be a batch of sequences (batch, n)")
    get = getattr(model, "attention_patterns", None)
    if not callable(get):
        raise ConfigError("model", described(f"a {type(model).__name__}"),
                          "must implement toylab.models.HeadedModel (attention_patterns(inputs))")
    patterns = jax.vmap(get)(tokens)  # (batch, L, H, n, n)
    prev = previous_token_scores(patterns).mean(0)
    ind = jax.vmap(induction_scores)(patterns, tokens)
    return {"previous_token": prev, "induction": jnp.nanmean(ind, axis=0)}


def head_labels(n_layers: int, n_heads: int) -> list[str]:
    """"L0H0", "L0H1", …: the heads in (layer, head) order."""
    return [f"L{layer}H{head}" for layer in range(n_layers) for head in range(n_heads)]


def copying_scores(model) -> np.ndarray:
    """(n_layers, n_heads) Σλ / Σ|λ| over the eigenvalues λ of each head's full OV circuit
    W_U^T W_O^h W_V^h W_E (tokens to logits): near 1 for a head that raises the logit of the
    token it attends to. Computed on the host (numpy's non-symmetric eigenvalues); the
    nonzero eigenvalues are those of the (d_model, d_model) product OV·W_E·W_U^T."""
    for name in ("head_ov", "token_embedding", "unembedding"):
        if not callable(getattr(model, name, None)):
            raise ConfigError("model", described(f"a {type(model).__name__}"),
                              f"must implement toylab.models.HeadedModel ({name})")
    W_E = np.asarray(model.token_embedding(), np.float64)
    W_U = np.asarray(model.unembedding(), np.float64)  # (d_out, d_model)
    if W_E.shape[1] != W_U.shape[0]:
        raise ConfigError("model", described(f"embedding {W_E.shape} and unembedding {W_U.shape}"),
                          "copying needs outputs over the input vocabulary (a token model)")
    out = np.zeros((model.n_layers, model.n_heads))
    for layer in range(model.n_layers):
        for head in range(model.n_heads):
            ov = np.asarray(model.head_ov(layer, head), np.float64)
            lam = np.linalg.eigvals(ov @ W_E @ W_U)
            total = np.abs(lam).sum()
            out[layer, head] = lam.real.sum() / total if total > 0 else np.nan
    return out


def token_losses(logits, tokens):
    """(batch, n − 1) the next-token cross-entropy of every sequence at every position:
    logits (batch, n, vocab) predicting tokens (batch, n) one position ahead."""
    logits, tokens = jnp.asarray(logits), jnp.asarray(tokens)
    if logits.ndim != 3 or tokens.shape != logits.shape[:2]:
        raise ConfigError("logits", described(f"shape {logits.shape} for tokens {tokens.shape}"),
                          "must be (batch, n, vocab) beside tokens (batch, n)")
    logp = jax.nn.log_softmax(logits[:, :-1].astype(jnp.float32), axis=-1)
    return -jnp.take_along_axis(logp, tokens[:, 1:, None], axis=-1)[..., 0]


def position_losses(logits, tokens):
    """(n − 1,) the next-token cross-entropy at each position, averaged over the batch:
    logits (batch, n, vocab) predicting tokens (batch, n) one position ahead."""
    return token_losses(logits, tokens).mean(0)


def icl_score(losses, early: int | None = None, late: int | None = None):
    """The in-context learning score: the loss at a late position minus the loss at an early
    one (Olsson et al.: token 500 against token 50 of 512). ``losses`` (..., m) per position;
    defaults: late the last, early the one a tenth of the way in (at least the first).
    Negative: later tokens are predicted better, from the context."""
    m = jnp.shape(losses)[-1]
    early = max(0, m // 10) if early is None else early
    late = m - 1 if late is None else late
    for name, v in (("early", early), ("late", late)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not 0 <= v < m:
            raise ConfigError(name, v, f"must be a position in 0..{m - 1}")
    if early >= late:
        raise ConfigError("early", early, f"must come before late={late}")
    return losses[..., late] - losses[..., early]
