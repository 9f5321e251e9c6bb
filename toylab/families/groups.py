"""group composition a∘b over a finite group: MLP or transformer, universality (Chughtai et al. 2023)

The groups family: networks that learn the composition a∘b of a finite group (Chughtai,
Chan & Nanda 2023, "A toy model of universality").

Two models: the MLP of the paper (left and right embeddings concatenated, one ReLU layer, an
unembedding, no biases) and the grokking family's one-layer transformer on [a, b, =]. Training
is full batch over the composition table (:mod:`toylab.tasks.table`): the train fraction is a
traced mask, so a grid over it is one compiled program. At every logging step the whole
table is evaluated: train/test loss and accuracy, and each real irrep's logit similarity (the
cosine of the centred logits with its character cube χ_ρ(a∘b∘c⁻¹)), from which the order in
which irreps are learned is read.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.fourier import weight_norm
from ..analysis.representations import irrep_labels, logit_similarity, real_irreps_of
from ..core.config import ConfigError, in_interval, nonnegative, nonnegative_int, one_of, positive_int, static, sweepable
from ..core.family import Family, register_family
from ..tasks.losses import weighted_cross_entropy
from ..tasks.table import (TableTaskConfig, classification_metrics, is_train, program_config, program_rows,
                           table_working_bytes)
from ..models.mlp import init_embed_mlp
from ..models.transformer import NONLINEARITIES, init_transformer
from ..tasks.composition import composition_table, group_of
from ..tasks.modular import n_train_rows

__all__ = ["GroupsConfig", "GROUPS", "train_rows", "grid_train_mask"]


def _group_name(name):
    try:
        group_of(name)
    except ConfigError as e:
        return e.allowed
    return None


@dataclasses.dataclass(frozen=True)
class GroupsConfig(TableTaskConfig):
    """a∘b over a finite group. Defaults follow Chughtai et al.: the MLP (embeddings 256 wide,
    128 ReLU neurons, no biases), full-batch AdamW lr 1e-3, weight decay 1, float64 loss;
    betas (0.9, 0.98) and 10 warmup steps as the grokking family."""

    group: str = static("S5", check=_group_name, help="group name: C<n>, D<n>, S<n>, A<n> (n <= 7), products like S4xC2")
    train_fraction: float = sweepable(0.4, check=in_interval(0, 1, lo_open=True), help="share of the pairs that trains")
    model: str = static("mlp", check=one_of("mlp", "transformer"), help="mlp (Chughtai et al.) or transformer (one layer)")
    d_embed: int = static(256, check=positive_int, help="mlp: width of each of the left and right embeddings")
    d_hidden: int = static(128, check=positive_int, help="mlp: hidden neurons")
    d_model: int = static(128, check=positive_int, help="transformer width")
    n_heads: int = static(4, check=positive_int, help="transformer heads (d_head = d_model / n_heads)")
    d_mlp: int = static(512, check=positive_int, help="transformer MLP neurons")
    activation: str = static("relu", check=one_of(*NONLINEARITIES), help="neuron nonlinearity: relu, quadratic, or bilinear (the bilinear MLP of Pearce et al.)")
    steps: int = static(50_000, check=positive_int, help="full-batch steps (epochs)")
    warmup_steps: int = static(10, check=nonnegative_int, help="linear warmup steps")
    weight_decay: float = sweepable(1.0, check=nonnegative, help="decoupled AdamW weight decay")
    beta2: float = sweepable(0.98, check=in_interval(0, 1, hi_open=True), help="AdamW beta2")

    def validate(self):
        super().validate()
        if self.model == "transformer" and self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")

    @property
    def order(self) -> int:
        return group_of(self.group).order

    @property
    def table_rows(self) -> int:
        return self.order ** 2


def train_rows(cfg: GroupsConfig) -> int:
    """Rows (in split order) the training program computes."""
    return program_rows(cfg)


def grid_train_mask(cfg: GroupsConfig, train_fraction: float | None = None) -> np.ndarray:
    """(|G|, |G|) bool over the (a, b) grid: which pairs train."""
    table = composition_table(cfg.group, cfg.data_seed)
    f = cfg.train_fraction if train_fraction is None else train_fraction
    return table.grid_mask(n_train_rows(table.n, f))


def _init(cfg: GroupsConfig, hparams, key):
    n = cfg.order
    if cfg.model == "transformer":
        return init_transformer(key, d_vocab=n + 1, d_vocab_out=n, n_ctx=3, d_model=cfg.d_model, n_heads=cfg.n_heads,
                                d_mlp=cfg.d_mlp, n_layers=1, activation=cfg.activation)
    return init_embed_mlp(key, n_in=n, n_out=n, d_hidden=cfg.d_hidden, d_embed=cfg.d_embed, embed="concat",
                          activation=cfg.activation, bias=False)


def _is_train(cfg: GroupsConfig, hparams):
    return is_train(cfg, hparams)


def _batch(cfg: GroupsConfig, hparams, key):
    """The training rows (full batch; key unused)."""
    table = composition_table(cfg.group, cfg.data_seed)
    rows = train_rows(cfg)
    return {"tokens": jnp.asarray(table.tokens()[:rows]), "labels": jnp.asarray(table.c[:rows]),
            "mask": _is_train(cfg, hparams)[:rows]}


def _logits(model, tokens):
    return jax.vmap(model)(tokens)


def _loss(model, batch, cfg: GroupsConfig, hparams):
    logits = _logits(model, batch["tokens"])
    return weighted_cross_entropy(logits, batch["labels"], batch["mask"], cfg.loss_precision), {}


@functools.lru_cache(maxsize=16)
def _grid_order(group_name: str, data_seed: int) -> np.ndarray:
    """Row of the split table holding each (a, b) of the row-major grid."""
    table = composition_table(group_name, data_seed)
    n = table.order
    where = np.empty(n * n, np.int64)
    where[table.a.astype(np.int64) * n + table.b] = np.arange(table.n)
    return where


def _evaluate(model, cfg: GroupsConfig, hparams):
    """Loss and accuracy on the training and held-out pairs, the weight norm, and each real
    irrep's logit similarity (``sim/<irrep>``) over the whole table."""
    table = composition_table(cfg.group, cfg.data_seed)
    logits = _logits(model, jnp.asarray(table.tokens()))
    labels = jnp.asarray(table.c)
    n = table.order
    loss = lambda lg, lb, rows: weighted_cross_entropy(lg, lb, rows, cfg.loss_precision)  # noqa: E731
    out = classification_metrics(logits, labels, labels, _is_train(cfg, hparams), loss)
    out["weight_norm"] = weight_norm(model)
    g = group_of(cfg.group)
    grid = logits[jnp.asarray(_grid_order(cfg.group, cfg.data_seed))].reshape(n, n, n)
    sims = logit_similarity(grid, g, real_irreps_of(g))
    out.update({f"sim/{name}": sims[i] for i, name in enumerate(irrep_labels(g))})
    return out


def _working_bytes(cfg: GroupsConfig) -> int:
    width = 3 * cfg.d_model * 4 + cfg.d_mlp * 2 if cfg.model == "transformer" else 2 * cfg.d_embed + 2 * cfg.d_hidden
    return table_working_bytes(cfg, cfg.order, width)


GROUPS = register_family(Family(
    name="groups",
    config=GroupsConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    evaluate=_evaluate,
    description=__doc__.splitlines()[0],
    program_config=program_config,  # one program for a grid over train_fraction
    working_bytes=_working_bytes,
))
