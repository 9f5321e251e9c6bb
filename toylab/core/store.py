"""The results store: one folder per run or sweep, every write atomic and checksummed.

Layout of a results folder::

    manifest.json          family, base config, grid, seeds, chunking, runs, versions, devices
    summary.json           final metrics and hyperparameters of every finished run
    chunks/<id>.params.eqx final params of a chunk of runs (equinox serialisation, leading axis)
    chunks/<id>.snapshots.eqx
    chunks/<id>.npz        metrics (runs, n_logs), summary measures, run indices
    chunks/<id>.done.json  the chunk's completion record: its id, its runs, the sha256 of each
                           of its files and of the manifest's identity (config, grid, runs) —
                           written last, so its presence marks the chunk complete, and a
                           changed, swapped or truncated file, or an edited manifest, is detected
    checkpoints/<id>.ckpt  a running chunk's state after its last finished segment: one JSON
                           header line (steps done, segment length, block size, devices,
                           sha256 of the payload and of the manifest's identity) and the
                           equinox payload
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

from .config import ConfigError, spelled

__all__ = ["Store", "MemoryStore", "identity_digest", "atomic_write", "write_json", "sha256_file", "check_writable"]

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
        self.read_only = False  # a finished sweep opened to be loaded
        self.created = False  # this process made the folder
        self._replace_manifest = False
        self._lock = None

    # -- opening
    @classmethod
    def open(cls, root, manifest: dict, resume: bool, writer: bool = True) -> "Store":
        """Open ``root`` for the sweep described by ``manifest``, locked for writing.

        A new or empty folder is created. A folder holding this same sweep is continued with
        ``resume``; without it, a finished one is opened read-only (to be loaded, nothing
        trained or written: :attr:`read_only`) and an unfinished one is refused. A folder
        holding another sweep, or one another process is writing, is refused without
        touching it — unless it holds nothing trained yet (a manifest from a start that
        failed or was killed before its first checkpoint), which a new sweep may take over.
        ``resume`` of a folder that holds no sweep is refused.
        """
        root = Path(root)
        if root.exists() and not root.is_dir():
            raise ConfigError("out", str(root), "exists and is not a folder; choose a new folder")
        store = cls(root, manifest, writer)
        if not writer:  # process 0 decides; the others follow what it broadcasts
            return store
        if resume and not (root / "manifest.json").exists():
            raise ConfigError("out", str(root), "holds no sweep to resume (no manifest.json); drop "
                                                f"{spelled('resume=True', '--resume')} to start one")
        if root.exists():
            store._check_identity(manifest, resume)  # refuse before touching anything
            if store.read_only:
                return store
        check_writable(root)
        store.created = not root.exists()
        try:
            root.mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise ConfigError("out", str(root), f"cannot be created ({e.strerror}); choose a folder you can write") from None
        store._acquire_lock()
        try:
            store._check_identity(manifest, resume)  # again, now that no one else can write
        except BaseException:
            if store.created:
                store.discard_if_untrained()  # leave no trace
            store.close()
            raise
        if store.read_only:  # finished while we waited for the lock
            store.close()
            return store
        store._remove_stale_temporaries()
        if store._replace_manifest or not (root / "manifest.json").exists():
            write_json(root / "manifest.json", manifest)
            store.manifest = manifest
        return store

    def holds_trained_work(self) -> bool:
        """True when the folder holds any chunk file or checkpoint (anything a retry would lose)."""
        return any(any(p for p in (self.root / sub).iterdir() if not p.name.startswith("."))
                   for sub in ("chunks", "checkpoints") if (self.root / sub).is_dir())

    def discard_if_untrained(self):
        """Remove what opening this folder created when nothing was trained into it, so a
        failed start leaves no folder behind (the writer alone, holding the lock)."""
        if not self.writer or self.holds_trained_work():
            return
        for name in ("manifest.json", ".lock"):
            with contextlib.suppress(OSError):
                (self.root / name).unlink()
        for sub in ("chunks", "checkpoints", ""):
            with contextlib.suppress(OSError):
                (self.root / sub).rmdir()

    def _check_identity(self, manifest, resume):
        self._replace_manifest = False
        mpath = self.root / "manifest.json"
        if not mpath.exists():
            if any(p for p in self.root.iterdir() if not p.name.startswith(".")):
                raise ConfigError("out", str(self.root), "is a non-empty folder that is not a toylab results folder; "
                                                         "choose a new folder")
            return
        try:
            old = _read_json(mpath)
            if not isinstance(old, dict):
                raise ValueError("not a JSON object")
        except (OSError, ValueError) as e:
            if not self.holds_trained_work():
                self._replace_manifest = True  # nothing trained: a new start may take it over
                return
            raise ConfigError("out", str(self.root), f"its manifest.json cannot be read ({e}); choose a new folder") from None
        compared = _with_new_field_defaults(old, manifest)
        diff = [k for k in self.IDENTITY_KEYS if _canon(compared.get(k)) != _canon(manifest.get(k))]
        if not diff and "derived" in old and _canon(old["derived"]) != _canon(manifest.get("derived")):
            diff = ["derived"]  # what the configs read from outside (a source's fingerprint) changed
        if diff and not self.holds_trained_work():
            self._replace_manifest = True  # a start that trained nothing: nothing to lose
            return
        if diff:
            raise ConfigError("out", str(self.root),
                              f"holds a different sweep ({_describe_diff(old, manifest, diff[0])}); "
                              f"choose a new folder, or repeat the original command with {spelled('resume=True', '--resume')}")
        self.manifest = old
        if not resume:
            runs = old.get("runs") or []
            done = {c for c in {r.get("chunk") for r in runs} if self.has_chunk(c)}
            missing = [r for r in runs if r.get("chunk") not in done]
            if runs and not missing:
                self.read_only = True  # finished: load it, train and write nothing
                self.writer = False
                return
            raise ConfigError("out", str(self.root),
                              f"already holds this sweep, unfinished ({len(runs) - len(missing)} of {len(runs)} runs "
                              f"done); pass {spelled('resume=True', '--resume')} to finish it, or choose a new folder")

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
                   {"chunk": chunk_id, "run_index": [int(i) for i in arrays["run_index"]], "sha256": files,
                    "manifest_sha256": identity_digest(self.manifest)})
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.checkpoint_path(chunk_id))

    def _corrupt(self, what: str, why: str, chunk_id: str) -> ConfigError:
        # Only for files that fail their record (missing, unreadable, not matching their
        # checksum): deleting them loses nothing that could be trusted.
        return ConfigError("out", str(self.root), f"{what} {why}; delete chunks/{chunk_id}.* and rerun with "
                                                  f"{spelled('resume=True', '--resume')} to retrain that chunk")

    def _check_manifest(self, recorded: str | None, where: str):
        """Refuse a manifest whose identity (config, grid, runs) differs from the one the
        chunk or checkpoint ``where`` was trained under: it was edited since."""
        if recorded is not None and recorded != identity_digest(self.manifest):
            raise ConfigError("out", str(self.root), f"manifest.json was changed after {where} was trained (its config, "
                                                     "grid or runs no longer match the checksum recorded there); "
                                                     "restore the original manifest.json")

    def chunk_record(self, chunk_id: str) -> dict:
        try:
            record = _read_json(self.chunk_path(chunk_id, "done.json"))
        except (OSError, json.JSONDecodeError) as e:
            raise self._corrupt(f"chunks/{chunk_id}.done.json", f"cannot be read ({e})", chunk_id) from None
        if not isinstance(record, dict) or not isinstance(record.get("sha256"), dict):
            raise self._corrupt(f"chunks/{chunk_id}.done.json", "is not a chunk record", chunk_id)
        if record.get("chunk") != chunk_id:
            raise self._corrupt(f"chunks/{chunk_id}.done.json", f"belongs to chunk {record.get('chunk')!r}", chunk_id)
        self._check_manifest(record.get("manifest_sha256"), f"chunks/{chunk_id}")
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

    def has_tree(self, chunk_id: str, kind: str) -> bool:
        return self.chunk_path(chunk_id, kind).exists()

    def load_tree(self, chunk_id: str, kind: str, like):
        """The saved tree ``kind`` of a chunk, read into the shapes of ``like``."""
        path = self.chunk_path(chunk_id, kind)
        digest = self.verify_chunk(chunk_id)["sha256"].get(kind)  # the file, as its record says it was written
        if digest is None:
            raise self._corrupt(f"chunks/{path.name}", "is not listed in its chunk's record", chunk_id)
        try:
            return eqx.tree_deserialise_leaves(path, like)
        except Exception as e:  # noqa: BLE001 - a failure to read, of a file that passed its checksum
            # The file is intact; what changed is the model the config builds now (its shapes
            # come from something outside this folder). Deleting the file would lose the run.
            why = f" ({e})".replace("\n", " ")[:300] if str(e) else f" ({type(e).__name__})"
            raise ConfigError("out", str(self.root),
                              f"chunks/{path.name} is intact (it matches its checksum {digest[:12]}...) but the model "
                              f"the recorded config builds now has other shapes{why}: an input the family reads "
                              "outside this folder (a data set, a dictionary's source run) changed since training; "
                              "restore that input to read these parameters, and keep the files") from None

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
        head = {**header, "chunk": chunk_id, "sha256": hashlib.sha256(data).hexdigest(),
                "manifest_sha256": identity_digest(self.manifest)}
        with atomic_write(self.checkpoint_path(chunk_id)) as f:
            f.write(json.dumps(head, default=_json_default).encode() + b"\n")
            f.write(data)

    def load_checkpoint(self, chunk_id: str, like):
        """(header, tree) of the chunk's checkpoint, or None; ConfigError if it is corrupt."""
        path = self.checkpoint_path(chunk_id)
        if not path.exists():
            return None
        fix = (f"delete checkpoints/{path.name} to retrain chunk {chunk_id} from its start, then rerun with "
               f"{spelled('resume=True', '--resume')}")
        with open(path, "rb") as f:
            line, data = f.readline(), f.read()
        try:
            head = json.loads(line)
        except (json.JSONDecodeError, UnicodeDecodeError):
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} has no readable header; {fix}") from None
        if head.get("chunk") != chunk_id or hashlib.sha256(data).hexdigest() != head.get("sha256"):
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} does not match its checksum "
                                                     f"(changed, swapped or corrupt); {fix}")
        self._check_manifest(head.get("manifest_sha256"), f"checkpoints/{path.name}")
        try:
            tree = eqx.tree_deserialise_leaves(io.BytesIO(data), like)
        except Exception as e:  # noqa: BLE001
            raise ConfigError("out", str(self.root), f"checkpoints/{path.name} does not fit this sweep "
                                                     f"({type(e).__name__}); {fix}") from None
        return head, tree

    # -- summary
    def write_summary(self, rows: list[dict]):
        """summary.json, unless it already holds exactly these rows: reading a finished sweep
        again (resume into it) leaves its folder as it was, so a reader elsewhere (a
        dictionary whose source it is) sees no change."""
        if not self.writer:
            return
        path = self.root / "summary.json"
        text = json.dumps(rows, indent=1, sort_keys=False, default=_json_default)
        try:
            if path.read_text() == text:
                return
        except (OSError, UnicodeDecodeError):
            pass
        with atomic_write(path, "w") as f:
            f.write(text)


def _canon(v):
    return json.dumps(v, sort_keys=True, default=_json_default)


def identity_digest(manifest: dict) -> str:
    """sha256 of what a manifest says was trained (the identity keys, points, runs and the
    sizes read from data), recorded with every chunk and checkpoint so that an edited
    manifest is detected when the folder is read."""
    keys = Store.IDENTITY_KEYS + ("points", "runs", "derived")
    return hashlib.sha256(_canon({k: manifest.get(k) for k in keys}).encode()).hexdigest()


def _with_new_field_defaults(old: dict, new: dict) -> dict:
    """``old`` with the config fields it lacks filled in at their defaults, when ``new`` (the
    same family's manifest, from a later version of the lab) has them: a field a folder's
    version did not have was, in effect, at its default there."""
    base, new_base = old.get("base"), new.get("base")
    if not (isinstance(base, dict) and isinstance(new_base, dict)) or old.get("family") != new.get("family"):
        return old
    missing = [k for k in new_base if k not in base]
    if not missing:
        return old
    try:
        from .family import get_family

        info = get_family(new["family"]).config.field_info()
    except (ConfigError, KeyError):
        return old
    filled = dict(base)
    for k in missing:
        if k in info:
            filled[k] = info[k].default
    return {**old, "base": filled}


def _describe_diff(old, new, key):
    a, b = old.get(key), new.get(key)
    if key == "derived":
        changed = [i for i, (x, y) in enumerate(zip(a or [], b or [])) if _canon(x) != _canon(y)]
        first = changed[0] if changed else 0
        return (f"what its configs read from outside changed (a data file's sizes or a source run's fingerprint): "
                f"{_canon((a or [None])[first])} there, {_canon((b or [None])[first])} here, for point {first}")
    if isinstance(a, dict) and isinstance(b, dict):  # name the fields that differ, not the whole config
        fields = [k for k in sorted(set(a) | set(b)) if _canon(a.get(k)) != _canon(b.get(k))]
        shown = "; ".join(f"{k} is {_canon(a.get(k))} there, {_canon(b.get(k))} here" for k in fields[:3])
        more = f"; and {len(fields) - 3} more fields differ" if len(fields) > 3 else ""
        return f"in its {key}, {shown}{more}"
    return f"its {key} is {_canon(a)}, this command's is {_canon(b)}"


class MemoryStore:
    """Where ``run_sweep(out=None)`` keeps its results: the interface of :class:`Store`,
    held in memory — nothing is written, no checkpoint taken (there is nothing to resume)."""

    root = None
    writer = True
    read_only = False
    created = False

    def __init__(self, manifest: dict):
        self.manifest = manifest
        self._chunks: dict[str, dict] = {}

    def has_chunk(self, chunk_id: str) -> bool:
        return chunk_id in self._chunks

    def save_chunk(self, chunk_id: str, params, snapshots, arrays: dict[str, np.ndarray]):
        self._chunks[chunk_id] = {"params.eqx": params, "snapshots.eqx": snapshots, "arrays": arrays}

    def load_chunk_arrays(self, chunk_id: str, verify: bool = True) -> dict[str, np.ndarray]:
        return self._chunks[chunk_id]["arrays"]

    def has_tree(self, chunk_id: str, kind: str) -> bool:
        return self._chunks.get(chunk_id, {}).get(kind) is not None

    def load_tree(self, chunk_id: str, kind: str, like=None):
        return self._chunks[chunk_id][kind]

    def save_checkpoint(self, chunk_id: str, tree, header: dict):
        pass

    def load_checkpoint(self, chunk_id: str, like):
        return None

    def write_summary(self, rows: list[dict]):
        pass

    def discard_if_untrained(self):
        pass

    def close(self):
        pass
