"""The plot helpers accept what they document: every public plot function is called with
small documented inputs, its figure checked, and bad input refused with one ConfigError
naming the argument; none shows a figure or switches the backend."""

import ast
import importlib
from pathlib import Path
from types import SimpleNamespace

import matplotlib

matplotlib.use("Agg")

import jax.numpy as jnp  # noqa: E402
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
import pytest  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402

from toylab import plots  # noqa: E402
from toylab.core.config import ConfigError  # noqa: E402

plt.switch_backend("Agg")  # resolved now, so drawing a figure never switches it


@pytest.fixture(autouse=True)
def _no_show_no_backend_switch(monkeypatch):
    """A plot function that shows a figure or switches the backend fails the test; every
    figure is closed after it."""
    backend = matplotlib.get_backend()

    def forbidden(*args, **kwargs):
        raise AssertionError("a plot function called plt.show() or switched the matplotlib backend")

    monkeypatch.setattr(plt, "show", forbidden)
    monkeypatch.setattr(plt, "switch_backend", forbidden)
    monkeypatch.setattr(matplotlib, "use", forbidden)
    yield
    plt.close("all")
    assert matplotlib.get_backend() == backend


def test_llc_over_training_plot_without_phases_or_test_loss():
    snaps = np.array([0, 50, 100])
    steps = np.arange(0, 101, 10)
    loss = np.linspace(2.0, 0.1, steps.size)
    llc, std = np.array([1.0, 2.0, 3.0]), np.array([0.1, 0.1, 0.2])
    fig = plots.llc_over_training_plot(snaps, llc, std, steps, loss)  # bounds=None, no test loss
    top, bottom = fig.axes
    assert len(top.patches) == 0 and len(bottom.patches) == 0  # no phase shaded
    assert [line.get_label() for line in bottom.get_lines()] == ["train"]
    shaded = plots.llc_over_training_plot(snaps, llc, std, steps, loss, 2 * loss, bounds=(20, 60, None))
    assert len(shaded.axes[1].patches) == 3  # three phases, the last running to the final step
    assert shaded.axes[1].patches[-1].get_x() + shaded.axes[1].patches[-1].get_width() == pytest.approx(100)
    with pytest.raises(ConfigError, match="bounds"):
        plots.llc_over_training_plot(snaps, llc, std, steps, loss, bounds=(20, 60))
    matplotlib.pyplot.close("all")


# ----------------------------------------------------------------------------- every function, small inputs
# Each public plot function is called with minimal documented inputs (numpy arrays, lists,
# tuples, jax arrays), the figure checked for what it should draw, and at least one bad input
# checked to raise one ConfigError naming the argument.


def _figure(result, n_axes=None):
    assert isinstance(result, Figure)
    if n_axes is not None:
        assert len(result.axes) == n_axes
    return result


def _bad(name, call):
    with pytest.raises(ConfigError, match=rf"^{name}\b"):
        call()


# -- superposition


def test_gram_grid():
    grams = np.zeros((2, 3, 4, 4)) + np.eye(4)
    biases = [[[0.1, 0, 0, -0.1]] * 3, [jnp.zeros(4)] * 3]
    fig = _figure(plots.gram_grid(grams, biases, ("linear", "ReLU"), ["a", "b", "c"], "t"), 2 * 2 * 3)
    assert all(len(ax.images) == 1 for ax in fig.axes)
    assert fig.axes[0].get_title() == "a" and fig.axes[0].get_ylabel() == "linear"
    _bad("grams", lambda: plots.gram_grid(np.zeros((2, 3, 4, 5)), biases, ["l", "r"], ["a", "b", "c"]))
    _bad("grams", lambda: plots.gram_grid(grams[:1], biases, ["l", "r"], ["a", "b", "c"]))
    _bad("biases", lambda: plots.gram_grid(grams, np.zeros((2, 3, 3)), ["l", "r"], ["a", "b", "c"]))
    _bad("row_labels", lambda: plots.gram_grid(grams, biases, None, ["a", "b", "c"]))


def test_dimensions_per_feature_plot():
    fig = _figure(plots.dimensions_per_feature_plot([1, 2, 5, 10], jnp.array([1.0, 0.9, 0.5, 0.4])), 1)
    ax = fig.axes[0]
    assert len(ax.lines) == 3 and ax.get_xscale() == "log"  # the curve and the sticky values 1, 1/2
    np.testing.assert_allclose(ax.lines[0].get_ydata(), [1.0, 0.9, 0.5, 0.4])
    _bad("dstar", lambda: plots.dimensions_per_feature_plot([1, 2], [1.0]))
    _bad("inverse_density", lambda: plots.dimensions_per_feature_plot([0, 2], [1.0, 0.5]))
    _bad("dstar", lambda: plots.dimensions_per_feature_plot([1, 2], None))


def test_feature_dimensionality_plot():
    dims = [[0.5, 0.5, 0.0], np.array([1.0]), (0.2, 0.3)]  # ragged: one array per density
    fig = _figure(plots.feature_dimensionality_plot((1, 2, 4), dims), 1)
    ax = fig.axes[0]
    assert [len(c.get_offsets()) for c in ax.collections] == [2, 1, 2]  # the D_i = 0 feature is not drawn
    assert ax.get_legend() is None and len(ax.lines) == 6  # the fraction lines only
    with_dstar = plots.feature_dimensionality_plot(np.array([1, 2, 4]), np.full((3, 2), 0.5), [1, 0.5, 0.5])
    assert len(with_dstar.axes[0].lines) == 7 and with_dstar.axes[0].get_legend() is not None
    _bad("dims", lambda: plots.feature_dimensionality_plot([1, 2], dims))
    _bad("dstar", lambda: plots.feature_dimensionality_plot([1, 2, 4], dims, [1, 2]))


def test_phase_diagram():
    phases = np.array([[0, 1, 2, 2], [0, 0, 1, 2], [1, 1, 1, 0]])  # (importances, densities)
    fig = _figure(plots.phase_diagram(phases, [0.01, 0.1, 0.3, 1.0], [0.5, 1, 2]), 1)
    ax = fig.axes[0]
    assert len(ax.collections) == 1 and ax.collections[0].get_array().size == 12
    assert len(ax.get_legend().get_texts()) == 3
    _figure(plots.phase_diagram([[1]], [0.5], [1.0]), 1)  # one cell
    _bad("phases", lambda: plots.phase_diagram(phases.T, [0.01, 0.1, 0.3, 1.0], [0.5, 1, 2]))
    _bad("densities", lambda: plots.phase_diagram(phases, [0, 0.1, 0.3, 1.0], [0.5, 1, 2]))


def test_feature_geometry():
    weights = [np.ones((2, 3)), jnp.ones((2, 5))]
    fig = _figure(plots.feature_geometry(weights, ["three", "five"]), 2)
    assert [len(ax.lines) for ax in fig.axes] == [6, 10]  # an arrow and a point per feature
    assert fig.axes[1].get_title() == "five"
    coloured = plots.feature_geometry([np.ones((2, 3))], ["t"], importance=[3.0, 2.0, 1.0])
    assert len(coloured.axes[0].lines) == 6
    _bad("weights", lambda: plots.feature_geometry([np.ones((3, 3))], ["t"]))
    _bad("titles", lambda: plots.feature_geometry(weights, ["one"]))
    _bad("importance", lambda: plots.feature_geometry(weights, ["a", "b"], importance=[1, 2, 3]))


def test_abs_computation_plot():
    fig = _figure(plots.abs_computation_plot([0.1, 0.01], [3, 6], 5, [[0.1, 0.2], (0.3, 0.05, 0.2)]), 2)
    a, b = fig.axes
    assert len(a.lines) == 2 and len(b.lines) == 2  # the counts and m; one sorted error curve per density
    np.testing.assert_allclose(b.lines[1].get_ydata(), [0.05, 0.2, 0.3])
    _bad("per_feature_error", lambda: plots.abs_computation_plot([0.1, 0.01], [3, 6], 5, [[0.1]]))
    _bad("n_hidden", lambda: plots.abs_computation_plot([0.1, 0.01], [3, 6], None, [[0.1], [0.2]]))
    _bad("n_computed", lambda: plots.abs_computation_plot([0.1, 0.01], [3], 5, [[0.1], [0.2]]))


# -- grokking

_STEPS = np.arange(1, 11) * 10


def test_loss_curves():
    train, test = np.linspace(2, 0.1, 30).reshape(3, 10), np.full((3, 10), 2.0)
    fig = _figure(plots.loss_curves(_STEPS, train, test, 1, "t"), 1)
    ax = fig.axes[0]
    assert len(ax.lines) == 6 and [t.get_text() for t in ax.get_legend().get_texts()] == ["train", "test"]
    assert ax.lines[2].get_linewidth() > ax.lines[0].get_linewidth()  # seed 1 bold
    assert len(plots.loss_curves(list(_STEPS), jnp.asarray(train)).axes[0].lines) == 3  # no test loss
    assert len(plots.loss_curves(_STEPS, train[0], test[0]).axes[0].lines) == 2  # one seed, 1-D
    _bad("highlight", lambda: plots.loss_curves(_STEPS, train, test, 3))
    _bad("test_loss", lambda: plots.loss_curves(_STEPS, train, test[:2]))
    _bad("train_loss", lambda: plots.loss_curves(_STEPS, None, test))
    _bad("train_loss", lambda: plots.loss_curves(_STEPS, train[:, :9]))


def test_progress_measures_plot():
    measures = {"train_loss": np.linspace(1, 0.01, 10), "test_loss": [1.0] * 10, "gini_W_E": np.linspace(0, 1, 10),
                "gini_W_L": np.linspace(0, 1, 10), "weight_norm": jnp.linspace(10, 1, 10), "other": [1, 2]}
    fig = _figure(plots.progress_measures_plot(_STEPS, measures, None, "t"), 3)
    assert [len(a.lines) for a in fig.axes] == [2, 2, 1] and all(len(a.patches) == 0 for a in fig.axes)
    shaded = plots.progress_measures_plot(_STEPS, measures, (30, 60, None))
    assert all(len(a.patches) == 3 for a in shaded.axes)
    assert shaded.axes[0].patches[-1].get_x() + shaded.axes[0].patches[-1].get_width() == pytest.approx(100)
    _bad("bounds", lambda: plots.progress_measures_plot(_STEPS, measures, (30, 60)))
    _bad("measures", lambda: plots.progress_measures_plot(_STEPS, {"gini_W_E": measures["gini_W_E"]}, None))
    _bad("measures", lambda: plots.progress_measures_plot(_STEPS, {**measures, "test_loss": [1.0] * 9}))


def _fourier_args():
    names = ["const", "cos 1", "sin 1", "cos 2", "sin 2"]
    return dict(embed_norms=[0.1, 3.0, 2.5, 0.2, 0.1], names=names, basis_freq=[0, 1, 1, 2, 2],
                key_mask=[False, True, False], cluster_freq=[1, 1, 2, 1], cluster_frac=[0.9, 0.95, 0.4, 0.88],
                logit_share=(0.0, 0.9, 0.1))


def test_fourier_structure_plot():
    fig = _figure(plots.fourier_structure_plot(**_fourier_args(), title="t"), 3)
    assert len(fig.axes[0].patches) == 5 and len(fig.axes[2].patches) == 2
    assert len(fig.axes[1].collections[0].get_offsets()) == 4
    assert fig.axes[0].patches[1].get_facecolor() != fig.axes[0].patches[3].get_facecolor()  # key in red
    _bad("logit_share", lambda: plots.fourier_structure_plot(**{**_fourier_args(), "logit_share": [0, 1]}))
    _bad("basis_freq", lambda: plots.fourier_structure_plot(**{**_fourier_args(), "basis_freq": [0, 1, 1, 3, 3]}))
    _bad("names", lambda: plots.fourier_structure_plot(**{**_fourier_args(), "names": ["const"]}))


def test_ablation_plot():
    fig = _figure(plots.ablation_plot(["a", "b", "c"], np.array([0.1, 1.0, 3.0]),
                                      [("unablated", 0.01, "tab:green"), ("chance", 3.4)], "t"), 1)
    ax = fig.axes[0]
    assert len(ax.patches) == 3 and len(ax.lines) == 2 and len(ax.get_legend().get_texts()) == 2
    bare = plots.ablation_plot(("a", "b"), [0.5, 0.7]).axes[0]  # no reference lines
    assert len(bare.patches) == 2 and len(bare.lines) == 0 and bare.get_legend() is None
    _bad("losses", lambda: plots.ablation_plot(["a", "b"], [0.5]))
    _bad("reference", lambda: plots.ablation_plot(["a"], [0.5], [("x",)]))
    _bad("labels", lambda: plots.ablation_plot([], []))


def test_label_noise_plot():
    curves = {"train": np.linspace(0, 1, 10), "test": jnp.linspace(0, 0.5, 10)}
    fig = _figure(plots.label_noise_plot(_STEPS, curves, 0.82, "t"), 1)
    assert len(fig.axes[0].lines) == 3
    assert len(plots.label_noise_plot(_STEPS, curves).axes[0].lines) == 2  # no expected accuracy
    _bad("curves", lambda: plots.label_noise_plot(_STEPS, {"train": [0.5]}))
    _bad("curves", lambda: plots.label_noise_plot(_STEPS, None))
    _bad("expected_train", lambda: plots.label_noise_plot(_STEPS, curves, "high"))


def test_phase_diagram_plot():
    test, train = np.full((2, 3), 0.5), np.full((2, 3), 0.9)
    fig = _figure(plots.phase_diagram_plot([0.3, 0.5], (0.0, 0.1, 0.2), test, train, [1.0, 0.9, 0.8], "t"), 4)
    assert [len(ax.images) for ax in fig.axes[:2]] == [1, 1] and [len(ax.texts) for ax in fig.axes[:2]] == [6, 6]
    _figure(plots.phase_diagram_plot([0.3, 0.5], [0.0, 0.1, 0.2], test.tolist(), train, 0.9), 4)
    _bad("expected", lambda: plots.phase_diagram_plot([0.3, 0.5], [0.0, 0.1, 0.2], test, train, [1.0, 0.9]))
    _bad("test_acc", lambda: plots.phase_diagram_plot([0.3, 0.5], [0.0, 0.1, 0.2], test.T, train, 0.9))


def test_pruning_plot():
    curve = [{"corrupted": 1.0, "clean_train": 0.9, "test": 0.5}, {"corrupted": 0.1, "clean_train": 1.0, "test": 1.0}]
    fig = _figure(plots.pruning_plot([0.0, 0.5], curve, [0.1, 0.5, 0.9], [1.0, 2.0, 3.0], "t"), 2)
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[1].collections[0].get_offsets()) == 3
    np.testing.assert_allclose(fig.axes[0].lines[0].get_xdata(), [0, 50])
    as_arrays = {k: [c[k] for c in curve] for k in curve[0]}
    assert len(plots.pruning_plot((0.0, 0.5), as_arrays, [0.1], [1.0]).axes[0].lines) == 3
    _bad("curve", lambda: plots.pruning_plot([0.0, 0.5], [{"corrupted": 1, "clean_train": 1}] * 2, [0.1], [1.0]))
    _bad("curve", lambda: plots.pruning_plot([0.0, 0.5], curve[:1], [0.1], [1.0]))
    _bad("size", lambda: plots.pruning_plot([0.0, 0.5], curve, [0.1, 0.2], [1.0]))


# -- groups


def test_loss_panels():
    runs = {"C5": (_STEPS, np.ones((2, 10)), np.full((2, 10), 2.0)), "S3": (list(_STEPS), [1.0] * 10, jnp.ones(10))}
    fig = _figure(plots.loss_panels(runs, "t"), 2)
    assert [len(ax.lines) for ax in fig.axes] == [6, 4]  # every seed and the two medians
    assert fig.axes[0].get_title().startswith("C5: 2 seeds")
    _bad("runs", lambda: plots.loss_panels({"C5": (_STEPS, np.ones((2, 9)), np.ones((2, 9)))}))
    _bad("runs", lambda: plots.loss_panels({}))
    _bad("runs", lambda: plots.loss_panels({"C5": (_STEPS, np.ones((2, 10)))}))


def _irrep_stats():
    return {"names": ["triv", "sign", "std"], "dims": [1, 1, 2],
            "key": [[False, True, True], [False, False, True], [False, False, False], [False, True, False]],
            "first": [1, 2, -1, 1]}


def test_universality_plot():
    fig = _figure(plots.universality_plot({"S3": _irrep_stats()}, "t"), 3)
    assert [len(ax.patches) for ax in fig.axes] == [3, 4, 3]
    np.testing.assert_allclose([p.get_height() for p in fig.axes[2].patches], [0, 2, 1])
    _bad("stats", lambda: plots.universality_plot({"S3": {k: v for k, v in _irrep_stats().items() if k != "first"}}))
    _bad("stats", lambda: plots.universality_plot({"S3": {**_irrep_stats(), "first": [1, 2, 5, 1]}}))
    _bad("stats", lambda: plots.universality_plot({"S3": {**_irrep_stats(), "dims": [1, 1]}}))


def test_mechanism_plot():
    case = {"names": ["triv", "sign", "std"], "dims": [1, 1, 2], "steps": _STEPS, "sims": np.zeros((10, 3)),
            "shares": {"W_L": [0.1, 0.2, 0.7], "logits": jnp.array([0.0, 0.1, 0.9])}, "threshold": 0.5, "seed": 0}
    fig = _figure(plots.mechanism_plot({"S3": case}, "t"), 2)
    assert len(fig.axes[0].lines) == 3 and len(fig.axes[1].patches) == 6  # two irreps and the threshold
    assert "seed 0" in fig.axes[0].get_title()
    bare = {k: v for k, v in case.items() if k not in ("threshold", "seed")}
    assert len(plots.mechanism_plot({"S3": bare}).axes[0].lines) == 2
    _bad("cases", lambda: plots.mechanism_plot({"S3": {**case, "sims": np.zeros((9, 3))}}))
    _bad("cases", lambda: plots.mechanism_plot({"S3": {**case, "shares": {"W_L": [0.1]}}}))


# -- bilinear


def test_eigenvector_grid():
    vecs = np.random.default_rng(0).normal(size=(3, 2, 17))  # d = 16 pixels + a bias entry
    vals = np.ones((3, 2))
    fig = _figure(plots.eigenvector_grid(vecs, -vecs, (4, 4), vals, -vals, "t"), 2 * 2 * 3)
    assert all(len(ax.images) == 1 and ax.images[0].get_array().shape == (4, 4) for ax in fig.axes)
    _bad("positive", lambda: plots.eigenvector_grid(vecs, vecs, (5, 5), vals, vals))
    _bad("values_pos", lambda: plots.eigenvector_grid(vecs, vecs, [4, 4], vals[:2], vals))
    _bad("negative", lambda: plots.eigenvector_grid(vecs, vecs[:2], (4, 4), vals, vals))
    _bad("shape", lambda: plots.eigenvector_grid(vecs, vecs, (4, 0), vals, vals))


def test_spectra_plot():
    values = -np.sort(-np.abs(np.random.default_rng(0).normal(size=(3, 8))), axis=1)
    share = np.cumsum(values**2, 1) / np.sum(values**2, 1, keepdims=True)
    fig = _figure(plots.spectra_plot(values, share, "t"), 2)
    assert len(fig.axes[0].lines) == 4 and len(fig.axes[1].lines) == 3  # a line per class (and λ = 0)
    assert len(plots.spectra_plot(values[0], list(share[0])).axes[1].lines) == 1
    _bad("share_top", lambda: plots.spectra_plot(values, share[:, :5]))
    _bad("values", lambda: plots.spectra_plot(None, share))


@pytest.mark.slow
def test_truncation_plot():
    ks = [1, 2, 4, 8]
    acc = {"a": np.full((3, 4), 0.9), "b": [0.5, 0.7, 0.9, 0.95]}
    fig = _figure(plots.truncation_plot(ks, acc, {"a": [0.97, 0.98, 0.96], "b": 0.97}, "t"), 1)
    ax = fig.axes[0]
    assert len(ax.lines) == 4 and len(ax.collections) == 2  # medians, full-model lines, min–max bands
    assert len(plots.truncation_plot(ks, acc).axes[0].lines) == 2  # no full accuracy given
    _bad("accuracy", lambda: plots.truncation_plot(ks, {"a": np.ones((3, 5))}))
    _bad("ks", lambda: plots.truncation_plot([0, 1, 2, 3], acc))
    _bad("full_accuracy", lambda: plots.truncation_plot(ks, acc, [0.9]))


def test_regularisation_plot():
    vectors = {"none": np.ones((2, 16)), "l2": jnp.ones(16)}
    ranks, edge = {"none": [3.0, 4.0], "l2": np.array([[2.0, 2.5]])}, {"none": [0.1], "l2": [0.01, 0.02]}
    fig = _figure(plots.regularisation_plot(vectors, (4, 4), 3, ranks, edge, "t"), 2 * 2 + 2)
    assert sum(len(ax.images) for ax in fig.axes) == 4
    assert "digit 3" in fig._suptitle.get_text()
    _bad("ranks", lambda: plots.regularisation_plot(vectors, (4, 4), 3, {"none": [3.0]}, edge))
    _bad("vectors", lambda: plots.regularisation_plot({"none": np.ones((2, 10))}, (4, 4), 3, ranks, edge))
    _bad("digit", lambda: plots.regularisation_plot(vectors, (4, 4), None, ranks, edge))


def test_consistency_plot():
    sim = {"a": np.full((5, 3), 0.9), "b": np.full((5, 3), 0.5).tolist()}
    fig = _figure(plots.consistency_plot(sim, "t"), 1)
    ax = fig.axes[0]
    assert len(ax.patches) == 6 and [t.get_text() for t in ax.get_xticklabels()] == ["top 1", "top 2", "top 3"]
    _bad("similarity", lambda: plots.consistency_plot({"a": np.ones((5, 3)), "b": np.ones((5, 2))}))
    _bad("similarity", lambda: plots.consistency_plot({}))


def test_adversarial_plot():
    curves = {"eigenvector masks": [1.0, 0.5, 0.1], "random masks": (1.0, 1.0, 0.9)}
    fig = _figure(plots.adversarial_plot(np.ones(16), np.ones(17), jnp.ones(16), (4, 4), [0, 1, 2], curves, (3, 5),
                                         "t"), 4)
    assert sum(len(ax.images) for ax in fig.axes) == 3 and len(fig.axes[3].lines) == 2
    assert "predicted 3" in fig.axes[0].get_title() and "predicted 5" in fig.axes[2].get_title()
    _bad("labels", lambda: plots.adversarial_plot(np.ones(16), np.ones(16), np.ones(16), (4, 4), [0, 1],
                                                  {"a": [1.0, 0.5]}, [3]))
    _bad("curves", lambda: plots.adversarial_plot(np.ones(16), np.ones(16), np.ones(16), (4, 4), [0, 1],
                                                  {"a": [1.0]}, (3, 5)))
    _bad("image", lambda: plots.adversarial_plot(np.ones(10), np.ones(16), np.ones(16), (4, 4), [0, 1],
                                                 {"a": [1.0, 0.5]}, (3, 5)))


# -- degeneracy


def _calibration():
    rng = np.random.default_rng(0)
    steps, nb, loc, chains, draws = 3, 1, 2, 2, 20
    results = SimpleNamespace(traces=rng.normal(size=(steps, nb, loc, chains, draws)) + 1.0,
                              init_loss=np.ones((steps, nb, loc)), mean=np.array([1.0, 2.0, np.nan])[:, None, None]
                              * np.ones((steps, nb, loc)), std=np.full((steps, nb, loc), 0.1), burnin=5)
    stable = np.array([True, True, False])[:, None, None] * np.ones((steps, nb, loc), bool)
    return SimpleNamespace(results=results, step_sizes=[1e-3, 1e-2, 1e-1], nbetas=[10.0], localizations=(1.0, 2.0),
                           stable=stable, chosen=np.full((nb, loc), 1e-2))


def test_calibration_plot():
    fig = _figure(plots.calibration_plot(_calibration(), 0, 1), 2)
    left, right = fig.axes
    assert len(left.lines) == 3 and len(left.patches) == 1  # a trace per step size; burn-in
    assert any(ln.get_label().startswith("chosen") for ln in right.lines)
    assert "γ = 2" in fig._suptitle.get_text()
    _bad("nbeta_index", lambda: plots.calibration_plot(_calibration(), 1))
    _bad("localization_index", lambda: plots.calibration_plot(_calibration(), 0, 0.5))
    _bad("calibration", lambda: plots.calibration_plot(object()))
    broken = _calibration()
    broken.chosen = np.ones(3)
    _bad("calibration", lambda: plots.calibration_plot(broken))


def test_validation_plot():
    estimates = {"SGLD": ([0.5, 1.0, 2.0], [0.1, 0.1, 0.2]), "NUTS": (np.ones(3), jnp.zeros(3))}
    fig = _figure(plots.validation_plot(["a", "b", "c"], [0.5, 1.0, 2.0], (0.5, 1.1, 2.0), estimates, "t"), 1)
    ax = fig.axes[0]
    assert len(ax.containers) == 2 and [t.get_text() for t in ax.get_xticklabels()] == ["a", "b", "c"]
    assert len(plots.validation_plot(["a"], [1.0], [1.0]).axes[0].containers) == 0  # no estimates
    _bad("expected", lambda: plots.validation_plot(["a", "b"], [1.0, 2.0], [1.0], estimates))
    _bad("estimates", lambda: plots.validation_plot(["a"], [1.0], [1.0], {"SGLD": ([1.0], [0.1], [0])}))
    _bad("estimates", lambda: plots.validation_plot(["a"], [1.0], [1.0], {"SGLD": ([1.0, 2.0], [0.1, 0.1])}))


def test_llc_over_training_plot_forms_and_bad_lengths():
    snaps, steps = [0, 50, 100], list(range(0, 101, 10))
    loss = jnp.linspace(2.0, 0.1, 11)
    fig = _figure(plots.llc_over_training_plot(snaps, (1.0, 2.0, 3.0), None, steps, loss,
                                               progress={"restricted": [1.0, 0.5, 0.2]}), 2)
    assert len(fig.axes[0].containers) == 1 and len(fig.axes[1].lines) == 2  # train, restricted
    _bad("llc", lambda: plots.llc_over_training_plot(snaps, [1.0], None, steps, loss))
    _bad("test_loss", lambda: plots.llc_over_training_plot(snaps, [1, 2, 3], [0, 0, 0], steps, loss, loss[:5]))
    _bad("progress", lambda: plots.llc_over_training_plot(snaps, [1, 2, 3], None, steps, loss, progress={"r": [1]}))
    _bad("train_loss", lambda: plots.llc_over_training_plot(snaps, [1, 2, 3], None, steps, None))


def test_kgon_plot():
    W = np.stack([np.cos(np.arange(6) * np.pi / 3), np.sin(np.arange(6) * np.pi / 3)])
    fig = _figure(plots.kgon_plot({6: W, 5: jnp.asarray(W[:, :5])}, [6, 6, 5], [1.0, 1.1, 2.0], (0.1, 0.1, 0.2), "t"),
                  4)
    assert len(fig.axes[0].lines) == 6 and len(fig.axes[1].lines) == 5
    assert len(fig.axes[2].collections[0].get_offsets()) == 3
    _figure(plots.kgon_plot({}, [4], [1.0], [0.1]), 2)
    _bad("llcs", lambda: plots.kgon_plot({}, [4, 5], [1.0], [0.1, 0.2]))
    _bad("examples", lambda: plots.kgon_plot({6: np.ones((3, 6))}, [4], [1.0], [0.1]))


def test_degeneracy_counts_plot():
    fig = _figure(plots.degeneracy_counts_plot(jnp.array([3.0, -1e-9, 0.5, 0.0]), 1e-6,
                                               {"parameters": 4, "rank": np.int64(2)}, "t"), 2)
    left, right = fig.axes
    assert len(left.lines) == 2 and len(right.patches) == 2 and len(right.texts) == 2
    _bad("tol", lambda: plots.degeneracy_counts_plot([1.0], -1, {"a": 1}))
    _bad("eigenvalues", lambda: plots.degeneracy_counts_plot([], 1e-6, {"a": 1}))
    _bad("counts", lambda: plots.degeneracy_counts_plot([1.0], 1e-6, {"a": "many"}))


# -- interaction


def _graph():
    rng = np.random.default_rng(0)
    return [rng.uniform(size=(3, 4)), rng.uniform(size=(2, 3)).tolist()]


def test_interaction_graph_plot():
    edges = _graph()
    fig = _figure(plots.interaction_graph_plot(edges, ["in", "mid", "out"], [np.ones(4), [1, 0.5, 0], jnp.ones(2)],
                                               [[0, 1, -1, 0], [0, 0, 1], [1, 1]], title="t"), 1)
    ax = fig.axes[0]
    assert len(ax.collections) == 3 and len(ax.lines) == 4 * 3 + 3 * 2  # a node column per layer, every edge
    own = plt.subplots()[1]
    assert plots.interaction_graph_plot(edges, ("a", "b", "c"), top=2, ax=own) is own.figure
    assert [len(c.get_offsets()) for c in own.collections] == [2, 2, 2]
    _bad("edges", lambda: plots.interaction_graph_plot([np.ones((3, 4)), np.ones((2, 2))], ["a", "b", "c"]))
    _bad("names", lambda: plots.interaction_graph_plot(edges, ["a", "b"]))
    _bad("importances", lambda: plots.interaction_graph_plot(edges, ["a", "b", "c"], [np.ones(4), np.ones(1), [1]]))
    _bad("ax", lambda: plots.interaction_graph_plot(edges, ["a", "b", "c"], ax="left"))
    _bad("top", lambda: plots.interaction_graph_plot(edges, ["a", "b", "c"], top=0))


def test_ablation_curves_plot():
    ks = [1, 2, 4]
    curves = {"LIB": [(ks, [0.2, 0.8, 1.0]), (np.array(ks), jnp.array([0.5, 0.9, 1.0]))],
              "PCA": [(ks, [0.1, 0.5, 0.9])] * 2}
    fig = _figure(plots.ablation_curves_plot(curves, ["resid_pre", "resid_post"], 1.0, 0.95, "t"), 2)
    assert [len(ax.lines) for ax in fig.axes] == [4, 4] and fig.axes[1].get_title() == "resid_post"
    assert [len(ax.lines) for ax in plots.ablation_curves_plot(curves, ["a", "b"]).axes] == [2, 2]
    _bad("curves", lambda: plots.ablation_curves_plot(curves, ["only one"]))
    _bad("curves", lambda: plots.ablation_curves_plot({"LIB": [(ks, [0.1])] * 2}, ["a", "b"]))
    _bad("target", lambda: plots.ablation_curves_plot(curves, ["a", "b"], 1.0, "high"))


def test_edge_counts_plot():
    counts = {"LIB": [3, 5], "PCA": np.array([4.0, 8.0])}
    fig = _figure(plots.edge_counts_plot(["a → b", "b → c"], counts, (12, 20), "edges", "t"), 1)
    ax = fig.axes[0]
    assert len(ax.patches) == 4 and "(of 12)" in ax.get_xticklabels()[0].get_text()
    assert plots.edge_counts_plot(["a → b"], {"LIB": [3]}).axes[0].get_ylabel() == "edges"
    _bad("counts", lambda: plots.edge_counts_plot(["a", "b"], {"LIB": [3]}))
    _bad("totals", lambda: plots.edge_counts_plot(["a", "b"], counts, [12]))


def _fourier_labels(dirs=5, n_freq=3):
    share = np.full((n_freq, dirs), 0.1)
    return {"const": np.full(dirs, 0.05), "unary": share, "sum": share.tolist(), "difference": jnp.asarray(share),
            "product": np.full(dirs, 0.05)}


def test_fourier_labels_plot():
    imp = [5.0, 4.0, 3.0, 2.0, 1.0]
    fig = _figure(plots.fourier_labels_plot(_fourier_labels(), imp, [1, 3], names=list("vwxyz"), title="t"), 2)
    top_ax, ax = fig.axes
    assert len(top_ax.patches) == 5 and len(ax.patches) == 6 * 5  # importance; six stacked terms per direction
    by_mask = plots.fourier_labels_plot(_fourier_labels(), imp, np.array([False, True, False, True]), top=3)
    assert len(by_mask.axes[0].patches) == 3
    heights = lambda f: [p.get_height() for p in f.axes[1].patches]  # noqa: E731
    np.testing.assert_allclose(heights(by_mask), heights(plots.fourier_labels_plot(_fourier_labels(), imp, (1, 3),
                                                                                   top=3)))
    _bad("key_freqs", lambda: plots.fourier_labels_plot(_fourier_labels(), imp, [4]))
    _bad("labels", lambda: plots.fourier_labels_plot({k: v for k, v in _fourier_labels().items() if k != "product"},
                                                     imp, [1]))
    _bad("names", lambda: plots.fourier_labels_plot(_fourier_labels(), imp, [1], names=["a"]))


# -- dictionaries


def test_pareto_plot():
    points = {"relu": ([1, 2, 3], np.array([0.5, 0.6, 0.7])), "topk": (jnp.array([1.0, 4.0]), (0.8, 0.9))}
    fig = _figure(plots.pareto_plot(points, "MCC", {"relu": [True, False, True]}, title="t"), 1)
    ax = fig.axes[0]
    assert len(ax.collections) == 2 and len(ax.lines) == 1 and len(ax.lines[0].get_xdata()) == 2
    assert ax.get_ylabel() == "MCC"
    own = plt.subplots()[1]
    assert plots.pareto_plot(points, "F1", ax=own) is own.figure and len(own.collections) == 2
    _bad("frontiers", lambda: plots.pareto_plot(points, "MCC", {"relu": [True]}))
    _bad("points", lambda: plots.pareto_plot({"relu": ([1, 2], [0.5])}, "MCC"))
    _bad("points", lambda: plots.pareto_plot(None, "MCC"))
    _bad("score_name", lambda: plots.pareto_plot(points, None))


def test_recovery_plot():
    fig = _figure(plots.recovery_plot([0.01, 0.1], {"MCC": [0.9, 0.5], "F1": jnp.array([1.0, 0.2])}, 0.8, title="t"),
                  1)
    assert len(fig.axes[0].lines) == 3 and fig.axes[0].get_xscale() == "log"
    assert len(plots.recovery_plot((0.01,), {"MCC": 0.9}).axes[0].lines) == 1
    _bad("density", lambda: plots.recovery_plot([0.0, 0.1], {"MCC": [0.9, 0.5]}))
    _bad("scores", lambda: plots.recovery_plot([0.01, 0.1], {"MCC": [0.9]}))
    _bad("threshold", lambda: plots.recovery_plot([0.01, 0.1], {"MCC": [0.9, 0.5]}, [0.8, 0.9]))


def test_frequency_alignment_plot():
    fig = _figure(plots.frequency_alignment_plot([1, 2, 2], [0.9, 0.8, 0.3], np.array([1.0, 0.5, 0.0]),
                                                 [False, True, False], 2, title="t"), 1)
    ax = fig.axes[0]
    assert len(ax.patches) == 1 and len(ax.collections[0].get_offsets()) == 3  # one key frequency shaded
    _bad("key", lambda: plots.frequency_alignment_plot([1], [0.9], [1.0], [False, True, False, True], 2))
    _bad("latent_power", lambda: plots.frequency_alignment_plot([1], [0.9], [-1.0], [False, True], 2))
    _bad("latent_fraction", lambda: plots.frequency_alignment_plot([1, 2], [0.9], [1.0, 1.0], [False, True], 2))
    _bad("n_freq", lambda: plots.frequency_alignment_plot([1], [0.9], [1.0], [False, True], None))


# -- runs


def test_training_curves():
    steps = np.arange(1, 4) * 10
    fig = _figure(plots.training_curves(steps, np.array([[3, 2, 1], [4, 2, 1]]), labels=("a", "b"), title="t"), 1)
    assert len(fig.axes[0].lines) == 2 and fig.axes[0].get_yscale() == "log"
    assert len(plots.training_curves([steps, steps[:2]], [jnp.ones(3), [1, 2]]).axes[0].lines) == 2
    _bad("values", lambda: plots.training_curves(steps, None))
    _bad("steps", lambda: plots.training_curves(None, [[1, 2, 3]]))
    _bad("groups", lambda: plots.training_curves(steps, [[1, 2, 3]], groups=[-1]))
    _bad("values", lambda: plots.training_curves(steps, [[[1, 2, 3]]]))


# ----------------------------------------------------------------------------- development


def test_phase_change_plot():
    steps = np.arange(0, 1000, 100)
    icl = {"seed 0": np.linspace(0, -2, 10), "seed 1": np.linspace(0, -1.5, 10)}
    prev = {"seed 0": np.linspace(0.1, 0.3, 10), "seed 1": np.linspace(0.1, 0.25, 10)}
    ind = {"seed 0": np.linspace(0.1, 0.4, 10), "seed 1": np.linspace(0.1, 0.45, 10)}
    fig = _figure(plots.phase_change_plot(steps, icl, prev, ind, [(200.0, 700.0), (float("nan"), float("nan"))]), 2)
    assert len(fig.axes[0].lines) == 2 and len(fig.axes[1].lines) == 4 + 2  # the seeds' scores, two thresholds
    _bad("windows", lambda: plots.phase_change_plot(steps, icl, prev, ind, [(200.0, 700.0)]))
    _bad("icl", lambda: plots.phase_change_plot(steps, {"seed 0": [1.0]}, prev, ind, [(1.0, 2.0)] * 2))
    _bad("windows", lambda: plots.phase_change_plot(steps, icl, prev, ind, [(1.0, 2.0), "x"]))


def test_llc_stages_plot():
    snaps, steps = [100, 200, 400, 800], np.arange(0, 900, 100)
    fig = _figure(plots.llc_stages_plot(snaps, [1.0, 2.0, 5.0, 6.0], None, [400.0], steps, np.linspace(3, 1, 9),
                                        [], (200.0, 600.0), title="t"), 2)
    assert len(fig.axes[0].containers) == 1
    _bad("llc", lambda: plots.llc_stages_plot(snaps, [1.0], None, [], steps, np.ones(9), [], (1.0, 2.0)))
    _bad("snapshot_steps", lambda: plots.llc_stages_plot([0, 1, 2, 3], [1.0] * 4, None, [], steps, np.ones(9), [],
                                                         (1.0, 2.0)))
    _bad("window", lambda: plots.llc_stages_plot(snaps, [1.0] * 4, None, [], steps, np.ones(9), [], 3.0))


def test_head_llc_plot():
    fig = _figure(plots.head_llc_plot([400, 1000], np.ones((3, 2)), ["L0H0", "L1H0", "L1H1"],
                                      ["previous-token", "induction", "induction"]), 1)
    assert len(fig.axes[0].lines) == 3
    _bad("types", lambda: plots.head_llc_plot([400, 1000], np.ones((2, 2)), ["a", "b"], ["induction", "copying"]))
    _bad("llc", lambda: plots.head_llc_plot([400, 1000], np.ones((2, 3)), ["a", "b"], ["other", "other"]))
    _bad("labels", lambda: plots.head_llc_plot([400, 1000], np.ones((2, 2)), ["a"], ["other", "other"]))


def test_task_diversity_plot():
    fig = _figure(plots.task_diversity_plot([1, 4, 16], [0.01, 0.9, 1.1], [3.4, 3.5, 0.8]), 1)
    assert len(fig.axes[0].lines) == 2
    _bad("n_tasks", lambda: plots.task_diversity_plot([0, 4, 16], [1, 1, 1], [1, 1, 1]))
    _bad("ridge", lambda: plots.task_diversity_plot([1, 4, 16], [1, 1, 1], [1, 1]))


# ----------------------------------------------------------------------------- the whole set


def test_plot_modules_never_show_or_switch_the_backend():
    import inspect

    from toylab._discovery import public_modules

    for path in public_modules(plots).values():
        source = inspect.getsource(importlib.import_module(path))
        for call in (".show(", "matplotlib.use(", "switch_backend(", "plt.ion(", "plt.pause("):
            assert call not in source, f"{path} calls {call}"


def test_every_public_plot_function_is_called_by_these_tests():
    tree = ast.parse(Path(__file__).read_text(encoding="utf-8"))
    called = {node.func.attr for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and isinstance(node.func.value, ast.Name) and node.func.value.id == "plots"}
    missing = sorted(set(plots.__all__) - called)
    assert not missing, f"plot functions without a test in tests/test_plots.py: {missing}"
