"""The training loop: one compiled scan, pure in (hparams, key).

``make_train(family, config)`` returns ``train(hparams, key) -> TrainResult``. Inside, the
loop is a nested ``lax.scan``: an outer scan over logging intervals, an inner scan over the
steps of one interval. The same loop is exposed in pieces (:class:`Trainer` ``init`` /
``segment`` / ``finish``) so the sweep runner can run it as a Python loop over compiled
segments — for progress, checkpoints and resume — with results identical to one call.
"""

from __future__ import annotations

from typing import Any

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from .family import Family, get_family
from .optim import make_optimizer

__all__ = ["TrainState", "TrainResult", "Trainer", "make_train", "make_key", "ensemble_map", "default_block_size"]

# On CPU one vmap over thousands of instances falls out of cache; training them in blocks (a
# scan over vmapped blocks) keeps each block's working set near this many bytes. Measured:
# superposition instances (0.6 MB each) ran about 6x faster at 4096 in blocks of 64; one
# p=113 grokking transformer (92 MB) runs faster alone than 16 vmapped
# (experiments/bench_*.py). Accelerators want the whole vmap.
CPU_BLOCK_BYTES = 40e6
CPU_BLOCK_SIZE = 64  # the largest block, and the block when the working set is unknown


def make_key(seed, impl: str = "threefry2x32"):
    """The run's PRNG key from its integer seed (traceable, so seeds can be vmapped)."""
    return jax.random.key(seed, impl=impl)


class TrainState(eqx.Module):
    params: Any  # the model's inexact arrays (its other leaves live in Trainer.static)
    opt_state: Any
    step: jax.Array
    snapshots: Any  # params stacked over snapshot slots, plus one scratch slot at the end


class TrainResult(eqx.Module):
    model: Any  # the trained model
    metrics: dict  # name -> (n_logs,) array, logged every log_every steps
    snapshots: Any  # model with a leading (n_snapshots,) axis, or None
    steps: jax.Array  # (n_logs,) step count at each logged metric


class Trainer:
    """The training loop of one family at one static config."""

    def __init__(self, family: Family | str, config):
        self.family = get_family(family)
        if not isinstance(config, self.family.config):
            raise TypeError(f"config must be a {self.family.config.__name__}, got {type(config).__name__}")
        self.config = config
        self.n_logs = config.steps // config.log_every
        self.snapshot_steps = tuple(config.snapshot_steps)
        shape = eqx.filter_eval_shape(self.family.init, config, config.hparams(), make_key(0, config.prng_impl))
        _, self.static = eqx.partition(shape, eqx.is_inexact_array)

    # -- pieces
    def _model(self, params):
        return eqx.combine(params, self.static)

    def init(self, hparams, key) -> TrainState:
        k_init, _ = jax.random.split(key)
        model = self.family.init(self.config, hparams, k_init)
        params, _ = eqx.partition(model, eqx.is_inexact_array)
        opt_state = make_optimizer(self.config, hparams).init(params)
        n = len(self.snapshot_steps)
        snaps = jax.tree.map(lambda p: jnp.zeros((n + 1,) + p.shape, p.dtype), params)
        if 0 in self.snapshot_steps:
            snaps = jax.tree.map(lambda b, p: b.at[0].set(p), snaps, params)
        return TrainState(params, opt_state, jnp.zeros((), jnp.int32), snaps)

    def segment(self, state: TrainState, hparams, key, n_intervals: int):
        """Run ``n_intervals`` logging intervals; returns (state, metrics of shape (n_intervals,))."""
        cfg, family = self.config, self.family
        _, k_data = jax.random.split(key)
        opt = make_optimizer(cfg, hparams)
        snap_steps = jnp.asarray(self.snapshot_steps if self.snapshot_steps else (-1,), jnp.int32)
        n_snap = len(self.snapshot_steps)

        def loss_fn(params, batch):
            return family.loss(self._model(params), batch, cfg, hparams)

        def one_step(carry, _):
            params, opt_state, step = carry
            batch = family.batch(cfg, hparams, jax.random.fold_in(k_data, step))
            (loss, aux), grads = jax.value_and_grad(loss_fn, has_aux=True)(params, batch)
            updates, opt_state = opt.update(grads, opt_state, params)
            params = optax.apply_updates(params, updates)
            return (params, opt_state, step + 1), {"loss": loss, **aux}

        def one_interval(state: TrainState, _):
            (params, opt_state, step), logs = jax.lax.scan(
                one_step, (state.params, state.opt_state, state.step), length=cfg.log_every
            )
            # Snapshot: write into the matching slot, or into the scratch slot n_snap.
            hit = snap_steps == step
            slot = jnp.where(hit.any(), jnp.argmax(hit), n_snap)
            snaps = jax.tree.map(lambda b, p: b.at[slot].set(p), state.snapshots, params)
            metrics = {k: jnp.mean(v) for k, v in logs.items()}
            if family.evaluate is not None:
                metrics.update(family.evaluate(self._model(params), cfg, hparams))
            return TrainState(params, opt_state, step, snaps), metrics

        return jax.lax.scan(one_interval, state, length=n_intervals)

    def finish(self, state: TrainState, metrics: dict) -> TrainResult:
        snaps = None
        if self.snapshot_steps:
            snaps = self._model(jax.tree.map(lambda b: b[:-1], state.snapshots))
        steps = jnp.arange(1, self.n_logs + 1, dtype=jnp.int32) * self.config.log_every
        return TrainResult(self._model(state.params), metrics, snaps, steps)

    # -- the whole loop
    def train(self, hparams, key) -> TrainResult:
        state = self.init(hparams, key)
        state, metrics = self.segment(state, hparams, key, self.n_logs)
        return self.finish(state, metrics)

    def summary(self, model, hparams) -> dict:
        if self.family.summary is None:
            return {}
        return self.family.summary(model, self.config, hparams)


def make_train(family: Family | str, config):
    """``train(hparams, key) -> TrainResult`` for a family at a config's static fields.

    ``hparams`` is a dict of the config's sweepable fields (``config.hparams()``), each a
    scalar that may be traced; ``key`` a PRNG key. ``jax.jit(jax.vmap(train))`` over stacked
    hparams and keys trains an ensemble in one program.
    """
    return Trainer(family, config).train


def default_block_size(backend: str | None = None, *, fn=None, args: tuple = ()) -> int | None:
    """The ensemble block size for :func:`ensemble_map` on a backend: None (one vmap) on an
    accelerator; on CPU, as many instances as fit in ``CPU_BLOCK_BYTES`` of working memory,
    measured by compiling ``fn(*args)`` for one instance (args may be ShapeDtypeStructs), between
    1 and ``CPU_BLOCK_SIZE`` (that when no ``fn`` is given)."""
    if (backend or jax.default_backend()) != "cpu":
        return None
    if fn is None:
        return CPU_BLOCK_SIZE
    memory = jax.jit(fn).lower(*args).compile().memory_analysis()
    temp = getattr(memory, "temp_size_in_bytes", 0) if memory is not None else 0
    if not temp:
        return CPU_BLOCK_SIZE
    return int(min(CPU_BLOCK_SIZE, max(1, CPU_BLOCK_BYTES // temp)))


def ensemble_map(fn, block_size: int | None = None, groups: int = 1):
    """``fn`` mapped over the leading axis of all its arguments, like ``jax.vmap(fn)``.

    With a ``block_size``, the instances are trained ``block_size`` at a time (a scan over
    vmapped blocks, ``lax.map(..., batch_size=block_size)``), which keeps a CPU's working
    set in cache; results are the same as the plain vmap. ``groups`` splits the axis into
    that many contiguous parts first (one per device of a sharded axis), each blocked on
    its own, so the blocking never moves data between devices.
    """
    if block_size is not None and (isinstance(block_size, bool) or not isinstance(block_size, (int, np.integer))
                                   or block_size < 1):
        raise ValueError(f"block_size: got {block_size!r}; must be a positive integer or None")
    if block_size is None:
        return jax.vmap(fn)

    def mapped(*args):
        n = jax.tree.leaves(args)[0].shape[0]
        if n <= block_size * groups or n % groups:
            return jax.vmap(fn)(*args)
        split = jax.tree.map(lambda x: x.reshape(groups, n // groups, *x.shape[1:]), args)
        per_group = jax.vmap(lambda a: jax.lax.map(lambda b: fn(*b), a, batch_size=block_size))
        out = per_group(split)
        return jax.tree.map(lambda x: x.reshape(n, *x.shape[2:]), out)

    return mapped


def stack_hparams(configs) -> dict[str, np.ndarray]:
    """Stack the sweepable fields of several configs into (n,) arrays."""
    return {k: np.asarray([c.hparams()[k] for c in configs], np.float32) for k in configs[0].hparams()}
