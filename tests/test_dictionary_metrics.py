"""Known-answer tests of the sparse-dictionary metrics (toylab.analysis.dictionaries)."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st
from hypothesis.extra import numpy as hnp

from toylab.analysis import dictionaries as M
from toylab.core.config import ConfigError

FAST = settings(max_examples=30, deadline=None)

# Jitted once at module level: one compile per input shape, reused by every example. Compiling
# the assignment's loops dominates this file's runtime, so tests share a few shapes.
_assign = jax.jit(M.linear_assignment)
_cos = jax.jit(M.cosine_similarities)
_mmcs = jax.jit(M.mmcs)
_uniq = jax.jit(M.uniqueness)
_detect = jax.jit(M.detection_scores)
_ev = jax.jit(M.explained_variance)
_shrink = jax.jit(M.shrinkage)
_scores = jax.jit(M.dictionary_scores)


def _geometry_of(signed):
    @jax.jit
    def geometry(features, decoder):
        """MCC and its matching in one program (one compile per shape)."""
        score = M.signed_mcc if signed else M.mcc
        match, cosines = M.matched_cosines(features, decoder, signed=signed)
        return {"mcc": score(features, decoder), "match": match, "cosines": cosines}
    return geometry


_geometry, _signed_geometry = _geometry_of(False), _geometry_of(True)
_cross = jax.jit(M.cross_seed_agreement)


def _mcc(features, decoder):
    return _geometry(features, decoder)["mcc"]


def _signed_mcc(features, decoder):
    return _signed_geometry(features, decoder)["mcc"]


def _matched(features, decoder, signed=False):
    out = (_signed_geometry if signed else _geometry)(features, decoder)
    return out["match"], out["cosines"]


# A few shapes only (N < L, N > L, square, a single row or column) so hypothesis compiles few
# programs.
SHAPES = [(1, 3), (3, 1), (4, 4), (3, 5), (5, 3)]


# ----------------------------------------------------------------------------- strategies


@st.composite
def score_matrices(draw):
    """A float32 score matrix of one of SHAPES: continuous values, or small integers (many ties)."""
    shape = draw(st.sampled_from(SHAPES))
    elements = draw(st.sampled_from([
        st.floats(-1.0, 1.0, width=32),
        st.integers(0, 3).map(float),
        st.integers(-2, 2).map(float),
    ]))
    return draw(hnp.arrays(np.float32, shape, elements=elements))


def assert_valid_matching(match: np.ndarray, n: int, l: int) -> None:
    assert match.shape == (n,) and match.dtype == np.int32
    matched = match[match >= 0]
    assert np.all(match[match < 0] == -1)
    assert np.all(matched < l)
    assert len(np.unique(matched)) == len(matched) == min(n, l)  # injective, as many pairs as possible


def total(score: np.ndarray, match: np.ndarray) -> float:
    rows = np.flatnonzero(match >= 0)
    return float(score[rows, match[rows]].astype(np.float64).sum())


# ----------------------------------------------------------------------------- assignment


@pytest.mark.slow
@FAST
@given(score_matrices())
def test_linear_assignment_is_an_optimal_injective_matching(score):
    scipy_opt = pytest.importorskip("scipy.optimize")
    match = np.asarray(_assign(score))
    n, l = score.shape
    assert_valid_matching(match, n, l)
    rows, cols = scipy_opt.linear_sum_assignment(score, maximize=True)
    best = float(score[rows, cols].astype(np.float64).sum())
    assert total(score, match) == pytest.approx(best, rel=1e-5, abs=1e-5 * max(1.0, float(np.abs(score).max()) * n))
    if np.all(score == np.round(score)):  # small integers: float32 arithmetic is exact
        assert total(score, match) == best


def test_linear_assignment_beats_greedy_on_a_hand_case():
    # Greedy takes (0, 0) = 10 and ends with 12; the optimum is 9 + 9 + 1 + 1 = 20.
    score = np.array([[10, 9, 0, 0], [9, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(np.asarray(_assign(score)), [1, 0, 2, 3])
    # N > L: the same trap, with the rows left over getting -1.
    tall = np.zeros((5, 3), np.float32)
    tall[:3] = score[:3, :3]
    np.testing.assert_array_equal(np.asarray(_assign(tall)), [1, 0, 2, -1, -1])


def test_linear_assignment_under_vmap_equals_a_loop():
    rng = np.random.default_rng(0)
    for shape in [(3, 5), (5, 3)]:
        stack = rng.normal(size=(5, *shape)).astype(np.float32)
        batched = np.asarray(jax.jit(jax.vmap(M.linear_assignment))(stack))
        looped = np.stack([np.asarray(_assign(s)) for s in stack])
        np.testing.assert_array_equal(batched, looped)


def test_linear_assignment_jit_equals_eager():
    score = np.random.default_rng(1).normal(size=(4, 4)).astype(np.float32)
    np.testing.assert_array_equal(np.asarray(M.linear_assignment(score)), np.asarray(_assign(score)))


def test_linear_assignment_of_non_finite_scores_is_refused_or_unmatched():
    score = np.array([[np.nan, 1, 0], [2, -np.inf, 0], [0, 3, 1]], np.float32)
    with pytest.raises(ConfigError) as err:
        M.linear_assignment(score)
    assert err.value.field == "score" and "2 non-finite values (NaN or inf) at rows [0, 1]" in str(err.value)
    # Traced, the values cannot be checked: no row is matched rather than a matching that
    # quietly steps around them.
    np.testing.assert_array_equal(np.asarray(_assign(score)), [-1, -1, -1])
    np.testing.assert_array_equal(np.asarray(_assign(np.nan_to_num(score, posinf=0, neginf=0))), [2, 0, 1])


# ----------------------------------------------------------------------------- geometry


def _saelens_mcc(features, decoder, signed=False):
    """MCC as SAELens computes it (sae_lens.synthetic: Hungarian on 1 − |cos| with scipy, the
    mean of the matched |cos|), in float64 numpy; ``signed`` drops the absolute value."""
    scipy_opt = pytest.importorskip("scipy.optimize")
    f = features / np.linalg.norm(features, axis=1, keepdims=True)
    d = decoder / np.linalg.norm(decoder, axis=1, keepdims=True)
    cos = f.astype(np.float64) @ d.astype(np.float64).T
    sim = cos if signed else np.abs(cos)
    rows, cols = scipy_opt.linear_sum_assignment(1 - sim)
    return float(sim[rows, cols].mean())


@pytest.mark.slow
@FAST
@given(st.sampled_from([(5, 7), (7, 5), (6, 6)]), st.integers(0, 2**31 - 1))  # the shapes other tests compile
def test_mcc_is_the_saelens_definition_and_signed_mcc_its_signed_variant(shape, seed):
    rng = np.random.default_rng(seed)
    n, l = shape
    features = rng.normal(size=(n, 4)).astype(np.float32)
    decoder = rng.normal(size=(l, 4)).astype(np.float32)
    assert float(_mcc(features, decoder)) == pytest.approx(_saelens_mcc(features, decoder), abs=1e-5)
    assert float(_signed_mcc(features, decoder)) == pytest.approx(_saelens_mcc(features, decoder, True), abs=1e-5)
    # Both matchings are injective and as large as possible (a permutation when N = L), and
    # each reports the similarity it matched on.
    c = np.asarray(_cos(features, decoder))
    for signed, sim in ((False, np.abs(c)), (True, c)):
        match, cosines = map(np.asarray, _matched(features, decoder, signed))
        assert_valid_matching(match, n, l)
        if n == l:
            np.testing.assert_array_equal(np.sort(match), np.arange(l))
        rows = np.flatnonzero(match >= 0)
        np.testing.assert_allclose(cosines[rows], sim[rows, match[rows]], atol=1e-6)
        assert np.all(np.isnan(cosines[match < 0]))


@FAST
@given(st.integers(0, 2**31 - 1))
def test_mcc_ignores_the_sign_of_decoder_rows_and_signed_mcc_does_not(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(5, 4)).astype(np.float32)
    decoder = rng.normal(size=(7, 4)).astype(np.float32)
    signs = rng.choice([-1.0, 1.0], size=(7, 1)).astype(np.float32)
    base = float(_mcc(features, decoder))
    assert float(_mcc(features, signs * decoder)) == pytest.approx(base, abs=1e-6)
    assert float(_mmcs(features, signs * decoder)) == pytest.approx(float(_mmcs(features, decoder)), abs=1e-6)
    assert float(_uniq(features, signs * decoder)) == float(_uniq(features, decoder))
    assert float(_signed_mcc(features, decoder)) <= base + 1e-6  # |cos| ≥ cos pair by pair
    # The true dictionary, permuted and rescaled: 1 for both; a flipped row costs only the signed.
    features = rng.normal(size=(6, 4)).astype(np.float32)  # (6, 4) as in test_dictionary_equal_to_features...
    truth = rng.uniform(0.1, 10.0, size=(6, 1)).astype(np.float32) * features[rng.permutation(6)]
    assert float(_mcc(features, truth)) == pytest.approx(1.0, abs=1e-5)
    assert float(_signed_mcc(features, truth)) == pytest.approx(1.0, abs=1e-5)
    truth[rng.integers(6)] *= -1
    assert float(_mcc(features, truth)) == pytest.approx(1.0, abs=1e-5)
    # N = L: the signed matching must move the flipped feature off its (now −1) latent, so at
    # least two pairs are of different random directions, each below 1.
    assert float(_signed_mcc(features, truth)) < 1.0 - 1e-3


def test_mcc_and_signed_mcc_on_a_hand_case():
    e0, e1 = np.eye(2, dtype=np.float32)
    features = np.stack([e0, e1])
    decoder = np.stack([-e0, e1, 0.6 * e0 + 0.8 * e1])  # latent 0 points against feature 0
    assert float(_mcc(features, decoder)) == pytest.approx(1.0)  # matched (0, 0) and (1, 1), |cos| 1 each
    match, cosines = map(np.asarray, _matched(features, decoder))
    np.testing.assert_array_equal(match, [0, 1])
    np.testing.assert_allclose(cosines, [1.0, 1.0], atol=1e-6)
    # Signed: feature 0's only positive latent is the diagonal one (0.6); feature 1 keeps latent 1.
    assert float(_signed_mcc(features, decoder)) == pytest.approx((0.6 + 1.0) / 2, abs=1e-6)
    match, cosines = map(np.asarray, _matched(features, decoder, signed=True))
    np.testing.assert_array_equal(match, [2, 1])
    np.testing.assert_allclose(cosines, [0.6, 1.0], atol=1e-6)
    assert float(_mmcs(features, decoder)) == pytest.approx(1.0)
    assert float(_uniq(features, decoder)) == pytest.approx(2 / 3)  # latents 0, 1, 2 → features 0, 1, 1


def test_cosine_similarities_hand_case_and_zero_rows():
    features = np.array([[2, 0], [0, 0], [1, 1]], np.float32)
    decoder = np.array([[3, 0], [0, -1], [0, 0]], np.float32)
    expected = np.array([[1, 0, 0], [0, 0, 0], [np.sqrt(0.5), -np.sqrt(0.5), 0]])
    np.testing.assert_allclose(np.asarray(_cos(features, decoder)), expected, atol=1e-6)


@FAST
@given(st.integers(0, 2**31 - 1))
def test_dictionary_equal_to_features_scores_one(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(6, 4)).astype(np.float32)  # more features than dimensions: superposition
    perm = rng.permutation(6)
    scales = rng.uniform(0.1, 10.0, size=(6, 1)).astype(np.float32)
    decoder = scales * features[perm]
    assert float(_mcc(features, decoder)) == pytest.approx(1.0, abs=1e-5)
    assert float(_signed_mcc(features, decoder)) == pytest.approx(1.0, abs=1e-5)
    assert float(_mmcs(features, decoder)) == pytest.approx(1.0, abs=1e-5)
    assert float(_uniq(features, decoder)) == 1.0
    match, cosines = map(np.asarray, _matched(features, decoder))
    np.testing.assert_array_equal(perm[match], np.arange(6))  # each feature finds its own latent
    np.testing.assert_allclose(cosines, 1.0, atol=1e-5)
    assert float(_cross(features, decoder)) == pytest.approx(1.0, abs=1e-5)


@FAST
@given(st.integers(0, 2**31 - 1))
def test_mcc_is_invariant_to_permuting_and_rescaling_latents(seed):
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(5, 4)).astype(np.float32)
    decoder = rng.normal(size=(7, 4)).astype(np.float32)
    perm = rng.permutation(7)
    scales = rng.uniform(0.1, 10.0, size=(7, 1)).astype(np.float32)
    base = float(_mcc(features, decoder))
    assert float(_mcc(features, scales * decoder[perm])) == pytest.approx(base, abs=1e-5)
    signed = float(_signed_mcc(features, decoder))
    assert float(_signed_mcc(features, scales * decoder[perm])) == pytest.approx(signed, abs=1e-5)
    assert 0.0 <= base <= 1.0 and -1.0 <= signed <= base + 1e-6
    # The one-to-one matching can never beat each feature picking its best latent.
    assert base <= float(_mmcs(features, decoder)) + 1e-6


def test_mmcs_mcc_and_matched_cosines_on_a_hand_case():
    features = np.array([[1, 0], [0, 1]], np.float32)
    decoder = np.array([[2, 0]], np.float32)  # one latent, on feature 0
    assert float(_mmcs(features, decoder)) == pytest.approx(0.5)  # (1 + 0) / 2
    assert float(_mcc(features, decoder)) == pytest.approx(1.0)  # one pair, over min(N, L) = 1
    match, cosines = map(np.asarray, _matched(features, decoder))
    np.testing.assert_array_equal(match, [0, -1])
    assert cosines[0] == pytest.approx(1.0) and np.isnan(cosines[1])
    # Two latents both nearest feature 0: MMCS counts the best twice, MCC must share them out.
    decoder = np.array([[1, 0.2], [1, 0.5]], np.float32)
    c = np.asarray(_cos(features, decoder))
    assert float(_mmcs(features, decoder)) == pytest.approx(c.max(axis=1).mean(), abs=1e-6)
    assert float(_mcc(features, decoder)) == pytest.approx((c[0, 0] + c[1, 1]) / 2, abs=1e-6)


def test_uniqueness_hand_cases():
    e = np.eye(3, dtype=np.float32)
    # Latents 0, 1 both point at feature 0; latents 2, 3 at feature 2: 2 distinct over L = 4.
    decoder = np.stack([e[0], e[0] + 0.1 * e[1], e[2], e[2] + 0.2 * e[0]])
    assert float(_uniq(e, decoder)) == pytest.approx(0.5)
    # A zero latent has no best match (it must not be credited to feature 0).
    assert float(_uniq(e[:2], np.stack([e[1], 0 * e[0]]))) == pytest.approx(0.5)


def test_cross_seed_agreement_is_mcc_between_decoders():
    rng = np.random.default_rng(3)
    a, b = rng.normal(size=(5, 4)).astype(np.float32), rng.normal(size=(7, 4)).astype(np.float32)
    assert float(_cross(a, b)) == pytest.approx(float(_mcc(a, b)), abs=1e-6)
    b[[0, 3]] = 2.0 * a[[1, 4]]  # two shared directions, but not enough to make b equal a
    assert float(_cross(a, b)) < 1.0
    b[:5] = 0.5 * a[[2, 0, 4, 1, 3]]
    assert float(_cross(a, b)) == pytest.approx(1.0, abs=1e-5)


# ----------------------------------------------------------------------------- detection


@FAST
@given(st.integers(0, 2**31 - 1))
def test_latents_that_are_the_features_detect_perfectly(seed):
    rng = np.random.default_rng(seed)
    n, batch = 6, 12  # features (6, 4), as in test_dictionary_equal_to_features_scores_one
    c = rng.uniform(size=(batch, n)).astype(np.float32) * (rng.uniform(size=(batch, n)) < 0.3)
    c[np.arange(n), np.arange(n)] = 1.0  # every feature active at least once
    sigma = rng.permutation(n)  # feature i is latent sigma[i]
    P = np.zeros((n, n), np.float32)
    P[np.arange(n), sigma] = 1.0
    codes = c @ P
    features = rng.normal(size=(n, 4)).astype(np.float32)
    # The matching from the geometry finds the permutation; detection through it is perfect.
    match, _ = _matched(features, P.T @ features)
    np.testing.assert_array_equal(np.asarray(match), sigma)
    out = _detect(c, codes, match)
    for k in ("precision", "recall", "f1"):
        np.testing.assert_array_equal(np.asarray(out[k]), 1.0)
        assert float(out[f"mean_{k}"]) == 1.0


def test_detection_scores_hand_case():
    c = np.zeros((6, 3), np.float32)
    c[[0, 2, 4], 0] = 1.0  # feature 0 active at examples 0, 2, 4; feature 1 never; feature 2 at 1
    c[1, 2] = 2.0
    codes = np.zeros((6, 3), np.float32)
    codes[[0, 1, 3, 4], 2] = 0.5  # latent 2 (feature 0's): TP {0, 4}, FP {1, 3}, FN {2}
    codes[5, 0] = 1.0  # latent 0 (feature 1's): one false positive, nothing to find
    codes[2, 1] = -1.0  # negative codes do not fire
    out = _detect(c, codes, np.array([2, 0, -1], np.int32))
    np.testing.assert_allclose(np.asarray(out["precision"])[:2], [1 / 2, 0.0], atol=1e-7)
    np.testing.assert_allclose(np.asarray(out["recall"])[:2], [2 / 3, 0.0], atol=1e-7)  # 0/0 := 0
    np.testing.assert_allclose(np.asarray(out["f1"])[:2], [4 / 7, 0.0], atol=1e-7)
    assert all(np.isnan(np.asarray(out[k])[2]) for k in ("precision", "recall", "f1"))  # unmatched
    assert float(out["mean_precision"]) == pytest.approx(1 / 4)
    assert float(out["mean_recall"]) == pytest.approx(1 / 3)
    assert float(out["mean_f1"]) == pytest.approx(2 / 7)
    # Never active and never firing: every ratio is 0/0, defined as 0 (not NaN).
    quiet = _detect(np.zeros((4, 1), np.float32), np.zeros((4, 1), np.float32), np.array([0], np.int32))
    assert [float(quiet[k][0]) for k in ("precision", "recall", "f1")] == [0.0, 0.0, 0.0]


# ----------------------------------------------------------------------------- reconstruction


def test_explained_variance_and_shrinkage_known_answers():
    x = np.random.default_rng(4).normal(size=(16, 3)).astype(np.float32)
    x -= x.mean(axis=0)  # centred, so x − x̂ = x/2 leaves a quarter of the variance below
    assert float(_ev(x, x)) == 1.0
    assert float(_ev(x, np.broadcast_to(x.mean(axis=0), x.shape))) == pytest.approx(0.0, abs=1e-6)
    assert float(_ev(x, 0.5 * x)) == pytest.approx(0.75, abs=1e-5)
    assert float(_shrink(x, 0.5 * x)) == pytest.approx(0.5, abs=1e-6)
    assert float(_shrink(x, x)) == pytest.approx(1.0, abs=1e-6)
    # Hand case: residual 0.5 over total variance 2.
    x2 = np.array([[1, 0], [-1, 0]], np.float32)
    assert float(_ev(x2, 0.5 * x2)) == pytest.approx(0.75)
    # A zero input is left out of the shrinkage mean; no variance at all gives NaN.
    x3, xh3 = np.array([[3, 4], [0, 0]], np.float32), np.array([[0, 2.5], [1, 1]], np.float32)
    assert float(_shrink(x3, xh3)) == pytest.approx(0.5)
    assert np.isnan(float(_ev(x3[:1], xh3[:1])))


def test_l0_and_dead_latents_hand_cases():
    codes = np.array([[0, 1, 2, 0], [0, 0, 3, -1]], np.float32)
    assert float(M.l0(codes)) == pytest.approx(1.5)  # (2 + 1) / 2
    assert float(M.dead_latents(codes)) == pytest.approx(0.5)  # latents 0 and 3 never fire
    assert float(M.l0(np.zeros((3, 5)))) == 0.0 and float(M.dead_latents(np.zeros((3, 5)))) == 1.0


# ----------------------------------------------------------------------------- all together


def _problem(seed, n=5, l=7, d=4, batch=16):  # (5, 4), (7, 4) as in the invariance test
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(n, d)).astype(np.float32)
    decoder = rng.normal(size=(l, d)).astype(np.float32)
    c = (rng.uniform(size=(batch, n)) * (rng.uniform(size=(batch, n)) < 0.4)).astype(np.float32)
    codes = np.maximum(rng.normal(size=(batch, l)), 0).astype(np.float32)
    codes[:, 0] = 0.0  # a dead latent
    x = c @ features
    x_hat = codes @ decoder
    return features, decoder, x, x_hat, c, codes


def test_dictionary_scores_agree_with_the_separate_metrics():
    features, decoder, x, x_hat, c, codes = _problem(5)
    out = _scores(features, decoder, x, x_hat, c, codes)
    assert set(out) == {"mmcs", "mcc", "uniqueness", "precision", "recall", "f1",
                        "explained_variance", "shrinkage", "l0", "dead_latents"}
    match, _ = _matched(features, decoder)
    detection = _detect(c, codes, match)
    expected = {"mmcs": _mmcs(features, decoder), "mcc": _mcc(features, decoder),
                "uniqueness": _uniq(features, decoder), "precision": detection["mean_precision"],
                "recall": detection["mean_recall"], "f1": detection["mean_f1"],
                "explained_variance": _ev(x, x_hat), "shrinkage": _shrink(x, x_hat),
                "l0": M.l0(codes), "dead_latents": M.dead_latents(codes)}
    for k, v in expected.items():
        assert out[k].shape == ()
        assert float(out[k]) == pytest.approx(float(v), abs=1e-6), k
    assert float(out["dead_latents"]) == pytest.approx(1 / 7)


def test_dictionary_scores_under_vmap_equal_a_loop():
    problems = [_problem(seed) for seed in range(3)]
    stacked = [np.stack(parts) for parts in zip(*problems)]
    batched = jax.jit(jax.vmap(M.dictionary_scores))(*stacked)
    for i, args in enumerate(problems):
        single = _scores(*args)
        for k, v in single.items():
            np.testing.assert_allclose(np.asarray(batched[k][i]), np.asarray(v), rtol=1e-6, atol=1e-7,
                                       equal_nan=True, err_msg=k)


# ----------------------------------------------------------------------------- frontier


def test_pareto_frontier_hand_case():
    l0 = [1, 2, 2, 3, 1, np.nan, 0.5]
    score = [0.5, 0.7, 0.6, 0.7, 0.5, 0.99, np.nan]
    # (1, .5) twice: identical points do not dominate each other. (2, .6) loses to (2, .7);
    # (3, .7) loses to (2, .7) on L0 alone. NaN points are never on the frontier.
    np.testing.assert_array_equal(M.pareto_frontier(l0, score), [True, True, False, False, True, False, False])
    np.testing.assert_array_equal(M.pareto_frontier([0, 1], [-np.inf, -np.inf]), [True, False])
    grid = M.pareto_frontier(np.array([[1.0, 2.0], [3.0, 0.5]]), np.array([[0.1, 0.2], [0.15, 0.0]]))
    np.testing.assert_array_equal(grid, [[True, True], [False, True]])


# ----------------------------------------------------------------------------- bad input

F, DEC = np.ones((3, 4), np.float32), np.ones((2, 4), np.float32)
C, CODES, X = np.ones((5, 3), np.float32), np.ones((5, 2), np.float32), np.ones((5, 4), np.float32)
MATCH = np.array([0, 1, -1], np.int32)

BAD = [
    ("decoder", lambda: M.cosine_similarities(F, np.ones((2, 5)))),
    ("features", lambda: M.cosine_similarities(np.ones(4), DEC)),
    ("decoder", lambda: M.mmcs(F, np.ones((1, 2, 4)))),
    ("decoder", lambda: M.mcc(F, np.ones((0, 4)))),
    ("decoder", lambda: M.matched_cosines(F, np.ones((2, 3)))),
    ("signed", lambda: M.matched_cosines(F, DEC, signed=1)),
    ("signed", lambda: jax.jit(M.matched_cosines)(F, DEC, signed=True)),  # traced: bind it with partial
    ("features", lambda: M.uniqueness(np.ones((2, 3, 4)), DEC)),
    ("score", lambda: M.linear_assignment(np.ones(3))),
    ("score", lambda: M.linear_assignment(np.ones((2, 3, 3)))),
    ("score", lambda: M.linear_assignment(np.ones((0, 3)))),
    ("score", lambda: M.linear_assignment(np.ones((2, 2), np.complex64))),
    ("codes", lambda: M.detection_scores(C, np.ones((4, 2)), MATCH)),
    ("match", lambda: M.detection_scores(C, CODES, MATCH[:2])),
    ("match", lambda: M.detection_scores(C, CODES, MATCH.astype(np.float32))),
    ("c", lambda: M.detection_scores(np.ones(5), CODES, MATCH)),
    ("x_hat", lambda: M.explained_variance(X, np.ones((5, 3)))),
    ("x_hat", lambda: M.explained_variance(X, np.ones((4, 4)))),
    ("x", lambda: M.shrinkage(np.ones(4), X)),
    ("codes", lambda: M.l0(np.ones(4))),
    ("codes", lambda: M.dead_latents(np.ones((2, 2, 2)))),
    ("decoder_b", lambda: M.cross_seed_agreement(DEC, np.ones((2, 3)))),
    ("decoder_a", lambda: M.cross_seed_agreement(np.ones(4), DEC)),
    ("x", lambda: M.dictionary_scores(F, DEC, np.ones((5, 3)), np.ones((5, 3)), C, CODES)),
    ("x_hat", lambda: M.dictionary_scores(F, DEC, X, np.ones((4, 4)), C, CODES)),
    ("c", lambda: M.dictionary_scores(F, DEC, X, X, np.ones((6, 3)), CODES)),
    ("c", lambda: M.dictionary_scores(F, DEC, X, X, np.ones((5, 2)), CODES)),
    ("codes", lambda: M.dictionary_scores(F, DEC, X, X, C, np.ones((5, 3)))),
    ("codes", lambda: M.dictionary_scores(F, DEC, X, X, C, np.ones((4, 2)))),
    ("score", lambda: M.pareto_frontier([1, 2, 3], [1, 2])),
    # Checks read static shapes only, so they fire under jit as well.
    ("decoder", lambda: jax.jit(M.mcc)(F, np.ones((2, 5)))),
]


@pytest.mark.slow
@pytest.mark.parametrize("name, call", BAD, ids=[f"{i}-{name}" for i, (name, _) in enumerate(BAD)])
def test_bad_input_raises_config_error_naming_the_parameter(name, call):
    with pytest.raises(ConfigError) as err:
        call()
    assert err.value.field == name


# ----------------------------------------------------------------------------- which algorithm matches

def _large_score(shape, seed=3):
    """A score matrix of at least HOST_ASSIGNMENT_MIN_ENTRIES entries, continuous (no ties)."""
    return np.random.default_rng(seed).random(shape).astype(np.float32)


def test_assignment_path_picks_scipy_for_large_concrete_scores_only():
    pytest.importorskip("scipy.optimize")
    side = int(np.ceil(np.sqrt(M.HOST_ASSIGNMENT_MIN_ENTRIES)))
    assert M.assignment_path(np.zeros((side, side), np.float32)) == "scipy"
    assert M.assignment_path(np.zeros((4, 5), np.float32)) == "jax"  # small: JAX
    seen = []
    jax.jit(lambda s: seen.append(M.assignment_path(s)) or s)(np.zeros((side, side), np.float32))
    assert seen == ["jax"]  # traced: JAX


@pytest.mark.slow
@pytest.mark.parametrize("shape", [(1024, 1100), (1100, 1024)], ids=["wide", "tall"])
def test_linear_assignment_by_scipy_equals_the_jax_algorithm(shape):
    pytest.importorskip("scipy.optimize")
    score = _large_score(shape)
    assert M.assignment_path(score) == "scipy"
    host = np.asarray(M.linear_assignment(score))  # concrete and large: scipy on the host
    traced = np.asarray(_assign(score))  # under jit: the pure-JAX Hungarian
    np.testing.assert_array_equal(host, traced)
    assert host.dtype == np.int32 and np.sum(host == -1) == max(0, shape[0] - shape[1])


@pytest.mark.slow
def test_mcc_and_matching_by_scipy_equal_the_jax_path():
    pytest.importorskip("scipy.optimize")
    rng = np.random.default_rng(4)
    features, decoder = rng.normal(size=(1024, 16)).astype(np.float32), rng.normal(size=(1100, 16)).astype(np.float32)
    match, cosines = M.matched_cosines(features, decoder)
    match_j, cosines_j = jax.jit(M.matched_cosines)(features, decoder)
    np.testing.assert_array_equal(np.asarray(match), np.asarray(match_j))
    np.testing.assert_array_equal(np.asarray(cosines), np.asarray(cosines_j))
    assert float(M.mcc(features, decoder)) == pytest.approx(float(jax.jit(M.mcc)(features, decoder)), abs=1e-6)


def test_linear_assignment_without_scipy_falls_back_to_jax(monkeypatch):
    import sys

    monkeypatch.setitem(sys.modules, "scipy.optimize", None)  # `from scipy.optimize import ...` raises ImportError
    side = int(np.ceil(np.sqrt(M.HOST_ASSIGNMENT_MIN_ENTRIES)))
    assert M._host_solver() is None
    assert M.assignment_path(np.zeros((side, side), np.float32)) == "jax"
    score = np.array([[10, 9, 0, 0], [9, 0, 0, 0], [0, 0, 1, 0], [0, 0, 0, 1]], np.float32)
    np.testing.assert_array_equal(np.asarray(M.linear_assignment(score)), [1, 0, 2, 3])


def test_host_matching_of_a_non_finite_score_leaves_every_row_unmatched():
    pytest.importorskip("scipy.optimize")
    score = np.ones((3, 4), np.float32)
    score[1, 2] = np.nan
    np.testing.assert_array_equal(np.asarray(M._assign_host(score)), [-1, -1, -1])
