"""Devices, sharding of a sweep's leading axis, host transfer and the compilation cache."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["sweep_mesh", "shard_leading", "to_host", "enable_compilation_cache", "device_summary"]

SWEEP_AXIS = "sweep"


def sweep_mesh() -> Mesh:
    """A 1-D mesh over every device of every process (one host: the local devices)."""
    return Mesh(np.asarray(jax.devices()), (SWEEP_AXIS,))


def shard_leading(tree, mesh: Mesh):
    """Lay each array's leading axis over the mesh. Every process holds the same global
    numpy arrays and contributes its own shards, so this also works across hosts."""
    sharding = NamedSharding(mesh, PartitionSpec(SWEEP_AXIS))

    def put(x):
        x = np.asarray(x) if not isinstance(x, jax.Array) else x
        return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])

    return jax.tree.map(put, tree)


def to_host(tree):
    """Bring (possibly sharded, possibly multi-host) arrays to numpy on this process."""
    if jax.process_count() == 1:
        return jax.tree.map(np.asarray, tree)
    from jax.experimental import multihost_utils

    return jax.tree.map(np.asarray, multihost_utils.process_allgather(tree, tiled=True))


def enable_compilation_cache(path: str | None = None):
    """Turn on JAX's persistent compilation cache (once per process) unless the user set one."""
    if jax.config.jax_compilation_cache_dir:
        return
    path = path or os.environ.get("TOYLAB_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "toylab", "jax")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return  # an unwritable home only costs recompiles
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def device_summary() -> dict:
    return {
        "backend": jax.default_backend(),
        "devices": [str(d) for d in jax.devices()],
        "process_count": jax.process_count(),
    }
