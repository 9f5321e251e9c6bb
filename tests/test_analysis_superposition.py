"""Property tests of the superposition geometry measures (toylab.analysis.superposition)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.analysis import superposition as S
from toylab.testing import cases, strategies as tst

FAST = settings(max_examples=50, deadline=None)
LINE_NAMES = [name for name, _ in S.FRACTION_LINES]


# ----------------------------------------------------------------------------- helpers


def polygon(k: int, phase: float = 0.0) -> np.ndarray:
    """(2, k) unit vectors at the vertices of a regular k-gon."""
    angles = phase + 2 * np.pi * np.arange(k) / k
    return np.stack([np.cos(angles), np.sin(angles)]).astype(np.float32)


def tetrahedron() -> np.ndarray:
    """(3, 4) unit vectors at the vertices of a regular tetrahedron (pairwise cosine -1/3)."""
    V = np.array([[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]], dtype=np.float64).T
    return (V / np.sqrt(3.0)).astype(np.float32)


_feature_dimensionality = jax.jit(S.feature_dimensionality)  # one compile per shape, not per op


def D(W):
    return np.asarray(_feature_dimensionality(jnp.asarray(W)))


# ----------------------------------------------------------------------------- bounds


@pytest.mark.slow
@FAST
@given(tst.superposition_weights())
def test_feature_dimensionality_is_in_unit_interval(W):
    d = D(W)
    assert d.shape == (W.shape[1],)
    assert np.all(np.isfinite(d))
    assert np.all(d >= 0.0) and np.all(d <= 1.0)
    # zero columns are features not learned
    assert np.all(d[~np.any(W != 0, axis=0)] == 0.0)


@FAST
@given(tst.superposition_weights())
def test_feature_dimensionalities_sum_to_at_most_m(W):
    # Σ_i D_i <= rank(W) <= m (Cauchy-Schwarz against the pseudo-inverse of WWᵀ).
    assert D(W).sum() <= W.shape[0] + 1e-4


@FAST
@given(tst.superposition_weights(well_scaled=True), st.data())
def test_feature_dimensionality_is_rotation_invariant(W, data):
    Q = data.draw(tst.orthogonal_matrices(W.shape[0], dtype=np.float32))
    np.testing.assert_allclose(D(Q @ W), D(W), atol=1e-4)


@FAST
@given(tst.superposition_weights(well_scaled=True), st.floats(1e-3, 1e3))
def test_feature_dimensionality_is_scale_invariant(W, c):
    np.testing.assert_allclose(D(np.float32(c) * W), D(W), atol=1e-4)


# ----------------------------------------------------------------------------- constructed geometries


@FAST
@given(st.floats(1e-2, 1e2))
def test_antipodal_pair_gets_half_each(c):
    W = np.float32(c) * np.array([[1.0, -1.0]], dtype=np.float32)
    np.testing.assert_allclose(D(W), [0.5, 0.5], atol=1e-5)


@FAST
@given(st.floats(0.0, 2 * np.pi), st.floats(1e-2, 1e2))
def test_regular_pentagon_gets_two_fifths_each(phase, c):
    np.testing.assert_allclose(D(np.float32(c) * polygon(5, phase)), np.full(5, 0.4), atol=1e-5)


@FAST
@given(st.floats(0.0, 2 * np.pi), st.floats(1e-2, 1e2))
def test_triangle_gets_two_thirds_each(phase, c):
    np.testing.assert_allclose(D(np.float32(c) * polygon(3, phase)), np.full(3, 2 / 3), atol=1e-5)


@FAST
@given(tst.orthogonal_matrices(3, dtype=np.float32), st.floats(1e-2, 1e2))
def test_regular_tetrahedron_gets_three_quarters_each(Q, c):
    W = Q @ tetrahedron()
    np.testing.assert_allclose(D(np.float32(c) * W), np.full(4, 0.75), atol=1e-5)


@FAST
@given(
    k=st.integers(1, 8),
    signs=st.lists(st.sampled_from([1.0, -1.0]), min_size=8, max_size=8),
    scale=st.floats(0.1, 10.0),
    others=st.lists(st.floats(0.1, 10.0), min_size=0, max_size=4),
    data=st.data(),
)
@pytest.mark.slow
def test_k_features_sharing_a_direction_get_one_over_k(k, signs, scale, others, data):
    # k equal-norm features on ±e_0, the others each on their own axis e_1.., all rotated.
    m = 1 + len(others)
    W = np.zeros((m, k + len(others)), dtype=np.float32)
    W[0, :k] = scale * np.asarray(signs[:k])
    for j, norm in enumerate(others):
        W[1 + j, k + j] = norm
    W = data.draw(tst.orthogonal_matrices(m, dtype=np.float32)) @ W
    expected = np.concatenate([np.full(k, 1.0 / k), np.ones(len(others))])
    np.testing.assert_allclose(D(W), expected, atol=1e-5)


def test_zero_column_gets_zero_and_others_are_unaffected():
    W = np.array([[1.0, 0.0, -1.0], [0.0, 0.0, 0.0]], dtype=np.float32)
    np.testing.assert_allclose(D(W), [0.5, 0.0, 0.5], atol=1e-6)
    assert np.all(D(np.zeros((3, 4), np.float32)) == 0.0)


def test_tiny_column_counts_as_not_learned_but_small_one_does_not():
    # the zero guard is relative to the largest column: 1e-8 of it is "zero", 1e-3 is a feature
    # (each on its own axis, where an unguarded ratio would give the tiny one D = 1)
    W = np.diag([1.0, 1e-8, 1e-3]).astype(np.float32)
    np.testing.assert_allclose(D(W), [1.0, 0.0, 1.0], atol=1e-6)
    np.testing.assert_allclose(D(1e4 * W), [1.0, 0.0, 1.0], atol=1e-6)


@pytest.mark.slow
@FAST
@given(tst.superposition_weights(well_scaled=True))
def test_dimensionality_agrees_with_norms_and_interference(W):
    # D_i = ‖W_i‖² / (‖W_i‖² + interference_i) for every nonzero column
    norms2 = np.asarray(jax.jit(S.feature_norms)(W)) ** 2
    leak = np.asarray(jax.jit(S.interference)(W))
    expected = np.where(norms2 > 0, norms2 / np.maximum(norms2 + leak, 1e-30), 0.0)
    np.testing.assert_allclose(D(W), expected, rtol=1e-4, atol=1e-5)


# ----------------------------------------------------------------------------- other measures


@pytest.mark.slow
@FAST
@given(tst.superposition_weights())
def test_gram_and_norms_match_numpy(W):
    W64 = W.astype(np.float64)
    np.testing.assert_allclose(np.asarray(S.gram(W)), W64.T @ W64, rtol=1e-5, atol=1e-3)
    np.testing.assert_allclose(np.asarray(S.feature_norms(W)), np.linalg.norm(W64, axis=0), rtol=1e-5, atol=1e-6)


@pytest.mark.slow
def test_interference_of_simple_geometries():
    np.testing.assert_allclose(np.asarray(S.interference(np.array([[2.0, -2.0]], np.float32))), [4.0, 4.0], rtol=1e-6)
    np.testing.assert_allclose(np.asarray(S.interference(np.eye(3, dtype=np.float32))), np.zeros(3), atol=1e-7)
    # pentagon: Σ_{j≠i} cos²(2πj/5) = 5/2 - 1 = 3/2
    np.testing.assert_allclose(np.asarray(S.interference(polygon(5))), np.full(5, 1.5), atol=1e-5)
    # a zero column neither feels nor causes interference
    np.testing.assert_allclose(np.asarray(S.interference(np.array([[1.0, 0.0]], np.float32))), [0.0, 0.0], atol=0)


@pytest.mark.slow
@FAST
@given(st.integers(1, 6), st.integers(0, 6), st.data())
def test_dimensions_per_feature_on_dedicated_and_antipodal(m, extra_zero_columns, data):
    Q = data.draw(tst.orthogonal_matrices(m, dtype=np.float32))
    identity_like = Q @ np.eye(m, m + extra_zero_columns, dtype=np.float32)
    np.testing.assert_allclose(float(S.dimensions_per_feature(identity_like)), 1.0, atol=1e-5)
    pairs = Q @ np.concatenate([np.eye(m), -np.eye(m)], axis=1).astype(np.float32)
    np.testing.assert_allclose(float(S.dimensions_per_feature(pairs)), 0.5, atol=1e-5)


def test_dimensions_per_feature_of_zero_weights_is_inf_not_nan():
    assert float(S.dimensions_per_feature(np.zeros((2, 3), np.float32))) == np.inf


@pytest.mark.slow
def test_gradients_are_finite_at_zero_columns():
    W = jnp.array([[1.0, 0.0, 0.5], [0.0, 0.0, -0.5]])
    for f in (S.feature_norms, S.interference, S.feature_dimensionality):
        for point in (W, jnp.zeros_like(W)):
            g = jax.grad(lambda w: jnp.sum(f(w)))(point)
            assert np.all(np.isfinite(np.asarray(g))), f.__name__
    g = jax.grad(S.dimensions_per_feature)(W)
    assert np.all(np.isfinite(np.asarray(g)))


def test_summary_of_a_pentagon_plus_an_unlearned_feature():
    W = np.concatenate([polygon(5), np.zeros((2, 1), np.float32)], axis=1)
    summary = S.superposition_summary(W)
    assert set(summary) == {"dimensions_per_feature", "n_represented", "mean_feature_dimensionality"}
    np.testing.assert_allclose(float(summary["dimensions_per_feature"]), 2 / 5, atol=1e-6)
    assert float(summary["n_represented"]) == 5.0
    assert summary["n_represented"].dtype == jnp.float32
    np.testing.assert_allclose(float(summary["mean_feature_dimensionality"]), 5 * 0.4 / 6, atol=1e-6)


# ----------------------------------------------------------------------------- fraction lines


def _tight_frame(vectors):
    """(m, n) weights from n unit vectors (rows of ``vectors``)."""
    v = np.asarray(vectors, np.float64)
    return jnp.asarray((v / np.linalg.norm(v, axis=1, keepdims=True)).T, jnp.float32)


@pytest.mark.slow
def test_fraction_lines_are_the_dimensionalities_of_their_geometries():
    """Each line is the D every feature of its geometry has, computed here from the geometry."""
    polygon = lambda k: [[np.cos(2 * np.pi * i / k), np.sin(2 * np.pi * i / k)] for i in range(k)]  # noqa: E731
    h = np.sqrt(1 / 3)  # the square antiprism's height that makes its 8 vertices a tight frame in 3-D
    antiprism = [[np.sqrt(2 / 3) * np.cos(np.pi * i / 4), np.sqrt(2 / 3) * np.sin(np.pi * i / 4), h * (-1) ** i]
                 for i in range(8)]
    tetrahedron = [[1, 1, 1], [1, -1, -1], [-1, 1, -1], [-1, -1, 1]]
    geometries = {
        "1": jnp.eye(3, dtype=jnp.float32),  # dedicated dimensions
        "3/4": _tight_frame(tetrahedron),
        "2/3": _tight_frame(polygon(3)),
        "1/2": _tight_frame([[1.0], [-1.0]]),  # an antipodal pair
        "2/5": _tight_frame(polygon(5)),
        "3/8": _tight_frame(antiprism),
    }
    lines = dict(S.FRACTION_LINES)
    assert set(lines) == set(geometries) | {"0"}
    for name, W in geometries.items():
        D = np.asarray(S.feature_dimensionality(W))
        np.testing.assert_allclose(D, np.full(W.shape[1], lines[name]), atol=1e-5, err_msg=name)
        assert np.asarray(S.detect_fraction_lines(D, min_count=len(D)))[LINE_NAMES.index(name)], name
    W = jnp.zeros((2, 4)).at[:, 0].set(jnp.array([1.0, 0.0]))  # three features not represented
    assert int(np.asarray(S.fraction_line_counts(S.feature_dimensionality(W)))[LINE_NAMES.index("0")]) == 3


def test_fraction_line_counts_counts_within_tol():
    d = jnp.array([0.0, 0.0, 0.01, 0.405, 0.41, 0.5, 0.53, 1.0, 0.7])
    counts = np.asarray(S.fraction_line_counts(d))
    # 0.405 and 0.41 are within 0.02 of 2/5 only; 0.53 of nothing; 0.7 is 0.033 from 2/3
    np.testing.assert_array_equal(counts, [1, 0, 0, 1, 2, 0, 3])
    assert counts.dtype == np.int32
    # wider bands: 0.405 and 0.41 now reach 3/8, 0.53 reaches 1/2, 0.7 reaches 2/3 but not 3/4
    np.testing.assert_array_equal(np.asarray(S.fraction_line_counts(d, tol=0.04)), [1, 0, 1, 2, 2, 2, 3])


@FAST
@given(st.integers(0, 6), st.sampled_from([3, 4, 10, 30]))
def test_an_exact_cluster_is_detected_on_its_line_only(line, size):
    values = jnp.full(size, S.FRACTION_LINES[line][1], dtype=jnp.float32)
    detected = np.asarray(S.detect_fraction_lines(values))
    np.testing.assert_array_equal(detected, np.arange(7) == line)


def test_a_cluster_at_two_fifths_is_not_taken_for_three_eighths():
    detected = np.asarray(S.detect_fraction_lines(jnp.full(10, 0.4)))
    assert detected[LINE_NAMES.index("2/5")] and not detected[LINE_NAMES.index("3/8")]


def test_clusters_on_top_of_uniform_background_are_found():
    rng = np.random.default_rng(0)
    jitter = lambda v: v + rng.uniform(-0.004, 0.004, size=12)  # noqa: E731
    clusters = np.concatenate([jitter(0.4), jitter(0.5), jitter(0.75)])
    background = rng.uniform(0.0, 1.0, size=40)
    detected = np.asarray(S.detect_fraction_lines(jnp.asarray(np.concatenate([clusters, background]), jnp.float32)))
    for name in ("2/5", "1/2", "3/4"):
        assert detected[LINE_NAMES.index(name)], name
    # the 2/5 cluster sits in 3/8's flank: it is background there, not a second line
    assert not detected[LINE_NAMES.index("3/8")]


def test_uniform_noise_of_modest_size_reports_no_line():
    noise = np.random.default_rng(1).uniform(0.0, 1.0, size=15).astype(np.float32)
    assert not np.any(np.asarray(S.detect_fraction_lines(jnp.asarray(noise))))


def test_a_shoulder_is_not_a_peak():
    # enough values on 1/2 to pass min_count, but more right beside it: background, not a line
    values = np.concatenate([np.full(4, 0.5), np.linspace(0.525, 0.555, 12)]).astype(np.float32)
    assert np.asarray(S.fraction_line_counts(jnp.asarray(values)))[LINE_NAMES.index("1/2")] == 4
    assert not np.asarray(S.detect_fraction_lines(jnp.asarray(values)))[LINE_NAMES.index("1/2")]


def test_min_count_is_respected():
    two = jnp.array([0.5, 0.5], jnp.float32)
    assert not np.any(np.asarray(S.detect_fraction_lines(two)))
    assert np.asarray(S.detect_fraction_lines(two, min_count=2))[LINE_NAMES.index("1/2")]


def test_detection_vmaps_over_models():
    stack = jnp.stack([jnp.full(5, 0.4), jnp.full(5, 0.0), jnp.linspace(0.0, 1.0, 5)])
    detected = np.asarray(jax.vmap(S.detect_fraction_lines)(stack))
    counts = np.asarray(jax.vmap(S.fraction_line_counts)(stack))
    assert detected.shape == counts.shape == (3, 7)
    for i in range(3):
        np.testing.assert_array_equal(detected[i], np.asarray(S.detect_fraction_lines(stack[i])))
        np.testing.assert_array_equal(counts[i], np.asarray(S.fraction_line_counts(stack[i])))
    np.testing.assert_array_equal(detected[0], np.arange(7) == LINE_NAMES.index("2/5"))
    np.testing.assert_array_equal(detected[1], np.arange(7) == LINE_NAMES.index("0"))


# ----------------------------------------------------------------------------- phase change


def test_phase_names_name_the_geometry_classify_phase_finds():
    # The known-answer models of the three phases (at a point where all three exist):
    # the extra feature (the second) gets nothing / has the dimension to itself / shares it.
    assert S.PHASE_NAMES == cases.PHASES
    for case in cases.superposition_phases(1.0, 0.1):
        assert S.PHASE_NAMES[int(S.classify_phase(jnp.asarray(case.W, jnp.float32)))] == case.name


@pytest.mark.parametrize(
    "W, phase",
    [
        ([[1.0, 0.0]], 0),  # extra feature not represented
        ([[0.0, 0.0]], 0),
        ([[0.3, 0.4]], 0),  # both below threshold
        ([[0.0, 1.0]], 1),  # extra feature has the dimension
        ([[0.1, -0.9]], 1),
        ([[1.0, -1.0]], 2),  # antipodal: superposed
        ([[0.7, 0.6]], 2),
    ],
)
def test_classify_phase_on_hand_built_models(W, phase):
    result = S.classify_phase(jnp.asarray(W, jnp.float32))
    assert result.shape == () and result.dtype == jnp.int32
    assert int(result) == phase


def test_classify_phase_vmaps_and_jits():
    stack = jnp.array([[[1.0, 0.0]], [[0.0, 1.0]], [[1.0, -1.0]], [[0.0, 0.2]]])
    np.testing.assert_array_equal(np.asarray(jax.vmap(S.classify_phase)(stack)), [0, 1, 2, 0])
    np.testing.assert_array_equal(np.asarray(jax.jit(jax.vmap(S.classify_phase))(stack)), [0, 1, 2, 0])
    # a higher threshold moves the boundary
    assert int(S.classify_phase(jnp.array([[1.0, -0.6]]), threshold=0.7)) == 0


@pytest.mark.parametrize("shape", [(2,), (2, 2), (1, 3), (2, 1)])
def test_classify_phase_rejects_other_shapes(shape):
    with pytest.raises(ValueError, match=r"W has shape .*\(1, 2\)"):
        S.classify_phase(jnp.zeros(shape))


# ----------------------------------------------------------------------------- vmap


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(st.sampled_from([(1, 1, 1), (3, 1, 2), (4, 2, 5), (2, 5, 8)]), st.integers(0, 2**32 - 1))
def test_measures_vmap_like_a_loop(shape, seed):
    # few shapes: each one compiles every measure, which dominates the run time
    batch, m, n = shape
    rng = np.random.default_rng(seed)
    stack = rng.normal(size=(batch, m, n)).astype(np.float32)
    stack[:, :, rng.random(n) < 0.3] = 0.0  # some unlearned features
    for f in (S.feature_dimensionality, S.interference, S.feature_norms, S.dimensions_per_feature):
        batched = np.asarray(jax.jit(jax.vmap(f))(stack))
        looped = np.stack([np.asarray(jax.jit(f)(W)) for W in stack])
        np.testing.assert_allclose(batched, looped, rtol=1e-5, atol=1e-6, err_msg=f.__name__)
    summaries = jax.jit(jax.vmap(S.superposition_summary))(stack)
    for i, W in enumerate(stack):
        for key, value in jax.jit(S.superposition_summary)(W).items():
            np.testing.assert_allclose(np.asarray(summaries[key][i]), np.asarray(value), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- bad input

USER_FUNCTIONS = [
    S.gram,
    S.feature_norms,
    S.interference,
    S.dimensions_per_feature,
    S.feature_dimensionality,
    S.superposition_summary,
]


@pytest.mark.parametrize("f", USER_FUNCTIONS, ids=lambda f: f.__name__)
@pytest.mark.parametrize("shape", [(3,), (2, 3, 4), (0, 3), (3, 0)])
def test_bad_shapes_raise_naming_W(f, shape):
    with pytest.raises(ValueError, match=r"W has shape .*must be a 2-D \(n_hidden, n_features\) array"):
        f(jnp.zeros(shape))


def test_complex_weights_are_rejected():
    with pytest.raises(ValueError, match="W has dtype complex64"):
        S.feature_dimensionality(jnp.zeros((2, 3), jnp.complex64))


def test_integer_weights_are_promoted_to_float():
    np.testing.assert_allclose(D(np.array([[1, -1, 0]])), [0.5, 0.5, 0.0])


@pytest.mark.parametrize("tol", [0.0, -0.1, float("nan")])
def test_nonpositive_tol_raises(tol):
    for f in (S.fraction_line_counts, S.detect_fraction_lines):
        with pytest.raises(ValueError, match="tol"):
            f(jnp.zeros(3), tol=tol)


def test_bad_min_count_and_D_shape_raise():
    with pytest.raises(ValueError, match="min_count"):
        S.detect_fraction_lines(jnp.zeros(3), min_count=0)
    with pytest.raises(ValueError, match="D has shape"):
        S.detect_fraction_lines(jnp.zeros((2, 3)))


def test_everything_jits():
    W = jnp.asarray(polygon(5))
    for f in USER_FUNCTIONS:
        eager, jitted = f(W), jax.jit(f)(W)
        for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
            np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-6, atol=1e-7)
    d = S.feature_dimensionality(W)
    np.testing.assert_array_equal(np.asarray(jax.jit(S.detect_fraction_lines)(d)), np.asarray(S.detect_fraction_lines(d)))


def test_no_line_in_a_large_uniform_background():
    # Hundreds of values, as a whole sweep gives: the contrast rule must not call noise a line.
    D = jnp.asarray(np.random.default_rng(7).uniform(0, 1, 600), jnp.float32)
    assert not np.asarray(S.detect_fraction_lines(D, tol=0.02, min_count=5)).any()
    # ...while the same background with a real cluster at 1/2 shows exactly that line.
    with_cluster = jnp.concatenate([D, jnp.full((40,), 0.5, jnp.float32)])
    found = np.asarray(S.detect_fraction_lines(with_cluster, tol=0.02, min_count=5))
    assert [name for (name, _), hit in zip(S.FRACTION_LINES, found) if hit] == ["1/2"]
