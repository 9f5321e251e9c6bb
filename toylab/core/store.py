"""The results store: one folder per run or sweep, every write atomic and checksummed.

Layout of a results folder::

    manifest.json          family, base config, grid, seeds, chunking, runs, versions, devices
    summary.json           final metrics and hyperparameters of every finished run
    chunks/<id>.params.eqx final params of a chunk of runs (equinox serialisation, leading axis)
    chunks/<id>.snapshots.eqx
    chunks/<id>.npz        metrics (runs, n_logs), summary measures, run indices
    chunks/<id>.done.json  the chunk's completion record: its id, its runs and the sha256 of
                           each of its files — written last, so its presence marks the chunk
                           complete, and a changed, swapped or truncated file is detected
    checkpoints/<id>.ckpt  a running chunk's state after its last finished segment: one JSON
                           header line (steps done, segment length, block size, devices,
                           sha256 of the payload) and the equinox payload
    .lock                  held (flock) by the one process writing the folder

Every file is written to a temporary name in the same folder, flushed, fsynced and renamed
over its target, so a process killed at any moment leaves each file either old or new,
never torn; temporary files a killed writer left are removed when the folder is next opened
for writing. Files get the user's umask (as ``open`` would), not mkstemp's 0600.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import io
import json
import os
import tempfile
from pathlib import Path
from typing import Any

import equinox as eqx
import numpy as np

from .config import ConfigError

__all__ = ["Store", "atomic_write", "write_json", "sha256_file", "check_writable"]

FORMAT = 2  # 1: npz marked completion, checkpoints had a scratch snapshot slot


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextlib.contextmanager
def atomic_write(path: Path, mode: str = "wb"):
    """Write ``path`` all-or-nothing: a temporary file beside it, fsynced, then renamed."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, 0o666 & ~_umask())
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
    if isinstance(o, np.generic):  # numpy scalars: floats, ints, bools
        return o.item()
    if isinstance(o, np.ndarray):
        return o.tolist()
    if isinstance(o, tuple):
        return list(o)
    raise TypeError(f"not JSON serialisable: {type(o).__name__}")


def _read_json(path: Path):
    with open(path) as f:
        return json.load(f)


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def check_writable(folder: Path, option: str = "out"):
    """Refuse (ConfigError) a folder this process cannot create or write, before any work."""
    folder = Path(folder)
    probe = folder
    while not probe.exists():
        probe = probe.parent
    if not probe.is_dir():
        raise ConfigError(option, str(folder), f"{str(probe)!r} is a file, not a folder; choose another folder")
    try:  # a real write, not os.access: root passes access() on read-only filesystems too
        fd, tmp = tempfile.mkstemp(prefix=".toylab-probe.", suffix=".tmp", dir=probe)
        os.close(fd)
        os.unlink(tmp)
    except OSError as e:
        raise ConfigError(option, str(folder), f"{str(probe)!r} is not writable ({e.strerror}); "
                                               "choose a folder you can write") from None


class Store:
    """A results folder. Create with :meth:`open`; only the writer (process 0) writes."""

    IDENTITY_KEYS = ("format", "family", "base", "grid", "seeds", "chunk_size")

    def __init__(self, root: Path, manifest: dict, writer: bool = True):
        self.root = Path(root)
        self.manifest = manifest
        self.writer = writer
        self._lock = None

    # -- opening
    @classmethod
    def open(cls, root, manifest: dict, resume: bool, writer: bool = True) -> "Store":
        """Open ``root`` for the sweep described by ``manifest``, locked for writing.

        A new or empty folder is created; a folder holding this same sweep is reused only
        with ``resume``; a folder holding anything else, or one another process is writing,
        is refused without touching it. ``resume`` of a folder that holds no sweep is refused.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError("out", str(root), "exists and is not a folder; choose a new folder")
        store = cls(root, manifest, writer)
        if not writer:  # process 0 decides; the others follow what it broadcasts
            return store
        if resume and not (root / "manifest.json").exists():
            raise ConfigError("out", str(root), "holds no sweep to resume (no manifest.json); drop --resume to start one")
        if root.exists():
            store._check_identity(manifest, resume)  # refuse before touching anything
        check_writable(root)
        created = not root.exists()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("out", str(root), f"cannot be created ({e.strerror}); choose a folder you can write") from None
        store._acquire_lock()
        try:
            store._check_identity(manifest, resume)  # again, now that no one else can write
        except BaseException:
            if created and [p.name for p in root.iterdir()] == [".lock"]:  # leave no trace
                with contextlib.suppress(OSError):
                    (root / ".lock").unlink()
                    root.rmdir()
            store.close()
            raise
        store._remove_stale_temporaries()
        if not (root / "manifest.json").exists():
            write_json(root / "manifest.json", manifest)
        return store

    def _check_identity(self, manifest, resume):
        mpath = self.root / "manifest.json"
        if not mpath.exists():
            if any(p for p in self.root.iterdir() if not p.name.startswith(".")):
                raise ConfigError("out", str(self.root), "is a non-empty folder that is not a toylab results folder; "
                                                         "choose a new folder")
            return
        try:
            old = _read_json(mpath)
        except (OSError, json.JSONDecodeError) as e:
            raise ConfigError("out", str(self.root), f"its manifest.json cannot be read ({e}); choose a new folder") from None
        diff = [k for k in self.IDENTITY_KEYS if _canon(old.get(k)) != _canon(manifest.get(k))]
        if diff:
            raise ConfigError("out", str(self.root),
                              f"holds a different sweep ({_describe_diff(old, manifest, diff[0])}); "
                              "choose a new folder, or repeat the original command with --resume")
        if not resume:
            raise ConfigError("out", str(self.root), "already holds this sweep; pass --resume to finish it, or choose a new folder")
        self.manifest = old

    def _acquire_lock(self):
        import fcntl

        fd = os.open(self.root / ".lock", os.O_RDWR | os.O_CREAT, 0o666 & ~_umask())
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as e:
            holder = os.pread(fd, 64, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            if e.errno in (errno.EAGAIN, errno.EACCES, errno.EWOULDBLOCK):
                raise ConfigError("out", str(self.root), f"another toylab process (pid {holder}) is writing this folder; "
                                                         "wait for it, or choose another folder") from None
            raise
        os.ftruncate(fd, 0)
        os.pwrite(fd, str(os.getpid()).encode(), 0)
        self._lock = fd

    def close(self):
        """Release the folder's lock (the process exiting releases it too)."""
        if self._lock is not None:
            os.close(self._lock)
            self._lock = None

    def _remove_stale_temporaries(self):
        # Safe only under the lock: no other writer can own them.
        for folder in (self.root, self.root / "chunks", self.root / "checkpoints"):
            if folder.is_dir():
                for p in folder.glob(".*.tmp"):
                    with contextlib.suppress(OSError):
                        p.unlink()

    # -- chunks
    def chunk_path(self, chunk_id: str, kind: str) -> Path:
        return self.root / "chunks" / f"{chunk_id}.{kind}"

    def has_chunk(self, chunk_id: str) -> bool:
        return self.chunk_path(chunk_id, "done.json").exists()

    def save_chunk(self, chunk_id: str, params, snapshots, arrays: dict[str, np.ndarray]):
        if not self.writer:
            return
        files = {}
        with atomic_write(self.chunk_path(chunk_id, "params.eqx")) as f:
            eqx.tree_serialise_leaves(f, params)
        files["params.eqx"] = sha256_file(self.chunk_path(chunk_id, "params.eqx"))
        if snapshots is not None:
            with atomic_write(self.chunk_path(chunk_id, "snapshots.eqx")) as f:
                eqx.tree_serialise_leaves(f, snapshots)
            files["snapshots.eqx"] = sha256_file(self.chunk_path(chunk_id, "snapshots.eqx"))
        with atomic_write(self.chunk_path(chunk_id, "npz")) as f:
            np.savez(f, **arrays)
        files["npz"] = sha256_file(self.chunk_path(chunk_id, "npz"))
        write_json(self.chunk_path(chunk_id, "done.json"),
                   {"chunk": chunk_id, "run_index": [int(i) for i in arrays["run_index"]], "sha256": files})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.checkpoint_path(chunk_id))

    def _corrupt(self, what: str, why: str, chunk_id: str) -> ConfigError:
        return ConfigError("out", str(self.root), f"{what} {why}; delete chunks/{chunk_id}.* and rerun with --resume "
                                                  "to retrain that chunk")

    def chunk_record(self, chunk_id: str) -> dict:
        try:
            record = _read_json(self.chunk_path(chunk_id, "done.json"))
        except (OSError, json.JSONDecodeError) as e:
            raise self._corrupt(f"chunks/{chunk_id}.done.json", f"cannot be read ({e})", chunk_id) from None
        if record.get("chunk") != chunk_id:
            raise self._corrupt(f"chunks/{chunk_id}.done.json", f"belongs to chunk {record.get('chunk')!r}", chunk_id)
        return record

    def verify_chunk(self, chunk_id: str) -> dict:
        """The chunk's record, after checking every file against its sha256 (ConfigError if not)."""
        record = self.chunk_record(chunk_id)
        for kind, digest in record["sha256"].items():
            path = self.chunk_path(chunk_id, kind)
            if not path.exists():
                raise self._corrupt(f"chunks/{path.name}", "is missing", chunk_id)
            if sha256_file(path) != digest:
                raise self._corrupt(f"chunks/{path.name}", "does not match its checksum (changed, swapped or corrupt)",
                                    chunk_id)
        return record

    def load_chunk_arrays(self, chunk_id: str, verify: bool = True) -> dict[str, np.ndarray]:
        record = self.verify_chunk(chunk_id) if verify else self.chunk_record(chunk_id)
        with np.load(self.chunk_path(chunk_id, "npz")) as z:
            arrays = {k: z[k] for k in z.files}
        if [int(i) for i in arrays["run_index"]] != record["run_index"]:
            raise self._corrupt(f"chunks/{chunk_id}.npz", "holds other runs than its record", chunk_id)
        return arrays

    def load_tree(self, chunk_id: str, kind: str, like):
        path = self.chunk_path(chunk_id, kind)
        try:
            return eqx.tree_deserialise_leaves(path, like)
        except Exception as e:  # noqa: BLE001 - any failure to read is a corrupt file
            raise self._corrupt(f"chunks/{path.name}", f"cannot be read as this sweep's parameters ({type(e).__name__})",
                                chunk_id) from None

    # -- checkpoints of a running chunk
    def checkpoint_path(self, chunk_id: str) -> Path:
        return self.root / "checkpoints" / f"{chunk_id}.ckpt"

    def save_checkpoint(self, chunk_id: str, tree, header: dict):
        """Save ``tree`` with ``header`` (JSON-able facts to check on load) in one file."""
        if not self.writer:
            return
        payload = io.BytesIO()
        eqx.tree_serialise_leaves(payload, tree)
        data = payload.getvalue()
        head = {**header, "chunk": chunk_id, "sha256": hashlib.sha256(data).hexdigest()}
        with atomic_write(self.checkpoint_path(chunk_id)) as f:
            f.write(json.dumps(head, default=_json_default).encode() + b"\n")
            f.write(data)

    def load_checkpoint(self, chunk_id: str, like):
        """(header, tree) of the chunk's checkpoint, or None; ConfigError if it is corrupt."""
        path = self.checkpoint_path(chunk_id)
        if not path.exists():
            return None
        fix = f"delete checkpoints/{path.name} to retrain chunk {chunk_id} from its start, then rerun with --resume"
        with open(path, "rb") as f:
            line, data = f.readline(), f.read()
        try:
            head = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} has no readable header; {fix}") from None
        if head.get("chunk") != chunk_id or hashlib.sha256(data).hexdigest() != head.get("sha256"):
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} does not match its checksum "
                                                     f"(changed, swapped or corrupt); {fix}")
        try:
            tree = eqx.tree_deserialise_leaves(io.BytesIO(data), like)
        except Exception as e:  # noqa: BLE001
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} does not fit this sweep "
                                                     f"({type(e).__name__}); {fix}") from None
        return head, tree

    # -- summary
    def write_summary(self, rows: list[dict]):
        if self.writer:
            write_json(self.root / "summary.json", rows)


def _canon(v):
    return json.dumps(v, sort_keys=True, default=_json_default)


def _describe_diff(old, new, key):
    return f"its {key} is {_canon(old.get(key))}, this command's is {_canon(new.get(key))}"
