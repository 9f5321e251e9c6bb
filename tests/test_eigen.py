"""Property tests of the bilinear-layer eigendecomposition (toylab.analysis.eigen)."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.analysis import eigen as E
from toylab.models.bilinear import BilinearLayer, augment, init_bilinear_classifier, init_bilinear_layer
from toylab.testing import strategies as tst

FAST = settings(max_examples=25, deadline=None)
RTOL = 1e-4  # float32, relative to the scale of what is compared


# ----------------------------------------------------------------------------- strategies and helpers


def make_layer(seed: int, d_in: int, d_hidden: int, d_out: int, bias: bool) -> BilinearLayer:
    """Gaussian W, V (bias columns nonzero) and P, each factor of unit scale (as the kit's
    bilinear_layers draws them), for the tests at fixed sizes."""
    rng = np.random.default_rng(seed)
    d = d_in + int(bias)
    f = lambda *s: jnp.asarray(rng.normal(size=s) / np.sqrt(s[-1]), jnp.float32)  # noqa: E731
    return BilinearLayer(f(d_hidden, d), f(d_hidden, d), f(d_out, d_hidden), bias=bias)


def inputs(seed: int, n: int, d_in: int):
    return jnp.asarray(np.random.default_rng(seed + 1).normal(size=(n, d_in)), jnp.float32)


# (d_in, d_hidden, d_out) from a few profiles, the all-ones edge case included: every new
# shape costs JAX a compile of each op, so the weights vary freely and the shapes repeat.
SIZES = ((1, 1, 1), (4, 3, 3))  # d_hidden < d: Q is rank-deficient, zero eigenvalues repeat


@st.composite
def layers(draw):
    """(layer, x (5, d_in), seed): a layer of the testing kit's, its inputs, and a seed for
    the test's own draws."""
    layer = draw(tst.bilinear_layers(shapes=SIZES))
    seed = draw(st.integers(0, 2**31 - 1))
    return layer, inputs(seed, 5, layer.d_in), seed


def close(actual, expected, rtol=RTOL):
    """Equal up to rtol of the expected values' scale (float32 sums cancel)."""
    expected = np.asarray(expected, np.float64)
    scale = max(float(np.max(np.abs(expected), initial=0.0)), 1.0)
    np.testing.assert_allclose(np.asarray(actual, np.float64), expected, rtol=0, atol=rtol * scale)


# ----------------------------------------------------------------------------- the tensor (required 1, 2)


@pytest.mark.slow
@FAST
@given(layers())
def test_layer_is_its_tensor_contracted_with_the_input_twice(case):
    layer, x, _ = case
    xa = augment(x, layer.bias)
    B = E.bilinear_tensor(layer)
    assert B.shape == (layer.d_out, layer.d_in + layer.bias, layer.d_in + layer.bias)
    close(jnp.einsum("aij,ni,nj->na", B, xa, xa, precision="highest"), layer(x))


@pytest.mark.slow
@FAST
@given(layers())
def test_antisymmetric_part_contributes_nothing(case):
    layer, x, _ = case
    xa = augment(x, layer.bias)
    B = E.bilinear_tensor(layer)
    S, A = E.symmetric_part(B), E.antisymmetric_part(B)
    close(S + A, B)
    np.testing.assert_array_equal(S, jnp.swapaxes(S, -1, -2))
    out = layer(x)
    scale = float(jnp.max(jnp.abs(B))) * float(jnp.max(jnp.sum(xa ** 2, -1)))
    np.testing.assert_allclose(jnp.einsum("aij,ni,nj->na", A, xa, xa, precision="highest"), 0.0,
                               atol=RTOL * max(scale, 1.0))
    close(jnp.einsum("aij,ni,nj->na", S, xa, xa, precision="highest"), out)


@pytest.mark.slow
@FAST
@given(layers())
def test_interaction_matrices_contract_the_tensor_with_the_directions(case):
    layer, _, seed = case
    U = jnp.asarray(np.random.default_rng(seed + 2).normal(size=(3, layer.d_out)), jnp.float32)
    S = E.symmetric_part(E.bilinear_tensor(layer))
    Q = E.interaction_matrices(layer, U)
    close(Q, jnp.einsum("na,aij->nij", U, S, precision="highest"))
    close(E.interaction_matrix(layer, U[1]), Q[1])
    close(E.interaction_matrices(layer, E.output_directions(layer.d_out)), S)  # identity: sym(B)


# ----------------------------------------------------------------------------- eigenpairs (required 3, 4)


@pytest.mark.slow
@FAST
@given(layers())
def test_direction_output_is_quadratic_form_and_sum_over_eigenvectors(case):
    layer, x, seed = case
    u = jnp.asarray(np.random.default_rng(seed + 3).normal(size=layer.d_out), jnp.float32)
    xa = augment(x, layer.bias)
    Q = E.interaction_matrix(layer, u)
    eig = E.eigendecompose(Q, bias=layer.bias)
    ug = layer(x) @ u
    close(jnp.einsum("ni,ij,nj->n", xa, Q, xa, precision="highest"), ug)
    close(jnp.sum(eig.values * jnp.matmul(xa, eig.vectors, precision="highest") ** 2, -1), ug)
    # Sorted by |λ| descending, orthonormal eigenvectors in columns.
    assert np.all(np.diff(np.abs(np.asarray(eig.values))) <= 1e-6)
    close(eig.vectors.T @ eig.vectors, np.eye(eig.d), rtol=1e-5)
    close(Q @ eig.vectors, eig.vectors * eig.values[None, :])


@pytest.mark.slow
@FAST
@given(layers())
def test_keeping_every_eigenvector_reproduces_the_model(case):
    layer, x, seed = case
    eig = E.class_eigendecomposition(layer)
    d = layer.d_in + layer.bias
    assert eig.values.shape == (layer.d_out, d) and eig.vectors.shape == (layer.d_out, d, d)
    out = layer(x)
    close(E.truncated_outputs(eig, x, d), out)
    labels = jnp.asarray(np.random.default_rng(seed + 4).integers(0, layer.d_out, size=x.shape[0]))
    full = float(jnp.mean(jnp.argmax(out, -1) == labels))
    acc = E.truncated_accuracy(eig, x, labels, (1, d))
    # Predictions may only differ where two classes tie to within float error.
    top2 = -jnp.sort(-out, axis=-1)[:, :2] if layer.d_out > 1 else jnp.stack([out[:, 0], out[:, 0] - 1], -1)
    near_ties = int(jnp.sum(top2[:, 0] - top2[:, 1] < 1e-3 * max(float(jnp.max(jnp.abs(out))), 1.0)))
    assert abs(float(acc[1]) - full) <= near_ties / x.shape[0] + 1e-6
    close(acc[0], E.truncated_accuracy(eig, x, labels, 1)[0])


@pytest.mark.slow
@FAST
@given(layers(), st.sampled_from((1, 2, 5)))
def test_truncation_keeps_the_top_k_by_magnitude(case, k):
    layer, x, _ = case
    eig = E.class_eigendecomposition(layer)
    k = min(k, eig.d)
    xa = np.asarray(augment(x, layer.bias), np.float64)
    # The expected value from an independent eigendecomposition of each class's interaction
    # matrix (numpy, float64), ordered here by |λ| — not from the decomposition under test.
    Q = np.asarray(E.interaction_matrices(layer, E.output_directions(layer.d_out)), np.float64)
    expected = np.zeros((xa.shape[0], layer.d_out))
    for c in range(layer.d_out):
        values, vectors = np.linalg.eigh(Q[c])
        top = np.argsort(-np.abs(values), kind="stable")[:k]
        expected[:, c] = ((xa @ vectors[:, top]) ** 2) @ values[top]
    close(E.truncated_outputs(eig, x, k), expected)


@pytest.mark.slow
@FAST
@given(layers(), st.sampled_from((1, 3)))
def test_top_positive_and_negative_are_the_extreme_eigenpairs(case, k):
    layer, _, _ = case
    eig = E.class_eigendecomposition(layer)
    k = min(k, eig.d)
    Q = E.interaction_matrices(layer, E.output_directions(layer.d_out))
    for top, order in ((E.top_positive, -1), (E.top_negative, 1)):
        values, vectors = top(eig, k)
        assert values.shape == (layer.d_out, k) and vectors.shape == (layer.d_out, eig.d, k)
        close(values, np.sort(order * np.asarray(eig.values), axis=-1)[:, :k] * order)
        close(Q @ vectors, vectors * values[:, None, :])


# ----------------------------------------------------------------------------- bias (required 5)


@FAST
@given(st.integers(0, 2**31 - 1), st.sampled_from(SIZES))
def test_bias_through_the_appended_input_matches_an_explicit_bias_layer(seed, sizes):
    d_in, d_hidden, d_out = sizes
    rng = np.random.default_rng(seed)
    W0, V0 = rng.normal(size=(2, d_hidden, d_in)) / np.sqrt(d_in)
    b_w, b_v = rng.normal(size=(2, d_hidden))
    P = rng.normal(size=(d_out, d_hidden)) / np.sqrt(d_hidden)
    x = rng.normal(size=(5, d_in))
    explicit = ((x @ W0.T + b_w) * (x @ V0.T + b_v)) @ P.T  # written out by hand, float64
    f32 = lambda a: jnp.asarray(a, jnp.float32)  # noqa: E731
    layer = BilinearLayer(f32(np.c_[W0, b_w]), f32(np.c_[V0, b_v]), f32(P), bias=True)
    close(layer(f32(x)), explicit)
    eig = E.class_eigendecomposition(layer)
    close(E.truncated_outputs(eig, f32(x), d_in + 1), explicit)
    xa = np.c_[x, np.ones(len(x))]
    close(np.einsum("ni,aij,nj->na", xa, np.asarray(E.bilinear_tensor(layer), np.float64), xa), explicit)


# ----------------------------------------------------------------------------- equivariance (required 6)


@FAST
@given(layers(), st.data())
def test_decomposition_is_equivariant_under_orthogonal_changes_of_input_basis(case, data):
    layer, x, _ = case
    d_in, d = layer.d_in, layer.d_in + layer.bias
    R = data.draw(tst.orthogonal_matrices(d_in))
    R_aug = np.eye(d)
    R_aug[:d_in, :d_in] = R  # the bias coordinate is not rotated

    def rotate(M):  # W' = W R̃ᵀ: the bias column untouched
        return jnp.asarray(np.asarray(M, np.float64) @ R_aug.T, jnp.float32)

    rotated = BilinearLayer(rotate(layer.W), rotate(layer.V), layer.P, bias=layer.bias)
    close(rotated(jnp.asarray(np.asarray(x) @ R.T, jnp.float32)), layer(x))  # g'(R x) = g(x)

    Q = np.asarray(E.interaction_matrices(layer, E.output_directions(layer.d_out)), np.float64)
    Q_rot = E.interaction_matrices(rotated, E.output_directions(layer.d_out))
    close(Q_rot, R_aug @ Q @ R_aug.T)

    eig, eig_rot = E.class_eigendecomposition(layer), E.class_eigendecomposition(rotated)
    scale = max(float(np.max(np.abs(eig.values))), 1.0)
    close(np.sort(eig_rot.values, -1), np.sort(eig.values, -1))
    # Eigenvectors v' = R̃ v up to sign, where λ is well separated from the others (a
    # near-degenerate pair may rotate within its eigenspace).
    values = np.asarray(eig.values)
    cos = np.abs(np.einsum("cdi,cdi->ci", np.asarray(eig_rot.vectors), R_aug @ np.asarray(eig.vectors)))
    gaps = np.where(np.eye(d, dtype=bool), np.inf, np.abs(values[:, :, None] - values[:, None, :]))
    separated = np.min(gaps, axis=-1) > 1e-2 * scale
    same_order = np.abs(np.asarray(eig_rot.values) - values) < 1e-3 * scale
    assert np.all(cos[separated & same_order] > 1 - 1e-3)


# ----------------------------------------------------------------------------- classifier, ensembles, jit


@pytest.mark.slow
@pytest.mark.parametrize("bias", [False, True])
@pytest.mark.parametrize("d_model", [None, 4])
def test_class_eigendecomposition_of_a_classifier_reproduces_its_logits(bias, d_model):
    model = init_bilinear_classifier(jax.random.key(0), d_in=6, n_classes=3, d_hidden=5, d_model=d_model, bias=bias)
    if bias:  # init sets the biases to zero; make them count
        layer = model.blocks[0].layer
        model = eqx.tree_at(lambda m: (m.blocks[0].layer.W, m.blocks[0].layer.V), model,
                            (layer.W.at[:, -1].set(0.7), layer.V.at[:, -1].set(-0.4)))
    x = jax.random.normal(jax.random.key(1), (8, 6))
    eig = E.class_eigendecomposition(model)
    assert eig.bias == bias and eig.d == 6 + bias
    close(E.truncated_outputs(eig, x, eig.d), model(x))
    close(E.class_eigendecomposition(model.as_layer()).values, eig.values)


def _ensemble(n=3, **kw):
    keys = jax.random.split(jax.random.key(2), n)
    return eqx.filter_vmap(lambda k: init_bilinear_layer(k, **kw))(keys)


@pytest.mark.slow
def test_vmap_over_an_ensemble_equals_the_loop_and_jit_works():
    kw = dict(d_in=5, d_hidden=6, d_out=3, bias=True)
    stacked = _ensemble(**kw)
    batched = jax.vmap(E.class_eigendecomposition)(stacked)
    jitted = jax.jit(jax.vmap(E.class_eigendecomposition))(stacked)
    assert batched.values.shape == (3, 3, 6) and batched.bias
    x = jax.random.normal(jax.random.key(3), (7, 5))
    for s in range(3):
        layer = jax.tree.map(lambda a: a[s], stacked)
        single = E.class_eigendecomposition(layer)
        for got in (batched, jitted):
            close(got.values[s], single.values)
            # Same eigenvectors up to sign (random matrices: non-degenerate).
            close(jnp.abs(jnp.sum(got.vectors[s] * single.vectors, axis=-2)), np.ones((3, 6)), rtol=1e-3)
    labels = jnp.arange(7) % 3
    acc = jax.jit(jax.vmap(lambda e: E.truncated_accuracy(e, x, labels, (1, 6))))(batched)
    assert acc.shape == (3, 2)
    loop = [E.truncated_accuracy(jax.tree.map(lambda a: a[s], batched), x, labels, (1, 6)) for s in range(3)]
    np.testing.assert_allclose(acc, np.stack(loop))
    layer0 = jax.tree.map(lambda a: a[0], stacked)
    close(jax.jit(E.truncated_outputs, static_argnums=2)(jax.tree.map(lambda a: a[0], batched), x, 6), layer0(x))


# ----------------------------------------------------------------------------- low rank


@pytest.mark.slow
@FAST
@given(layers())
def test_hosvd_reconstructs_the_tensor(case):
    layer, _, _ = case
    B = E.bilinear_tensor(layer)
    h = E.hosvd(B)
    close(E.reconstruct_hosvd(h.core, h.factors), B)
    close(E.reconstruct_hosvd(h.core, h.factors, ranks=h.core.shape), B)
    for U, s in zip(h.factors, h.singular_values):
        close(U.T @ U, np.eye(U.shape[1]), rtol=1e-5)
        assert np.all(np.diff(np.asarray(s)) <= 1e-6)
    # The core's squared entries are B's (orthonormal factors keep the norm).
    close(jnp.sum(h.core ** 2), jnp.sum(B ** 2))


@FAST
@given(layers())
def test_tensor_svd_reconstructs_the_symmetric_tensor(case):
    layer, _, _ = case
    B = E.bilinear_tensor(layer)
    t = E.tensor_svd(B)
    close(E.reconstruct_tensor_svd(t), E.symmetric_part(B))
    close(t.outputs.T @ t.outputs, np.eye(t.outputs.shape[1]), rtol=1e-5)
    live = np.asarray(t.values) > 1e-3 * max(float(t.values[0]), 1e-30)
    close(t.inputs[live], jnp.swapaxes(t.inputs, -1, -2)[live])
    # sym(B) from the layer without building B gives the same singular values.
    close(E.tensor_svd(E.interaction_matrices(layer, E.output_directions(layer.d_out))).values, t.values)


# ----------------------------------------------------------------------------- spectra


@FAST
@given(st.sampled_from((1, 2, 7)), st.floats(1e-3, 1e3), st.integers(0, 2**31 - 1))
def test_effective_rank_of_rank_one_and_flat_spectra(d, c, seed):
    signs = np.random.default_rng(seed).choice([-1.0, 1.0], size=d)
    np.testing.assert_allclose(E.effective_rank(jnp.zeros(d).at[d // 2].set(c)), 1.0, rtol=1e-5)
    np.testing.assert_allclose(E.effective_rank(jnp.asarray(c * signs, jnp.float32)), d, rtol=1e-5)
    np.testing.assert_allclose(E.spectrum_share(jnp.asarray(c * signs, jnp.float32), 1), 1 / d, rtol=1e-5)
    np.testing.assert_allclose(E.spectrum_share(jnp.zeros(d).at[d // 2].set(-c), 1), 1.0, rtol=1e-6)
    assert float(E.effective_rank(jnp.zeros(d))) == 0.0


@FAST
@given(layers())
def test_spectrum_is_sorted_magnitudes_and_share_reaches_one(case):
    layer, _, _ = case
    eig = E.class_eigendecomposition(layer)
    spec = E.eigenvalue_spectrum(eig)
    close(spec, E.eigenvalue_spectrum(eig.values[..., ::-1]))
    close(E.spectrum_share(eig.values, eig.d), np.where(np.any(spec > 0, -1), 1.0, 0.0))
    r = np.asarray(E.effective_rank(eig.values))
    assert np.all((r >= 1 - 1e-5) & (r <= eig.d + 1e-4))


# ----------------------------------------------------------------------------- across seeds


@pytest.mark.slow
@FAST
@given(st.integers(0, 2**31 - 1), st.sampled_from(((5, 3, 3), (1, 1, 2))))
def test_identical_seeds_with_flipped_signs_are_perfectly_similar(seed, sizes):
    d, k, n_seeds = sizes
    rng = np.random.default_rng(seed)
    V = np.linalg.qr(rng.normal(size=(d, d)))[0][:, :k]
    signs = rng.choice([-1.0, 1.0], size=(n_seeds, 1, k))
    seeds = jnp.asarray(V[None] * signs, jnp.float32)
    close(E.sign_align(seeds[1], jnp.asarray(V, jnp.float32)), V)
    close(E.eigenvector_similarity(seeds[0], seeds[1]), np.ones(k))
    close(E.cross_seed_similarity(seeds), np.ones(k))
    close(E.matched_cross_seed_similarity(seeds), np.ones(k))
    # A swap of two columns in one seed: the matched variant still finds them.
    if k >= 2:
        swapped = seeds.at[1].set(seeds[1][:, ::-1])
        close(E.matched_cross_seed_similarity(swapped), np.ones(k))


def test_random_vectors_are_dissimilar_across_seeds():
    v = jax.random.normal(jax.random.key(4), (6, 2, 400, 5))  # 6 seeds, 2 classes, d=400, k=5
    sim = E.cross_seed_similarity(v)
    assert sim.shape == (2, 5)
    assert float(jnp.mean(sim)) < 0.1  # E|cos| ≈ √(2/(π d)) ≈ 0.04
    matched = E.matched_cross_seed_similarity(v)
    assert float(jnp.mean(matched)) < 0.15 and np.all(np.asarray(matched) >= np.asarray(sim) - 1e-6)


# ----------------------------------------------------------------------------- masks and edges


@FAST
@given(st.sampled_from((3, 4, 8)), st.sampled_from((3, 5)), st.integers(1, 3), st.booleans())
def test_edge_mass_of_edge_and_centre_vectors(h, w, border, with_bias_row):
    if 2 * border >= min(h, w):
        border = (min(h, w) - 1) // 2
    if border < 1:
        return
    edge = np.ones((h, w), bool)
    edge[border:h - border, border:w - border] = False
    vectors = np.stack([edge.ravel(), ~edge.ravel(), np.ones(h * w)], axis=1).astype(np.float32)
    if with_bias_row:  # the bias coordinate is ignored
        vectors = np.r_[vectors, np.full((1, 3), 5.0, np.float32)]
    mass = E.edge_mass(jnp.asarray(vectors), (h, w), border)
    close(mass, [1.0, 0.0, edge.mean()], rtol=1e-6)


@pytest.mark.slow
@FAST
@given(layers(), st.integers(0, 2))
def test_eigenvector_mask_is_the_unit_input_part_of_the_extreme_eigenvector(case, target):
    layer, _, _ = case
    eig = E.class_eigendecomposition(layer)
    target = target % layer.d_out
    for sign, top in ((1, E.top_positive), (-1, E.top_negative)):
        mask = E.eigenvector_mask(eig, target, which=0, sign=sign)
        assert mask.shape == (layer.d_in,)
        v = np.asarray(top(eig, 1)[1][target, : layer.d_in, 0])
        if np.linalg.norm(v) > 1e-3:
            close(np.abs(mask @ v) / np.linalg.norm(v), 1.0, rtol=1e-4)
            close(jnp.linalg.norm(mask), 1.0, rtol=1e-5)


@pytest.mark.slow
def test_zero_mask_keeps_clean_accuracy_and_masks_move_predictions():
    layer = make_layer(0, 6, 8, 3, True)
    x = inputs(0, 50, 6)
    labels = jnp.asarray(np.random.default_rng(9).integers(0, 3, 50))
    clean = jnp.mean(jnp.argmax(layer(x), -1) == labels)
    # target_class may be traced: all classes' masks in one vmap.
    eig = E.class_eigendecomposition(layer)
    all_masks = jax.vmap(lambda c: E.eigenvector_mask(eig, c, sign=-1))(jnp.arange(3))
    close(all_masks[2], E.eigenvector_mask(eig, 2, sign=-1))
    strengths = jnp.array([-3.0, 0.0, 2.0, 10.0])
    np.testing.assert_allclose(E.masked_accuracy(layer, x, labels, jnp.zeros(6), strengths), clean)
    np.testing.assert_allclose(eqx.filter_jit(E.masked_accuracy)(layer, x, labels, jnp.zeros(6), strengths), clean)
    pred0 = jnp.argmax(layer(x), -1)
    np.testing.assert_allclose(E.class_shift(layer, x, jnp.zeros(6), strengths, 1), jnp.mean(pred0 == 1))
    # A strong mask v pushes every prediction to the class whose quadratic form is largest
    # along v (at large s the s² vᵀQ_c v term dominates), computed here from W, V and P.
    target = int(jnp.argmax(jnp.max(eig.values, -1)))
    mask = E.eigenvector_mask(eig, target)
    v = np.asarray(mask, np.float64)
    W, V = (np.asarray(a, np.float64)[:, :6] for a in (layer.W, layer.V))
    q = np.asarray(layer.P, np.float64) @ ((W @ v) * (V @ v))
    winner = int(np.argmax(q))
    assert np.sort(q)[-1] - np.sort(q)[-2] > 0.05  # a clear winner at s = 100
    shift = E.class_shift(layer, x, mask, jnp.array([0.0, 100.0]), winner)
    close(shift[0], jnp.mean(pred0 == winner))
    assert float(shift[1]) == 1.0
    clipped = E.masked_accuracy(layer, x, labels, E.random_mask(jax.random.key(5), 6), [1e6], clip=(-1.0, 1.0))
    np.testing.assert_allclose(clipped, jnp.mean(jnp.argmax(layer(jnp.clip(x + 1e6 * E.random_mask(
        jax.random.key(5), 6), -1, 1)), -1) == labels))
    np.testing.assert_allclose(jnp.linalg.norm(E.random_mask(jax.random.key(6), 10)), 1.0, rtol=1e-6)


# ----------------------------------------------------------------------------- bad input


_L = make_layer(0, 4, 5, 3, True)  # d = 5
_EIG = E.class_eigendecomposition(_L)
_X = inputs(0, 6, 4)
_Y = jnp.zeros(6, jnp.int32)

BAD = {
    "u: wrong length": ("u", lambda: E.interaction_matrix(_L, jnp.ones(4))),
    "U: wrong width": ("U", lambda: E.interaction_matrices(_L, jnp.ones((2, 4)))),
    "k: larger than the rank": ("k", lambda: E.truncated_outputs(_EIG, _X, 6)),
    "k: zero": ("k", lambda: E.truncated_outputs(_EIG, _X, 0)),
    "k: in ks": ("k", lambda: E.truncated_accuracy(_EIG, _X, _Y, (1, 99))),
    "k: top_positive": ("k", lambda: E.top_positive(_EIG, 6)),
    "k: top_negative": ("k", lambda: E.top_negative(_EIG, 0)),
    "k: spectrum_share": ("k", lambda: E.spectrum_share(_EIG.values, 6)),
    "x: wrong width": ("x", lambda: E.truncated_outputs(_EIG, jnp.ones((2, 5)), 1)),
    "labels: wrong length": ("labels", lambda: E.truncated_accuracy(_EIG, _X, _Y[:3], (1,))),
    "mask: wrong length": ("mask", lambda: E.masked_accuracy(_L, _X, _Y, jnp.ones(5), [1.0])),
    "mask: wrong length (shift)": ("mask", lambda: E.class_shift(_L, _X, jnp.ones(5), [1.0], 0)),
    "clip: empty range": ("clip", lambda: E.masked_accuracy(_L, _X, _Y, jnp.ones(4), [1.0], clip=(1.0, 0.0))),
    "border: too large": ("border", lambda: E.edge_mass(jnp.ones((16, 2)), (4, 4), 2)),
    "border: zero": ("border", lambda: E.edge_mass(jnp.ones((16, 2)), (4, 4), 0)),
    "vectors: not an image": ("vectors", lambda: E.edge_mass(jnp.ones((15, 2)), (4, 4), 1)),
    "shape: not 2-D": ("shape", lambda: E.edge_mass(jnp.ones((16, 2)), (16,), 1)),
    "target_class: out of range": ("target_class", lambda: E.eigenvector_mask(_EIG, 3)),
    "target_class: negative": ("target_class", lambda: E.eigenvector_mask(_EIG, -1)),
    "which: out of range": ("which", lambda: E.eigenvector_mask(_EIG, 0, which=5)),
    "sign: not ±1": ("sign", lambda: E.eigenvector_mask(_EIG, 0, sign=0)),
    "target: out of range": ("target", lambda: E.class_shift(_L, _X, jnp.ones(4), [1.0], 3)),
    "b: equal to a": ("b", lambda: E.logit_difference(3, 1, 1)),
    "a: out of range": ("a", lambda: E.logit_difference(3, 3, 1)),
    "layer: not a layer": ("layer", lambda: E.class_eigendecomposition(jnp.ones((3, 3)))),
    "Q: not square": ("Q", lambda: E.eigendecompose(jnp.ones((3, 4)))),
    "B: not third-order": ("B", lambda: E.hosvd(jnp.ones((3, 3)))),
    "ranks: too large": ("ranks", lambda: E.reconstruct_hosvd(*E.hosvd(E.bilinear_tensor(_L))[:2], ranks=(3, 6, 5))),
    "vectors: one seed": ("vectors", lambda: E.cross_seed_similarity(jnp.ones((1, 5, 2)))),
}


@pytest.mark.parametrize("case", list(BAD), ids=list(BAD))
def test_bad_input_raises_value_error_naming_the_parameter(case):
    name, call = BAD[case]
    with pytest.raises(ValueError, match=rf"^{name}\b") as info:
        call()
    assert "must" in str(info.value)


def test_k_errors_state_the_rank_and_hold_under_jit():
    with pytest.raises(ValueError, match=r"k=6.*<= 5, the rank"):
        E.truncated_outputs(_EIG, _X, 6)
    with pytest.raises(ValueError, match=r"^k=6"):
        jax.jit(E.truncated_outputs, static_argnums=2)(_EIG, _X, 6)
    close(E.logit_difference(3, 0, 2), [1.0, 0.0, -1.0])
