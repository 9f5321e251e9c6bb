"""in-context linear regression from a pool of M tasks: task diversity (Raventós et al. 2023)

The icl_regression family: a causal transformer (:mod:`toylab.models.sequence`, vector inputs)
reads interleaved pairs (x_k, y_k) of one task y = w·x + ε and predicts each y_k at x_k's
position (:mod:`toylab.tasks.regression`). The number of pretraining tasks M (``n_tasks``) is
traced, a mask over a fixed pool, so a sweep over task diversity is one program.

Every logging interval measures the loss on held-out sequences of the pretraining tasks and of
fresh Gaussian tasks, and on the fresh ones how far the model's predictions are from the two
Bayes predictors (:mod:`toylab.analysis.bayes_regression`): ridge regression (optimal for
fresh tasks) and the posterior mean over the M pretraining tasks (dMMSE).
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..analysis.bayes_regression import ridge_predictions, task_posterior_predictions
from ..core.config import ConfigError, TrainConfig, nonnegative, nonnegative_int, positive, positive_int, static, sweepable
from ..core.family import Family, register_family
from ..models.sequence import init_sequence_transformer
from ..tasks.regression import check_regression_task, interleave, regression_batch, task_pool

__all__ = ["ICLRegressionConfig", "ICL_REGRESSION", "predictions", "eval_batches", "EVAL_CHUNK"]

EVAL_CHUNK = 16  # held-out sequences the dMMSE predictor weighs at once (its memory: chunk × points × pool)


@dataclasses.dataclass(frozen=True)
class ICLRegressionConfig(TrainConfig):
    """In-context linear regression. Defaults: dimension 4, 16 pairs per sequence, σ = 0.5,
    M = 16 tasks from a pool of 1 024, a 2-block transformer (d_model 64, 4 heads, MLP 128),
    batch 64, AdamW lr 1e-3."""

    dim: int = static(4, check=positive_int, help="dimension of x and w")
    n_points: int = static(16, check=positive_int, help="(x, y) pairs per sequence")
    pool_size: int = static(1024, check=positive_int, help="tasks in the fixed pool M is drawn from")
    task_seed: int = static(0, check=nonnegative_int, help="seed of the task pool")
    n_tasks: float = sweepable(16, check=nonnegative, whole=True,
                               help="pretraining tasks M: the first M of the pool (0: a fresh task every sequence)")
    noise_std: float = sweepable(0.5, check=positive, help="σ of the label noise y = w·x + ε")
    n_layers: int = static(2, check=positive_int, help="transformer blocks")
    n_heads: int = static(4, check=positive_int, help="attention heads per block")
    d_model: int = static(64, check=positive_int, help="residual stream width")
    d_mlp: int = static(128, check=nonnegative_int, help="MLP neurons per block (0: attention only)")
    batch_size: int = static(64, check=positive_int, help="sequences per step")
    eval_size: int = static(256, check=positive_int, help="held-out sequences of each logging step")

    def validate(self):
        super().validate()
        check_regression_task(self.dim, self.n_points, self.pool_size, self.n_tasks)
        if self.d_model % self.n_heads:
            raise ConfigError("n_heads", self.n_heads, f"must divide d_model={self.d_model}")
        if self.eval_size % EVAL_CHUNK:
            raise ConfigError("eval_size", self.eval_size, f"must be a multiple of {EVAL_CHUNK}")


def _pool(cfg):
    return task_pool(cfg.task_seed, cfg.pool_size, cfg.dim)


def predictions(model, x, y):
    """(batch, n_points) the model's prediction of each y_k, read at x_k's position."""
    return jax.vmap(model)(interleave(x, y))[:, 0::2, 0]


def _eval_key(cfg):
    return jax.random.fold_in(jax.random.key(cfg.task_seed), 2 ** 31 - 1)


def eval_batches(cfg: ICLRegressionConfig, hparams):
    """((x, y) of the pretraining tasks, (x, y) of fresh Gaussian tasks): the held-out
    sequences every logging step reads."""
    k_pre, k_fresh = jax.random.split(_eval_key(cfg))
    x, y, _ = regression_batch(k_pre, cfg.eval_size, cfg.n_points, _pool(cfg), hparams["n_tasks"],
                               hparams["noise_std"])
    xf, yf, _ = regression_batch(k_fresh, cfg.eval_size, cfg.n_points, _pool(cfg), 0.0, hparams["noise_std"])
    return (x, y), (xf, yf)


def _init(cfg: ICLRegressionConfig, hparams, key):
    return init_sequence_transformer(key, d_in=cfg.dim + 1, d_out=1, n_ctx=2 * cfg.n_points, d_model=cfg.d_model,
                                     n_heads=cfg.n_heads, n_layers=cfg.n_layers, d_mlp=cfg.d_mlp, embed="vectors")


def _batch(cfg: ICLRegressionConfig, hparams, key):
    x, y, _ = regression_batch(key, cfg.batch_size, cfg.n_points, _pool(cfg), hparams["n_tasks"],
                               hparams["noise_std"])
    return {"x": x, "y": y}


def _loss(model, batch, cfg: ICLRegressionConfig, hparams):
    return jnp.mean((predictions(model, batch["x"], batch["y"]) - batch["y"]) ** 2), {}


def _bayes(cfg, hparams, x, y):
    """(ridge, dMMSE) predictions (batch, n_points), the dMMSE in chunks of EVAL_CHUNK sequences."""
    noise = hparams["noise_std"]
    ridge = jax.vmap(lambda a, b: ridge_predictions(a, b, noise))(x, y)
    pool = jnp.asarray(_pool(cfg))

    def chunk(ab):
        return jax.vmap(lambda a, b: task_posterior_predictions(a, b, pool, noise, hparams["n_tasks"]))(*ab)
    shape = (-1, EVAL_CHUNK) + x.shape[1:]
    dmmse = jax.lax.map(chunk, (x.reshape(shape), y.reshape((-1, EVAL_CHUNK) + y.shape[1:]))).reshape(y.shape)
    return ridge, dmmse


def _evaluate(model, cfg: ICLRegressionConfig, hparams):
    (x, y), (xf, yf) = eval_batches(cfg, hparams)
    pred = predictions(model, xf, yf)
    ridge, dmmse = _bayes(cfg, hparams, xf, yf)
    finite_m = hparams["n_tasks"] > 0
    return {
        "eval_loss": jnp.mean((predictions(model, x, y) - y) ** 2),
        "eval_loss_fresh": jnp.mean((pred - yf) ** 2),
        "delta_ridge": jnp.mean((pred - ridge) ** 2),
        "delta_dmmse": jnp.where(finite_m, jnp.mean((pred - dmmse) ** 2), jnp.nan),
        "ridge_loss_fresh": jnp.mean((ridge - yf) ** 2),
        "dmmse_loss_fresh": jnp.where(finite_m, jnp.mean((dmmse - yf) ** 2), jnp.nan),
    }


def _working_bytes(cfg: ICLRegressionConfig) -> int:
    n_ctx = 2 * cfg.n_points
    rows = max(cfg.batch_size, 2 * cfg.eval_size)
    per_row = 4 * cfg.n_layers * (n_ctx * (6 * cfg.d_model + 2 * cfg.d_mlp) + 3 * cfg.n_heads * n_ctx ** 2)
    dmmse = 4 * 3 * EVAL_CHUNK * cfg.n_points * cfg.pool_size
    return int(rows * per_row + dmmse + 4 * cfg.pool_size * cfg.dim)


ICL_REGRESSION = register_family(Family(
    name="icl_regression",
    config=ICLRegressionConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    summary=_evaluate,
    evaluate=_evaluate,
    working_bytes=_working_bytes,
    description=__doc__.splitlines()[0],
))
