"""Activations of a trained toylab model as a data source: the dictionaries family's data
when it reads a results folder instead of planted features.

A source is run ``index`` of a results folder: its model is read at a named layer (the
model's own :class:`~toylab.models.LayerMaps`), on fresh batches of its family's own data
(its config, optionally with some fields changed). Everything here reads the folder through
:func:`~toylab.core.results.load_results`, once while the folder is unchanged.

:func:`source_fingerprint` names what a source holds (its family, config and trained
arrays), so a config built on one source can refuse to train or resume on another.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import json
from pathlib import Path

import equinox as eqx
import jax
import numpy as np

from ..core.config import ConfigError, described, nonnegative_int, static
from ..models import layer_maps

__all__ = ["source_model", "source_fingerprint", "readable_layers", "layer_activations", "source_sizes",
           "source_activations", "resolve_source", "ActivationSourceFields", "NO_SOURCE"]

NO_SOURCE = "synthetic"  # the ``source`` value that reads no folder (the family makes its own data)


_SOURCES: dict = {}  # (path, index) -> (folder stamp, (model, config, family), fingerprint); the 8 latest


def resolve_source(path) -> str:
    """The absolute path of a source folder (``~`` expanded, links resolved), refused by
    name when it is not a folder."""
    if not isinstance(path, (str, Path)) or not str(path).strip():
        raise ConfigError("source", path, "must be 'synthetic' or the path of a toylab results folder")
    resolved = Path(path).expanduser().resolve()
    if not resolved.is_dir():
        raise ConfigError("source", str(path), "must be 'synthetic' or the path of a toylab results folder")
    return str(resolved)


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
    """((model, config, family), fingerprint) of run ``index`` of a results folder, read once
    while the folder is unchanged; a folder rewritten since is read again (and what was
    derived from the old one forgotten)."""
    stamp = _folder_stamp(path)
    held = _SOURCES.get((path, index))
    if held is not None and held[0] == stamp:
        return held[1], held[2]
    # What was derived from any earlier read (readers, sizes, configs) is keyed by path only;
    # a fresh read, after a change or an eviction, forgets it all.
    for cached in (_readers, source_sizes, _source_config):
        cached.cache_clear()
    # Eagerly, even when the read happens inside a trace (a training step that draws its
    # batch from the source): the model's arrays are constants of the program, not tracers.
    with jax.ensure_compile_time_eval():
        value = _read_source(path, index)
        fingerprint = _fingerprint(*value)
    _SOURCES.pop((path, index), None)
    _SOURCES[(path, index)] = (stamp, value, fingerprint)
    while len(_SOURCES) > 8:
        _SOURCES.pop(next(iter(_SOURCES)))
    return value, fingerprint


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


def _fingerprint(model, config, family) -> str:
    """16 hex digits of a hash of the run's family, config and every array of its model."""
    h = hashlib.sha256()
    h.update(family.name.encode())
    h.update(json.dumps(config.to_dict(), sort_keys=True, default=repr).encode())
    arrays = eqx.filter(model, eqx.is_array)
    for where, leaf in jax.tree_util.tree_leaves_with_path(arrays):
        a = np.ascontiguousarray(np.asarray(leaf))
        h.update(f"{jax.tree_util.keystr(where)}:{a.dtype}:{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()[:16]


def _index(index) -> int:
    if isinstance(index, bool) or not isinstance(index, (int, np.integer)) or index < 0:
        raise ConfigError("source_index", index, "must be a non-negative integer (a run's index)")
    return int(index)


def source_model(path: str, index: int = 0):
    """(model, family name) of run ``index`` of the results folder ``path``."""
    (model, _, family), _ = _load_source(resolve_source(path), _index(index))
    return model, family.name


def source_fingerprint(path: str, index: int = 0) -> str:
    """What run ``index`` of the results folder ``path`` holds, as 16 hex digits: a hash of
    its family, its config and its trained arrays. A folder trained again with other data or
    another seed gets another fingerprint; the same training repeated, the same one."""
    return _load_source(resolve_source(path), _index(index))[1]


def readable_layers(model) -> tuple:
    """The layers a dictionary can read (or a transcoder predict) in ``model``, in order: its
    node layers (:class:`~toylab.models.LayerMaps`) and the extra layers it declares (a
    transformer's MLP neurons ``mlp_post.i`` and MLP output ``mlp_out.i``, at the positions
    its ``resid_mid.i`` holds: every position, flattened, before the last block; the answer
    position in it). An MLP transcoder reads ``resid_mid.i`` and predicts ``mlp_out.i``."""
    return layer_maps(model).readable()


def _reader(model, name: str):
    """``read(model, inputs) -> (n, d)``: the activations of layer ``name``, the model run
    only as far as that layer."""
    lm = layer_maps(model)
    return lambda m, inputs: lm.activations(m, inputs, (name,))[name]


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
def source_sizes(path, index, node, target_node="", overrides="") -> dict:
    """{"d_in", "d_out"}: the widths of the layers ``node`` and ``target_node`` (or ``node``
    again) of the source run, found from shapes alone."""
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
    (_, cfg, _), _ = _load_source(resolve_source(path), int(index))
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
    (_, _, family), _ = _load_source(resolve_source(path), int(index))
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


def source_activations(path: str, index: int, node: str, target_node: str, overrides: str, key, n: int, *,
                       fingerprint: str = ""):
    """(x (n, D_in), target (n, D_out), known features or None) of ``n`` examples drawn from a
    fresh batch of the source's data: the activations at ``node``, at ``target_node`` (or x
    itself), and the model's true features there when it knows them (its
    ``known_features(node, target_node, inputs)``). With ``fingerprint``, a source that no
    longer holds what it held then is refused."""
    path = resolve_source(path)
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ConfigError("n", n, "must be a positive integer (examples to draw)")
    now = source_fingerprint(path, index)
    if fingerprint and now != fingerprint:
        raise ConfigError("source", path, f"holds other data than this config was built on (fingerprint {now}, "
                          f"was {fingerprint}): its run {index} was trained again or replaced; build the config "
                          "again to train on what it holds now")
    model, _ = source_model(path, index)
    read_x, read_target = _readers(path, index, node, target_node)
    k_batch, k_rows = jax.random.split(key)
    inputs = _model_inputs(_source_batch(path, index, k_batch, overrides))
    rows = jax.random.randint(k_rows, (n,), 0, jax.tree.leaves(inputs)[0].shape[0])
    inputs = jax.tree.map(lambda a: a[rows], inputs)
    x = read_x(model, inputs)
    target = x if read_target is None else read_target(model, inputs)
    known = getattr(model, "known_features", None)
    return x, target, (known(node, target_node, inputs) if callable(known) else None)


# ----------------------------------------------------------------------------- as config fields


@dataclasses.dataclass(frozen=True)
class ActivationSourceFields:
    """A source run as fields of a family's config (mixed into it). :meth:`check_source`,
    called from the config's ``check_data``, resolves it once: the path made absolute, the
    run loaded and its layers checked, its fingerprint taken (a given one must match) and
    its sizes returned for the manifest. A config rebuilt from a manifest skips it, so
    loading reads no other folder."""

    source: str = static(NO_SOURCE, help=f"'{NO_SOURCE}', or the path of a toylab results folder to read "
                                         "activations from")
    source_index: int = static(0, check=nonnegative_int, help="the run of the source folder (its index)")
    source_fingerprint: str = static("", help="source run: what it holds (a hash of its family, config and trained "
                                     "arrays); found when the config is built; a given one must match")
    source_overrides: str = static("", help="source run: its config fields changed for the data streamed, "
                                   "'name=value,...' (e.g. 'feature_probability=0.1': denser inputs)")
    node: str = static("hidden", help="source run: the node layer the dictionary reads")
    target_node: str = static("", help="source run: a later node layer to predict (a transcoder); empty: an autoencoder")

    @property
    def synthetic(self) -> bool:
        """True when no folder is read."""
        return self.source == NO_SOURCE

    def check_source(self) -> dict:
        """Resolve the source run (see the class docstring); returns {"d_in", "d_out",
        "source_family", "source_fingerprint"}."""
        object.__setattr__(self, "source", resolve_source(self.source))
        _, family_name = source_model(self.source, self.source_index)
        fingerprint = source_fingerprint(self.source, self.source_index)
        if self.source_fingerprint and self.source_fingerprint != fingerprint:
            raise ConfigError("source_fingerprint", self.source_fingerprint,
                              f"must be what {self.source} run {self.source_index} holds now ({fingerprint}): the "
                              "folder was trained again or replaced since")
        object.__setattr__(self, "source_fingerprint", fingerprint)
        return {**source_sizes(self.source, self.source_index, self.node, self.target_node, self.source_overrides),
                "source_family": family_name, "source_fingerprint": fingerprint}

    def read_source(self, key, n: int):
        """:func:`source_activations` of this source, refused if it no longer holds what it
        held when the config was built."""
        return source_activations(self.source, self.source_index, self.node, self.target_node, self.source_overrides,
                                  key, n, fingerprint=self.derived.get("source_fingerprint", ""))

    def replace(self, **changes):
        # Another source (or run of it) is another fingerprint: found again, not carried over.
        if ({"source", "source_index"} & set(changes)) and "source_fingerprint" not in changes:
            changes["source_fingerprint"] = ""
        return super().replace(**changes)
