"""modular arithmetic (a op b) mod p: one-layer transformer or MLP, grokking (Nanda et al. 2023)

The grokking family: modular arithmetic learned by the one-layer transformer or an MLP.

Full-batch training on a fixed table (:mod:`toylab.tasks.table`): the train fraction and the
label noise are traced masks, so a grid over them is one compiled program, whose rows are
sized for the grid's largest train fraction. Held-out metrics are measured on the whole table
at every logging step.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.fourier import embedding_matrix, fourier_norms, gini, weight_norm
from ..core.config import ConfigError, in_interval, nonnegative, nonnegative_int, one_of, positive_int, static, sweepable
from ..core.family import Family, register_family
from ..models.mlp import EMBEDDINGS, init_embed_mlp
from ..models.transformer import NONLINEARITIES, init_transformer
from ..tasks.losses import masked_mean, weighted_cross_entropy
from ..tasks.modular import canonical_op, check_op, modular_table, noisy_labels, train_mask
from ..tasks.table import (TableTaskConfig, classification_metrics, is_train, program_config, program_rows,
                           table_working_bytes)

__all__ = ["GrokkingConfig", "GROKKING", "table_of", "train_rows", "grid_train_mask"]


def _at_least_2(v):
    return None if v >= 2 else "must be an integer >= 2"


@dataclasses.dataclass(frozen=True)
class GrokkingConfig(TableTaskConfig):
    """(a op b) mod p. Defaults follow Nanda et al.: p=113, 30% of pairs train, the one-layer
    transformer (d_model 128, 4 heads, d_mlp 512), full-batch AdamW lr 1e-3, weight decay 1,
    betas (0.9, 0.98), 10 warmup steps, float64 loss."""

    p: int = static(113, check=_at_least_2, help="modulus p (tokens 0..p-1, '=' is token p)")
    op: str = static("+", help="+, -, * or / (* and / need a prime p), or an integer expression in a and b")
    train_fraction: float = sweepable(0.3, check=in_interval(0, 1, lo_open=True), help="share of the pairs that trains")
    label_noise: float = sweepable(0.0, check=in_interval(0, 1, hi_open=True),
                                   help="share ξ of training labels replaced by uniformly random labels")
    model: str = static("transformer", check=one_of("transformer", "mlp"), help="transformer or mlp")
    d_model: int = static(128, check=positive_int, help="transformer width")
    n_heads: int = static(4, check=positive_int, help="attention heads (d_head = d_model / n_heads)")
    n_layers: int = static(1, check=positive_int, help="transformer layers")
    d_mlp: int = static(512, check=positive_int, help="neurons of the MLP (transformer block, or the MLP model)")
    activation: str = static("relu", check=one_of(*NONLINEARITIES), help="neuron nonlinearity: relu, quadratic, or bilinear (the bilinear MLP of Pearce et al.)")
    alpha: float = sweepable(1.0, check=in_interval(0, 1), help="attention rate: 0 uniform, 1 softmax attention")
    embed: str = static("onehot", check=one_of(*EMBEDDINGS), help="mlp input: onehot (W_in on one-hot a,b), sum or concat embeddings")
    d_embed: int = static(128, check=positive_int, help="mlp embedding width (sum, concat)")
    bias: bool = static(True, help="mlp biases")
    loss: str = static("cross_entropy", check=one_of("cross_entropy", "mse"), help="cross_entropy, or mse on one-hot targets")
    steps: int = static(40_000, check=positive_int, help="full-batch steps (epochs)")
    warmup_steps: int = static(10, check=nonnegative_int, help="linear warmup steps")
    weight_decay: float = sweepable(1.0, check=nonnegative, help="decoupled AdamW weight decay")
    beta2: float = sweepable(0.98, check=in_interval(0, 1, hi_open=True), help="AdamW beta2")

    def validate(self):
        super().validate()
        if self.p > MAX_P:
            raise ConfigError("p", self.p, f"must be at most {MAX_P} (the table's p² rows are indexed by int32)")
        problem = check_op(self.op, self.p)
        if problem:
            raise ConfigError("op", self.op, problem)
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")

    @property
    def table_rows(self) -> int:
        """Rows of the table: p² pairs, or p(p−1) for division (b = 0 excluded)."""
        return self.p * (self.p - 1) if canonical_op(self.op) == "/" else self.p * self.p


MAX_P = 46_340  # p² < 2³¹


@functools.lru_cache(maxsize=64)
def table_of(p: int, op: str, data_seed: int):
    """The task's table (cached: configs of one group share it)."""
    return modular_table(p, op, data_seed)


def train_rows(cfg: GrokkingConfig) -> int:
    """Rows (in split order) the training program computes."""
    return program_rows(cfg)


def grid_train_mask(cfg: GrokkingConfig, train_fraction: float | None = None) -> np.ndarray:
    """(p, p) bool over the (a, b) grid: which pairs train (at the config's train fraction)."""
    table = table_of(cfg.p, cfg.op, cfg.data_seed)
    f = cfg.train_fraction if train_fraction is None else train_fraction
    mask = np.zeros((cfg.p, cfg.p), bool)
    mask[table.a, table.b] = np.asarray(train_mask(table.n, f))
    return mask


def _init(cfg: GrokkingConfig, hparams, key):
    if cfg.model == "transformer":
        return init_transformer(key, d_vocab=cfg.p + 1, d_vocab_out=cfg.p, n_ctx=3, d_model=cfg.d_model,
                                n_heads=cfg.n_heads, d_mlp=cfg.d_mlp, n_layers=cfg.n_layers, activation=cfg.activation)
    return init_embed_mlp(key, n_in=cfg.p, n_out=cfg.p, d_hidden=cfg.d_mlp, d_embed=cfg.d_embed, embed=cfg.embed,
                          activation=cfg.activation, bias=cfg.bias)


def _batch(cfg: GrokkingConfig, hparams, key):
    """The training rows: tokens, (noisy) labels and the train mask (full batch; key unused)."""
    table = table_of(cfg.p, cfg.op, cfg.data_seed)
    rows = train_rows(cfg)
    labels = noisy_labels(table, hparams["train_fraction"], hparams["label_noise"])[:rows]
    mask = _is_train(cfg, hparams)[:rows]
    return {"tokens": jnp.asarray(table.tokens()[:rows]), "labels": labels, "mask": mask}


def _is_train(cfg: GrokkingConfig, hparams):
    return is_train(cfg, hparams)


def _logits(model, tokens, hparams):
    return jax.vmap(lambda t: model(t, hparams["alpha"]))(tokens)


def _mean_loss(logits, labels, rows, cfg: GrokkingConfig):
    """The configured loss, averaged over the rows where ``rows`` is true (float32)."""
    if cfg.loss == "cross_entropy":
        return weighted_cross_entropy(logits, labels, rows, cfg.loss_precision)
    # MSE on one-hot targets (summed over classes); float32 is exact enough here.
    per_row = jnp.sum((logits - jax.nn.one_hot(labels, cfg.p, dtype=logits.dtype)) ** 2, axis=-1)
    return masked_mean(per_row, rows)


def _loss(model, batch, cfg: GrokkingConfig, hparams):
    logits = _logits(model, batch["tokens"], hparams)
    return _mean_loss(logits, batch["labels"], batch["mask"], cfg), {}


def _evaluate(model, cfg: GrokkingConfig, hparams):
    """Loss and accuracy on the training rows (their possibly corrupted labels) and on the
    held-out rows (true labels), on the whole table; the weight norm; the Gini coefficients
    of the Fourier norms of the embedding and of W_L."""
    table = table_of(cfg.p, cfg.op, cfg.data_seed)
    logits = _logits(model, jnp.asarray(table.tokens()), hparams)
    is_train = _is_train(cfg, hparams)
    labels = noisy_labels(table, hparams["train_fraction"], hparams["label_noise"])
    clean = jnp.asarray(table.c)
    pred = jnp.argmax(logits, axis=-1)
    out = classification_metrics(logits, labels, clean, is_train, lambda lg, lb, rows: _mean_loss(lg, lb, rows, cfg))
    W_E = embedding_matrix(model)
    out.update({
        "train_clean_accuracy": masked_mean((pred == clean).astype(jnp.float32), is_train),
        "weight_norm": weight_norm(model),
        "gini_W_E": gini(fourier_norms(W_E[:, :cfg.p], cfg.p)),
        "gini_W_L": gini(fourier_norms(model.W_L, cfg.p, axis=0)),
    })
    return out


def _working_bytes(cfg: GrokkingConfig) -> int:
    width = 3 * cfg.d_model * 4 + cfg.d_mlp * 2 if cfg.model == "transformer" else 2 * cfg.d_embed + 2 * cfg.d_mlp
    return table_working_bytes(cfg, cfg.p, width)


GROKKING = register_family(Family(
    name="grokking",
    config=GrokkingConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    evaluate=_evaluate,  # its last values are the run's final measures in summary.json
    description=__doc__.splitlines()[0],
    program_config=program_config,  # one program for a grid over train_fraction
    working_bytes=_working_bytes,
))
