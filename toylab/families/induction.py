"""token sequences through a small attention-only transformer: induction heads (Olsson et al. 2022)

The induction family: next-token prediction on generated sequences (:mod:`toylab.tasks.sequences`:
repeated random spans, or a Markov-chain language with repeated spans) by a causal
transformer of 1–3 blocks, attention only unless ``d_mlp`` > 0.

Every logging interval measures, on held-out sequences of the task, the loss and the
in-context learning score (the loss at the last position minus the loss a tenth of the way in),
and on repeated random tokens each head's previous-token and induction scores (``prev/LiHj``,
``induction/LiHj``) and their maxima: the curves of the induction-head phase change.
"""

from __future__ import annotations

import dataclasses
from typing import Callable

import jax
import jax.numpy as jnp

from ..analysis.heads import head_labels, head_scores, icl_score, position_losses, token_losses
from ..core.config import (ConfigError, TrainConfig, described, in_interval, nonnegative_int, one_of, positive_int,
                           static, sweepable)
from ..core.family import Family, register_family
from ..models.sequence import init_sequence_transformer
from ..tasks.sequences import TASKS, check_sequence_task, repeated_tokens, token_sequences

__all__ = ["InductionConfig", "INDUCTION", "sequence_batch", "eval_sequences", "score_sequences", "SUBSETS",
           "llc_data", "llc_loss", "head_groups"]

MAX_LAYERS = 3
# The sub-distributions a data-refined LLC reads: every predicted token, the tokens an
# induction head can predict (copies whose predecessor is a copy), and the rest.
SUBSETS = ("all", "copied", "other")


@dataclasses.dataclass(frozen=True)
class InductionConfig(TrainConfig):
    """Next-token prediction on generated sequences. Defaults: uniform random tokens from a
    vocabulary of 32 in a context of 32 whose last 12 are a copy of an earlier span (induction
    heads form within about 1 500 steps), a 2-block attention-only transformer
    (d_model 64, 4 heads), batch 64, AdamW lr 1e-3."""

    task: str = static("repeats", check=one_of(*TASKS), help="repeats (random tokens, a span repeated) or multigram "
                                                             "(a Markov-chain language with repeated spans)")
    d_vocab: int = static(32, check=positive_int, help="vocabulary size")
    n_ctx: int = static(32, check=positive_int, help="context length (tokens per sequence)")
    span: int = static(12, check=positive_int, help="length of the repeated span (it ends the context)")
    ngram: int = static(2, check=positive_int, help="multigram: the chain's order + 1 (2: bigrams, 3: trigrams)")
    branching: int = static(4, check=positive_int, help="multigram: next tokens each context allows")
    language_seed: int = static(0, check=nonnegative_int, help="multigram: seed of the language's table")
    repeat_probability: float = sweepable(1.0, check=in_interval(0, 1), help="share of sequences holding a "
                                                                             "repeated span")
    n_layers: int = static(2, check=positive_int, help=f"transformer blocks (1..{MAX_LAYERS})")
    n_heads: int = static(4, check=positive_int, help="attention heads per block")
    d_model: int = static(64, check=positive_int, help="residual stream width")
    d_mlp: int = static(0, check=nonnegative_int, help="MLP neurons per block (0: attention only)")
    batch_size: int = static(64, check=positive_int, help="sequences per step")
    eval_size: int = static(256, check=positive_int, help="held-out sequences of each logging step")

    def validate(self):
        super().validate()
        check_sequence_task(self.task, self.d_vocab, self.n_ctx, self.span, self.ngram, self.branching)
        if self.n_layers > MAX_LAYERS:
            raise ConfigError("n_layers", self.n_layers, f"must be in 1..{MAX_LAYERS}")
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")


def sequence_batch(cfg: InductionConfig, hparams, key, n: int):
    """(tokens, copied) of ``n`` sequences of the config's task."""
    return token_sequences(key, n, task=cfg.task, d_vocab=cfg.d_vocab, n_ctx=cfg.n_ctx, span=cfg.span,
                           ngram=cfg.ngram, branching=cfg.branching, language_seed=cfg.language_seed,
                           repeat_probability=hparams["repeat_probability"])


def _eval_key(cfg):
    # The same held-out sequences for every run and step (the training batches never reach this key).
    return jax.random.fold_in(jax.random.key(cfg.language_seed), 2 ** 31 - 1)


def eval_sequences(cfg: InductionConfig, hparams):
    """(tokens, copied): the held-out sequences of the task every logging step reads."""
    return sequence_batch(cfg, hparams, _eval_key(cfg), cfg.eval_size)


def score_sequences(cfg: InductionConfig):
    """(eval_size, n_ctx) repeated random tokens (spans of ``span``): where head scores are read."""
    return repeated_tokens(jax.random.fold_in(_eval_key(cfg), 1), cfg.eval_size, cfg.d_vocab, cfg.n_ctx, cfg.span)


def llc_data(cfg: InductionConfig, hparams, n: int, subset: str = "all", *, seed: int = 1):
    """``{"tokens": (n, n_ctx), "weights": (n, n_ctx − 1)}``: ``n`` fresh sequences of the task
    (from ``seed``, apart from training's and the held-out ones) and 0/1 weights on the
    predicted tokens of ``subset`` (one of SUBSETS), the data of :func:`llc_loss`. Refused when
    the subset holds no token of these sequences (e.g. "copied" with repeat_probability 0)."""
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ConfigError("n", n, "must be an integer >= 1 (sequences)")
    if subset not in SUBSETS:
        raise ConfigError("subset", subset, f"must be one of {', '.join(SUBSETS)}")
    if isinstance(seed, bool) or not isinstance(seed, int) or seed < 0:
        raise ConfigError("seed", seed, "must be an integer >= 0")
    key = jax.random.fold_in(jax.random.fold_in(jax.random.key(cfg.language_seed), 2 ** 31 - 2), seed)
    tokens, copied = sequence_batch(cfg, hparams, key, int(n))
    predicted = copied[:, 1:]
    weights = {"all": jnp.ones_like(predicted), "copied": predicted, "other": ~predicted}[subset]
    if not bool(jnp.any(weights)):
        raise ConfigError("subset", subset, f"selects no token of {n} sequences of this task (repeat_probability "
                                            f"{float(hparams['repeat_probability']):g}): choose another subset")
    return {"tokens": tokens, "weights": weights.astype(jnp.float32)}


def llc_loss(static) -> Callable:
    """``loss(params, batch)``: the mean next-token loss over the tokens ``batch["weights"]``
    selects, of the model ``eqx.combine(params, static)`` (``static``: the model's
    non-array part, from ``eqx.partition(model, eqx.is_inexact_array)``)."""
    import equinox as eqx

    from ..analysis.development import weighted_mean

    def loss(params, batch):
        logits = jax.vmap(eqx.combine(params, static))(batch["tokens"])
        return weighted_mean(token_losses(logits, batch["tokens"]), batch["weights"])
    return loss


def head_groups(model, params) -> dict:
    """``{"LiHj": mask}`` for every head, each mask a pytree of bools like ``params`` (the
    model's arrays): the weights of one head, for the weight-refined LLC."""
    import equinox as eqx

    from ..models import HeadedModel

    if not isinstance(model, HeadedModel) or not hasattr(model, "blocks"):
        raise ConfigError("model", described(f"a {type(model).__name__}"),
                          "must be the induction family's sequence transformer (toylab.models.HeadedModel)")
    n_layers, n_heads = len(model.blocks), model.blocks[0].n_heads
    labels = head_labels(n_layers, n_heads)
    keep = jax.tree.map(eqx.is_inexact_array, model)
    out = {}
    for i, label in enumerate(labels):
        mask = model.head_mask(i // n_heads, i % n_heads)
        out[label] = eqx.filter(mask, keep)
    if jax.tree.structure(next(iter(out.values()))) != jax.tree.structure(params):
        raise ConfigError("params", described("a tree unlike the model's arrays"),
                          "must be eqx.filter(model, eqx.is_inexact_array) of this model")
    return out


def _init(cfg: InductionConfig, hparams, key):
    return init_sequence_transformer(key, d_in=cfg.d_vocab, d_out=cfg.d_vocab, n_ctx=cfg.n_ctx, d_model=cfg.d_model,
                                     n_heads=cfg.n_heads, n_layers=cfg.n_layers, d_mlp=cfg.d_mlp)


def _batch(cfg: InductionConfig, hparams, key):
    tokens, _ = sequence_batch(cfg, hparams, key, cfg.batch_size)
    return tokens


def _loss(model, tokens, cfg: InductionConfig, hparams):
    logits = jax.vmap(model)(tokens)
    return jnp.mean(position_losses(logits, tokens)), {}


def _evaluate(model, cfg: InductionConfig, hparams):
    tokens, _ = eval_sequences(cfg, hparams)
    losses = position_losses(jax.vmap(model)(tokens), tokens)
    scores = head_scores(model, score_sequences(cfg))
    out = {"eval_loss": jnp.mean(losses), "icl_score": icl_score(losses),
           "prev_token_max": jnp.max(scores["previous_token"]), "induction_max": jnp.max(scores["induction"])}
    labels = head_labels(cfg.n_layers, cfg.n_heads)
    for kind, name in (("previous_token", "prev"), ("induction", "induction")):
        out.update({f"{name}/{label}": v for label, v in zip(labels, scores[kind].reshape(-1))})
    return out


def _summary(model, cfg: InductionConfig, hparams):
    out = _evaluate(model, cfg, hparams)
    return {k: out[k] for k in ("eval_loss", "icl_score", "prev_token_max", "induction_max")}


def _working_bytes(cfg: InductionConfig) -> int:
    rows = max(cfg.batch_size, cfg.eval_size)
    per_row = 4 * cfg.n_layers * (cfg.n_ctx * (6 * cfg.d_model + 2 * cfg.d_mlp) + 3 * cfg.n_heads * cfg.n_ctx ** 2)
    return int(rows * (per_row + 4 * cfg.n_ctx * cfg.d_vocab * 2))


INDUCTION = register_family(Family(
    name="induction",
    config=InductionConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    summary=_summary,
    evaluate=_evaluate,
    working_bytes=_working_bytes,
    description=__doc__.splitlines()[0],
))
