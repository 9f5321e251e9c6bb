"""Devices, sharding of a sweep's leading axis, host transfer and the compilation cache."""

from __future__ import annotations

import os

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

__all__ = ["sweep_mesh", "shard_leading", "to_host", "enable_compilation_cache", "device_summary", "init_distributed",
           "is_writer", "barrier", "broadcast_json", "broadcast_tree", "memory_bytes"]

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


# ----------------------------------------------------------------------------- several processes

CLUSTER_HINTS = ("SLURM_JOB_ID", "TPU_WORKER_HOSTNAMES", "CLOUD_TPU_TASK_ID", "MEGASCALE_COORDINATOR_ADDRESS")


def init_distributed(coordinator: str | None = None, num_processes: int | None = None, process_id: int | None = None,
                     *, heartbeat_timeout_s: int = 60):
    """Join a sweep run by several processes (``jax.distributed.initialize``), before any
    other JAX call. With a ``coordinator`` ("HOST:PORT"), ``num_processes`` and
    ``process_id`` are required; without one, the cluster is detected: the environment
    JAX_COORDINATOR_ADDRESS (with JAX_NUM_PROCESSES and JAX_PROCESS_ID), else SLURM or a
    TPU pod, through JAX's own detection. CPUs talk through gloo collectives, so this works
    on plain CPU machines too. Raises ConfigError if nothing describes a cluster."""
    from .config import ConfigError

    if coordinator is None and os.environ.get("JAX_COORDINATOR_ADDRESS"):
        coordinator = os.environ["JAX_COORDINATOR_ADDRESS"]
        for name, value in (("JAX_NUM_PROCESSES", num_processes), ("JAX_PROCESS_ID", process_id)):
            if value is None and name not in os.environ:
                raise ConfigError(name, None, "must be set beside JAX_COORDINATOR_ADDRESS (an integer)")
        try:
            num_processes = int(os.environ["JAX_NUM_PROCESSES"]) if num_processes is None else num_processes
            process_id = int(os.environ["JAX_PROCESS_ID"]) if process_id is None else process_id
        except ValueError:
            raise ConfigError("JAX_NUM_PROCESSES", os.environ.get("JAX_NUM_PROCESSES"),
                              "JAX_NUM_PROCESSES and JAX_PROCESS_ID must be integers") from None
    if coordinator is not None:
        host, _, port = coordinator.rpartition(":")
        if not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ConfigError("coordinator", coordinator, "must be HOST:PORT with a port in 1..65535")
        if num_processes is None or num_processes < 1:
            raise ConfigError("num_processes", num_processes, "must be a positive integer with --coordinator")
        if process_id is None or not 0 <= process_id < num_processes:
            raise ConfigError("process_id", process_id, f"must be an integer in 0..{num_processes - 1}")
    elif not any(os.environ.get(k) for k in CLUSTER_HINTS):
        raise ConfigError("distributed", True, "found no cluster (no SLURM job, no TPU pod, no JAX_COORDINATOR_ADDRESS); "
                                               "give --coordinator HOST:PORT --num-processes N --process-id I")
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    kwargs = {} if coordinator is None else dict(coordinator_address=coordinator, num_processes=num_processes,
                                                  process_id=process_id)
    jax.distributed.initialize(**kwargs, heartbeat_timeout_seconds=heartbeat_timeout_s)


def is_writer() -> bool:
    """Process 0 writes results; the others compute beside it."""
    return jax.process_index() == 0


def barrier(name: str):
    """Wait until every process reaches the barrier ``name`` (no-op with one process)."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def broadcast_json(obj):
    """Process 0's JSON-able ``obj`` on every process (itself with one process)."""
    if jax.process_count() == 1:
        return obj
    import json

    from jax.experimental import multihost_utils

    data = np.frombuffer(json.dumps(obj).encode(), np.uint8) if is_writer() else np.zeros(0, np.uint8)
    n = int(multihost_utils.broadcast_one_to_all(np.int64(data.size)))
    buf = np.zeros(n, np.uint8)
    buf[:data.size] = data[:n]
    buf = np.asarray(multihost_utils.broadcast_one_to_all(buf))
    return json.loads(buf.tobytes().decode())


def broadcast_tree(tree):
    """Process 0's pytree of arrays on every process (same shapes everywhere)."""
    if jax.process_count() == 1:
        return tree
    from jax.experimental import multihost_utils

    return jax.tree.map(np.array, multihost_utils.broadcast_one_to_all(tree))  # writable copies


def host_memory_bytes() -> int | None:
    """This machine's physical memory (None where it cannot be asked)."""
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return None


def memory_bytes() -> tuple[int, str]:
    """(bytes one device can hold, what that is): an accelerator's memory limit, or this
    host's physical memory shared by its CPU devices."""
    dev = jax.local_devices()[0]
    if dev.platform != "cpu":
        stats = getattr(dev, "memory_stats", lambda: None)() or {}
        if stats.get("bytes_limit"):
            return int(stats["bytes_limit"]), f"the memory of one {dev.device_kind}"
    total = host_memory_bytes() or 16 * 2**30
    return int(total) // max(len(jax.local_devices()), 1), "this machine's memory" + (
        f" shared by {len(jax.local_devices())} CPU devices" if len(jax.local_devices()) > 1 else "")
