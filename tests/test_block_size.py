"""The CPU block size rule (toylab.core.train.block_size_rule, default_block_size): read from
XLA's analyses of one instance's program, it keeps small memory-bound instances in
cache-sized blocks, widens compute-bound programs whose blocks share work (a batch made once per
block) and trains big instances without shared work one at a time."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.core import train
from toylab.core.devices import host_memory_bytes
from toylab.core.train import (CPU_BLOCK_BYTES, CPU_BLOCK_SIZE, CPU_COMPUTE_INTENSITY, CPU_SHARED_MIN,
                               CPU_VMAP_BYTES, CPU_WIDE_BLOCK_SIZE, Trainer, block_size_rule, default_block_size)


def _is_pow2(b):
    return b >= 1 and b & (b - 1) == 0


def test_small_memory_bound_instances_get_a_cache_sized_block():
    working = CPU_BLOCK_BYTES / 10  # ten of them fit the cache budget
    bytes_accessed = 4 * working
    block = block_size_rule(0.5 * bytes_accessed, bytes_accessed, working)  # half a flop per byte
    assert _is_pow2(block) and 1 < block <= 10  # the largest power of two whose block fits
    assert block * working <= CPU_BLOCK_BYTES < 2 * block * working
    # shared work does not widen a memory-bound program past the cache
    assert block_size_rule(0.5 * bytes_accessed, bytes_accessed, working, shared=0.9) == block
    # tiny instances: as many as the largest block
    assert block_size_rule(1.0, 1.0, CPU_BLOCK_BYTES / (100 * CPU_BLOCK_SIZE)) == CPU_BLOCK_SIZE


def test_compute_bound_program_with_shared_work_gets_a_wide_block():
    working = 2 * CPU_BLOCK_BYTES  # alone it already overflows the cache budget
    bytes_accessed = 5 * working
    flops = 2 * CPU_COMPUTE_INTENSITY * bytes_accessed
    assert block_size_rule(flops, bytes_accessed, working) == 1  # no shared work: one at a time
    wide = block_size_rule(flops, bytes_accessed, working, shared=CPU_SHARED_MIN + 0.1)
    assert _is_pow2(wide) and wide > 1 and wide * working <= CPU_VMAP_BYTES
    budget = min(CPU_VMAP_BYTES, (host_memory_bytes() or 4 * CPU_VMAP_BYTES) / 4)
    assert wide == min(CPU_WIDE_BLOCK_SIZE, 1 << int(np.log2(budget // working)))
    # a small compute-bound program sharing its work: the widest block
    assert block_size_rule(flops, bytes_accessed, 1.0, shared=0.9) == CPU_WIDE_BLOCK_SIZE
    # too little shared, or memory-bound: it stays at the cache-sized block
    assert block_size_rule(flops, bytes_accessed, working, shared=CPU_SHARED_MIN / 2) == 1
    assert block_size_rule(0.5 * CPU_COMPUTE_INTENSITY * bytes_accessed, bytes_accessed, working, shared=0.9) == 1


def test_unknown_working_set_is_the_largest_block():
    assert block_size_rule(1e6, 1e6, 0) == CPU_BLOCK_SIZE
    assert default_block_size("cpu") == CPU_BLOCK_SIZE
    assert default_block_size("gpu", fn=lambda x: x, args=(np.zeros(3),)) is None


def _program():
    """One instance's work: a (256, 128) batch made from a seed (shared by a block's instances
    when passed unbatched) through its own weights and back."""
    def fn(w, seed):
        x = jax.random.normal(jax.random.key(seed), (256, 128))
        h = jnp.tanh(x @ w)
        return jnp.mean((h @ w.T - x) ** 2)
    return fn, (jax.ShapeDtypeStruct((128, 64), jnp.float32), np.uint32(0))


def test_default_block_size_reads_the_compiled_programs(monkeypatch):
    fn, args = _program()
    one = train._analyses(jax.jit(fn).lower(*args).compile())
    assert one["flops"] > 0 and one["bytes"] > 0 and one["working"] > 0
    # every argument batched: nothing shared, the rule applied to one instance's analyses, a
    # cache-sized block
    cache = min(CPU_BLOCK_SIZE, 1 << int(np.log2(CPU_BLOCK_BYTES // one["working"])))
    assert default_block_size("cpu", fn=fn, args=args, n_shared=0) == block_size_rule(
        one["flops"], one["bytes"], one["working"]) == cache
    # A cache too small for one instance of a compute-bound program: with the batch shared by
    # the block (measured from a vmapped pair) the block widens; made per instance, it does not.
    monkeypatch.setattr(train, "CPU_BLOCK_BYTES", one["working"] / 2)
    monkeypatch.setattr(train, "CPU_COMPUTE_INTENSITY", 0.5 * one["flops"] / one["bytes"])
    shared = default_block_size("cpu", fn=fn, args=args, n_shared=1)
    assert shared > 1 and _is_pow2(shared) and shared * one["working"] <= CPU_VMAP_BYTES
    monkeypatch.setattr(train, "CPU_VMAP_BYTES", 4 * one["working"])  # memory for four: no wider
    assert default_block_size("cpu", fn=fn, args=args, n_shared=1) == 4
    assert default_block_size("cpu", fn=fn, args=args, n_shared=0) == 1


def test_analyses_take_a_list_or_a_dict():
    class Compiled:
        def __init__(self, cost):
            self.cost = cost

        def cost_analysis(self):
            return self.cost

        def memory_analysis(self):
            return type("M", (), {"temp_size_in_bytes": 10, "argument_size_in_bytes": 3, "output_size_in_bytes": 2})()

    want = {"flops": 5.0, "bytes": 7.0, "working": 15}
    assert train._analyses(Compiled({"flops": 5.0, "bytes accessed": 7.0})) == want
    assert train._analyses(Compiled([{"flops": 5.0, "bytes accessed": 7.0}])) == want
    assert train._analyses(Compiled(None)) == {"flops": 0.0, "bytes": 0.0, "working": 15}


@pytest.mark.parametrize("data_seed, widened", [(0, True), (None, False)])
def test_trainer_auto_measures_the_batches_a_block_shares(monkeypatch, data_seed, widened):
    # A superposition program whose every instance overflows the (shrunk) cache budget: with a
    # data_seed a block makes each batch once and the auto block widens; without, it is 1.
    from toylab.families.superposition import SuperpositionConfig

    cfg = SuperpositionConfig(n_features=64, n_hidden=16, batch_size=256, steps=4, log_every=4, data_seed=data_seed)
    monkeypatch.setattr(train, "CPU_BLOCK_BYTES", 1.0)
    monkeypatch.setattr(train, "CPU_COMPUTE_INTENSITY", 0.0)
    monkeypatch.setattr(train, "_AUTO_BLOCKS", {})  # decided afresh under these constants
    block = Trainer("superposition", cfg).block_size
    assert (block > 1) == widened and _is_pow2(block)


def test_trainer_auto_is_decided_once_per_family_and_config(monkeypatch):
    from toylab.families.superposition import SuperpositionConfig

    monkeypatch.setattr(train, "_AUTO_BLOCKS", {})
    calls = []
    real = train.default_block_size
    monkeypatch.setattr(train, "default_block_size", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = SuperpositionConfig(steps=4, log_every=4)
    first = Trainer("superposition", cfg).block_size
    assert Trainer("superposition", cfg).block_size == first and len(calls) == 1
    assert calls[0]["n_shared"] == 0  # no data_seed: each instance draws its own batches, nothing to share
    Trainer("superposition", cfg.replace(data_seed=3)).block_size
    assert len(calls) == 2 and calls[1]["n_shared"] == 2


def test_the_probe_compile_analyses_as_the_optimised_one():
    """The probe compiles without LLVM's optimisations: XLA's cost and buffer analyses, all the
    rule reads, are those of the fully optimised program (here a real training segment)."""
    from toylab.families.superposition import SuperpositionConfig

    trainer = Trainer("superposition", SuperpositionConfig(n_features=20, n_hidden=5, steps=4, log_every=2))
    hp = trainer.config.hparams()
    state = jax.eval_shape(lambda s: trainer.init(hp, trainer._key(s)), np.uint32(0))
    lowered = jax.jit(lambda st, s, h: trainer.segment(st, h, trainer._key(s), 2)).lower(state, np.uint32(0), hp)
    probe = train._analyses(lowered.compile(train._PROBE_OPTIONS))
    assert probe["flops"] > 0 and probe["working"] > 0
    assert probe == train._analyses(lowered.compile())


def test_a_sweep_of_one_instance_per_device_probes_nothing(monkeypatch):
    """Every block size trains a single instance alike: "auto" compiles no probe for it."""
    from toylab.core.sweep import run_sweep

    monkeypatch.setattr(train, "_AUTO_BLOCKS", {})
    calls = []
    real = train.default_block_size
    monkeypatch.setattr(train, "default_block_size", lambda *a, **k: calls.append(k) or real(*a, **k))
    cfg = {"n_features": 6, "n_hidden": 2, "steps": 20, "log_every": 10}
    run_sweep("superposition", cfg, seeds=1, quiet=True)
    assert calls == []
    run_sweep("superposition", cfg, seeds=2, quiet=True)
    assert len(calls) == 1


def test_a_program_that_scatters_trains_one_instance_at_a_time(monkeypatch):
    """An embedding's gradient is a scatter: XLA:CPU loops over its updates, and vmapped it
    scatters into every instance's table, so such programs run in blocks of 1 whatever the
    cache rule says; the same program without the scatter keeps the cache rule's block."""
    table = jnp.zeros((64, 32))
    idx = jnp.arange(256) % 64

    def with_scatter(w, x):
        return w.at[idx].add(x)  # the gradient of w[idx]

    def without(w, x):
        return w + x[:64]

    x = jnp.ones((256, 32))
    assert train._scatters(jax.jit(with_scatter).lower(table, x).compile(train._PROBE_OPTIONS))
    assert not train._scatters(jax.jit(without).lower(table, x).compile(train._PROBE_OPTIONS))
    assert default_block_size("cpu", fn=with_scatter, args=(table, x)) == 1
    assert default_block_size("cpu", fn=without, args=(table, x)) == CPU_BLOCK_SIZE  # small: the largest block
    # a family whose loss reads an embedding: the grokking transformer
    from toylab.families.grokking import GrokkingConfig

    monkeypatch.setattr(train, "_AUTO_BLOCKS", {})
    assert Trainer("grokking", GrokkingConfig(p=7, steps=20, log_every=10)).block_size == 1
