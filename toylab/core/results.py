"""A results folder, read back: runs addressable by hyperparameter value, stacked models for
``jax.vmap(analysis)``, and exports to pandas and xarray.

Loading reads the manifest and each finished chunk's metrics (checking every file against
the checksums of its completion record); parameters are read on first use. Configs are
rebuilt from the manifest without reading any data set (:meth:`TrainConfig.from_record`), so
a folder stays loadable after the data it was trained on moved.
"""

from __future__ import annotations

import dataclasses
import json
import os
import warnings
from pathlib import Path
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .config import STATIC, ConfigError, spelled
from .family import Family, get_family
from .store import Store, _canon
from .train import Trainer

__all__ = ["Results", "RunResult", "StackedRuns", "load_results", "results_from_store", "summary_rows", "describe_run",
           "unconfirmed_chunks"]


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


@dataclasses.dataclass
class StackedRuns:
    """Runs of one static config, stacked on a leading axis of length ``len(runs)``.

    ``model`` is the family's model with every array stacked (``jax.vmap(f)(stack.model)``,
    or ``eqx.filter_vmap`` for a model holding non-array leaves), ``snapshots`` the same with
    a second (n_snapshots,) axis (or None), ``hparams`` each sweepable field as an (n,) array
    and ``seeds`` the (n,) seeds, all in the order of ``runs``.
    """

    runs: list[RunResult]
    model: Any
    snapshots: Any
    hparams: dict[str, jax.Array]
    seeds: np.ndarray

    def __len__(self):
        return len(self.runs)


class Results:
    """A results folder's runs, addressable by hyperparameter value.

    ``results.select(feature_probability=0.01)`` → matching runs; ``results.one(...)`` → the
    single match; ``results.stacked(...)`` → the matching runs' models on one leading axis;
    ``results.values("lr")`` → the values a field takes; ``results.final("loss",
    model="linear")`` → final values over matching runs; ``results.summary`` → one row per
    run of final values (what summary.json holds); ``results.missing`` → indices of the runs
    not finished; ``to_pandas()`` / ``to_xarray()`` → tables for the usual tools.
    ``results.root`` is the folder, or None for a sweep trained in memory.
    """

    def __init__(self, root: Path | None, family: Family, manifest: dict, runs: list[RunResult], summary: list[dict],
                 store=None):
        self.root, self.family, self.manifest, self.runs, self.summary = root, family, manifest, runs, summary
        self._store = store or Store(root, manifest, writer=False)
        self._trees: dict[tuple[str, str], Any] = {}
        self.work: dict | None = None  # set by run_sweep: instance-steps trained, resumed, already finished
        self.missing: list[int] = []  # indices of the manifest's runs not finished (not in ``runs``)

    def __len__(self):
        return len(self.runs)

    def __iter__(self):
        return iter(self.runs)

    def __getitem__(self, i) -> RunResult:
        return self.runs[i]

    def __repr__(self):
        where = "in memory" if self.root is None else f"in {str(self.root)!r}"
        return f"Results({self.family.name}: {len(self.runs)} runs {where}, grid {self.grid})"

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
            raise ConfigError(field, None, f"unknown field of family {self.family.name}; "
                                           f"fields: {', '.join(self.family.config.field_info())}")

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

    def stacked(self, **fields) -> StackedRuns:
        """The runs matching ``fields`` (all runs if none given), their models and snapshots
        stacked on a leading axis, ready for ``jax.vmap(analysis)``. The runs must share
        their static fields (one model, one shape); select on a static grid field otherwise."""
        runs = self.select(**fields)
        if not runs:
            raise ConfigError("fields", fields, f"match no run; the grid is {self.grid}")
        first = runs[0].config
        for r in runs[1:]:
            if r.config.static_key() != first.static_key():
                differ = next(n for n in first.names(STATIC) if getattr(r.config, n) != getattr(first, n))
                raise ConfigError("fields", fields, f"select runs of different static fields ({differ}: "
                                                    f"{getattr(first, differ)!r} and {getattr(r.config, differ)!r}); "
                                                    f"add {differ}=... to the selection")

        def stack(kind):
            parts = []
            for chunk in dict.fromkeys(r._chunk for r in runs):
                tree = self._tree(chunk, kind)
                if tree is None:
                    return None
                rows = np.asarray([r._row for r in runs if r._chunk == chunk])
                parts.append(jax.tree.map(lambda x: x[rows], tree))
            order = np.argsort(np.concatenate([[i for i, r in enumerate(runs) if r._chunk == c]
                                               for c in dict.fromkeys(r._chunk for r in runs)]), kind="stable")
            return jax.tree.map(lambda *xs: jnp.asarray(np.concatenate(xs)[order]), *parts)

        hparams = {k: jnp.asarray([r.config.hparams()[k] for r in runs]) for k in first.hparams()}
        return StackedRuns(runs, stack("params.eqx"), stack("snapshots.eqx"), hparams,
                           np.asarray([r.seed for r in runs], np.int64))

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

    # -- exports
    def _seed_dim(self) -> str:
        return "seed_offset" if "seed" in self.grid else "seed"

    def to_pandas(self):
        """A pandas DataFrame, one row per run: run index, the grid fields, seed, then the
        final value of every metric and summary measure (needs pandas)."""
        pd = _optional_import("pandas", "to_pandas")
        rows = []
        for r in self.runs:
            row = {"run": r.index, **{k: getattr(r.config, k) for k in self.grid if k != "seed"}, "seed": r.seed}
            row.update({k: float(v[-1]) for k, v in r.metrics.items()})
            row.update(r.summary)
            rows.append(row)
        return pd.DataFrame(rows).set_index("run")

    def to_xarray(self):
        """An xarray Dataset: each metric over (grid fields..., seed, step), each summary
        measure over (grid fields..., seed); runs not (yet) trained are NaN (needs xarray).
        The seed coordinate is the run's seed (``seed_offset``, the i of ``seed + i``, when
        seed itself is a grid field)."""
        xr = _optional_import("xarray", "to_xarray")
        grid = self.grid
        seeds = int(self.manifest["seeds"])
        seed_dim = self._seed_dim()
        if seed_dim == "seed":
            base_seed = int(self.manifest["base"].get("seed", 0))
            seed_coord = [base_seed + s for s in range(seeds)]
        else:
            seed_coord = list(range(seeds))
        steps = sorted({int(s) for r in self.runs for s in r.steps})
        step_pos = {s: i for i, s in enumerate(steps)}
        shape = [len(v) for v in grid.values()] + [seeds]
        runs_meta = self.manifest["runs"]
        points = self.manifest["points"]

        def position(run):
            point = points[runs_meta[run.index]["point"]]
            return tuple(list(grid[k]).index(point[k]) for k in grid) + (run.index % seeds,)

        metric_names = sorted({k for r in self.runs for k in r.metrics})
        summary_names = sorted({k for r in self.runs for k in r.summary} - set(metric_names))
        data = {k: np.full(shape + [len(steps)], np.nan, np.float64) for k in metric_names}
        data.update({k: np.full(shape, np.nan, np.float64) for k in summary_names})
        for r in self.runs:
            at = position(r)
            cols = [step_pos[int(s)] for s in r.steps]
            for k, v in r.metrics.items():
                data[k][at + (cols,)] = v
            for k, v in r.summary.items():
                if k in summary_names:
                    data[k][at] = v
        dims = list(grid) + [seed_dim]
        coords = {k: _coord(v) for k, v in grid.items()}
        coords[seed_dim] = seed_coord
        coords["step"] = steps
        variables = {k: (dims + ["step"], v) for k, v in data.items() if k in metric_names}
        variables.update({k: (dims, data[k]) for k in summary_names})
        return xr.Dataset(variables, coords=coords, attrs={"family": self.family.name,
                                                           "folder": "" if self.root is None else str(self.root)})

    # -- trees, read on first use
    def read_all(self):
        """Read every parameter and snapshot file now (loading reads them on first use)."""
        for chunk_id in dict.fromkeys(r._chunk for r in self.runs):
            for kind in ("params.eqx", "snapshots.eqx"):
                self._tree(chunk_id, kind)

    def _tree(self, chunk_id: str, kind: str):
        key = (chunk_id, kind)
        if key not in self._trees:
            if not self._store.has_tree(chunk_id, kind):
                return None
            members = [r for r in self.runs if r._chunk == chunk_id]
            trainer = Trainer(self.family, members[0].config)
            if self.root is None:  # run_sweep's memory holds the trees as trained
                tree = self._store.load_tree(chunk_id, kind)
            else:
                # Shapes from the family's skeleton: loading runs no code that reads data.
                like = trainer.stored_shapes(len(members))[kind]
                like = jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), like)
                tree = self._store.load_tree(chunk_id, kind, like)
            self._trees[key] = eqx.combine(tree, trainer.static)
        return self._trees[key]


def _coord(values):
    return [v if isinstance(v, (int, float, str, bool)) else repr(v) for v in values]


def _optional_import(name: str, method: str):
    import importlib

    try:
        return importlib.import_module(name)
    except ImportError:
        raise ImportError(f"Results.{method}() needs {name}: pip install {name}") from None


def load_results(path: str | Path, family: Family | str | None = None, eager: bool = False) -> Results:
    """Load a results folder written by :func:`run_sweep`.

    Args:
        path: the folder.
        family: the family (name or record) to read it as; default: the one its manifest names.
        eager: read every parameter file now (default: on first use).
    Returns:
        :class:`Results` of the finished runs. Every finished chunk's files are checked
        against its checksums, and the manifest against the checksum each chunk recorded of
        it; a changed, swapped or truncated file raises ConfigError naming it. Runs not
        finished (a sweep stopped early, a chunk whose completion record is gone) are left
        out with a warning naming them; ``results.missing`` lists them. The summary is
        rebuilt from the chunks (``summary.json`` is a copy for other tools).
    """
    if isinstance(path, bool) or not isinstance(path, (str, os.PathLike)):
        raise ConfigError("path", path, "must be the path of a results folder (a str or Path)")
    if family is not None and not isinstance(family, (str, Family)):
        raise ConfigError("family", family, "must be a family name, a Family, or None (the manifest's family)")
    if not isinstance(eager, (bool, np.bool_)):
        raise ConfigError("eager", eager, "must be True or False")
    root = Path(path)
    if not root.is_dir():
        raise ConfigError("path", str(root), "is not a toylab results folder (" +
                          ("not a folder)" if root.exists() else "no such folder)"))
    mpath = root / "manifest.json"
    if not mpath.exists():
        raise ConfigError("path", str(root), "is not a toylab results folder (no manifest.json)")
    try:
        with open(mpath) as f:
            manifest = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise ConfigError("path", str(root), f"its manifest.json cannot be read ({e})") from None
    lacking = [k for k in ("family", "base", "grid", "seeds", "points", "runs") if not isinstance(manifest, dict)
               or k not in manifest]
    if lacking:
        raise ConfigError("path", str(root), f"its manifest.json is not a toylab manifest (it lacks {lacking[0]!r})")
    family = get_family(family or manifest["family"])
    results = results_from_store(Store(root, manifest, writer=False), family)
    if results.missing:
        warnings.warn(_describe_missing(results), stacklevel=2)
    _check_summary_file(root, results.summary)
    if eager:
        results.read_all()
    return results


def results_from_store(store, family: Family, configs: list | None = None) -> Results:
    """The finished runs a store holds (a folder's :class:`Store`, or run_sweep's memory).
    ``configs``: the points' configs when the caller has them; else rebuilt from the
    manifest without reading any data set."""
    manifest = store.manifest
    if configs is None:
        derived = manifest.get("derived") or [{} for _ in manifest["points"]]
        try:
            configs = [family.config.from_record({**manifest["base"], **p}, d)
                       for p, d in zip(manifest["points"], derived)]
        except ConfigError as e:
            raise ConfigError("path", str(store.root), f"its manifest.json holds a config that is not valid ({e})") from None
    runs: list[RunResult] = []
    results = Results(store.root, family, manifest, runs, [], store)
    chunk_arrays = {}
    for chunk_id in sorted({r["chunk"] for r in manifest["runs"]}):
        if not store.has_chunk(chunk_id):
            continue
        arrays = chunk_arrays[chunk_id] = store.load_chunk_arrays(chunk_id)
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
    results.summary = summary_rows(manifest, chunk_arrays, configs, manifest["grid"])
    done = {r.index for r in runs}
    results.missing = [r["index"] if "index" in r else i for i, r in enumerate(manifest["runs"]) if i not in done]
    return results


def summary_rows(manifest, chunk_arrays: dict, configs, grid_vals) -> list[dict]:
    """The rows of summary.json: each finished run's index, seed, grid values and the final
    value of every metric and summary measure."""
    runs = manifest["runs"]
    rows = []
    for arrays in chunk_arrays.values():
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


def describe_run(manifest: dict, index: int) -> str:
    """``run 5 (lr=0.01, seed 1)``: a run of a manifest, named by its grid values and seed."""
    r = manifest["runs"][index]
    point = manifest["points"][r["point"]]
    values = ", ".join(f"{k}={v}" for k, v in point.items())
    return f"run {index} ({values + ', ' if values else ''}seed {r['seed']})"


def unconfirmed_chunks(results: Results) -> list[str]:
    """Chunks of missing runs whose data files are there without their completion record
    (a writer stopped between the two, or the record was removed): not trusted, not loaded."""
    if results.root is None:
        return []
    chunks = sorted({results.manifest["runs"][i]["chunk"] for i in results.missing})
    return [c for c in chunks if (results.root / "chunks" / f"{c}.npz").exists()]


def _describe_missing(results: Results, limit: int = 8) -> str:
    manifest, missing = results.manifest, results.missing
    named = "; ".join(describe_run(manifest, i) for i in missing[:limit])
    more = f"; and {len(missing) - limit} more" if len(missing) > limit else ""
    unconfirmed = unconfirmed_chunks(results)
    why = (f" (chunks/{unconfirmed[0]}.done.json, the record that confirms that chunk's files, is missing"
           + (f", and {len(unconfirmed) - 1} more chunks'" if len(unconfirmed) > 1 else "") + ")"
           if unconfirmed else "")
    return (f"{results.root}: {len(missing)} of {len(manifest['runs'])} runs are not finished and are left out"
            f"{why}: {named}{more}; finish them with {spelled('resume=True', '--resume')}")


def _check_summary_file(root: Path, rows: list[dict]):
    """Warn when summary.json (a copy of the chunks' summary for other tools) is unreadable
    or disagrees with the chunks; the chunks, checked against their checksums, are what
    the results hold."""
    path = root / "summary.json"
    if not path.exists():
        return
    try:
        with open(path) as f:
            written = json.load(f)
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        warnings.warn(f"{path} cannot be read ({e}); the summary is rebuilt from the chunks (a resume rewrites the file)",
                      stacklevel=3)
        return
    if not isinstance(written, list) or not all(isinstance(r, dict) for r in written):
        warnings.warn(f"{path} is not a list of rows; the summary is rebuilt from the chunks (a resume rewrites the "
                      "file)", stacklevel=3)
        return
    # Rows of runs whose chunks are not confirmed are the missing runs' business (warned apart).
    have = {r["run"] for r in rows}
    if _canon([r for r in written if r.get("run") in have]) != _canon(rows):
        warnings.warn(f"{path} disagrees with the chunks it summarises (edited?); the summary is rebuilt from the "
                      "chunks (a resume rewrites the file)", stacklevel=3)
