"""sparse autoencoders and transcoders scored against known features (SAEs, TopK, JumpReLU, ...)

The dictionaries family: sparse autoencoders and transcoders trained on activations whose
real features are known, scored against them.

Sources (``source``):

- ``synthetic``: N planted features in D dimensions (:mod:`toylab.tasks.synthetic_features`):
  Zipf firing probabilities scaled to ``mean_active`` per example, optional hierarchy and
  low-rank correlation, folded-normal magnitudes and Gaussian noise. The true features are
  the generator's directions and activations.
- the path of a toylab results folder (a run or sweep of any family; ``source_index`` picks
  the run): the trained model is read at layer ``node`` (names from
  :func:`readable_layers`: the node layers of the interaction analysis, and a transformer's
  MLP neurons ``mlp_post.i`` and output ``mlp_out.i``) and its activations there are streamed,
  fresh every step, from the source family's own data. A superposition toy at ``hidden``
  has known features: column i of W, active by x_i. With ``target_node`` the dictionary is a
  transcoder: it reads ``node`` and predicts ``target_node`` (the model's true computation
  between them); on the superposition toy from ``hidden`` to ``output`` the true output
  features are the unit vectors, active by x_i.

The sparsity coefficient, k, the AuxK weight, JumpReLU's bandwidth and the generator's numbers
(density, exponent, magnitudes, noise, correlation) are sweepable: a grid over them × seeds
is one program per kind and width.
"""

from __future__ import annotations

import dataclasses
import functools
from pathlib import Path

import jax
import jax.numpy as jnp

from ..analysis import dictionaries as metrics
from ..core.config import (ConfigError, TrainConfig, described, in_interval, nonnegative, nonnegative_int, one_of, positive,
                           positive_int, static, sweepable)
from ..core.family import Family, register_family
from ..core.optim import make_optimizer
from ..models.dictionaries import DICTIONARY_KINDS, dictionary_loss, dictionary_optimizer, init_dictionary
from ..tasks import synthetic_features as synth

__all__ = ["DictionaryConfig", "DICTIONARIES", "source_data", "known_features", "source_model", "readable_layers",
           "layer_activations", "synthetic_generator"]

SYNTHETIC = "synthetic"


@dataclasses.dataclass(frozen=True)
class DictionaryConfig(TrainConfig):
    """A sparse dictionary. Defaults: a ReLU SAE of 64 latents on 32 planted features in 16
    dimensions (3 active per example), Adam lr 1e-3, batch 1024, 5 000 steps."""

    kind: str = static("relu", check=one_of(*DICTIONARY_KINDS), help="dictionary kind")
    n_latents: int = static(64, check=positive_int, help="dictionary width L")
    batch_size: int = static(1024, check=positive_int, help="activation vectors per step")
    prefixes: tuple = static((), type="ints", help="matryoshka: nested prefix sizes, increasing, the last = n_latents")
    dead_steps: int = static(500, check=positive_int, help="steps without firing after which a latent is dead (AuxK)")
    k_aux: int = static(0, check=nonnegative_int, help="AuxK: dead latents that reconstruct the residual (0: D_in // 2)")
    eval_size: int = static(4096, check=positive_int, help="held-out activation vectors the final scores use")
    source: str = static(SYNTHETIC, help="'synthetic', or the path of a toylab results folder to read activations from")
    source_index: int = static(0, check=nonnegative_int, help="the run of the source folder (its index)")
    source_overrides: str = static("", help="source run: its config fields changed for the data streamed, "
                                   "'name=value,...' (e.g. 'feature_probability=0.1': denser inputs)")
    node: str = static("hidden", help="source run: the node layer the dictionary reads")
    target_node: str = static("", help="source run: a later node layer to predict (a transcoder); empty: an autoencoder")
    n_features: int = static(32, check=positive_int, help="synthetic: planted features N")
    dim: int = static(16, check=positive_int, help="synthetic: dimensions D")
    n_parents: int = static(0, check=nonnegative_int, help="synthetic: parent features (the first ones)")
    children_per_parent: int = static(0, check=nonnegative_int, help="synthetic: mutually exclusive children per parent")
    correlation_rank: int = static(0, check=nonnegative_int, help="synthetic: rank of the presence correlations")
    feature_seed: int = static(0, check=nonnegative_int, help="synthetic: seed of the feature directions and correlations")
    sparsity: float = sweepable(1.0, check=nonnegative, help="λ: norm-weighted L1 (relu) or L0 (jumprelu) coefficient")
    k: float = sweepable(4.0, check=positive, help="active latents per example (topk, batchtopk, matryoshka)")
    aux_coefficient: float = sweepable(1 / 32, check=nonnegative, help="AuxK loss weight (Gao et al.: 1/32)")
    # JumpReLU: Rajamanoharan et al. start θ at 1e-3 with ε = 1e-3 on inputs scaled to E‖x‖² = D and
    # train for billions of tokens; in a few thousand steps on unit-magnitude features so few
    # pre-activations fall inside a 1e-3 window that θ barely moves (L0 stays near L), so the
    # defaults here start θ at 0.1 with a 0.05 window.
    bandwidth: float = sweepable(0.05, check=positive, help="jumprelu: straight-through kernel bandwidth ε")
    threshold_init: float = sweepable(0.1, check=positive, help="jumprelu: initial threshold θ of every latent")
    mean_active: float = sweepable(3.0, check=positive, help="synthetic: expected active features per example")
    zipf_exponent: float = sweepable(0.5, check=nonnegative, help="synthetic: firing probability ∝ rank^-exponent")
    child_probability: float = sweepable(0.5, check=in_interval(0, 1), help="synthetic: a child fires given its parent")
    correlation_strength: float = sweepable(0.0, check=in_interval(0, 1, hi_open=True),
                                            help="synthetic: share of presence variance from the low-rank factors")
    magnitude_mean: float = sweepable(1.0, check=positive, help="synthetic: mean magnitude of a present feature")
    magnitude_std: float = sweepable(0.0, check=nonnegative, help="synthetic: magnitude std (folded normal)")
    noise_std: float = sweepable(0.0, check=nonnegative, help="synthetic: Gaussian noise std per dimension")
    steps: int = static(5000, check=positive_int, help="optimizer steps")

    @property
    def synthetic(self) -> bool:
        return self.source == SYNTHETIC

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

    def check_data(self) -> dict:
        """A source run: load it now (cached), so a missing folder, a bad index or a node the
        model does not have is refused before anything is written; record the sizes."""
        if self.synthetic:
            return {"d_in": self.dim, "d_out": self.dim}
        _, family_name = source_model(self.source, self.source_index)
        return {**_source_sizes(self.source, self.source_index, self.node, self.target_node, self.source_overrides),
                "source_family": family_name}


# ----------------------------------------------------------------------------- sources


_SOURCES: dict = {}  # (path, index) -> (folder stamp, (model, config, family)); the 8 latest


def _folder_stamp(path: str) -> tuple:
    """What changes when a results folder is rewritten or finishes more chunks: its manifest's
    and summary's identity, times and sizes."""
    stamp = []
    for name in ("manifest.json", "summary.json"):
        try:
            st = (Path(path) / name).stat()
            stamp.append((name, st.st_ino, st.st_mtime_ns, st.st_size))
        except OSError:
            stamp.append((name, None))
    return tuple(stamp)


def _load_source(path: str, index: int):
    """(model, config, family) of run ``index`` of a results folder, read once while the
    folder is unchanged; a folder rewritten since is read again (and what was derived from
    the old one forgotten)."""
    stamp = _folder_stamp(path)
    held = _SOURCES.get((path, index))
    if held is not None and held[0] == stamp:
        return held[1]
    # What was derived from any earlier read (readers, sizes, configs) is keyed by path only;
    # a fresh read, after a change or an eviction, forgets it all.
    for cached in (_readers, _source_sizes, _source_config):
        cached.cache_clear()
    value = _read_source(path, index)
    _SOURCES.pop((path, index), None)
    _SOURCES[(path, index)] = (stamp, value)
    while len(_SOURCES) > 8:
        _SOURCES.pop(next(iter(_SOURCES)))
    return value


def _read_source(path: str, index: int):
    from ..core.results import load_results

    results = load_results(path)
    runs = list(results)
    if not runs:
        raise ConfigError("source", path, "has no finished runs")
    by_index = {r.index: r for r in runs}
    if index not in by_index:
        raise ConfigError("source_index", index, f"must be the index of a finished run of {path}: "
                          f"{', '.join(map(str, sorted(by_index)))}")
    run = by_index[index]
    return run.model, run.config, results.family


def source_model(path: str, index: int = 0):
    """(model, family name) of run ``index`` of the results folder ``path``."""
    if not Path(path).is_dir():
        raise ConfigError("source", path, "must be 'synthetic' or the path of a toylab results folder")
    model, _, family = _load_source(str(Path(path).resolve()), int(index))
    return model, family.name


def readable_layers(model) -> tuple:
    """The layers a dictionary can read (or a transcoder predict) in ``model``, in order: the
    node layers of :func:`toylab.analysis.interaction.node_layers` and, in a transformer, each
    block's MLP neurons ``mlp_post.i`` and MLP output ``mlp_out.i`` (at the positions its
    ``resid_mid.i`` holds: every position, flattened, before the last block; the answer
    position in it). An MLP transcoder reads ``resid_mid.i`` and predicts ``mlp_out.i``."""
    from ..analysis.interaction import node_layers
    from ..models.transformer import Transformer

    names = list(node_layers(model))
    if isinstance(model, Transformer):
        for i in range(len(model.blocks)):
            at = names.index(f"resid_mid.{i}") + 1
            names[at:at] = [f"mlp_post.{i}", f"mlp_out.{i}"]
    return tuple(names)


def _mlp_layer(name: str):
    """(block, 'post' or 'out') for a transformer MLP layer name, else None."""
    head, _, block = name.partition(".")
    return (int(block), head[4:]) if head in ("mlp_post", "mlp_out") and block.isdigit() else None


def _reader(model, name: str):
    """``read(model, inputs) -> (n, d)``: the activations of layer ``name``."""
    from ..analysis.interaction import cut

    mlp = _mlp_layer(name)
    if mlp is None:
        sections = cut(model)
        at = sections.names.index(name)
        return lambda m, inputs: sections.activations(m, inputs)[at]
    block, part = mlp
    sections = cut(model)
    at = sections.names.index(f"resid_mid.{block}")
    d_model = model.W_pos.shape[1]

    def read(m, inputs):
        mid = sections.activations(m, inputs)[at]
        out, _, post = m.blocks[block].mlp(mid.reshape(mid.shape[0], -1, d_model), m.activation)
        return (post if part == "post" else out).reshape(mid.shape[0], -1)
    return read


def layer_activations(model, inputs, name: str):
    """(n, d) activations of ``model`` at layer ``name`` (from :func:`readable_layers`) for
    ``inputs`` (n, ...), as a dictionary on that layer reads them."""
    names = readable_layers(model)
    if name not in names:
        raise ConfigError("name", name, f"is not a layer of the model; it has: {', '.join(names)}")
    return _reader(model, name)(model, inputs)


@functools.lru_cache(maxsize=8)
def _readers(path: str, index: int, node: str, target_node: str):
    """(read_x, read_target or None) of the source run, its layers checked."""
    model, _ = source_model(path, index)
    names = readable_layers(model)
    for field, name in (("node", node), ("target_node", target_node)):
        if name and name not in names:
            raise ConfigError(field, name, f"is not a layer of the source model; it has: {', '.join(names)}")
    if node == names[-1]:
        raise ConfigError("node", node, "must not be the model's output layer (the dictionary reads a layer inside)")
    if target_node and names.index(target_node) <= names.index(node):
        raise ConfigError("target_node", target_node, f"must come after node={node!r} in {', '.join(names)}")
    return _reader(model, node), (_reader(model, target_node) if target_node else None)


@functools.lru_cache(maxsize=8)
def _source_sizes(path, index, node, target_node, overrides=""):
    model, _ = source_model(path, index)
    read_x, read_target = _readers(path, index, node, target_node)
    _source_config(path, index, overrides)  # refuses bad overrides by name first
    try:
        inputs = _model_inputs(jax.eval_shape(lambda k: _source_batch(path, index, k, overrides), jax.random.key(0)))
        x = jax.eval_shape(lambda i: read_x(model, i), inputs)
        target = x if read_target is None else jax.eval_shape(lambda i: read_target(model, i), inputs)
    except (TypeError, ValueError) as err:
        if not overrides:
            raise
        raise ConfigError("source_overrides", overrides, f"the source model cannot read data made with these "
                          f"changes ({type(err).__name__}: {str(err).splitlines()[0][:120]})") from None
    return {"d_in": int(x.shape[-1]), "d_out": int(target.shape[-1])}


def _parse_overrides(text: str) -> dict:
    out = {}
    for item in filter(None, (part.strip() for part in text.split(","))):
        name, eq, value = item.partition("=")
        if not eq or not name.strip() or not value.strip():
            raise ConfigError("source_overrides", text, "must be 'name=value' pairs separated by commas")
        value = value.strip()
        for convert in (int, float):
            try:
                value = convert(value)
                break
            except ValueError:
                pass
        out[name.strip()] = value
    return out


@functools.lru_cache(maxsize=8)
def _source_config(path, index, overrides: str = ""):
    """The source run's config with ``overrides`` applied (checked by its own class)."""
    _, cfg, family = _load_source(str(Path(path).resolve()), int(index))
    changes = _parse_overrides(overrides)
    if not changes:
        return cfg
    fields = {f.name for f in dataclasses.fields(cfg)}
    unknown = sorted(set(changes) - fields)
    if unknown:
        raise ConfigError("source_overrides", overrides, f"{unknown[0]!r} is not a field of the source's "
                          f"{type(cfg).__name__}")
    try:
        return cfg.replace(**changes)
    except ConfigError as err:
        raise ConfigError("source_overrides", overrides, f"the source config refuses it: {err}") from None


def _source_batch(path, index, key, overrides: str = ""):
    _, _, family = _load_source(str(Path(path).resolve()), int(index))
    cfg = _source_config(path, index, overrides)
    return family.batch(cfg, cfg.hparams(), key)


def _model_inputs(batch):
    """The model inputs of a family's batch: the array itself, or its tokens / x."""
    if isinstance(batch, dict):
        for name in ("tokens", "x"):
            if name in batch:
                return batch[name]
        raise ConfigError("source", described(f"a batch with keys {sorted(batch)}"),
                          "its family's batch has no 'tokens' or 'x' to read")
    return batch


def source_data(cfg: DictionaryConfig, hparams, key, n: int):
    """(x (n, D_in), target (n, D_out), true features or None): what the dictionary reads,
    what it reconstructs, and the known answer — (directions (N, D_out), activations (n, N))."""
    if cfg.synthetic:
        generator = synthetic_generator(cfg, hparams)
        x, c = generator.sample(key, n)
        return x, x, (generator.directions(), c)
    model, _ = source_model(cfg.source, cfg.source_index)
    read_x, read_target = _readers(cfg.source, cfg.source_index, cfg.node, cfg.target_node)
    k_batch, k_rows = jax.random.split(key)
    inputs = _model_inputs(_source_batch(cfg.source, cfg.source_index, k_batch, cfg.source_overrides))
    rows = jax.random.randint(k_rows, (n,), 0, jax.tree.leaves(inputs)[0].shape[0])
    inputs = jax.tree.map(lambda a: a[rows], inputs)
    x = read_x(model, inputs)
    target = x if read_target is None else read_target(model, inputs)
    return x, target, known_features(cfg, model, inputs)


def known_features(cfg: DictionaryConfig, model, inputs):
    """The source's true features at the dictionary's output space, when known:
    (directions (N, D_out), activations (n, N)); else None."""
    from ..models.superposition import ToyModel

    if isinstance(model, ToyModel) and cfg.node == "hidden" and model.kind in ("linear", "relu_output"):
        if cfg.target_node == "output":
            return jnp.eye(model.W.shape[1], dtype=jnp.float32), inputs
        if not cfg.target_node:
            return model.W.T, inputs
    return None


# ----------------------------------------------------------------------------- synthetic


def synthetic_generator(cfg: DictionaryConfig, hparams=None) -> synth.SyntheticFeatures:
    """The planted-feature generator of a synthetic config; its numbers from ``hparams``
    (traced inside a sweep) or, without them, the config's own values."""
    h = cfg.hparams() if hparams is None else hparams
    return synth.SyntheticFeatures(
        n_features=cfg.n_features, dim=cfg.dim, n_parents=cfg.n_parents, children_per_parent=cfg.children_per_parent,
        correlation_rank=cfg.correlation_rank, seed=cfg.feature_seed,
        **{name: h[name] for name in _GENERATOR_NUMBERS})


_GENERATOR_NUMBERS = ("mean_active", "zipf_exponent", "child_probability", "correlation_strength", "magnitude_mean",
                      "magnitude_std", "noise_std")


# ----------------------------------------------------------------------------- the family


def _k_aux(cfg):
    return cfg.k_aux or None


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


def _optimizer(cfg, hparams):
    return dictionary_optimizer(make_optimizer(cfg, hparams))


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
    optimizer=_optimizer,
    working_bytes=_working_bytes,
    description=__doc__.splitlines()[0],
))
