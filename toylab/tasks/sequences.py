"""Token sequences for the in-context learning toys, generated here (nothing is downloaded).

Two tasks, each a base sequence whose last ``span`` tokens are, with probability
``repeat_probability``, a copy of an earlier span at a random place (the offset varies, so only
matching content, not position, finds the earlier copy; the copy ends the context, so late
tokens are the predictable ones, as in text):

- ``"repeats"``: the base is uniform random tokens: nothing predicts a token but an earlier
  copy of its predecessor, exactly what an induction head reads.
- ``"multigram"``: the base is a synthetic language, an order-``ngram`` Markov chain over the
  vocabulary whose every context allows ``branching`` next tokens with Zipf-like weights
  (drawn once from ``language_seed``), so n-gram (multigram) statistics pay as well.

A batch is ``(tokens (batch, n_ctx) int32, copied (batch, n_ctx) bool)``: ``copied[j]`` marks
a token that an induction head can predict (it is a copy, and so is its predecessor), the
sub-distribution a data-refined LLC reads.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..core.config import ConfigError, described

__all__ = ["TASKS", "check_sequence_task", "markov_table", "token_sequences", "repeated_tokens",
           "multigram_tokens", "copy_span", "MAX_CONTEXTS", "MAX_TABLE"]

TASKS = ("repeats", "multigram")
MAX_CONTEXTS = 2 ** 20  # rows of a Markov table: d_vocab ** (ngram − 1)
MAX_TABLE = 2 ** 24  # rows × d_vocab: the host draws a permutation of the vocabulary per row


def _positive_int(name, v, lo=1):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < lo:
        raise ConfigError(name, v, f"must be an integer >= {lo}")


def check_sequence_task(task: str, d_vocab: int, n_ctx: int, span: int, ngram: int = 2, branching: int = 4):
    """Refuse settings the generator cannot meet, naming the field."""
    if task not in TASKS:
        raise ConfigError("task", task, f"must be one of {', '.join(TASKS)}")
    _positive_int("d_vocab", d_vocab, 2)
    _positive_int("span", span, 2)
    _positive_int("n_ctx", n_ctx, 2)
    if n_ctx < 2 * span:
        raise ConfigError("n_ctx", n_ctx, f"must hold the repeated span twice: at least 2·span = {2 * span}")
    if task == "multigram":
        _check_language(d_vocab, ngram, branching)


def _check_language(d_vocab, ngram, branching, language_seed=0):
    _positive_int("d_vocab", d_vocab, 2)
    _positive_int("ngram", ngram, 2)
    _positive_int("branching", branching, 1)
    _positive_int("language_seed", language_seed, 0)
    if branching > d_vocab:
        raise ConfigError("branching", branching, f"must be at most d_vocab={d_vocab}")
    contexts = d_vocab ** (ngram - 1)
    if contexts > MAX_CONTEXTS or contexts * d_vocab > MAX_TABLE:
        raise ConfigError("ngram", ngram, f"d_vocab ** (ngram − 1) contexts must be at most {MAX_CONTEXTS} and "
                                          f"d_vocab ** ngram at most {MAX_TABLE} (d_vocab={d_vocab})")


def markov_table(d_vocab: int, ngram: int, branching: int, language_seed: int):
    """(next tokens (d_vocab**(ngram−1), branching) int32, cumulative weights (same shape)
    float32): every context's allowed next tokens (distinct) and the running sums of their
    probabilities, ∝ 1/rank with the ranks shuffled per context. Host numpy, cached."""
    _check_language(d_vocab, ngram, branching, language_seed)
    return _markov_table(int(d_vocab), int(ngram), int(branching), int(language_seed))


@functools.lru_cache(maxsize=16)
def _markov_table(d_vocab: int, ngram: int, branching: int, language_seed: int):
    rng = np.random.default_rng(language_seed)
    n_contexts = d_vocab ** (ngram - 1)
    # the first `branching` of a random permutation per context: distinct next tokens
    nxt = np.argsort(rng.random((n_contexts, d_vocab)), axis=1)[:, :branching].astype(np.int32)
    w = 1.0 / np.arange(1, branching + 1)
    w = np.take_along_axis(np.broadcast_to(w, (n_contexts, branching)),
                           np.argsort(rng.random((n_contexts, branching)), axis=1), axis=1)
    cum = np.cumsum(w / w.sum(axis=1, keepdims=True), axis=1)
    cum[:, -1] = 1.0
    return nxt, cum.astype(np.float32)


def repeated_tokens(key, batch_size: int, d_vocab: int, n_ctx: int, span: int):
    """(batch, n_ctx) int32: a random span of ``span`` tokens, repeated to fill the context
    (Olsson et al.'s repeated random tokens, where head scores are read)."""
    _positive_int("batch_size", batch_size)
    _positive_int("d_vocab", d_vocab)
    _positive_int("n_ctx", n_ctx)
    _positive_int("span", span)
    first = jax.random.randint(key, (batch_size, span), 0, d_vocab, jnp.int32)
    return jnp.tile(first, (1, -(-n_ctx // span)))[:, :n_ctx]


def _markov_chain(key, batch_size: int, n_ctx: int, d_vocab: int, ngram: int, branching: int, language_seed: int):
    nxt, cum = markov_table(d_vocab, ngram, branching, language_seed)
    nxt, cum = jnp.asarray(nxt), jnp.asarray(cum)
    k_start, k_steps = jax.random.split(key)
    width = ngram - 1
    start = jax.random.randint(k_start, (batch_size, width), 0, d_vocab, jnp.int32)
    context = jnp.zeros(batch_size, jnp.int32)
    for i in range(width):
        context = context * d_vocab + start[:, i]
    n_contexts = d_vocab ** width

    def step(context, u):
        branch = jnp.sum(u[:, None] >= cum[context], axis=1).clip(0, branching - 1)
        token = nxt[context, branch]
        return (context * d_vocab + token) % n_contexts, token

    u = jax.random.uniform(k_steps, (n_ctx - width, batch_size))
    _, rest = jax.lax.scan(step, context, u)
    return jnp.concatenate([start, rest.T], axis=1)


def copy_span(key, base, span: int, repeat_probability):
    """(tokens, copied): ``base`` (batch, n_ctx) whose last ``span`` tokens are, in each
    sequence with probability ``repeat_probability`` (traceable), a copy of the span at a
    uniform start s in [0, n_ctx − 2·span]. The copy ends the context, so the late positions
    are the predictable ones (an in-context learning score reads them); its offset varies,
    so only matching content finds its source."""
    if jnp.ndim(base) != 2 or not jnp.issubdtype(jnp.result_type(base), jnp.integer):
        raise ConfigError("base", described(f"shape {jnp.shape(base)}, {jnp.result_type(base)}"),
                          "must be integer token sequences (batch, n_ctx)")
    batch_size, n_ctx = base.shape
    _positive_int("span", span, 2)
    if n_ctx < 2 * span:
        raise ConfigError("span", span, f"must fit twice in the context of {n_ctx} tokens")
    k_copy, k_src = jax.random.split(key)
    s = jax.random.randint(k_src, (batch_size,), 0, n_ctx - 2 * span + 1)
    t = n_ctx - span
    repeat = jax.random.uniform(k_copy, (batch_size,)) < jnp.asarray(repeat_probability, jnp.float32)
    idx = jnp.arange(n_ctx)[None, :]
    inside = repeat[:, None] & (idx >= t)
    tokens = jnp.take_along_axis(base, jnp.where(inside, idx - t + s[:, None], idx), axis=1)
    return tokens, inside & (idx > t)


def multigram_tokens(key, batch_size: int, d_vocab: int, n_ctx: int, ngram: int, branching: int,
                     language_seed: int):
    """(batch, n_ctx) int32 sequences of the Markov-chain language (no copies)."""
    _check_language(d_vocab, ngram, branching, language_seed)
    _positive_int("batch_size", batch_size)
    _positive_int("n_ctx", n_ctx, ngram - 1)
    return _markov_chain(key, batch_size, n_ctx, d_vocab, ngram, branching, language_seed)


def token_sequences(key, batch_size: int, *, task: str, d_vocab: int, n_ctx: int, span: int, ngram: int = 2,
                    branching: int = 4, language_seed: int = 0, repeat_probability=1.0):
    """(tokens (batch, n_ctx) int32, copied (batch, n_ctx) bool) of ``task`` (see the module)."""
    check_sequence_task(task, d_vocab, n_ctx, span, ngram, branching)
    _positive_int("batch_size", batch_size)
    k_base, k_copy = jax.random.split(key)
    if task == "repeats":
        base = jax.random.randint(k_base, (batch_size, n_ctx), 0, d_vocab, jnp.int32)
    else:
        base = multigram_tokens(k_base, batch_size, d_vocab, n_ctx, ngram, branching, language_seed)
    return copy_span(k_copy, base, span, repeat_probability)
