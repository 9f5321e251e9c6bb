"""The results store: one folder per run or sweep, every write atomic.

Layout of a results folder::

    manifest.json          family, base config, grid, seeds, chunking, runs, versions, devices
    summary.json           final metrics and hyperparameters of every finished run
    chunks/<id>.params.eqx final params of a chunk of runs (equinox serialisation, leading axis)
    chunks/<id>.snapshots.eqx
    chunks/<id>.npz        metrics (runs, n_logs), summary measures, run indices — written last,
                           so its presence marks the chunk complete
    checkpoints/<id>.eqx   training state after the last finished segment of a running chunk

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed
over its target, so a process killed at any moment leaves each file either old or new,
never torn; a resumed sweep skips complete chunks and continues running ones from their
checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

__all__ = ["StoreError", "Store", "atomic_write", "write_json"]


class StoreError(ValueError):
    """A results folder that cannot be used as asked (names the folder and why)."""


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb"):
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, mode) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def write_json(path: Path, obj: Any):
    with atomic_write(path, "w") as f:
        json.dump(obj, f, indent=1, sort_keys=False, default=_json_default)


def _json_default(o):
    if isinstance(o, (np.floating, np.integer)):
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


class Store:
    """A results folder. Create with :meth:`open`; only process 0 writes."""

    IDENTITY_KEYS = ("family", "base", "grid", "seeds", "chunk_size")

    def __init__(self, root: Path, manifest: dict, writer: bool = True):
        self.root = Path(root)
        self.manifest = manifest
        self.writer = writer

    # -- opening
    @classmethod
    def open(cls, root, manifest: dict, resume: bool, writer: bool = True) -> "Store":
        """Open ``root`` for the sweep described by ``manifest``.

        A new or empty folder is created; a folder holding this same sweep is reused only
        with ``resume``; a folder holding anything else is refused without touching it.
        """
        root = Path(root)
        mpath = root / "manifest.json"
        if root.exists() and not root.is_dir():
            raise StoreError(f"--out {str(root)!r}: exists and is not a folder; choose a new folder")
        if mpath.exists():
            try:
                old = _read_json(mpath)
            except (OSError, json.JSONDecodeError) as e:
                raise StoreError(f"--out {str(root)!r}: its manifest.json cannot be read ({e}); choose a new folder") from None
            diff = [k for k in cls.IDENTITY_KEYS if _canon(old.get(k)) != _canon(manifest.get(k))]
            if diff:
                raise StoreError(
                    f"--out {str(root)!r}: holds a different sweep (its {', '.join(diff)} differ{'s' if len(diff) == 1 else ''}"
                    f"{' — ' + _describe_diff(old, manifest, diff[0]) if diff else ''}); "
                    "choose a new folder, or repeat the original command with --resume")
            if not resume:
                raise StoreError(f"--out {str(root)!r}: already holds this sweep; pass --resume to finish it, or choose a new folder")
            store = cls(root, old, writer)
        else:
            if root.exists() and any(p for p in root.iterdir() if not p.name.startswith(".")):
                raise StoreError(f"--out {str(root)!r}: is a non-empty folder that is not a toylab results folder; choose a new folder")
            store = cls(root, manifest, writer)
            if writer:
                root.mkdir(parents=True, exist_ok=True)
                write_json(mpath, manifest)
        return store

    # -- chunks
    def chunk_path(self, chunk_id: str, kind: str) -> Path:
        return self.root / "chunks" / f"{chunk_id}.{kind}"

    def has_chunk(self, chunk_id: str) -> bool:
        return self.chunk_path(chunk_id, "npz").exists()

    def save_chunk(self, chunk_id: str, params, snapshots, arrays: dict[str, np.ndarray]):
        if not self.writer:
            return
        with atomic_write(self.chunk_path(chunk_id, "params.eqx")) as f:
            eqx.tree_serialise_leaves(f, params)
        if snapshots is not None:
            with atomic_write(self.chunk_path(chunk_id, "snapshots.eqx")) as f:
                eqx.tree_serialise_leaves(f, snapshots)
        with atomic_write(self.chunk_path(chunk_id, "npz")) as f:
            np.savez(f, **arrays)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.checkpoint_path(chunk_id))

    def load_chunk_arrays(self, chunk_id: str) -> dict[str, np.ndarray]:
        with np.load(self.chunk_path(chunk_id, "npz")) as z:
            return {k: z[k] for k in z.files}

    def load_tree(self, chunk_id: str, kind: str, like):
        return eqx.tree_deserialise_leaves(self.chunk_path(chunk_id, kind), like)

    # -- checkpoints of a running chunk
    def checkpoint_path(self, chunk_id: str) -> Path:
        return self.root / "checkpoints" / f"{chunk_id}.eqx"

    def save_checkpoint(self, chunk_id: str, tree):
        if self.writer:
            with atomic_write(self.checkpoint_path(chunk_id)) as f:
                eqx.tree_serialise_leaves(f, tree)

    def load_checkpoint(self, chunk_id: str, like):
        path = self.checkpoint_path(chunk_id)
        if not path.exists():
            return None
        return eqx.tree_deserialise_leaves(path, like)

    # -- summary
    def write_summary(self, rows: list[dict]):
        if self.writer:
            write_json(self.root / "summary.json", rows)


def _canon(v):
    return json.dumps(v, sort_keys=True, default=_json_default)


def _describe_diff(old, new, key):
    return f"{key}: folder has {_canon(old.get(key))}, asked for {_canon(new.get(key))}"
