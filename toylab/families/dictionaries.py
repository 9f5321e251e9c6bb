"""sparse autoencoders and transcoders scored against known features (SAEs, TopK, JumpReLU, ...)

The dictionaries family: sparse autoencoders and transcoders trained on activations whose
real features are known, scored against them.

Sources (``source``):

- ``synthetic``: N planted features in D dimensions (:mod:`toylab.tasks.synthetic_features`):
  Zipf firing probabilities scaled to ``mean_active`` per example, optional hierarchy and
  low-rank correlation, folded-normal magnitudes and Gaussian noise. The true features are
  the generator's directions and activations.
- the path of a toylab results folder (a run or sweep of any family; ``source_index`` picks
  the run), read by :mod:`toylab.tasks.activations`: the trained model is read at layer
  ``node`` (names from :func:`readable_layers`: the layers the model declares, e.g. a
  transformer's residual stream, MLP neurons ``mlp_post.i`` and MLP output ``mlp_out.i``) and
  its activations there are streamed, fresh every step, from the source family's own data.
  The folder is resolved once, when the config is built (absolute path, sizes, fingerprint);
  a results folder of dictionaries loads without it. A model that knows its features at a
  layer says so (a superposition toy at ``hidden``: column i of W, active by x_i). With
  ``target_node`` the dictionary is a transcoder: it reads ``node`` and predicts
  ``target_node`` (the model's true computation between them); on the superposition toy from
  ``hidden`` to ``output`` the true output features are the unit vectors, active by x_i.

The sparsity coefficient, k, the AuxK weight, JumpReLU's bandwidth and the generator's numbers
(density, exponent, magnitudes, noise, correlation) are sweepable: a grid over them × seeds
is one program per kind and width.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp

from ..analysis import dictionaries as metrics
from ..core.config import (ConfigError, TrainConfig, nonnegative, nonnegative_int, one_of, positive,
                           positive_int, static, sweepable)
from ..core.family import Family, register_family
from ..models.dictionaries import DICTIONARY_KINDS, dictionary_loss, init_dictionary
from ..tasks import synthetic_features as synth
# The source reader lives with the data (tasks/activations.py); its public names stay here too.
from ..tasks.activations import (NO_SOURCE, ActivationSourceFields, layer_activations, readable_layers,  # noqa: F401
                                 source_fingerprint, source_model)
from ..tasks.synthetic_features import SyntheticFeatureFields

__all__ = ["DictionaryConfig", "DICTIONARIES", "source_data", "known_features", "source_model", "readable_layers",
           "layer_activations", "synthetic_generator", "source_fingerprint"]

SYNTHETIC = NO_SOURCE


@dataclasses.dataclass(frozen=True)
class DictionaryConfig(SyntheticFeatureFields, ActivationSourceFields, TrainConfig):
    """A sparse dictionary. Defaults: a ReLU SAE of 64 latents on 32 planted features in 16
    dimensions (3 active per example), Adam lr 1e-3, batch 1024, 5 000 steps.

    Its data come from one of two sources, each with its own fields: planted features
    (:class:`~toylab.tasks.synthetic_features.SyntheticFeatureFields`, ``source=synthetic``)
    or a trained run's activations
    (:class:`~toylab.tasks.activations.ActivationSourceFields`, ``source=PATH``)."""

    kind: str = static("relu", check=one_of(*DICTIONARY_KINDS), help="dictionary kind")
    n_latents: int = static(64, check=positive_int, help="dictionary width L")
    batch_size: int = static(1024, check=positive_int, help="activation vectors per step")
    prefixes: tuple = static((), type="ints", help="matryoshka: nested prefix sizes, increasing, the last = n_latents")
    dead_steps: int = static(500, check=positive_int, help="steps without firing after which a latent is dead (AuxK)")
    k_aux: int = static(0, check=nonnegative_int, help="AuxK: dead latents that reconstruct the residual (0: D_in // 2)")
    eval_size: int = static(4096, check=positive_int, help="held-out activation vectors the final scores use")
    sparsity: float = sweepable(1.0, check=nonnegative, help="λ: norm-weighted L1 (relu) or L0 (jumprelu) coefficient")
    k: float = sweepable(4.0, check=positive, help="active latents per example (topk, matryoshka: a whole number; "
                         "batchtopk: an average over the batch, k·batch_size kept per batch)")
    aux_coefficient: float = sweepable(1 / 32, check=nonnegative, help="AuxK loss weight (Gao et al.: 1/32)")
    # JumpReLU: Rajamanoharan et al. start θ at 1e-3 with ε = 1e-3 on inputs scaled to E‖x‖² = D and
    # train for billions of tokens; in a few thousand steps on unit-magnitude features so few
    # pre-activations fall inside a 1e-3 window that θ barely moves (L0 stays near L), so the
    # defaults here start θ at 0.1 with a 0.05 window.
    bandwidth: float = sweepable(0.05, check=positive, help="jumprelu: straight-through kernel bandwidth ε")
    threshold_init: float = sweepable(0.1, check=positive, help="jumprelu: initial threshold θ of every latent")
    steps: int = static(5000, check=positive_int, help="optimizer steps")

    def validate(self):
        super().validate()
        if self.kind == "matryoshka":
            p = self.prefixes
            if not p or list(p) != sorted(set(p)) or p[0] < 1 or p[-1] != self.n_latents:
                raise ConfigError("prefixes", p, f"must be increasing prefix sizes ending at n_latents={self.n_latents}")
        elif self.prefixes:
            raise ConfigError("prefixes", self.prefixes, "are only for kind=matryoshka")
        if self.synthetic:
            synthetic_generator(self)  # the generator's own rules: active features <= features, hierarchy size, ...
            if self.target_node:
                raise ConfigError("target_node", self.target_node, "a transcoder needs a source run (source=PATH)")
        if self.kind in ("topk", "batchtopk", "matryoshka") and self.k > self.n_latents:
            raise ConfigError("k", self.k, f"must be at most n_latents={self.n_latents}")
        # A count is refused as a fraction rather than rounded inside the program: per example
        # for topk and matryoshka; for batchtopk k is an average, so k·batch_size is the count.
        if self.kind in ("topk", "matryoshka") and not float(self.k).is_integer():
            raise ConfigError("k", self.k, f"must be a whole number for kind={self.kind} (latents kept per example); "
                                           "a fractional k is an average over the batch: kind=batchtopk")
        if self.kind == "batchtopk" and not float(self.k * self.batch_size).is_integer():
            raise ConfigError("k", self.k, f"times batch_size={self.batch_size} must be a whole number (the latents "
                                           "kept per batch)")

    def check_data(self) -> dict:
        """A source run is resolved here, once (:meth:`check_source`); a config rebuilt from
        a results manifest skips this and reads no folder."""
        if self.synthetic:
            return {"d_in": self.dim, "d_out": self.dim}
        return self.check_source()


# ----------------------------------------------------------------------------- sources


def source_data(cfg: DictionaryConfig, hparams, key, n: int):
    """(x (n, D_in), target (n, D_out), true features or None): what the dictionary reads,
    what it reconstructs, and the known answer — (directions (N, D_out), activations (n, N))."""
    if cfg.synthetic:
        generator = synthetic_generator(cfg, hparams)
        x, c = generator.sample(key, n)
        return x, x, (generator.directions(), c)
    return cfg.read_source(key, n)


def known_features(cfg: DictionaryConfig, model, inputs):
    """The source's true features at the dictionary's output space, when the model knows
    them (its ``known_features``): (directions (N, D_out), activations (n, N)); else None."""
    known = getattr(model, "known_features", None)
    return known(cfg.node, cfg.target_node, inputs) if callable(known) else None


# ----------------------------------------------------------------------------- synthetic


def synthetic_generator(cfg: DictionaryConfig, hparams=None) -> synth.SyntheticFeatures:
    """The planted-feature generator of a synthetic config; its numbers from ``hparams``
    (traced inside a sweep) or, without them, the config's own values."""
    return cfg.synthetic_generator(hparams)


# ----------------------------------------------------------------------------- the family


def _k_aux(cfg):
    return cfg.k_aux or None


def _skeleton(cfg: DictionaryConfig, hparams, key):
    """The dictionary's structure from the recorded sizes, with no data read."""
    return init_dictionary(key, cfg.derived["d_in"], cfg.n_latents, cfg.kind, d_out=cfg.derived["d_out"],
                           transcoder=bool(cfg.target_node), prefixes=cfg.prefixes, k=hparams["k"],
                           threshold=hparams["threshold_init"])


def _init(cfg: DictionaryConfig, hparams, key):
    k_data, k_model = jax.random.split(key)
    d_in, d_out = cfg.derived["d_in"], cfg.derived["d_out"]
    _, target, _ = source_data(cfg, hparams, k_data, cfg.batch_size)
    return init_dictionary(k_model, d_in, cfg.n_latents, cfg.kind, d_out=d_out, transcoder=bool(cfg.target_node),
                           prefixes=cfg.prefixes, k=hparams["k"], threshold=hparams["threshold_init"],
                           b_dec=jnp.mean(target, axis=0))


def _batch(cfg: DictionaryConfig, hparams, key):
    x, target, _ = source_data(cfg, hparams, key, cfg.batch_size)
    return {"x": x, "target": target}


def _loss(model, batch, cfg: DictionaryConfig, hparams):
    return dictionary_loss(model, batch["x"], batch["target"], sparsity=hparams["sparsity"], k=hparams["k"],
                           aux_coefficient=hparams["aux_coefficient"], bandwidth=hparams["bandwidth"],
                           dead_steps=cfg.dead_steps, k_aux=_k_aux(cfg))


def _eval_key(cfg):
    # Fixed held-out activations: the same for every run of a sweep, apart from training data.
    return jax.random.fold_in(jax.random.key(cfg.feature_seed), 2 ** 31 - 1)


def _evaluate(model, cfg: DictionaryConfig, hparams):
    x, target, truth = source_data(cfg, hparams, _eval_key(cfg), min(cfg.eval_size, 1024))
    codes = model.encode(x)
    out = {"eval_explained_variance": metrics.explained_variance(target, model.decode(codes)),
           "eval_l0": metrics.l0(codes)}
    if truth is not None:
        out["eval_mmcs"] = metrics.mmcs(truth[0], model.directions())
    return out


def _summary(model, cfg: DictionaryConfig, hparams):
    x, target, truth = source_data(cfg, hparams, _eval_key(cfg), cfg.eval_size)
    codes = model.encode(x)
    x_hat = model.decode(codes)
    if truth is None:
        return {"explained_variance": metrics.explained_variance(target, x_hat),
                "shrinkage": metrics.shrinkage(target, x_hat), "l0": metrics.l0(codes),
                "dead_latents": metrics.dead_latents(codes)}
    return metrics.dictionary_scores(truth[0], model.directions(), target, x_hat, truth[1], codes)


def _working_bytes(cfg: DictionaryConfig) -> int:
    d_in = cfg.derived.get("d_in", cfg.dim)
    d_out = cfg.derived.get("d_out", cfg.dim)
    per_row = 4 * (d_in + 2 * d_out + 4 * cfg.n_latents)  # x, target, x̂; pre, codes, masks, grads
    return int(per_row * max(cfg.batch_size, cfg.eval_size) + 4 * cfg.batch_size * cfg.n_latents)


DICTIONARIES = register_family(Family(
    name="dictionaries",
    config=DictionaryConfig,
    init=_init,
    batch=_batch,
    loss=_loss,
    summary=_summary,
    evaluate=_evaluate,
    skeleton=_skeleton,
    working_bytes=_working_bytes,
    description=__doc__.splitlines()[0],
))
