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
import os
import shutil
from pathlib import Path
from typing import Any, Iterable

import equinox as eqx
import jax
import numpy as np

from .config import MAX_SEED, STATIC, SWEEPABLE, ConfigError, spelled
from .devices import host_memory_bytes as _host_memory_bytes  # looked up here: tests stand one in
from .devices import (barrier, broadcast_json, broadcast_tree, device_summary, enable_compilation_cache, is_writer,
                      memory_bytes, shard_leading, sweep_mesh, to_host)
from .family import Family, family_names, get_family
from .optim import make_optimizer
from .progress import Progress
from .results import Results, RunResult, load_results, results_from_store, summary_rows
from .store import FORMAT, MemoryStore, Store
from .train import CPU_COMPUTE_INTENSITY, Trainer, block_size_rule, make_key, segment_length, stack_hparams

__all__ = ["run_sweep", "load_results", "Results", "RunResult", "expand_grid", "check_fits", "MAX_RUNS"]

# The manifest lists every run and Results holds one record per run: past this, a sweep is
# better split into several (each its own folder).
MAX_RUNS = 1_000_000


def family_arg(family) -> Family:
    """The family record of a name or record (ConfigError for anything else)."""
    if not isinstance(family, (str, Family)):
        raise ConfigError("family", family, f"must be a family name ({', '.join(family_names())}) or a Family")
    return get_family(family)


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
    if seeds > MAX_RUNS:  # before anything is sized by it
        raise ConfigError("seeds", seeds, f"must be at most {MAX_RUNS} (a sweep holds at most {MAX_RUNS} runs; "
                                          "split it into several sweeps)")
    if grid is not None and not isinstance(grid, dict):
        raise ConfigError("grid", grid, "must be a dict {field: [values]} or None")
    grid = dict(grid or {})
    parsed: dict[str, list] = {}
    for name, values in grid.items():
        if name not in cfg_cls.field_info():
            raise ConfigError(name, values, f"unknown field of family {family.name}; fields: {', '.join(cfg_cls.field_info())}")
        if isinstance(values, (str, bytes)) or not isinstance(values, Iterable):
            raise ConfigError(name, values, "grid values must be a list")
        values = list(values)
        if not values:
            raise ConfigError(name, values, "grid needs at least one value")
        if len(values) > MAX_RUNS:
            raise ConfigError(name, f"{len(values)} values", f"a sweep holds at most {MAX_RUNS} runs")
        vals = [cfg_cls.parse_field(name, v) for v in values]
        # Sweepable values are traced as float32: two that round to one float32 are one point.
        same = (lambda v: np.float32(v).item()) if cfg_cls.field_info()[name].metadata["kind"] == SWEEPABLE else repr
        if len(set(map(same, vals))) != len(vals):
            raise ConfigError(name, values, "grid values must be distinct" + (
                " (as float32, the precision they are trained at)" if same is not repr else ""))
        parsed[name] = vals
    n_runs = math.prod(len(v) for v in parsed.values()) * int(seeds)
    if n_runs > MAX_RUNS:
        raise ConfigError("seeds" if not parsed else "grid", int(seeds) if not parsed else f"{n_runs} runs",
                          f"a sweep holds at most {MAX_RUNS} runs (grid points × seeds); split it into several sweeps")
    last_seed = max(parsed.get("seed", [base_cfg.seed])) + int(seeds) - 1
    if last_seed > MAX_SEED:
        raise ConfigError("seeds", int(seeds), f"seed + seeds - 1 = {last_seed} must be at most {MAX_SEED} "
                                               "(seeds are uint32)")
    points = [dict(zip(parsed, combo)) for combo in itertools.product(*parsed.values())] or [{}]
    configs = [base_cfg.replace(**p) for p in points]
    runs = [
        {"index": i * seeds + s, "point": i, "seed": configs[i].seed + s}
        for i in range(len(points)) for s in range(seeds)
    ]
    return base_cfg, parsed, points, configs, runs


@dataclasses.dataclass
class Chunk:
    """At most ``chunk_size`` runs of one static group, trained at once by its program."""

    id: str  # g<group>-c<chunk>, the name of its files
    group: int
    members: list[dict]  # runs: {index, point, seed, chunk}
    program: Any  # the config whose static fields build the group's program


def _chunks(family: Family, runs, configs, chunk_size) -> list[Chunk]:
    """Group runs by the static key of their config, then cut each group into chunks."""
    groups: dict[tuple, list[dict]] = {}
    keys = [c.static_key() for c in configs]  # once per point, not per run
    for r in runs:
        groups.setdefault(keys[r["point"]], []).append(r)
    out = []
    for gi, members in enumerate(groups.values()):
        group_configs = list({r["point"]: configs[r["point"]] for r in members}.values())
        program = family.program_config(group_configs) if family.program_config else group_configs[0]
        for ci in range(0, len(members), chunk_size):
            chunk = Chunk(f"g{gi:03d}-c{ci // chunk_size:04d}", gi, members[ci:ci + chunk_size], program)
            for r in chunk.members:
                r["chunk"] = chunk.id
            out.append(chunk)
    return out


# ----------------------------------------------------------------------------- memory


def _tree_bytes(tree) -> int:
    # Python integers: a product of huge sizes must not wrap around (as int64 would) to a small one.
    return sum(math.prod(int(d) for d in x.shape) * np.dtype(x.dtype).itemsize for x in jax.tree.leaves(tree))


def _is_inexact(x) -> bool:
    """A float array or its shape (eval_shape gives ShapeDtypeStructs, which eqx.is_inexact_array refuses)."""
    return hasattr(x, "shape") and hasattr(x, "dtype") and np.issubdtype(np.dtype(x.dtype), np.inexact)


def _human(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if n < 1024 or unit == "PiB":
            return f"{n:.3g} {unit}"
        n /= 1024
    return f"{n:.3g} PiB"


def _instance_bytes(family: Family, cfg) -> tuple[int, int]:
    """(state bytes, working bytes) of one instance, from shapes alone: params, gradients,
    optimizer state and snapshots; and the family's estimate of its data and activations
    (default: one step's batch, four times over)."""
    hp = cfg.hparams()
    key = make_key(0, cfg.prng_impl)
    model = eqx.filter_eval_shape(family.init, cfg, hp, key)
    params = eqx.filter(model, _is_inexact)
    opt = (family.optimizer or make_optimizer)(cfg, hp)
    state = _tree_bytes(params) * (2 + len(cfg.snapshot_steps)) + _tree_bytes(jax.eval_shape(opt.init, params))
    if family.working_bytes is not None:
        working = int(family.working_bytes(cfg))
    else:
        working = 4 * _tree_bytes(jax.eval_shape(lambda k: family.batch(cfg, hp, k), key))
    return state, working


def _largest_cause(family: Family, cfg, total: int):
    """The static field (and its value) whose default would shrink the estimate most."""
    best, cause = total, ("config", family.name)
    for name in cfg.names(STATIC):
        default = cfg.field_info()[name].default
        if getattr(cfg, name) == default:
            continue
        try:
            smaller = sum(_instance_bytes(family, cfg.replace(**{name: default})))
        except (ConfigError, ValueError, TypeError):
            continue
        if smaller < best:
            best, cause = smaller, (name, getattr(cfg, name))
    return cause


def check_fits(family: Family, chunks: list[Chunk], configs, n_devices: int, block_size):
    """Refuse (ConfigError) a sweep whose chunk cannot fit in one device's memory, from
    shapes alone — before any data is built or file written."""
    limit, where = memory_bytes()
    seen = set()
    for chunk in chunks:
        if (chunk.group, len(chunk.members)) in seen:
            continue
        seen.add((chunk.group, len(chunk.members)))
        cfg = chunk.program
        state, working = _instance_bytes(family, cfg)
        per_run = state + working
        if per_run > limit:
            # Named from the user's own config: a program config's derived fields (a table
            # task's row capacity) are not what the user set.
            user = configs[chunk.members[0]["point"]]
            name, value = _largest_cause(family, user, sum(_instance_bytes(family, user)))
            raise ConfigError(name, value, f"one run needs about {_human(per_run)} (parameters, optimizer state, "
                                           f"data and activations), more than the {_human(limit)} of {where}; "
                                           "choose smaller sizes")
        rows = math.ceil(len(chunk.members) / n_devices)
        if block_size == "auto":  # the widest block default_block_size may pick for this working set
            block = rows if jax.default_backend() != "cpu" else min(
                rows, block_size_rule(CPU_COMPUTE_INTENSITY, 1.0, working, shared=1.0))
        else:
            block = rows if block_size is None else min(block_size, rows)
        need = rows * state + block * working
        if need > limit:
            fit = max(1, int(limit // per_run) * n_devices)
            raise ConfigError("chunk_size", len(chunk.members),
                              f"{len(chunk.members)} runs at once need about {_human(need)} per device, more than the "
                              f"{_human(limit)} of {where}; use --chunk-size {fit} or less")


# ----------------------------------------------------------------------------- running


def _checkpoint_header(trainer: Trainer, n_rows: int, intervals_done: int, segments: int) -> dict:
    return {"steps_done": intervals_done * trainer.config.log_every,
            "segment_length": segment_length(trainer.n_logs, segments),
            "block_size": trainer.block_size, "n_devices": trainer.n_devices, "n_rows": n_rows}


def _resume_point(store: Store, chunk: Chunk, trainer: Trainer, like, n_rows: int, block_size):
    """(state, metrics, intervals done) of the chunk's checkpoint on process 0, or None.
    A checkpoint that another block size or device count made is refused: the vmap width
    moves the last bits, and a resumed chunk must equal an uninterrupted one."""
    found = store.load_checkpoint(chunk.id, like)
    if found is None:
        return None
    head, tree = found
    cfg = trainer.config
    where = f"checkpoint of chunk {chunk.id} in {str(store.root)!r}"
    if head.get("n_rows") != n_rows:
        raise ConfigError("out", str(store.root), f"the {where} holds {head.get('n_rows')} runs, this sweep "
                                                  f"{n_rows}; delete checkpoints/{chunk.id}.ckpt to retrain it")
    if head.get("n_devices") != trainer.n_devices:
        raise ConfigError("devices", trainer.n_devices, f"the {where} was trained on {head.get('n_devices')} devices; "
                                                        "resume on as many to continue exactly")
    if block_size == "auto":
        trainer.use_block_size(head.get("block_size"))  # continue as it was trained
    elif head.get("block_size") != trainer.block_size:
        raise ConfigError("block_size", block_size, f"the {where} was trained with block_size="
                                                    f"{head.get('block_size')}; resume with that (or auto) to "
                                                    "continue exactly")
    steps_done = head.get("steps_done")
    steps = np.asarray(tree["state"].step)
    if (not isinstance(steps_done, int) or steps_done % cfg.log_every or not 0 <= steps_done <= cfg.steps
            or not np.all(steps == steps_done)):
        raise ConfigError("out", str(store.root), f"the {where} is inconsistent (its header says {steps_done} steps, "
                                                  f"its state {sorted(set(steps.tolist()))[:3]}); delete "
                                                  f"checkpoints/{chunk.id}.ckpt to retrain that chunk")
    return tree["state"], tree["metrics"], steps_done // cfg.log_every


def _train_chunk(trainer: Trainer, store: Store, chunk: Chunk, configs, mesh, progress: Progress, segments: int,
                 block_size, resumable: bool, work: dict):
    members = chunk.members
    n = len(members)
    ndev = mesh.devices.size
    n_pad = math.ceil(n / ndev) * ndev
    pad = [members[i] if i < n else members[-1] for i in range(n_pad)]  # padded rows repeat the last run
    hp = stack_hparams([configs[r["point"]] for r in pad])
    seeds = np.asarray([r["seed"] for r in pad], np.uint32)
    hp_s, seeds_s = shard_leading((hp, seeds), mesh)

    start = None
    if resumable:
        shapes = jax.eval_shape(trainer.init_ensemble, hp, seeds)
        metric_names = trainer.metric_names(shapes, hp, seeds)
        like = {"state": jax.tree.map(lambda s: np.zeros(s.shape, s.dtype), shapes),
                "metrics": {k: np.zeros((n_pad, trainer.n_logs), np.float32) for k in metric_names}}
        held = []

        def look():
            held[:] = [_resume_point(store, chunk, trainer, like, n_pad, block_size)]
            return None if held[0] is None else {"done": held[0][2], "block_size": trainer.block_size}

        found = decided_by_writer(look)
        start = held[0] if held else None
        if found is not None:
            tree = broadcast_tree({"state": start[0], "metrics": start[1]} if is_writer() else like)
            trainer.use_block_size(found["block_size"])
            start = (shard_leading(tree["state"], mesh), tree["metrics"], found["done"])
            progress.update(n * found["done"] * trainer.config.log_every, note=f"{chunk.id} resumed")
            work["resumed"] += n * found["done"] * trainer.config.log_every
    state, metrics, done = start if start is not None else (None, None, 0)
    log_every = trainer.config.log_every
    last = [done]

    def after_segment(state, metrics, intervals_done):
        if intervals_done < trainer.n_logs:
            store.save_checkpoint(chunk.id, {"state": to_host(state), "metrics": metrics},
                                  _checkpoint_header(trainer, n_pad, intervals_done, segments))
        progress.update(n * (intervals_done - last[0]) * log_every, note=chunk.id)
        work["trained"] += n * (intervals_done - last[0]) * log_every
        last[0] = intervals_done

    state, metrics = trainer.run(hp_s, seeds_s, state=state, intervals_done=done, metrics=metrics,
                                 segments=segments, on_segment=after_segment)
    params, snaps, summary = to_host(trainer.final_ensemble(state, hp_s))
    cut = lambda tree: jax.tree.map(lambda x: x[:n], tree)  # noqa: E731
    arrays = {"run_index": np.asarray([r["index"] for r in members], np.int64),
              "steps": np.arange(1, trainer.n_logs + 1, dtype=np.int64) * log_every}
    arrays.update({f"metric/{k}": v[:n] for k, v in metrics.items()})
    arrays.update({f"summary/{k}": np.asarray(v)[:n] for k, v in summary.items()})
    store.save_chunk(chunk.id, cut(params), cut(snaps) if snaps is not None else None, arrays)
    return arrays


def _results_bytes(family: Family, chunks: list[Chunk]) -> int:
    """What the finished runs hold, from shapes alone: final params and snapshots of every
    run, and its logged metrics (counted as four per logging interval)."""
    total, seen = 0, {}
    for chunk in chunks:
        cfg = chunk.program
        if chunk.group not in seen:
            model = eqx.filter_eval_shape(family.init, cfg, cfg.hparams(), make_key(0, cfg.prng_impl))
            params = _tree_bytes(eqx.filter(model, _is_inexact))
            seen[chunk.group] = params * (1 + len(cfg.snapshot_steps)) + 16 * (cfg.steps // cfg.log_every)
        total += seen[chunk.group] * len(chunk.members)
    return total


def check_results_fit(family: Family, chunks: list[Chunk], out, resume: bool):
    """Refuse (ConfigError) a sweep whose results cannot be held: in this machine's memory
    when they are kept in memory (``out`` None), on the disk of ``out`` otherwise."""
    need = _results_bytes(family, chunks)
    if out is None:
        limit = _host_memory_bytes()
        if limit is not None and need > limit:
            raise ConfigError("out", None, f"the results (final parameters, snapshots and metrics of every run) need "
                                           f"about {_human(need)}, more than this machine's {_human(limit)} of memory; "
                                           f"give a results folder ({spelled('out=...', '--out DIR')}) or train fewer runs")
        return
    if resume or (Path(out) / "manifest.json").exists():  # written already (or loaded), in part or whole
        return
    probe = Path(out)
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    try:
        free = shutil.disk_usage(probe).free
    except OSError:
        return
    if need > free:
        raise ConfigError("out", str(out), f"the results (final parameters, snapshots and metrics of every run) need "
                                           f"about {_human(need)}, more than the {_human(free)} free on its disk; "
                                           "choose another folder or fewer runs")


def run_sweep(family: str | Family, base: dict | Any | None = None, grid: dict | None = None, *,
              seeds: int = 1, out: str | Path | None = None, resume: bool = False,
              chunk_size: int = 4096, segments: int = 10, block_size: int | str | None = "auto",
              quiet: bool = False, progress: str = "auto", plan: bool = False) -> Results:
    """Train every grid point × seed; returns :class:`Results`.

    Args:
        family: a family name (``"superposition"``) or :class:`Family`.
        base: field values shared by all points (dict, or a config of the family).
        grid: ``{field: [values]}``; the sweep is their Cartesian product.
        seeds: seeds per point; seed i of a point uses ``config.seed + i``.
        out: results folder, or None: train in memory and write nothing (no checkpoints:
            there is nothing to resume). A folder is written as the sweep goes (a
            checkpoint after every segment) so that it can be resumed. A folder that
            already holds this same sweep, finished, is loaded: nothing is trained.
        resume: continue the unfinished sweep already in ``out``; finished chunks are kept
            (after checking their checksums), a running chunk continues from its last
            checkpoint exactly as if it had not stopped.
        chunk_size: at most this many runs are trained at once (bounds memory).
        segments: each chunk trains in about this many compiled segments, with a progress
            update and a checkpoint after each; it never changes the numbers, so a sweep
            may be resumed with other segments.
        block_size: instances trained at once inside a chunk's program on each device
            (``"auto"``: all of them on an accelerator; on CPU, read from XLA's cost and
            memory analyses of one instance's compiled segment by
            :func:`~toylab.core.train.block_size_rule`: a power of two, up to 64 that keep a
            block's working set near 40 MB (in cache), or, for a compute-bound program whose
            block shares much of its work (a batch made once per block with a
            ``data_seed``), up to 1024 that fit 8 GB and a quarter of the host's memory).
            It changes results only in the last bits (~1e-7, XLA fuses a wider vmap
            differently); a checkpoint continues with the block size it was trained with.
        quiet: no progress bar.
        progress: "auto" (tqdm: a notebook widget in Jupyter, a bar in a terminal), or "text".
        plan: train nothing, write nothing: return the sweep's :class:`~toylab.core.plan.SweepPlan`
            (each static group's programs compiled ahead of time, XLA's cost and memory
            analyses, predicted time and memory on this CPU, an H100, an A100 and a TPU v5e).

    Sizes are checked before anything is built or written: a run that cannot fit one
    device's memory, a chunk that cannot (with the chunk size that would), results that
    cannot fit memory (``out`` None) or the folder's disk, more than ``MAX_RUNS`` runs.

    Several processes (after :func:`init_distributed` / ``jax.distributed.initialize``)
    each call ``run_sweep`` with the same arguments; the runs are laid over every device of
    every process, process 0 alone writes ``out`` (a folder all processes can read), and
    every process returns the full Results.
    """
    family = family_arg(family)
    if isinstance(chunk_size, bool) or not isinstance(chunk_size, (int, np.integer)) or chunk_size < 1:
        raise ConfigError("chunk_size", chunk_size, "must be a positive integer")
    if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
        raise ConfigError("segments", segments, "must be a positive integer")
    if block_size != "auto" and block_size is not None and (
            isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer)) or block_size < 1):
        raise ConfigError("block_size", block_size, 'must be a positive integer, "auto" or None')
    if out is not None and (isinstance(out, bool) or not isinstance(out, (str, os.PathLike)) or not str(out)):
        raise ConfigError("out", out, "must be the path of a results folder (a str or Path), or None (in memory)")
    for name, flag in (("resume", resume), ("quiet", quiet)):
        if not isinstance(flag, (bool, np.bool_)):
            raise ConfigError(name, flag, "must be True or False")
    if progress not in ("auto", "text"):
        raise ConfigError("progress", progress, 'must be "auto" or "text"')
    if out is None and resume:
        raise ConfigError("resume", True, "needs the results folder to resume (out=...)")
    if out is None and jax.process_count() > 1:
        raise ConfigError("out", None, "a sweep over several processes needs a results folder all of them can read")
    if not isinstance(plan, (bool, np.bool_)):
        raise ConfigError("plan", plan, "must be True or False")
    from .plan import PlannedSweep, active_recording, plan_sweep

    recorder = active_recording()
    if plan or recorder is not None:  # before any size check: a plan is for another machine too
        made = plan_sweep(family, base, grid, seeds=seeds, chunk_size=chunk_size, block_size=block_size,
                          **(recorder[1] if recorder is not None else {}))
        if recorder is None:
            return made
        recorder[0].append(made)
        return PlannedSweep(made)
    base_cfg, grid_vals, points, configs, runs = expand_grid(family, base, grid, seeds)
    chunks = _chunks(family, runs, configs, chunk_size)
    mesh = sweep_mesh()
    check_fits(family, chunks, configs, mesh.devices.size, block_size)
    check_results_fit(family, chunks, out, resume)
    import toylab  # the version, for the manifest

    manifest = {
        "format": FORMAT,
        "family": family.name,
        "base": base_cfg.to_dict(),
        "grid": grid_vals,
        "seeds": int(seeds),
        "chunk_size": int(chunk_size),
        "points": points,
        "derived": [c.derived for c in configs],
        "runs": runs,
        "toylab_version": toylab.__version__,
        "jax_version": jax.__version__,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        **device_summary(),
    }
    in_memory = out is None
    store = MemoryStore(manifest) if in_memory else _open_everywhere(Path(out), manifest, resume)
    try:
        enable_compilation_cache()
        rows: dict = {}

        def finished_chunks():  # checked against their checksums before anything is added
            rows.update({c.id: store.load_chunk_arrays(c.id) for c in chunks if store.has_chunk(c.id)})
            return list(rows)

        finished = decided_by_writer(finished_chunks)
        todo = [c for c in chunks if c.id not in finished]
        # What this call did, in instance-steps (the CLI reports it): trained now, taken from
        # checkpoints, and in chunks that were already finished.
        work = {"trained": 0, "resumed": 0,
                "finished": sum(len(c.members) * c.program.steps for c in chunks if c.id in finished)}
        bar = Progress(sum(len(c.members) * c.program.steps for c in todo),
                       label=f"{family.name}: {len(runs)} runs", quiet=quiet or not todo, kind=progress)
        trainer = None
        for chunk in todo:
            if trainer is None or trainer.config is not chunk.program:
                # one instance per device: every block size trains it alike, so "auto" probes nothing
                # (a resumed checkpoint still continues with the block it was trained with)
                alone = block_size == "auto" and len(chunk.members) <= mesh.devices.size
                trainer = Trainer(family, chunk.program, block_size=None if alone else block_size,
                                  n_devices=mesh.devices.size)
                if jax.process_count() > 1:  # every process must compile the same program
                    trainer.use_block_size(broadcast_json(trainer.block_size))
            rows[chunk.id] = _train_chunk(trainer, store, chunk, configs, mesh, bar, segments, block_size,
                                          resumable=not in_memory, work=work)
            store.write_summary(summary_rows(store.manifest, rows, configs, grid_vals))
        bar.close()
        store.write_summary(summary_rows(store.manifest, rows, configs, grid_vals))
        if in_memory:
            results = results_from_store(store, family, configs)
        else:
            barrier("toylab: results written")
            results = load_results(out, family=family)
        results.work = work
    except Exception:
        if store.created:  # a start that failed before training anything leaves no folder
            store.discard_if_untrained()
        raise
    finally:
        store.close()
    return results


def decided_by_writer(fn):
    """``fn()`` (a JSON-able answer) computed on process 0 alone and handed to every process;
    a ConfigError it raises is raised on every process alike, so none waits forever."""
    if jax.process_count() == 1:
        return fn()
    answer = None
    if is_writer():
        try:
            answer = {"ok": fn()}
        except ConfigError as e:
            value = e.value if isinstance(e.value, (str, int, float, bool, type(None))) else repr(e.value)
            answer = {"error": [e.field, value, e.allowed]}
    answer = broadcast_json(answer)
    if "error" in answer:
        raise ConfigError(*answer["error"])
    return answer["ok"]


def _open_everywhere(root: Path, manifest: dict, resume: bool) -> Store:
    """Store.open on process 0 (the others hold a read-only view); a refusal is everyone's."""
    opened = []

    def open_store():
        opened.append(Store.open(root, manifest, resume=resume, writer=True))
        return True

    decided_by_writer(open_store)
    return opened[0] if opened else Store.open(root, manifest, resume=resume, writer=False)
