"""The training loop: one compiled scan, pure in (hparams, key).

``make_train(family, config)`` returns ``train(hparams, key) -> TrainResult``. Inside, the
loop is a nested ``lax.scan``: an outer scan over logging intervals, an inner scan over the
steps of one interval. :class:`Trainer` holds that loop and the run state: the same pieces
(``init`` / ``segment`` / ``finish``) train one instance in one call, or a stacked ensemble
as a Python loop over compiled segments (:meth:`Trainer.run`) — for progress, checkpoints and
resume — with results identical to one call.
"""

from __future__ import annotations

import functools
import re
from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from ..models import merge_state, split_state
from .family import Family, get_family
from .optim import make_optimizer
from .precision import cast_compute, precision_scope, to_float32
from .tracing import is_traced

__all__ = ["TrainState", "TrainResult", "Trainer", "make_train", "make_key", "ensemble_map", "default_block_size",
           "segment_length", "stack_hparams", "split_shared"]

# The CPU block size (instances per vmapped block of ensemble_map) comes from XLA's analyses of
# one instance's compiled segment (default_block_size, block_size_rule). Two effects decide it:
# - cache: a vmapped block's working set (temp + arguments + outputs) that stays near
#   CPU_BLOCK_BYTES stays in cache; superposition instances (0.6 MB each) ran about 6x faster at
#   4096 in blocks of 64 than in one vmap. Memory-bound programs get blocks that fit.
# - work done once per block: with a data_seed (and hparams equal across a block) a block makes
#   each batch once, so each further instance costs only its own share. A program whose work is
#   largely shared (measured: bytes accessed by a vmapped pair against twice one instance) and
#   compute-bound (flops per byte accessed at least CPU_COMPUTE_INTENSITY, so leaving the cache
#   costs little) gets blocks as wide as CPU_VMAP_BYTES of working set allow: 64 ReLU SAEs
#   (64 -> 256, batch 4096, 39 MB each, 4 flops/byte, 64% shared) ran at 60 SAE-steps/s in
#   blocks of 1 and 108 in one vmap; but 128 of them in two blocks of 64 (a scan over blocks)
#   ran 60, slower than both (69 and 109), so such blocks are as wide as memory allows. Sharing
#   little, a big instance gains little or nothing from company: 64 S5 MLPs (52 MB, 24% shared:
#   the table) ran 64 and 70 seed-steps/s one at a time and in one vmap (17 and 12 on a loaded
#   machine); 64 p=59 grokking transformers (4% shared) 32 and 25. Accelerators want the whole
#   vmap. toylab bench layout measures every family.
# - scatters: a program that scatters (an embedding's gradient: grokking, groups) trains fastest
#   one instance at a time. XLA:CPU runs a scatter as a loop over its updates, and vmapped it
#   scatters into every instance's table at once; the cost analysis does not see it (a vmapped
#   pair reports 0.98-1.04x one instance's bytes each). On one core: 8 S4 MLPs 7.9 s in blocks
#   of 1 against 11.4 in the blocks of 8 the cache rule gave; 12 label-noise MLPs 9.3 against
#   13.9 in one vmap; 2 p=31 transformers 7.1 against 7.7. Programs without one (superposition,
#   SAEs, bilinear) keep the rules above.
# Blocks are powers of two (they divide the usual ensemble sizes evenly).
CPU_BLOCK_BYTES = 40e6  # a block's working set that stays in cache
CPU_BLOCK_SIZE = 64  # the largest cache-sized block, and the block when the working set is unknown
CPU_VMAP_BYTES = 8e9  # the largest working set of a block that shares work and is compute-bound
# (and at most a quarter of the host's memory)
CPU_WIDE_BLOCK_SIZE = 1024  # the largest such block
CPU_COMPUTE_INTENSITY = 2.0  # flops per byte accessed from which a program is compute-bound here
CPU_SHARED_MIN = 0.4  # share of one instance's bytes accessed done once per block from which widening pays


def make_key(seed, impl: str = "threefry2x32"):
    """The run's PRNG key from its integer seed (traceable, so seeds can be vmapped)."""
    return jax.random.key(seed, impl=impl)


class TrainState(eqx.Module):
    params: Any  # the model's trained arrays (its other leaves live in Trainer.static)
    opt_state: Any
    step: jax.Array  # optimizer steps taken
    snapshots: Any  # the model's arrays (trained and state) stacked over config.snapshot_steps, or None
    model_state: Any = None  # the model's non-trainable state, {field: array} ({} for most models)


class TrainResult(eqx.Module):
    model: Any  # the trained model
    metrics: dict  # name -> (n_logs,) array, logged every log_every steps
    snapshots: Any  # model with a leading (n_snapshots,) axis, or None
    steps: jax.Array  # (n_logs,) step count at each logged metric


def segment_length(n_logs: int, segments: int) -> int:
    """Logging intervals per segment: the smallest divisor of ``n_logs`` that gives at most
    ``segments`` segments, so a fresh run compiles one segment program."""
    for d in range(1, n_logs + 1):
        if n_logs % d == 0 and n_logs // d <= segments:
            return d
    return n_logs


class Trainer:
    """The training loop of one family at one static config, and the run state it owns.

    The loop is written once, for one instance (:meth:`init`, :meth:`segment`,
    :meth:`finish`, :meth:`train`). :meth:`run` trains a stacked ensemble of instances (one
    per row of ``hparams`` and ``seeds``, laid over the devices of a mesh) as a Python loop
    over compiled segments of that same loop, from the start or from a saved
    :class:`TrainState`; segment lengths never change the numbers, so a run resumed with
    other segments continues exactly. The vmap width does change the last bits (XLA fuses
    differently), so ``block_size`` and ``n_devices`` are part of a checkpoint's identity.

    Args:
        family: a family name or record.
        config: the static config (its sweepable fields are only defaults; each instance
            brings its own ``hparams``).
        block_size: instances trained at once on each device by :meth:`run` (``"auto"``: all
            at once on an accelerator; on CPU, :func:`block_size_rule` applied to XLA's cost
            and memory analyses of one instance's compiled segment: cache-sized blocks for
            small memory-bound instances, wide ones for a compute-bound program whose blocks
            share much of their work, one at a time for big instances that share little;
            None: all at once).
        n_devices: devices the ensemble axis is laid over (blocks never cross them).
    """

    def __init__(self, family: Family | str, config, *, block_size: int | str | None = "auto", n_devices: int = 1):
        self.family = get_family(family)
        if not isinstance(config, self.family.config):
            raise TypeError(f"config must be a {self.family.config.__name__}, got {type(config).__name__}")
        self.config = config
        self.n_logs = config.steps // config.log_every
        self.snapshot_steps = tuple(config.snapshot_steps)
        # The structure alone: a family's skeleton builds it without reading data, so a results
        # folder loads without the data it was trained on.
        build = self.family.skeleton or self.family.init
        shape = eqx.filter_eval_shape(build, config, config.hparams(), make_key(0, config.prng_impl))
        without_state, state = split_state(shape)
        _, self.static = eqx.partition(without_state, eqx.is_inexact_array)
        self.has_state = bool(jax.tree.leaves(state))
        self._shape = shape
        self._block_size, self.n_devices = block_size, n_devices
        self._compiled: dict = {}

    # -- one instance
    def model(self, params, model_state=None):
        """The model from its trained arrays (and its non-trainable state, if it has any);
        ``params`` may also be the model's arrays with the state in place, as stored."""
        return merge_state(eqx.combine(params, self.static), model_state or {})

    def arrays(self, params, model_state=None):
        """The model's arrays, trained and state, in the model's own structure: what a run
        stores as its parameters and snapshots."""
        return eqx.filter(self.model(params, model_state), eqx.is_inexact_array)

    def stored_shapes(self, n: int) -> dict:
        """{"params.eqx": ..., "snapshots.eqx": ... or None}: the shapes of what a chunk of
        ``n`` runs stores, from the family's skeleton (no data is read)."""
        if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
            from .config import ConfigError

            raise ConfigError("n", n, "must be a positive integer (runs in the chunk)")
        arrays = eqx.filter(self._shape, lambda x: isinstance(x, jax.ShapeDtypeStruct)
                            and jnp.issubdtype(x.dtype, jnp.inexact))
        lead = lambda extra: jax.tree.map(  # noqa: E731
            lambda s: jax.ShapeDtypeStruct((n, *extra, *s.shape), s.dtype), arrays)
        n_snap = len(self.snapshot_steps)
        return {"params.eqx": lead(()), "snapshots.eqx": lead((n_snap,)) if n_snap else None}

    _model = model

    def optimizer(self, hparams) -> optax.GradientTransformation:
        make = self.family.optimizer or make_optimizer
        return make(self.config, hparams)

    def init(self, hparams, key) -> TrainState:
        k_init, _ = jax.random.split(key)
        with precision_scope(self.config.matmul_precision, "matmul_precision"):
            model = self.family.init(self.config, hparams, k_init)
        without_state, model_state = split_state(model)
        params, _ = eqx.partition(without_state, eqx.is_inexact_array)
        opt_state = self.optimizer(hparams).init(params)  # the state is no optimizer's business
        n = len(self.snapshot_steps)
        arrays = self.arrays(params, model_state)
        snaps = jax.tree.map(lambda p: jnp.zeros((n,) + p.shape, p.dtype), arrays) if n else None
        if 0 in self.snapshot_steps:
            snaps = jax.tree.map(lambda b, p: b.at[0].set(p), snaps, arrays)
        return TrainState(params, opt_state, jnp.zeros((), jnp.int32), snaps, model_state)

    def segment(self, state: TrainState, hparams, key, n_intervals: int, first_step=None):
        """Run ``n_intervals`` logging intervals; returns (state, metrics of shape (n_intervals,)).

        ``first_step`` is ``state.step`` when the caller knows it for every instance of an
        ensemble (:meth:`run` passes it unbatched): with a ``data_seed`` the batches then
        depend on nothing batched and vmap makes each one once per block."""
        cfg, family = self.config, self.family
        # With a data_seed every instance draws the batches an instance of that seed draws alone.
        _, k_data = jax.random.split(key if cfg.data_seed is None else make_key(cfg.data_seed, cfg.prng_impl))
        data_step = state.step if first_step is None else jnp.asarray(first_step, jnp.int32)
        opt = self.optimizer(hparams)
        snap_steps = jnp.asarray(self.snapshot_steps, jnp.int32)
        n_snap = len(self.snapshot_steps)

        policy = cfg.matmul_precision

        def loss_fn(params, model_state, batch):
            # Under "bfloat16" the loss sees bfloat16 parameters, inputs and hparams (a float32
            # hparam would promote what it touches; float32 master parameters: the gradient
            # comes back through the cast as float32).
            model = self.model(*cast_compute((params, model_state), policy))
            batch_c, hparams_c = cast_compute((batch, hparams), policy)
            loss, aux = to_float32(family.loss(model, batch_c, cfg, hparams_c))
            if not self.has_state:
                return loss, (aux, model_state)
            return loss, _checked_state_aux(aux, model_state, family.name)

        def one_step(carry, _):
            params, model_state, opt_state, step, data_step = carry
            batch = family.batch(cfg, hparams, jax.random.fold_in(k_data, data_step))
            # Gradients in the trained arrays only: the state is an input, its update an output.
            (loss, (aux, model_state)), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, model_state, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, model_state, opt_state, step + 1, data_step + 1), {"loss": loss, **aux}

        def one_interval(carry, _):
            state, data_step = carry
            (params, model_state, opt_state, step, data_step), logs = jax.lax.scan(
                one_step, (state.params, state.model_state, state.opt_state, state.step, data_step),
                length=cfg.log_every
            )
            # Snapshot into the slot of this step; a step that is not a snapshot step points
            # past the last slot and the write is dropped.
            snaps = state.snapshots
            if n_snap:
                hit = snap_steps == step
                slot = jnp.where(hit.any(), jnp.argmax(hit), n_snap)
                snaps = jax.tree.map(lambda b, p: b.at[slot].set(p, mode="drop"), snaps,
                                     self.arrays(params, model_state))
            metrics = {k: jnp.mean(v) for k, v in logs.items()}
            if family.evaluate is not None:
                metrics.update(family.evaluate(self.model(params, model_state), cfg, hparams))
            return (TrainState(params, opt_state, step, snaps, model_state), data_step), metrics

        with precision_scope(policy, "matmul_precision"):  # every product traced below
            (state, _), metrics = jax.lax.scan(one_interval, (state, data_step), length=n_intervals)
        return state, metrics

    def finish(self, state: TrainState, metrics: dict) -> TrainResult:
        snaps = self.model(state.snapshots) if self.snapshot_steps else None
        steps = jnp.arange(1, self.n_logs + 1, dtype=jnp.int32) * self.config.log_every
        return TrainResult(self.model(state.params, state.model_state), metrics, snaps, steps)

    def train(self, hparams, key) -> TrainResult:
        """The whole loop: ``make_train``'s pure ``train(hparams, key)``."""
        state = self.init(hparams, key)
        state, metrics = self.segment(state, hparams, key, self.n_logs)
        return self.finish(state, metrics)

    def summary(self, model, hparams) -> dict:
        if self.family.summary is None:
            return {}
        return self.family.summary(model, self.config, hparams)

    # -- an ensemble, as a Python loop over compiled segments
    def _key(self, seed):
        return make_key(seed, self.config.prng_impl)

    @property
    def block_size(self) -> int | None:
        """Instances per block on each device (``"auto"`` resolved on first use)."""
        if self._block_size == "auto":
            hp = self.config.hparams()
            state = jax.eval_shape(lambda s: self.init(hp, self._key(s)), np.uint32(0))
            # hparams and the first step passed unbatched, as run() passes them when a block's
            # hparams are equal (a sweep over seeds): the data a block makes once is measured.
            # Only a data_seed makes the batches a block's instances share (else each draws its
            # own), so only then is the vmapped pair compiled to measure it. One decision per
            # family and config in a process: the probe is a compile.
            key = (id(self.family), self.config)
            found = _AUTO_BLOCKS.get(key)
            if found is None or found[0] is not self.family:
                block = default_block_size(
                    fn=lambda st, s, h, first: self.segment(st, h, self._key(s), segment_length(self.n_logs, 10),
                                                            first),
                    args=(state, np.uint32(0), hp, np.int32(0)),
                    n_shared=2 if self.config.data_seed is not None else 0)
                found = _AUTO_BLOCKS[key] = (self.family, block)
            self._block_size = found[1]
        return self._block_size

    def use_block_size(self, block_size: int | None):
        """Train with this block size from now on (a resumed checkpoint's), recompiling."""
        if block_size != self._block_size:
            self._block_size = block_size
            self._compiled.clear()

    def _program(self, name: str, n_intervals: int = 0, shared: tuple = ()):
        """The compiled ensemble piece ``name`` (one per segment length and set of ``shared``
        hparams, those passed unbatched)."""
        key = (name, n_intervals, shared)
        if key not in self._compiled:
            # Named functions: compilations show up as jit(train_init), jit(train_segment), ...
            if name == "init":
                def train_init(hp, s):
                    return self.init(hp, self._key(s))
                fn = _CalledOnce(jax.jit(jax.vmap(train_init)))
            elif name == "segment":
                def train_segment(st, hp, s, hp_shared, first_step):
                    return self.segment(st, {**hp, **hp_shared}, self._key(s), n_intervals, first_step)
                donate = (0,) if jax.default_backend() != "cpu" else ()
                fn = jax.jit(ensemble_map(train_segment, self.block_size, groups=self.n_devices, n_shared=2),
                             donate_argnums=donate)
            else:  # final: params, snapshots and summary measures
                def train_final(st, hp):
                    snaps = st.snapshots if self.snapshot_steps else None
                    model = self.model(st.params, st.model_state)
                    with precision_scope(self.config.matmul_precision, "matmul_precision"):
                        summary = self.summary(model, hp)
                    return eqx.filter(model, eqx.is_inexact_array), snaps, summary
                fn = _CalledOnce(jax.jit(jax.vmap(train_final)))
            self._compiled[key] = fn
        return self._compiled[key]

    def init_ensemble(self, hparams, seeds) -> TrainState:
        """The stacked initial state of one instance per row of ``hparams`` and ``seeds``."""
        return self._program("init")(hparams, seeds)

    def metric_names(self, state: TrainState, hparams, seeds) -> list[str]:
        return list(jax.eval_shape(self._program("segment", 1), state, hparams, seeds, {}, 0)[1])

    def run(self, hparams, seeds, *, state: TrainState | None = None, intervals_done: int = 0,
            metrics: dict | None = None, segments: int = 10, on_segment=None):
        """Train the ensemble to the end, in compiled segments.

        Args:
            hparams, seeds: stacked (n,) arrays, laid over the mesh's devices.
            state, intervals_done, metrics: where a saved run stopped (its state, the logging
                intervals it had finished, and its (n, n_logs) host metrics); none: start.
            segments: about this many segments over the whole run; a resumed run keeps the
                same boundaries (``segment_length``), its first segment possibly shorter.
            on_segment: ``on_segment(state, metrics, intervals_done)`` after each segment
                (checkpoints, progress).
        Returns:
            (final state, metrics: name -> (n, n_logs) float32 host arrays).
        """
        from .config import ConfigError, described

        if (isinstance(intervals_done, bool) or not isinstance(intervals_done, (int, np.integer))
                or not 0 <= intervals_done <= self.n_logs):
            raise ConfigError("intervals_done", intervals_done, f"must be an integer in [0, {self.n_logs}]")
        if isinstance(segments, bool) or not isinstance(segments, (int, np.integer)) or segments < 1:
            raise ConfigError("segments", segments, "must be a positive integer")
        if on_segment is not None and not callable(on_segment):
            raise ConfigError("on_segment", on_segment, "must be a function (state, metrics, intervals_done), or None")
        names = sorted(self.config.hparams())
        if not isinstance(hparams, dict) or sorted(hparams) != names:
            raise ConfigError("hparams", sorted(hparams) if isinstance(hparams, dict) else type(hparams).__name__,
                              f"must be a dict of the sweepable fields {names}, each stacked to shape (n,)")
        n = getattr(seeds, "shape", np.shape(seeds))
        if len(n) != 1 or any(getattr(v, "shape", np.shape(v)) != tuple(n) for v in hparams.values()):
            raise ConfigError("seeds", described(f"shape {tuple(n)}"), "must be one seed per instance, shape (n,), "
                                                                       "with every hparams entry of shape (n,) too")
        from .devices import to_host

        if state is None:
            state, intervals_done = self.init_ensemble(hparams, seeds), 0
        if metrics is None:
            n = jax.tree.leaves(seeds)[0].shape[0]
            metrics = {k: np.zeros((n, self.n_logs), np.float32) for k in self.metric_names(state, hparams, seeds)}
        seg = segment_length(self.n_logs, segments)
        done = intervals_done
        batched, shared = split_shared(hparams)
        while done < self.n_logs:
            length = min(seg - done % seg, self.n_logs - done)
            # Every instance is at step done * log_every: passed once, unbatched.
            first_step = np.int32(done * self.config.log_every)
            state, m = self._program("segment", length, tuple(sorted(shared)))(state, batched, seeds, shared, first_step)
            m = to_host(m)
            for k in metrics:
                metrics[k][:, done:done + length] = m[k]
            done += length
            if on_segment is not None:
                on_segment(state, metrics, done)
        return state, metrics

    def final_ensemble(self, state: TrainState, hparams):
        """(the models' arrays, trained and state; snapshots or None; summary measures) of a
        trained ensemble."""
        return self._program("final")(state, hparams)


def _checked_state_aux(aux, model_state, name):
    """(metrics, new state) from the aux of a stateful model's loss, its structure checked
    against the state it replaces."""
    from .config import ConfigError, described

    if not (isinstance(aux, tuple) and len(aux) == 2 and isinstance(aux[0], dict)):
        raise ConfigError("loss", described(f"family {name!r}'s loss returning (loss, {type(aux).__name__})"),
                          "must return (loss, (metrics, new_state)) for a model with non-trainable state, "
                          "new_state a dict {field: value} of the model's state fields")
    metrics, new_state = aux
    if jax.tree.structure(new_state) != jax.tree.structure(model_state):
        raise ConfigError("loss", described(f"family {name!r}'s new_state {jax.tree.structure(new_state)}"),
                          f"must have the structure of the model's state, {jax.tree.structure(model_state)}")
    new_state = jax.tree.map(lambda new, old: jnp.asarray(new, old.dtype).reshape(old.shape), new_state, model_state)
    return metrics, new_state


def make_train(family: Family | str, config):
    """``train(hparams, key) -> TrainResult`` for a family at a config's static fields.

    ``hparams`` is a dict of the config's sweepable fields (``config.hparams()``), each a
    scalar that may be traced; ``key`` a PRNG key. ``jax.jit(jax.vmap(train))`` over stacked
    hparams and keys trains an ensemble in one program. ``config`` is a config of the
    family or a dict of its fields.
    """
    from .config import ConfigError
    from .family import family_names

    if not isinstance(family, (str, Family)):
        raise ConfigError("family", family, f"must be a family name ({', '.join(family_names())}) or a Family")
    family = get_family(family)
    cfg_cls = family.config
    if isinstance(config, dict):
        unknown = [k for k in config if k not in cfg_cls.field_info()]
        if unknown:
            raise ConfigError(unknown[0], config[unknown[0]], f"unknown field of family {family.name}; fields: "
                                                              f"{', '.join(cfg_cls.field_info())}")
        config = cfg_cls(**config)
    elif not isinstance(config, cfg_cls):
        raise ConfigError("config", type(config).__name__, f"must be a {cfg_cls.__name__} (family {family.name}) "
                                                           "or a dict of its fields")
    return Trainer(family, config).train


_AUTO_BLOCKS: dict = {}  # (id(family), config) -> (family, block): Trainer's "auto", decided once
# The probes' programs are only analysed, never run: LLVM's optimisations (the backend's level)
# change neither XLA's fusion, cost nor buffer analyses, and skipping them halves the compile
# (the dictionaries' and grokking's segments: 3.0 -> 1.65 s, 2.1 -> 1.2 s on the 2-core box).
_UNOPTIMISED = {"xla_backend_optimization_level": 0}  # XLA's passes as usual, LLVM's skipped
_PROBE_OPTIONS = _UNOPTIMISED
# A program called once per chunk (the initial state; the final parameters and summary) does
# little work, and on a CPU LLVM's optimisation of it costs more than it saves: the
# dictionaries' init and final compile in 3.9 + 4.6 s at the default level and 1.0 + 2.0 s at
# level 0, and run in milliseconds either way. Work is XLA's FLOP count before optimisation
# (a loop's body counted once).
_ONCE_OPTIONS = _UNOPTIMISED
_ONCE_MAX_FLOPS = 1e9


class _CalledOnce:
    """A jitted program that runs once per chunk: compiled at ``_ONCE_OPTIONS`` on a CPU when
    it does under ``_ONCE_MAX_FLOPS`` of work, else as ``jax.jit`` compiles it. Traced (under
    ``eval_shape`` or another jit) it is the jitted function itself."""

    def __init__(self, jitted):
        self.jitted = jitted
        self._executables = {}

    def __call__(self, *args):
        leaves, tree = jax.tree.flatten(args)
        if any(is_traced(x) for x in leaves):
            return self.jitted(*args)
        key = (tree, tuple((jax.typeof(x), getattr(x, "sharding", None)) for x in leaves))
        if key not in self._executables:
            lowered = self.jitted.lower(*args)
            self._executables[key] = lowered.compile(_ONCE_OPTIONS if _small_on_cpu(lowered) else None)
        return self._executables[key](*args)

    def lower(self, *args):
        return self.jitted.lower(*args)


def _small_on_cpu(lowered) -> bool:
    """True when ``lowered`` is for a CPU and XLA counts under ``_ONCE_MAX_FLOPS`` in it."""
    if jax.default_backend() != "cpu":
        return False
    try:
        cost = lowered.cost_analysis()
    except Exception:  # noqa: BLE001 - no analysis: no evidence the work is small
        return False
    cost = cost[0] if isinstance(cost, (list, tuple)) and cost else cost
    flops = cost.get("flops") if isinstance(cost, dict) else None
    return flops is not None and 0 <= flops < _ONCE_MAX_FLOPS


def default_block_size(backend: str | None = None, *, fn=None, args: tuple = (), n_shared: int = 0) -> int | None:
    """The ensemble block size for :func:`ensemble_map` on a backend: None (one vmap) on an
    accelerator; on CPU, 1 when ``fn(*args)`` compiled for one instance scatters, else
    :func:`block_size_rule` applied to XLA's analyses of that program (args may be
    ShapeDtypeStructs; the last ``n_shared`` are the ones a block passes unbatched, as
    :func:`ensemble_map`'s). When the rule could widen the block, a vmapped pair is compiled
    too, to measure the work a block does once.
    ``CPU_BLOCK_SIZE`` when no ``fn`` is given or XLA reports no sizes."""
    if (backend or jax.default_backend()) != "cpu":
        return None
    if fn is None:
        return CPU_BLOCK_SIZE
    compiled = jax.jit(fn).lower(*args).compile(_PROBE_OPTIONS)
    if _scatters(compiled):
        return 1
    one = _analyses(compiled)
    if not one["working"]:
        return CPU_BLOCK_SIZE
    shared = 0.0
    if n_shared and block_size_rule(one["flops"], one["bytes"], one["working"], shared=1.0) > \
            block_size_rule(one["flops"], one["bytes"], one["working"]):  # nothing unbatched: nothing shared
        cut = len(args) - n_shared
        pair = jax.tree.map(lambda x: jax.ShapeDtypeStruct((2,) + np.shape(x), x.dtype if hasattr(x, "dtype")
                                                    else jnp.result_type(x)), args[:cut])
        two = _analyses(jax.jit(ensemble_map(fn, None, n_shared=n_shared)).lower(*pair, *args[cut:]).compile(
            _PROBE_OPTIONS))
        if one["bytes"] and two["bytes"]:
            # a pair accesses 2(1 - s) + s of one instance's bytes, s the share done once per block
            shared = min(1.0, max(0.0, 2.0 - two["bytes"] / one["bytes"]))
    return block_size_rule(one["flops"], one["bytes"], one["working"], shared=shared)


def _scatters(compiled) -> bool:
    """Whether a compiled program has a scatter (fused or not) in its optimised HLO."""
    try:
        text = compiled.as_text()
    except Exception:  # noqa: BLE001 - a backend without a text form: no evidence either way
        return False
    return re.search(r"\bscatter\(", text or "") is not None


def block_size_rule(flops: float, bytes_accessed: float, working_bytes: float, shared: float = 0.0) -> int:
    """Instances per vmapped block on CPU, from XLA's analyses of one instance's program: its
    ``flops`` and ``bytes_accessed`` (cost analysis), its working set ``working_bytes`` (temp,
    argument and output sizes of the memory analysis) and ``shared``, the share of its bytes
    accessed that a block does once for all its instances (a batch every instance reads).

    A block whose working set stays near ``CPU_BLOCK_BYTES`` stays in cache: so many
    instances, the largest power of two in [1, ``CPU_BLOCK_SIZE``]. A program with at least
    ``CPU_SHARED_MIN`` shared that is compute-bound (at least ``CPU_COMPUTE_INTENSITY`` flops
    per byte) gains from wider blocks (the shared work spread over more instances; a scan over
    blocks repeats it) and loses little by leaving the cache: as many as fit ``CPU_VMAP_BYTES``
    (and a quarter of the host's memory), at most ``CPU_WIDE_BLOCK_SIZE``.
    """
    def pow2(n, cap=CPU_BLOCK_SIZE):
        n = int(min(cap, max(1, n)))
        return 1 << (n.bit_length() - 1)

    if not working_bytes or working_bytes <= 0:
        return CPU_BLOCK_SIZE
    block = pow2(CPU_BLOCK_BYTES // working_bytes)
    intensity = flops / bytes_accessed if bytes_accessed and bytes_accessed > 0 else 0.0
    if shared >= CPU_SHARED_MIN and intensity >= CPU_COMPUTE_INTENSITY:
        from .devices import host_memory_bytes

        budget = min(CPU_VMAP_BYTES, (host_memory_bytes() or 4 * CPU_VMAP_BYTES) / 4)
        block = max(block, pow2(budget // working_bytes, CPU_WIDE_BLOCK_SIZE))
    return block


def _analyses(compiled) -> dict:
    """flops, bytes accessed and working set (temp + arguments + outputs) of a compiled program,
    0 where XLA reports none (cost_analysis is a dict, or a list of one in some jax versions)."""
    cost = compiled.cost_analysis()
    if isinstance(cost, (list, tuple)):
        cost = cost[0] if cost else {}
    cost = cost or {}
    memory = compiled.memory_analysis()
    working = sum(max(0, int(getattr(memory, name, 0) or 0)) for name in
                  ("temp_size_in_bytes", "argument_size_in_bytes", "output_size_in_bytes")) if memory is not None else 0
    return {"flops": max(0.0, float(cost.get("flops", 0.0) or 0.0)),
            "bytes": max(0.0, float(cost.get("bytes accessed", 0.0) or 0.0)), "working": working}


def ensemble_map(fn, block_size: int | None = None, groups: int = 1, n_shared: int = 0):
    """``fn`` mapped over the leading axis of all its arguments, like ``jax.vmap(fn)``.

    With a ``block_size``, the instances are trained ``block_size`` at a time (a scan over
    vmapped blocks, ``lax.map(..., batch_size=block_size)``), which keeps a CPU's working
    set in cache; results are the same as the plain vmap. ``groups`` splits the axis into
    that many contiguous parts first (one per device of a sharded axis), each blocked on
    its own, so the blocking never moves data between devices. The last ``n_shared``
    arguments are the same for every instance and are not mapped (vmap's ``in_axes=None``):
    work that depends on them alone is done once per block, not once per instance.
    """
    from .config import ConfigError

    if not callable(fn):
        raise ConfigError("fn", fn, "must be a function")
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
                                   or block_size < 1):
        raise ConfigError("block_size", block_size, "must be a positive integer or None")
    if isinstance(groups, bool) or not isinstance(groups, (int, np.integer)) or groups < 1:
        raise ConfigError("groups", groups, "must be a positive integer")
    if isinstance(n_shared, bool) or not isinstance(n_shared, (int, np.integer)) or n_shared < 0:
        raise ConfigError("n_shared", n_shared, "must be a non-negative integer")

    def vmapped(args, shared):
        return jax.vmap(lambda *a: fn(*a, *shared))(*args)

    @functools.wraps(fn)
    def mapped(*all_args):
        cut = len(all_args) - n_shared
        args, shared = all_args[:cut], all_args[cut:]
        n = jax.tree.leaves(args)[0].shape[0]
        if block_size is None or n <= block_size * groups or n % groups:
            return vmapped(args, shared)
        split = jax.tree.map(lambda x: x.reshape(groups, n // groups, *x.shape[1:]), args)
        per_group = jax.vmap(lambda a: jax.lax.map(lambda b: fn(*b, *shared), a, batch_size=block_size))
        out = per_group(split)
        return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)

    return mapped


def split_shared(hparams: dict) -> tuple[dict, dict]:
    """(batched, shared): the stacked hparams whose values differ across the instances, and
    those equal for all, each as one 0-d array (passed unbatched, so what depends only on
    them, e.g. a data generator's numbers, is computed once per block). Arrays not held
    whole by this process stay batched, so every process of a multi-host run decides alike."""
    batched, shared = {}, {}
    for name, value in hparams.items():
        if getattr(value, "is_fully_addressable", True):
            host = np.asarray(value)
            if host.ndim == 1 and host.size and np.all(host == host[0]):
                shared[name] = jnp.asarray(host[0])
                continue
        batched[name] = value
    return batched, shared


def stack_hparams(configs) -> dict[str, np.ndarray]:
    """Stack the sweepable fields of several configs into (n,) arrays."""
    return {k: np.asarray([c.hparams()[k] for c in configs], np.float32) for k in configs[0].hparams()}
