"""Results read back: stacked models for vmapped analysis, pandas and xarray exports, and a
folder that stays loadable after its data set moved."""

import jax
import numpy as np
import pytest

from toylab.analysis.superposition import feature_dimensionality
from toylab.core.config import ConfigError
from toylab.core.sweep import load_results, run_sweep

BASE = dict(n_features=5, n_hidden=2, batch_size=32, steps=60, log_every=20, snapshot_steps=(20, 60))
GRID = {"feature_probability": [0.5, 0.1], "model": ["relu_output", "linear"]}


@pytest.fixture(scope="module")
def results(tmp_path_factory):
    out = tmp_path_factory.mktemp("res") / "sweep"
    return run_sweep("superposition", BASE, GRID, seeds=3, out=out, chunk_size=4, quiet=True)


@pytest.mark.slow
def test_stacked_models_are_the_runs_models_in_order(results):
    stack = results.stacked(model="relu_output")
    runs = results.select(model="relu_output")
    assert len(stack) == len(runs) == 6 and [r.index for r in stack.runs] == [r.index for r in runs]
    # The selection spans two chunks (chunk_size 4): rows come back in run order regardless.
    assert len({r._chunk for r in runs}) == 2
    for i, r in enumerate(runs):
        np.testing.assert_array_equal(stack.model.W[i], r.model.W)
        np.testing.assert_array_equal(stack.snapshots.W[i], r.snapshots.W)
        assert stack.seeds[i] == r.seed
        assert float(stack.hparams["feature_probability"][i]) == np.float32(r.config.feature_probability)
    assert stack.snapshots.W.shape == (6, 2, 2, 5)
    # Ready for vmap: one call measures every run, equal to measuring them one by one.
    dims = jax.vmap(feature_dimensionality)(stack.model.W)
    for i, r in enumerate(runs):
        np.testing.assert_allclose(dims[i], feature_dimensionality(r.model.W), rtol=1e-6)


def test_stacked_across_the_whole_sweep_and_bad_selections(results):
    assert len(results.stacked(model="linear")) == 6
    with pytest.raises(ConfigError, match=r"runs of different static fields \(model: 'relu_output' and 'linear'\)"):
        results.stacked()
    with pytest.raises(ConfigError, match="match no run"):
        results.stacked(feature_probability=0.77)
    with pytest.raises(ConfigError, match="unknown field"):
        results.stacked(nonsense=1)


@pytest.mark.slow
def test_stacked_refuses_runs_of_different_shapes(tmp_path):
    r = run_sweep("superposition", {**BASE, "snapshot_steps": ()}, {"n_hidden": [2, 3]}, seeds=1, quiet=True)
    with pytest.raises(ConfigError, match=r"different static fields \(n_hidden: 2 and 3\); add n_hidden=\.\.\."):
        r.stacked()
    assert r.stacked(n_hidden=3).model.W.shape == (1, 3, 5)


def test_to_pandas_one_row_per_run(results):
    df = results.to_pandas()
    assert len(df) == 12 and list(df.index) == list(range(12))
    for r in results:
        row = df.loc[r.index]
        assert row["seed"] == r.seed and row["model"] == r.config.model
        assert row["feature_probability"] == r.config.feature_probability
        assert row["loss"] == pytest.approx(float(r.metrics["loss"][-1]))
        for k, v in r.summary.items():
            assert row[k] == pytest.approx(v)


def test_to_xarray_metrics_over_grid_seed_and_step(results):
    ds = results.to_xarray()
    assert ds["loss"].dims == ("feature_probability", "model", "seed", "step")
    assert list(ds["step"].values) == [20, 40, 60] and list(ds["seed"].values) == [0, 1, 2]
    for r in results:
        sel = dict(feature_probability=r.config.feature_probability, model=r.config.model, seed=r.seed)
        np.testing.assert_array_equal(ds["loss"].sel(**sel).values, r.metrics["loss"].astype(np.float64))
        for k, v in r.summary.items():
            assert float(ds[k].sel(**sel)) == pytest.approx(v)


@pytest.mark.slow
def test_to_xarray_of_an_unfinished_sweep_is_nan_where_not_trained(tmp_path, monkeypatch):
    from toylab.core import store

    out = tmp_path / "half"
    calls = []
    real = store.Store.save_chunk

    def save_one(self, *a, **k):
        if calls:
            raise KeyboardInterrupt
        calls.append(1)
        real(self, *a, **k)
    monkeypatch.setattr(store.Store, "save_chunk", save_one)
    with pytest.raises(KeyboardInterrupt):
        run_sweep("superposition", BASE, GRID, seeds=3, out=out, chunk_size=4, quiet=True)
    with pytest.warns(UserWarning, match="8 of 12 runs are not finished and are left out: run 3 "):
        r = load_results(out)
    assert len(r) == 4 and r.missing == [3, 4, 5, 7, 8, 9, 10, 11]
    ds = r.to_xarray()
    assert int(np.isfinite(ds["loss"].values[..., -1]).sum()) == 4 and ds["loss"].shape == (2, 2, 3, 3)


@pytest.mark.slow
def test_folder_loads_after_its_data_file_moved(tmp_path, monkeypatch):
    from toylab.tasks import images

    rng = np.random.default_rng(0)
    data = tmp_path / "mine.npz"
    np.savez(data, x=rng.random((80, 16), dtype=np.float32), y=np.arange(80) % 4)
    out = tmp_path / "bil"
    cfg = dict(dataset=str(data), hidden=6, d_model=5, batch_size=16, steps=20, log_every=10)
    trained = run_sweep("bilinear", cfg, {"input_noise": [0.0, 0.2]}, seeds=1, out=out, quiet=True)
    data.rename(tmp_path / "moved.npz")
    images.clear_cache()

    def no_data(*a, **k):
        raise AssertionError("loading a results folder read the data set")
    monkeypatch.setattr(images, "load_images", no_data)
    monkeypatch.setattr("toylab.families.bilinear.load_images", no_data)
    loaded = load_results(out)
    assert len(loaded) == 2
    stack = loaded.stacked()
    assert stack.model.W_E.shape == (2, 5, 16)  # d_in recorded from the data, not re-read
    for a, b in zip(loaded, trained):
        np.testing.assert_array_equal(a.model.W_U, b.model.W_U)
