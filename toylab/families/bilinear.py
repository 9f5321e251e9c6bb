"""bilinear MLPs on images or toy tasks, read by eigendecomposition (Pearce et al. 2024)

The bilinear family: bilinear MLPs trained on images or on toy tasks (Pearce et al. 2024).

One model shape for every task: embedding W_E → bilinear block(s) → head W_U
(:class:`~toylab.models.bilinear.BilinearClassifier`). The task picks the inputs and the loss:

- images (``digits``, ``mnist5k`` or a path to the user's MNIST-format files): flattened
  pixels, minibatches of ``batch_size`` drawn with replacement from the training split,
  cross-entropy over the classes. Held-out metrics use the test split.
- ``modular``: (a + b) mod p with the one-hot a and b concatenated as input, the whole table
  every step and the train fraction a traced mask (as the grokking family), cross-entropy.
- ``sparse``: the sparse features of the superposition family, reconstructed through the
  model (d_model < n_features puts them in superposition), importance-weighted squared error.

The paper's regularisers are both sweepable: Gaussian input noise (std ``input_noise``,
added to the training inputs only) and AdamW weight decay.
"""

from __future__ import annotations

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np

from ..analysis.fourier import weight_norm
from ..core.config import (ConfigError, TrainConfig, in_interval, nonnegative, nonnegative_int, one_of, positive,
                           positive_int, static, sweepable)
from ..core.family import Family, register_family
from ..tasks.losses import masked_mean, weighted_cross_entropy
from ..models.bilinear import init_bilinear_classifier
from ..tasks.images import dataset_problem, load_images
from ..tasks.modular import modular_table, train_mask
from ..tasks.sparse_features import importance_weights, sparse_features

__all__ = ["BilinearConfig", "BILINEAR", "TOY_TASKS", "task_data", "is_image_task"]

TOY_TASKS = ("sparse", "modular")
EVAL_SAMPLES = 4096  # sparse task: the fixed held-out batch measured at every log step


def _at_least_2(v):
    return None if v >= 2 else "must be an integer >= 2"


@dataclasses.dataclass(frozen=True)
class BilinearConfig(TrainConfig):
    """Bilinear MLP. Defaults follow the paper's image models: embedding 512 wide, one
    bilinear layer of 512, no biases, AdamW lr 1e-3, weight decay 0.5, batch 2048, cosine
    schedule, input noise std 0.4 — on scikit-learn's 8×8 digits unless ``dataset`` says
    otherwise."""

    dataset: str = static("digits", help="digits, mnist5k, sparse, modular, or the path of MNIST-format data "
                                         "(an .npz file, a folder of IDX files or an IDX images file)")
    data_seed: int = static(0, check=nonnegative_int, help="seed of the train/test split (images, modular)")
    test_fraction: float = static(0.2, check=in_interval(0, 1, lo_open=True, hi_open=True),
                                  help="share of the images held out (files that bring their own split keep it)")
    hidden: int = static(512, check=positive_int, help="width of each bilinear layer (rows of W and V)")
    d_model: int = static(512, check=nonnegative_int, help="embedding width; 0: no embedding, the layer reads the input")
    n_layers: int = static(1, check=positive_int, help="bilinear blocks (more than one needs residual=true)")
    residual: bool = static(False, help="residual connections around the bilinear blocks")
    bias: bool = static(False, help="biases, as a constant 1 appended to each bilinear layer's input")
    batch_size: int = static(2048, check=positive_int, help="samples per step (images, sparse)")
    p: int = static(113, check=_at_least_2, help="modular task: modulus")
    n_features: int = static(20, check=positive_int, help="sparse task: number of features")
    train_fraction: float = sweepable(0.3, check=in_interval(0, 1, lo_open=True), help="modular task: share of pairs that trains")
    feature_probability: float = sweepable(0.1, check=in_interval(0, 1), help="sparse task: probability a feature is nonzero")
    importance_decay: float = sweepable(0.9, check=positive, help="sparse task: importance I_i = decay**i")
    input_noise: float = sweepable(0.4, check=nonnegative, help="std of Gaussian noise added to the training inputs")
    steps: int = static(2000, check=positive_int, help="optimizer steps")
    schedule: str = static("cosine", check=one_of("constant", "cosine"), help="learning-rate schedule after warmup")
    weight_decay: float = sweepable(0.5, check=nonnegative, help="decoupled AdamW weight decay")

    def validate(self):
        super().validate()
        if self.n_layers > 1 and not self.residual:
            raise ConfigError("n_layers", self.n_layers, "more than one bilinear block needs residual=true")
        if self.residual and self.d_model == 0:
            raise ConfigError("residual", self.residual, "a residual stream needs an embedding (d_model > 0)")


    def check_data(self) -> dict:
        """Images: read (and cache) the data now, so a bad file is refused before anything is
        written or compiled; its sizes are recorded, so results load without it."""
        if self.dataset in TOY_TASKS:
            return {}
        problem = dataset_problem(self.dataset)
        if problem:
            raise ConfigError("dataset", self.dataset, problem)
        data = load_images(self.dataset, self.data_seed, self.test_fraction)
        if data.n_classes < 2:
            raise ConfigError("dataset", self.dataset, f"its labels name {data.n_classes} class; a classifier "
                                                       "needs at least 2")
        return {"d_in": int(data.d_in), "n_classes": int(data.n_classes)}


def is_image_task(cfg: BilinearConfig) -> bool:
    return cfg.dataset not in TOY_TASKS


@functools.lru_cache(maxsize=16)
def _modular_inputs(p: int, data_seed: int):
    """One-hot [a, b] inputs (p², 2p) and labels of (a + b) mod p, rows in split order."""
    table = modular_table(p, "+", data_seed)
    eye = np.eye(p, dtype=np.float32)
    return np.concatenate([eye[table.a], eye[table.b]], axis=1), table.c


def task_data(cfg: BilinearConfig):
    """The task's fixed data: an ImageData for images, the (inputs, labels) table for
    modular, None for sparse (sampled fresh each step)."""
    if is_image_task(cfg):
        return load_images(cfg.dataset, cfg.data_seed, cfg.test_fraction)
    if cfg.dataset == "modular":
        return _modular_inputs(cfg.p, cfg.data_seed)
    return None


def _sizes(cfg: BilinearConfig) -> tuple[int, int]:
    """(input width, output width) of the task."""
    if is_image_task(cfg):
        return cfg.derived["d_in"], cfg.derived["n_classes"]
    if cfg.dataset == "modular":
        return 2 * cfg.p, cfg.p
    return cfg.n_features, cfg.n_features


def _init(cfg: BilinearConfig, hparams, key):
    d_in, d_out = _sizes(cfg)
    return init_bilinear_classifier(key, d_in=d_in, n_classes=d_out, d_hidden=cfg.hidden,
                                    d_model=cfg.d_model or None, n_layers=cfg.n_layers, residual=cfg.residual,
                                    bias=cfg.bias)


def _noisy(x, key, hparams):
    return x + hparams["input_noise"] * jax.random.normal(key, x.shape, x.dtype)


def _batch(cfg: BilinearConfig, hparams, key):
    k_rows, k_noise = jax.random.split(key)
    if cfg.dataset == "sparse":
        x = sparse_features(k_rows, cfg.batch_size, cfg.n_features, hparams["feature_probability"])
        return {"x": _noisy(x, k_noise, hparams), "target": x}
    if cfg.dataset == "modular":
        x, labels = task_data(cfg)
        mask = train_mask(len(labels), hparams["train_fraction"])
        return {"x": _noisy(jnp.asarray(x), k_noise, hparams), "labels": jnp.asarray(labels), "mask": mask}
    data = task_data(cfg)
    # Sampling with replacement keeps every step's shape fixed whatever the training-set size.
    rows = jax.random.randint(k_rows, (cfg.batch_size,), 0, data.n_train)
    x = jnp.asarray(data.x_train)[rows]
    return {"x": _noisy(x, k_noise, hparams), "labels": jnp.asarray(data.y_train)[rows],
            "mask": jnp.ones(cfg.batch_size, bool)}


def _sparse_loss(model, x, target, hparams):
    importance = importance_weights(target.shape[-1], hparams["importance_decay"])
    return jnp.mean(importance * (target - model(x)) ** 2)


def _loss(model, batch, cfg: BilinearConfig, hparams):
    if cfg.dataset == "sparse":
        return _sparse_loss(model, batch["x"], batch["target"], hparams), {}
    return weighted_cross_entropy(model(batch["x"]), batch["labels"], batch["mask"], "float32"), {}


def _accuracy(logits, labels, rows):
    return masked_mean((jnp.argmax(logits, -1) == labels).astype(jnp.float32), rows)


def _evaluate(model, cfg: BilinearConfig, hparams):
    """Clean loss and accuracy on the training and the held-out data (sparse: the loss on a
    fixed held-out batch), and the weight norm."""
    out = {"weight_norm": weight_norm(model)}
    if cfg.dataset == "sparse":
        x = sparse_features(jax.random.key(2**31 - 1), EVAL_SAMPLES, cfg.n_features, hparams["feature_probability"])
        out["test_loss"] = _sparse_loss(model, x, x, hparams)
        return out
    if cfg.dataset == "modular":
        x, labels = task_data(cfg)
        is_train = train_mask(len(labels), hparams["train_fraction"])
        splits = {"train": (x, labels, is_train), "test": (x, labels, ~is_train)}
    else:
        data = task_data(cfg)
        splits = {"train": (data.x_train, data.y_train, None), "test": (data.x_test, data.y_test, None)}
    for name, (x, labels, rows) in splits.items():
        logits = model(jnp.asarray(x))
        labels = jnp.asarray(labels)
        rows = jnp.ones(labels.shape, bool) if rows is None else rows
        out[f"{name}_loss"] = weighted_cross_entropy(logits, labels, rows, "float32")
        out[f"{name}_accuracy"] = _accuracy(logits, labels, rows)
    return out


BILINEAR = register_family(Family(
    name="bilinear",
    config=BilinearConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    evaluate=_evaluate,  # its last values are the run's final measures in summary.json
    description=__doc__.splitlines()[0],
))
