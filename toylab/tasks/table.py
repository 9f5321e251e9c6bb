"""A full-batch classification task over a fixed table of examples — shared by modular
arithmetic (grokking) and group composition (groups).

The table's N rows are ranked by a permutation fixed by ``data_seed``; the training rows are
the first ⌊f·N⌋ (:func:`~toylab.tasks.modular.train_mask`), so the train fraction f is a
traced number. The program computes the training loss on the first ``program_rows`` rows
only — the share ``train_capacity``, which a sweep sets to the largest train fraction of the
grid points sharing one program (:func:`program_config`) — so a grid over the train fraction
is one compiled program, and a single run computes nothing it does not need. Held-out metrics
are measured on the whole table.
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp

from ..core.config import ConfigError, TrainConfig, in_interval, nonnegative_int, one_of, static, sweepable
from .losses import masked_mean
from .modular import n_train_rows, train_mask

__all__ = ["TableTaskConfig", "program_rows", "is_train", "program_config", "classification_metrics",
           "table_working_bytes"]


@dataclasses.dataclass(frozen=True)
class TableTaskConfig(TrainConfig):
    """Fields of a full-batch table task; a family's config subclasses it and gives the
    table's size as :attr:`table_rows` (its own default ``train_fraction`` redeclared)."""

    data_seed: int = static(0, check=nonnegative_int, help="seed of the train/test split (and of any label noise)")
    train_fraction: float = sweepable(0.3, check=in_interval(0, 1, lo_open=True), help="share of the pairs that trains")
    train_capacity: float | None = static(None, type="optional float", check=in_interval(0, 1, lo_open=True),
                                          help="share of the table the program trains on; none: the largest "
                                               "train_fraction of the runs sharing the program")
    loss_precision: str = static("float64", check=one_of("float64", "float32"), help="dtype the loss is computed in")

    @property
    def table_rows(self) -> int:
        raise NotImplementedError

    def validate(self):
        super().validate()
        cap = self.train_capacity
        if cap is not None and cap < self.train_fraction:
            raise ConfigError("train_capacity", cap, f"must be >= train_fraction={self.train_fraction}")


def program_rows(cfg: TableTaskConfig) -> int:
    """Rows (in split order) the training program computes."""
    return n_train_rows(cfg.table_rows, cfg.train_capacity or cfg.train_fraction)


def is_train(cfg: TableTaskConfig, hparams):
    """(N,) the traced ⌊f·N⌋ prefix, never beyond the rows the program trains on (the static
    count is computed in Python, the traced one in float32; they agree but for rounding, and
    this keeps training and evaluation on the same rows either way)."""
    n = cfg.table_rows
    return train_mask(n, hparams["train_fraction"]) & (jnp.arange(n) < program_rows(cfg))


def program_config(configs: list[TableTaskConfig]) -> TableTaskConfig:
    """The config that builds the one program of ``configs`` (they share their static
    fields): rows for the largest train fraction among them, unless a capacity was given."""
    first = configs[0]
    if first.train_capacity is not None:
        return first
    return first.replace(train_capacity=max(c.train_fraction for c in configs))


def classification_metrics(logits, train_labels, test_labels, train_rows, loss):
    """Loss and accuracy on the training rows (against ``train_labels``) and on the held-out
    rows (against ``test_labels``); held-out values are NaN when every row trains.

    ``loss(logits, labels, rows)`` is the family's loss averaged over the rows where ``rows``
    is true.
    """
    pred = jnp.argmax(logits, axis=-1)
    has_test = jnp.sum(~train_rows) > 0
    return {
        "train_loss": loss(logits, train_labels, train_rows),
        "test_loss": jnp.where(has_test, loss(logits, test_labels, ~train_rows), jnp.nan),
        "train_accuracy": masked_mean((pred == train_labels).astype(jnp.float32), train_rows),
        "test_accuracy": jnp.where(has_test, masked_mean((pred == test_labels).astype(jnp.float32), ~train_rows),
                                   jnp.nan),
    }


def table_working_bytes(cfg: TableTaskConfig, n_classes: int, row_width: int) -> int:
    """A lower bound on one instance's working memory: the training rows' logits and their
    gradient, the whole table's logits at each evaluation (twice over in float64 when the
    loss is), and ``row_width`` floats of activations per row. Only shapes are used."""
    n, rows = cfg.table_rows, program_rows(cfg)
    loss_factor = 3 if cfg.loss_precision == "float64" else 1
    return int(4 * (rows * n_classes * (2 + loss_factor) + n * n_classes * (1 + loss_factor) + (rows + n) * row_width))
