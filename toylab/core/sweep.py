"""The sweep runner: a grid over config fields × seeds, trained by one program per static group.

Grid points are grouped by their static fields (one compile per group, cached on disk by
JAX's persistent compilation cache). A group's runs are stacked along a leading axis,
chunked to bound memory, padded to a multiple of the device count and laid over a mesh of
all devices; each chunk trains as a Python loop over compiled segments, which gives the
progress bar and a checkpoint after every segment. Results go to a :class:`Store` folder
and come back as :class:`Results`, addressable by hyperparameter value.
"""

from __future__ import annotations

import dataclasses
import datetime
import itertools
import math
import shutil
import tempfile
from pathlib import Path
from typing import Any, Iterable

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .config import SEED, SWEEPABLE, ConfigError
from .devices import device_summary, enable_compilation_cache, shard_leading, sweep_mesh, to_host
from .family import Family, get_family
from .progress import Progress
from .store import Store, StoreError
from .train import Trainer, default_block_size, ensemble_map, make_key, stack_hparams

__all__ = ["run_sweep", "load_results", "Results", "RunResult", "expand_grid"]


# ----------------------------------------------------------------------------- grid


def expand_grid(family: Family, base: dict | Any | None, grid: dict[str, Iterable] | None, seeds: int):
    """Validated configs for every grid point, and the runs (point × seed).

    Returns (base_config, grid with parsed values, point configs, runs) where each run is a
    dict {index, point, seed}.
    """
    cfg_cls = family.config
    if base is None:
        base = {}
    if isinstance(base, cfg_cls):
        base_cfg = base
    elif isinstance(base, dict):
        for k in base:
            if k not in cfg_cls.field_info():
                raise ConfigError(k, base[k], f"unknown field of family {family.name}; fields: {', '.join(cfg_cls.field_info())}")
        base_cfg = cfg_cls(**base)
    else:
        raise ConfigError("base", base, f"must be a dict of fields or a {cfg_cls.__name__}")
    if isinstance(seeds, bool) or not isinstance(seeds, (int, np.integer)) or seeds < 1:
        raise ConfigError("seeds", seeds, "must be a positive integer")
    grid = dict(grid or {})
    parsed: dict[str, list] = {}
    for name, values in grid.items():
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(name, values, "grid values must be a list")
        values = list(values)
        if not values:
            raise ConfigError(name, values, "grid needs at least one value")
        vals = [cfg_cls.parse_field(name, v) for v in values]
        if len(set(map(repr, vals))) != len(vals):
            raise ConfigError(name, values, "grid values must be distinct")
        parsed[name] = vals
    points = [dict(zip(parsed, combo)) for combo in itertools.product(*parsed.values())] or [{}]
    configs = [base_cfg.replace(**p) for p in points]
    runs = [
        {"index": i * seeds + s, "point": i, "seed": configs[i].seed + s}
        for i in range(len(points)) for s in range(seeds)
    ]
    return base_cfg, parsed, points, configs, runs


def _chunks(runs, configs, chunk_size):
    """Group runs by the static key of their config, then cut each group into chunks."""
    groups: dict[tuple, list[dict]] = {}
    for r in runs:
        groups.setdefault(configs[r["point"]].static_key(), []).append(r)
    out = []
    for gi, members in enumerate(groups.values()):
        for ci in range(0, len(members), chunk_size):
            out.append((f"g{gi:03d}-c{ci // chunk_size:04d}", gi, members[ci:ci + chunk_size]))
    return out


def _segment_length(n_logs: int, segments: int) -> int:
    """The smallest divisor of n_logs giving at most ``segments`` segments (one compile)."""
    for d in range(1, n_logs + 1):
        if n_logs % d == 0 and n_logs // d <= segments:
            return d
    return n_logs


# ----------------------------------------------------------------------------- running


class _GroupProgram:
    """The compiled pieces for one static group, over a padded chunk of runs."""

    def __init__(self, family: Family, cfg, segments: int, block_size: int | str | None = None, n_devices: int = 1):
        self.trainer = trainer = Trainer(family, cfg)
        self.cfg = cfg
        self.seg_len = _segment_length(trainer.n_logs, segments)
        impl = cfg.prng_impl

        def init(hp, seed):
            return trainer.init(hp, make_key(seed, impl))

        def segment(state, hp, seed):
            return trainer.segment(state, hp, make_key(seed, impl), self.seg_len)

        def final(state, hp):
            model = trainer._model(state.params)
            snaps = jax.tree.map(lambda b: b[:-1], state.snapshots) if trainer.snapshot_steps else None
            return state.params, snaps, trainer.summary(model, hp)

        if block_size == "auto":  # measured from one instance's compiled segment
            hp = cfg.hparams()
            state = jax.eval_shape(init, hp, np.uint32(0))
            block_size = default_block_size(fn=segment, args=(state, hp, np.uint32(0)))
        self.block_size = block_size
        donate = (0,) if jax.default_backend() != "cpu" else ()
        self.init = jax.jit(jax.vmap(init))
        self.segment = jax.jit(ensemble_map(segment, block_size, groups=n_devices), donate_argnums=donate)
        self.final = jax.jit(jax.vmap(final))


def _run_chunk(prog: _GroupProgram, store: Store, chunk_id: str, members, configs, mesh, progress: Progress):
    n = len(members)
    ndev = mesh.devices.size
    n_pad = math.ceil(n / ndev) * ndev
    pad = [members[i] if i < n else members[-1] for i in range(n_pad)]  # padded rows repeat the last run
    hp = stack_hparams([configs[r["point"]] for r in pad])
    seeds = np.asarray([r["seed"] for r in pad], np.uint32)
    hp_s, seeds_s = shard_leading((hp, seeds), mesh)

    trainer = prog.trainer
    state = prog.init(hp_s, seeds_s)
    metric_shapes = jax.eval_shape(prog.segment, state, hp_s, seeds_s)[1]
    metrics = {k: np.zeros((n_pad, trainer.n_logs), np.float32) for k in metric_shapes}
    done = 0
    ckpt = store.load_checkpoint(chunk_id, {"state": to_host(state), "metrics": metrics, "done": np.int32(0)})
    if ckpt is not None:
        state, metrics, done = shard_leading(ckpt["state"], mesh), ckpt["metrics"], int(ckpt["done"])
        progress.update(n * done * prog.seg_len * prog.cfg.log_every, note=f"{chunk_id} resumed")
    n_seg = trainer.n_logs // prog.seg_len
    for s in range(done // prog.seg_len, n_seg):
        state, m = prog.segment(state, hp_s, seeds_s)
        m = to_host(m)
        for k in metrics:
            metrics[k][:, s * prog.seg_len:(s + 1) * prog.seg_len] = m[k]
        done = (s + 1) * prog.seg_len
        if s + 1 < n_seg:
            store.save_checkpoint(chunk_id, {"state": to_host(state), "metrics": metrics, "done": np.int32(done)})
        progress.update(n * prog.seg_len * prog.cfg.log_every, note=chunk_id)
    params, snaps, summary = to_host(prog.final(state, hp_s))
    cut = lambda tree: jax.tree.map(lambda x: x[:n], tree)  # noqa: E731
    arrays = {"run_index": np.asarray([r["index"] for r in members], np.int64),
              "steps": np.asarray(jnp.arange(1, trainer.n_logs + 1) * prog.cfg.log_every)}
    arrays.update({f"metric/{k}": v[:n] for k, v in metrics.items()})
    arrays.update({f"summary/{k}": np.asarray(v)[:n] for k, v in summary.items()})
    store.save_chunk(chunk_id, cut(params), cut(snaps) if snaps is not None else None, arrays)


def run_sweep(family: str | Family, base: dict | Any | None = None, grid: dict | None = None, *,
              seeds: int = 1, out: str | Path | None = None, resume: bool = False,
              chunk_size: int = 4096, segments: int = 10, block_size: int | str | None = "auto",
              quiet: bool = False) -> "Results":
    """Train every grid point × seed; returns :class:`Results`.

    Args:
        family: a family name (``"superposition"``) or :class:`Family`.
        base: field values shared by all points (dict, or a config of the family).
        grid: ``{field: [values]}``; the sweep is their Cartesian product.
        seeds: seeds per point; seed i of a point uses ``config.seed + i``.
        out: results folder (None: a temporary folder, removed after loading).
        resume: continue the sweep already in ``out``; finished chunks are kept, a running
            chunk continues from its last checkpoint.
        chunk_size: at most this many runs are trained at once (bounds memory).
        segments: each chunk trains in about this many compiled segments, with a
            progress update and a checkpoint after each.
        block_size: instances trained at once inside a chunk's program on each device
            (``"auto"``: on CPU, as many as keep the working set near 40 MB, measured from
            one instance's compiled segment, at most 64; all of them on an accelerator).
            Results do not depend on it.
        quiet: no progress bar.
    """
    family = get_family(family)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError("chunk_size", chunk_size, "must be a positive integer")
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ConfigError("segments", segments, "must be a positive integer")
    if block_size == "auto":
        pass  # chosen per static group by _GroupProgram
    elif block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
                                     or block_size < 1):
        raise ConfigError("block_size", block_size, 'must be a positive integer, "auto" or None')
    base_cfg, grid_vals, points, configs, runs = expand_grid(family, base, grid, seeds)
    chunks = _chunks(runs, configs, chunk_size)
    for chunk_id, _, members in chunks:
        for r in members:
            r["chunk"] = chunk_id
    import toylab  # the version, for the manifest

    manifest = {
        "format": 1,
        "family": family.name,
        "base": base_cfg.to_dict(),
        "grid": grid_vals,
        "seeds": int(seeds),
        "chunk_size": int(chunk_size),
        "points": points,
        "runs": runs,
        "toylab_version": toylab.__version__,
        "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **device_summary(),
    }
    temporary = out is None
    root = Path(tempfile.mkdtemp(prefix="toylab-")) if temporary else Path(out)
    writer = jax.process_index() == 0
    store = Store.open(root, manifest, resume=resume, writer=writer)
    try:
        enable_compilation_cache()
        mesh = sweep_mesh()
        todo = [c for c in chunks if not store.has_chunk(c[0])]
        steps_of = lambda members: sum(configs[r["point"]].steps for r in members)  # noqa: E731
        progress = Progress(sum(steps_of(m) for _, _, m in todo),
                            label=f"{family.name}: {len(runs)} runs", quiet=quiet)
        programs: dict[int, _GroupProgram] = {}
        for chunk_id, gi, members in todo:
            if gi not in programs:
                programs = {gi: _GroupProgram(family, configs[members[0]["point"]], segments,
                                              block_size, mesh.devices.size)}
            _run_chunk(programs[gi], store, chunk_id, members, configs, mesh, progress)
            store.write_summary(_summary_rows(store, chunks, configs, grid_vals))
        progress.close()
        store.write_summary(_summary_rows(store, chunks, configs, grid_vals))
        results = load_results(root, family=family, eager=temporary)
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)
    return results


def _summary_rows(store: Store, chunks, configs, grid_vals) -> list[dict]:
    runs = store.manifest["runs"]
    rows = []
    for chunk_id, _, _ in chunks:
        if not store.has_chunk(chunk_id):
            continue
        arrays = store.load_chunk_arrays(chunk_id)
        for j, idx in enumerate(arrays["run_index"]):
            r = runs[int(idx)]
            cfg = configs[r["point"]]
            row = {"run": int(idx), "seed": r["seed"], **{k: getattr(cfg, k) for k in grid_vals}}
            for k, v in arrays.items():
                if k.startswith("metric/"):
                    row[k[len("metric/"):]] = float(v[j, -1])
                elif k.startswith("summary/"):
                    row[k[len("summary/"):]] = float(v[j])
            rows.append(row)
    return sorted(rows, key=lambda row: row["run"])


# ----------------------------------------------------------------------------- loading


@dataclasses.dataclass
class RunResult:
    """One trained (grid point, seed): its config, metrics over training and final measures."""

    index: int
    seed: int
    config: Any
    steps: np.ndarray
    metrics: dict[str, np.ndarray]
    summary: dict[str, float]
    _results: "Results" = dataclasses.field(repr=False)
    _row: int = dataclasses.field(repr=False)
    _chunk: str = dataclasses.field(repr=False)

    @property
    def model(self):
        """The trained model (loaded from the store on first use)."""
        return jax.tree.map(lambda x: jnp.asarray(x[self._row]), self._results._tree(self._chunk, "params.eqx"))

    @property
    def snapshots(self):
        """The model at each of ``config.snapshot_steps``, stacked on a leading axis (or None)."""
        tree = self._results._tree(self._chunk, "snapshots.eqx")
        return None if tree is None else jax.tree.map(lambda x: jnp.asarray(x[self._row]), tree)


class Results:
    """A results folder's runs, addressable by hyperparameter value.

    ``results.select(feature_probability=0.01)`` → matching runs; ``results.one(...)`` → the
    single match; ``results.values("lr")`` → the values a field takes; ``results.final(
    "loss", model="linear")`` → final values over matching runs; ``results.summary`` → the
    rows of summary.json.
    """

    def __init__(self, root: Path, family: Family, manifest: dict, runs: list[RunResult], summary: list[dict]):
        self.root, self.family, self.manifest, self.runs, self.summary = root, family, manifest, runs, summary
        self._trees: dict[tuple[str, str], Any] = {}
        self._configs: dict[str, Any] = {}

    def __len__(self):
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __getitem__(self, i) -> RunResult:
        return self.runs[i]

    @property
    def grid(self) -> dict[str, list]:
        return self.manifest["grid"]

    def values(self, field: str) -> list:
        self._check_field(field)
        return sorted({getattr(r.config, field) for r in self.runs}, key=repr if field in self._non_numeric() else None)

    def _non_numeric(self):
        return {n for n, f in self.family.config.field_info().items() if f.metadata["type_name"] not in ("a number", "an integer")}

    def _check_field(self, field):
        if field not in self.family.config.field_info() and field != "seed":
            raise ConfigError(field, None, f"unknown field of family {self.family.name}")

    def select(self, **fields) -> list[RunResult]:
        """Runs whose config matches every given field (numbers compared with isclose)."""
        for k in fields:
            self._check_field(k)

        def match(run):
            for k, want in fields.items():
                have = run.seed if k == "seed" else getattr(run.config, k)
                if isinstance(have, float) or isinstance(want, float):
                    if not np.isclose(float(have), float(want), rtol=1e-6, atol=0):
                        return False
                elif have != want:
                    return False
            return True

        return [r for r in self.runs if match(r)]

    def one(self, **fields) -> RunResult:
        found = self.select(**fields)
        if len(found) != 1:
            raise ConfigError("fields", fields, f"must match exactly one run, but {len(found)} match; "
                                                f"give values of the grid fields {list(self.grid)} and seed")
        return found[0]

    def final(self, name: str, **fields) -> np.ndarray:
        """Final value of a metric or summary measure over the matching runs."""
        out = []
        for r in self.select(**fields):
            if name in r.summary:
                out.append(r.summary[name])
            elif name in r.metrics:
                out.append(r.metrics[name][-1])
            else:
                raise ConfigError("name", name, f"must be a metric or summary measure: {', '.join(sorted(r.metrics) + sorted(r.summary))}")
        return np.asarray(out)

    def _tree(self, chunk_id: str, kind: str):
        key = (chunk_id, kind)
        if key not in self._trees:
            path = self.root / "chunks" / f"{chunk_id}.{kind}"
            if not path.exists():
                return None
            members = [r for r in self.runs if r._chunk == chunk_id]
            trainer = Trainer(self.family, members[0].config)
            like = jax.eval_shape(jax.vmap(lambda s: trainer.init(trainer.config.hparams(), make_key(s, trainer.config.prng_impl))),
                                  jnp.zeros((len(members),), jnp.uint32))
            if kind == "params.eqx":
                like = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like.params)
            else:  # drop the scratch slot, as the runner does before saving
                like = jax.tree.map(lambda s: np.zeros((s.shape[0], s.shape[1] - 1, *s.shape[2:]), s.dtype), like.snapshots)
            tree = eqx.tree_deserialise_leaves(path, like)
            self._trees[key] = eqx.combine(tree, trainer.static)
        return self._trees[key]


def load_results(path: str | Path, family: Family | str | None = None, eager: bool = False) -> Results:
    """Load a results folder written by :func:`run_sweep` (finished chunks only)."""
    root = Path(path)
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise StoreError(f"{str(root)!r} is not a toylab results folder (no manifest.json)")
    import json

    with open(mpath) as f:
        manifest = json.load(f)
    family = get_family(family or manifest["family"])
    configs = [family.config(**{**manifest["base"], **p}) for p in manifest["points"]]
    store = Store(root, manifest, writer=False)
    runs: list[RunResult] = []
    results = Results(root, family, manifest, runs, [])
    chunk_ids = sorted({r["chunk"] for r in manifest["runs"]})
    for chunk_id in chunk_ids:
        if not store.has_chunk(chunk_id):
            continue
        arrays = store.load_chunk_arrays(chunk_id)
        metric_names = [k for k in arrays if k.startswith("metric/")]
        summary_names = [k for k in arrays if k.startswith("summary/")]
        for j, idx in enumerate(arrays["run_index"]):
            r = manifest["runs"][int(idx)]
            runs.append(RunResult(
                index=int(idx), seed=int(r["seed"]), config=configs[r["point"]], steps=arrays["steps"],
                metrics={k[7:]: arrays[k][j] for k in metric_names},
                summary={k[8:]: float(arrays[k][j]) for k in summary_names},
                _results=results, _row=j, _chunk=chunk_id))
    runs.sort(key=lambda r: r.index)
    if (root / "summary.json").exists():
        with open(root / "summary.json") as f:
            results.summary = json.load(f)
    if eager:  # the folder is about to be removed: read every tree now
        for chunk_id in chunk_ids:
            for kind in ("params.eqx", "snapshots.eqx"):
                if store.has_chunk(chunk_id):
                    results._tree(chunk_id, kind)
    return results
