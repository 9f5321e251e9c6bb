"""The local interaction basis against what its definition says, computed independently
(numpy float64 Grams and Jacobian Grams), its invariances, the sections of every lab model,
the ablations, the graph's modules and the Fourier labels."""

import functools

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.analysis import interaction as ia
from toylab.analysis.fourier import grid_tokens
from toylab.core.config import ConfigError
from toylab.models.bilinear import init_bilinear_classifier
from toylab.models.mlp import init_embed_mlp
from toylab.models.superposition import init_toy_model
from toylab.models.transformer import init_transformer

P = 5
TOKENS = jnp.asarray(grid_tokens(P))
LABELS = (TOKENS[:, 0] + TOKENS[:, 1]) % P
_rng = np.random.default_rng(0)
SPARSE = jnp.asarray(_rng.uniform(size=(64, 6)) * (_rng.uniform(size=(64, 6)) < 0.4), jnp.float32)
GAUSS = jnp.asarray(_rng.normal(size=(64, 6)), jnp.float32)
SEEDS = st.integers(0, 2 ** 16)

FAMILIES = ("mlp_onehot_relu", "bilinear_residual")  # each compiled once (~2 s); the bilinear one is 5 node layers deep


def _random_model(init, seed, **kwargs):
    """A model with the structure ``init(key, **kwargs)`` builds and every parameter (biases
    too) drawn by numpy: N(0, 1/fan_in), fan_in the last axis. (Filling the shapes here
    avoids compiling JAX's random number generator for every parameter shape.)"""
    shapes = jax.eval_shape(lambda: init(jax.random.key(0), **kwargs))
    rng = np.random.default_rng(seed)
    return jax.tree.map(lambda x: jnp.asarray(rng.normal(size=x.shape) / np.sqrt(x.shape[-1]), x.dtype), shapes)


def _init(family, seed):
    """(model, inputs) of a tiny random model of ``family``."""
    if family == "mlp_onehot_relu":
        return _random_model(init_embed_mlp, seed, n_in=P, n_out=P, d_hidden=12, embed="onehot"), TOKENS
    if family == "bilinear_residual":
        return _random_model(init_bilinear_classifier, seed, d_in=6, n_classes=4, d_hidden=8, d_model=5, n_layers=2,
                             residual=True), GAUSS
    raise AssertionError(family)


@functools.cache
def _analysis(family):
    """The family's sections and one jitted function of a model (compiled once, reused across
    seeds): activations, LIB and PCA bases, both graphs, and the per-example Jacobians of
    each section composed with the next layer's LIB basis."""
    model, inputs = _init(family, 0)
    s = ia.cut(model)

    @eqx.filter_jit
    def analyse(m):
        acts = s.activations(m, inputs)
        lib, pca = ia.interaction_basis(s, m, inputs), ia.pca_basis(s, m, inputs)
        jacs = []
        for i in range(len(s) - 1):
            g = lambda a, i=i: (s.maps[i](m, a) - lib.mean[i + 1]) @ lib.C[i + 1]  # noqa: E731
            jacs.append(jax.vmap(jax.jacrev(g))(acts[i]))
        return dict(acts=acts, lib=lib, pca=pca, jacs=jacs, lib_edges=ia.interaction_graph(s, m, inputs, lib),
                    pca_edges=ia.interaction_graph(s, m, inputs, pca))
    return s, inputs, analyse


def _gram64(acts):
    a = np.asarray(acts, np.float64)
    x = a - a.mean(0)
    return x.T @ x / len(a)


def _np(x):
    return np.asarray(x, np.float64)


def _same_up_to_sign(x, y, atol):
    """Columns of x equal columns of y up to one sign per column."""
    x, y = _np(x), _np(y)
    signs = np.where(np.sum(x * y, axis=0) < 0, -1.0, 1.0)
    return np.abs(x - y * signs).max() <= atol, np.abs(x - y * signs).max()


# ----------------------------------------------------------------------------- the basis's defining identities


@settings(max_examples=10, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=SEEDS)
def test_lib_diagonalises_the_gram_and_whitens_the_jacobian_gram(family, seed):
    s, _, analyse = _analysis(family)
    out = analyse(_init(family, seed)[0])
    b, acts, jacs = out["lib"], out["acts"], out["jacs"]
    assert b.kind == "lib" and b.names == s.names
    for i in range(len(s)):
        G = _gram64(acts[i])
        C, lam, kept = _np(b.C[i]), _np(b.importance[i]), np.asarray(b.kept[i])
        assert kept.any() and np.all(lam[~kept] == 0) and np.all(C[:, ~kept] == 0)
        assert np.all(np.diff(lam[kept]) <= 1e-6 * lam.max())  # sorted, largest first
        assert np.all(kept[: kept.sum()])  # the kept ones come first
        np.testing.assert_allclose(C.T @ G @ C, np.diag(lam), atol=1e-5 * lam.max())
        np.testing.assert_allclose(_np(b.mean[i]), _np(acts[i]).mean(0), atol=1e-5)
        if i < len(s) - 1:  # C⁺ M′ C⁺ᵀ = I on the kept features, M′ = E[JᵀJ] by numpy
            J = _np(jacs[i])
            Mp = np.einsum("nji,njk->ik", J, J) / len(J)
            Cp = _np(b.C_pinv[i])
            err = np.abs((Cp @ Mp @ Cp.T)[np.ix_(kept, kept)] - np.eye(kept.sum()))
            # float32 rounding in M′ grows by Λ^-½ on each side: allow for it on the least important features
            grow = np.sqrt(lam.max() / lam[kept])
            assert np.all(err <= 1e-5 * np.outer(grow, grow)), (i, err.max(), lam[kept])
            # and C⁺ is C's pseudo-inverse on the kept features
            np.testing.assert_allclose((Cp @ C)[np.ix_(kept, kept)], np.eye(kept.sum()), atol=1e-3)
        else:  # the output layer is its PCA basis, unwhitened: orthonormal columns
            np.testing.assert_allclose((C.T @ C)[np.ix_(kept, kept)], np.eye(kept.sum()), atol=1e-5)


@settings(max_examples=10, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=SEEDS)
def test_pca_diagonalises_the_gram_with_orthonormal_features(family, seed):
    s, _, analyse = _analysis(family)
    out = analyse(_init(family, seed)[0])
    b, acts = out["pca"], out["acts"]
    assert b.kind == "pca"
    for i in range(len(s)):
        G = _gram64(acts[i])
        C, lam, kept = _np(b.C[i]), _np(b.importance[i]), np.asarray(b.kept[i])
        assert kept.any() and np.all(lam[~kept] == 0) and np.all(C[:, ~kept] == 0) and np.all(kept[: kept.sum()])
        np.testing.assert_allclose(C.T @ G @ C, np.diag(lam), atol=1e-5 * lam.max())
        np.testing.assert_allclose(np.sort(lam[kept])[::-1], lam[kept])
        # the variances are the Gram's eigenvalues above the truncation
        ev = np.sort(np.linalg.eigvalsh(G))[::-1]
        np.testing.assert_allclose(lam[kept], ev[: kept.sum()], rtol=1e-4, atol=1e-6 * ev[0])
        assert np.all(ev[kept.sum():] <= 1e-5 * ev[0])
        np.testing.assert_allclose((C.T @ C)[np.ix_(kept, kept)], np.eye(kept.sum()), atol=1e-5)
        np.testing.assert_allclose(_np(b.C_pinv[i]), C.T, atol=1e-7)


@settings(max_examples=10, deadline=None)
@given(family=st.sampled_from(FAMILIES), seed=SEEDS)
def test_edges_are_non_negative_and_zero_on_dropped_features(family, seed):
    s, _, analyse = _analysis(family)
    out = analyse(_init(family, seed)[0])
    for b, edges in ((out["lib"], out["lib_edges"]), (out["pca"], out["pca_edges"])):
        assert len(edges) == len(s) - 1
        for i, e in enumerate(edges):
            e = np.asarray(e)
            assert e.shape == (b.C[i + 1].shape[0], b.C[i].shape[0])
            assert np.all(np.isfinite(e)) and np.all(e >= 0) and e.max() > 0
            assert np.all(e[~np.asarray(b.kept[i + 1])] == 0) and np.all(e[:, ~np.asarray(b.kept[i])] == 0)


def _bilinear_section_jacobians(model):
    """Each section's Jacobian ∂a^{l+1}/∂a^l of the residual bilinear classifier, by hand:
    W_E; I + P(diag(V a) W + diag(W a) V) for a block; W_U."""
    W_E, W_U = _np(model.W_E), _np(model.W_U)
    blocks = [(_np(blk.layer.W), _np(blk.layer.V), _np(blk.layer.P)) for blk in model.blocks]
    jacs = [lambda a: W_E]
    for W, V, Pm in blocks:
        jacs.append(lambda a, W=W, V=V, Pm=Pm: np.eye(len(a)) + Pm @ ((V @ a)[:, None] * W + (W @ a)[:, None] * V))
    return jacs + [lambda a: W_U]


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_edges_are_the_integrated_gradients_in_closed_form(seed):
    """Every section of the residual bilinear classifier is at most quadratic, so the
    integrand ∂f̂^{l+1}_j/∂f̂^l_i along the straight path is linear in α and its integral over
    [0, 1] is its value at α = ½: E[j, i] = mean (f̂_i · [C_{l+1}ᵀ J(μ + ½ C⁺ᵀ f̂) C⁺ᵀ]_{ji})²."""
    s, inputs, analyse = _analysis("bilinear_residual")
    model = _init("bilinear_residual", seed)[0]
    out = analyse(model)
    b = out["lib"]
    for l, jac in enumerate(_bilinear_section_jacobians(model)):
        f = _np(b.features(l, out["acts"][l]))
        mean, Cp, Cn = _np(b.mean[l]), _np(b.C_pinv[l]), _np(b.C[l + 1])
        want = np.mean([(Cn.T @ jac(mean + 0.5 * fx @ Cp) @ Cp.T * fx[None, :]) ** 2 for fx in f], axis=0)
        got = _np(out["lib_edges"][l])
        np.testing.assert_allclose(got, want, atol=2e-4 * want.max(), err_msg=f"block {l}")
        assert want.max() > 0


# ----------------------------------------------------------------------------- invariances


def _reparam_sections():
    """x → z = W1 x (a linear node layer) → h = relu(A⁻¹ z + b1) → out = W2 h + b2: A = I is
    the plain MLP, another A the same function with z's coordinates changed."""
    maps = (lambda m, x: m["W1"] @ x,
            lambda m, z: jax.nn.relu(m["A_inv"] @ z + m["b1"]),
            lambda m, h: m["W2"] @ h + m["b2"])
    return ia.Sections.from_functions(("input", "z", "h", "out"), lambda m, x: x, maps)


REPARAM = _reparam_sections()
REPARAM_X = jnp.asarray(np.random.default_rng(1).normal(size=(48, 5)), jnp.float32)


@eqx.filter_jit
def _reparam_analyse(m):
    lib = ia.interaction_basis(REPARAM, m, REPARAM_X)
    return REPARAM.activations(m, REPARAM_X), lib, ia.pca_basis(REPARAM, m, REPARAM_X), \
        ia.interaction_graph(REPARAM, m, REPARAM_X, lib)


def _random_invertible(rng, d):
    q1, _ = np.linalg.qr(rng.normal(size=(d, d)))
    q2, _ = np.linalg.qr(rng.normal(size=(d, d)))
    return q1 @ np.diag(rng.permutation(np.linspace(0.5, 2.0, d))) @ q2


@settings(max_examples=6, deadline=None)
@given(seed=SEEDS)
def test_lib_is_invariant_under_reparametrising_a_layer_and_pca_is_not(seed):
    rng = np.random.default_rng(seed)
    d_z = 6
    W1 = rng.normal(size=(d_z, 5)) / np.sqrt(5)  # z spans 5 of its 6 directions: one is dropped
    A = _random_invertible(rng, d_z)
    base = dict(W1=W1, A_inv=np.eye(d_z), b1=0.3 * rng.normal(size=d_z), W2=rng.normal(size=(3, d_z)) / np.sqrt(d_z),
                b2=rng.normal(size=3))
    other = dict(base, W1=A @ W1, A_inv=np.linalg.inv(A))
    m0 = {k: jnp.asarray(v, jnp.float32) for k, v in base.items()}
    m1 = {k: jnp.asarray(v, jnp.float32) for k, v in other.items()}
    (acts0, b0, p0, edges0), (acts1, b1, p1, edges1) = _reparam_analyse(m0), _reparam_analyse(m1)
    np.testing.assert_allclose(acts1[-1], acts0[-1], atol=1e-4)  # the same function
    for i in range(4):
        lam0 = _np(b0.importance[i])
        np.testing.assert_allclose(_np(b1.importance[i]), lam0, atol=1e-4 * lam0.max())
        np.testing.assert_array_equal(b0.kept[i], b1.kept[i])
        f0, f1 = b0.features(i, acts0[i]), b1.features(i, acts1[i])
        scale = np.abs(_np(f0)).max()
        ok, err = _same_up_to_sign(f1, f0, 1e-3 * scale)
        assert ok, (i, err, scale)
    assert int(b0.kept[1].sum()) == 5
    for e0, e1 in zip(edges0, edges1):
        np.testing.assert_allclose(e1, e0, atol=1e-3 * float(np.max(e0)))
    # PCA's features of z change with its coordinates (A is not orthogonal)
    f0, f1 = p0.features(1, acts0[1]), p1.features(1, acts1[1])
    ok, err = _same_up_to_sign(f1, f0, 0.05 * np.abs(_np(f0)).max())
    assert not ok and not np.allclose(p0.importance[1], p1.importance[1], rtol=0.05)


@settings(max_examples=5, deadline=None)
@given(seed=SEEDS)
def test_rotating_the_output_leaves_earlier_features_and_all_edges_unchanged(seed):
    s, inputs, analyse = _analysis("mlp_onehot_relu")
    model, _ = _init("mlp_onehot_relu", seed)
    model = eqx.tree_at(lambda m: m.b_out, model, jnp.asarray(np.random.default_rng(seed).normal(size=P), jnp.float32))
    Q, _ = np.linalg.qr(np.random.default_rng(seed + 1).normal(size=(P, P)))
    Q = jnp.asarray(Q, jnp.float32)
    rotated = eqx.tree_at(lambda m: (m.W_out, m.b_out), model, (Q @ model.W_out, Q @ model.b_out))
    out0, out1 = analyse(model), analyse(rotated)
    (acts0, b0), (acts1, b1) = (out0["acts"], out0["lib"]), (out1["acts"], out1["lib"])
    np.testing.assert_allclose(acts1[-1], acts0[-1] @ Q.T, atol=1e-5)
    for i in range(len(s)):
        lam0 = _np(b0.importance[i])
        np.testing.assert_allclose(_np(b1.importance[i]), lam0, atol=1e-4 * lam0.max())
        f0, f1 = b0.features(i, acts0[i]), b1.features(i, acts1[i])
        ok, err = _same_up_to_sign(f1, f0, 1e-3 * np.abs(_np(f0)).max())
        assert ok, (i, err)
    for e0, e1 in zip(out0["lib_edges"], out1["lib_edges"]):
        np.testing.assert_allclose(e1, e0, atol=1e-3 * float(np.max(e0)))


# ----------------------------------------------------------------------------- a network of two independent blocks


def _block_diag(a, b):
    out = np.zeros((a.shape[0] + b.shape[0], a.shape[1] + b.shape[1]))
    out[: a.shape[0], : a.shape[1]] = a
    out[a.shape[0]:, a.shape[1]:] = b
    return out


def _two_blocks(seed=3):
    """A 2-block MLP with block-diagonal weights on the full product of two input sets (the
    empirical cross-block covariance is exactly zero); returns sections, model, inputs and
    each node layer's block of each coordinate."""
    rng = np.random.default_rng(seed)
    W1 = _block_diag(rng.normal(size=(3, 2)), 1.3 * rng.normal(size=(3, 2)))
    W2 = _block_diag(rng.normal(size=(2, 3)), 0.8 * rng.normal(size=(2, 3)))
    model = dict(W1=W1, b1=0.5 + 0.2 * rng.normal(size=6), W2=W2, b2=rng.normal(size=4))
    model = {k: jnp.asarray(v, jnp.float32) for k, v in model.items()}
    S1, S2 = rng.normal(size=(6, 2)), 0.7 * rng.normal(size=(5, 2)) + 0.3
    x = jnp.asarray([np.concatenate([u, v]) for u in S1 for v in S2], jnp.float32)
    maps = (lambda m, x: jax.nn.relu(m["W1"] @ x + m["b1"]), lambda m, h: m["W2"] @ h + m["b2"])
    s = ia.Sections.from_functions(("input", "hidden", "out"), lambda m, x: x, maps)
    blocks = [np.repeat([0, 1], n) for n in (2, 3, 2)]
    return s, model, x, blocks


@functools.cache
def _two_block_graph():
    s, model, x, blocks = _two_blocks()

    @eqx.filter_jit
    def analyse(m):
        b = ia.interaction_basis(s, m, x)
        return b, ia.interaction_graph(s, m, x, b)
    b, edges = analyse(model)
    feature_blocks = []
    for i, coord_block in enumerate(blocks):
        C = np.abs(_np(b.C[i]))
        w0, w1 = C[coord_block == 0].sum(0), C[coord_block == 1].sum(0)
        kept = np.asarray(b.kept[i])
        # every kept feature lives in one block
        assert np.all(np.minimum(w0, w1)[kept] <= 1e-5 * np.maximum(w0, w1)[kept]), (i, w0, w1)
        feature_blocks.append(np.where(kept, (w1 > w0).astype(int), -1))
    return [np.asarray(e) for e in edges], feature_blocks


def test_a_block_diagonal_network_has_no_cross_block_edges_and_its_blocks_are_the_modules():
    edges, fb = _two_block_graph()
    top = max(e.max() for e in edges)
    for i, e in enumerate(edges):
        src, dst = fb[i], fb[i + 1]
        cross = (dst[:, None] >= 0) & (src[None, :] >= 0) & (dst[:, None] != src[None, :])
        within = (dst[:, None] >= 0) & (dst[:, None] == src[None, :])
        assert cross.any() and e[cross].max() <= 1e-6 * top, (i, e[cross].max(), top)
        assert e[within].max() > 1e-3 * top
    labels = ia.graph_modules(edges, 2)
    _assert_modules_are_blocks(labels, fb)
    assert ia.cross_module_share(edges, labels) <= 1e-6
    # no cross edges: modularity is its ceiling for the partition, 1 − Σ (the module's share of degree)²
    deg = np.zeros(2)
    for i, e in enumerate(edges):
        for c in (0, 1):
            deg[c] += e[fb[i + 1] == c].sum() + e[:, fb[i] == c].sum()
    share = deg / deg.sum()
    q = ia.modularity(edges, labels)
    assert q == pytest.approx(1 - np.sum(share ** 2), abs=1e-6) and q > 0.3
    # a partition that cuts across the blocks is worse
    mixed = [np.where(f >= 0, np.arange(len(f)) % 2, -1) for f in fb]
    assert ia.modularity(edges, mixed) < q - 0.1 and ia.cross_module_share(edges, mixed) > 0.1


def _assert_modules_are_blocks(labels, fb):
    assert [len(lab) for lab in labels] == [len(f) for f in fb]
    flat_lab, flat_fb = np.concatenate(labels), np.concatenate(fb)
    np.testing.assert_array_equal(flat_lab < 0, flat_fb < 0)  # the dropped features have no edges
    alive = flat_fb >= 0
    pairs = {(int(a), int(b)) for a, b in zip(flat_fb[alive], flat_lab[alive])}
    assert len(pairs) == 2 and len({a for a, _ in pairs}) == 2 and len({b for _, b in pairs}) == 2, pairs


def test_leiden_recovers_the_blocks():
    pytest.importorskip("leidenalg")
    edges, fb = _two_block_graph()
    labels = ia.graph_modules(edges, method="leiden")
    _assert_modules_are_blocks(labels, fb)
    assert ia.cross_module_share(edges, labels) <= 1e-6


def test_graph_modules_on_a_hand_made_graph():
    # two layers of 4 features: {0,1}→{0,1} and {2,3}→{2,3} strongly, one weak cross edge; feature 3 of
    # the first layer isolated
    e = np.zeros((4, 4))
    e[:2, :2] = [[3.0, 1.0], [2.0, 4.0]]
    e[2:, 2] = [5.0, 1.5]
    e[3, 0] = 1e-3
    labels = ia.graph_modules([e], 2)
    assert labels[0][3] == -1
    assert labels[0][0] == labels[0][1] == labels[1][0] == labels[1][1]
    assert labels[0][2] == labels[1][2] == labels[1][3] != labels[0][0]
    assert ia.cross_module_share([e], labels) == pytest.approx(1e-3 / e.sum())
    # a single module has modularity 0; min_weight leaves out a feature whose edges are all at or below it
    assert ia.modularity([e], [np.zeros(4, int), np.zeros(4, int)]) == pytest.approx(0.0, abs=1e-12)
    assert labels[1][3] >= 0 and ia.graph_modules([e], 2, min_weight=2.0)[1][3] == -1


# ----------------------------------------------------------------------------- sections of every lab model


def _check_sections(model, inputs, reference, subsets, extras=lambda m, x, acts: None):
    """Cut ``model`` at all its node layers and at each of ``subsets``: the activations of
    the last node layer, and the rest of the model run from any node layer, are
    ``reference(model, inputs)``. One jitted call; returns the sections, activations and
    ``extras(m, x, acts)``."""
    s = ia.cut(model)
    subs = [ia.cut(model, subset) for subset in subsets]
    assert s.names == ia.node_layers(model) and [sub.names for sub in subs] == [tuple(x) for x in subsets]

    @eqx.filter_jit
    def run(m, x):
        acts = s.activations(m, x)
        outs = [jax.vmap(lambda a, start=start: s.forward(m, a, start))(acts[start]) for start in range(len(s) - 1)]
        sub_acts = [sub.activations(m, x) for sub in subs]
        sub_outs = [jax.vmap(lambda a, sub=sub: sub.forward(m, a, 0))(sa[0]) for sub, sa in zip(subs, sub_acts)]
        return reference(m, x), acts, outs, sub_acts, sub_outs, extras(m, x, acts)

    full, acts, outs, sub_acts, sub_outs, extra = run(model, inputs)
    assert len(acts) == len(s.names) and all(a.shape[0] == inputs.shape[0] for a in acts)
    np.testing.assert_allclose(acts[-1], full, atol=1e-5)
    for start, out in enumerate(outs):  # from any node layer, the rest of the model is the model
        np.testing.assert_allclose(out, full, atol=1e-5, err_msg=s.names[start])
    for subset, sa, out in zip(subsets, sub_acts, sub_outs):
        for name, a in zip(subset, sa):
            np.testing.assert_allclose(a, acts[s.names.index(name)], atol=1e-5, err_msg=f"{subset}: {name}")
        np.testing.assert_allclose(out, full, atol=1e-5, err_msg=str(subset))
    return s, acts, extra


def _apply(m, x):
    return jax.vmap(m)(x)


def _transformer(n_layers):
    return _random_model(init_transformer, n_layers, d_vocab=P + 1, d_vocab_out=P, d_model=8, n_heads=2, d_mlp=8,
                         n_layers=n_layers)


@pytest.mark.parametrize("n_layers", [1, 2])
def test_transformer_sections(n_layers):
    model = _transformer(n_layers)
    cached = lambda m, x, acts: jax.vmap(lambda t: m(t, return_activations=True)[1])(x)  # noqa: E731
    subsets = [["resid_pre.0", "logits"]] + ([["resid_mid.0", "resid_mid.1", "logits"]] if n_layers == 2 else [])
    s, acts, cache = _check_sections(model, TOKENS, _apply, subsets, cached)
    expected = ["resid_pre.0", "resid_mid.0"] + (["resid_pre.1", "resid_mid.1"] if n_layers == 2 else []) + \
        [f"resid_post.{n_layers - 1}", "logits"]
    assert list(s.names) == expected
    assert acts[0].shape == (P * P, 3 * 8) and acts[-2].shape == (P * P, 8)
    # the model's own cached activations
    np.testing.assert_allclose(acts[1], cache[0]["resid_mid"].reshape(P * P, -1), atol=1e-5)
    np.testing.assert_allclose(acts[-2], cache[-1]["resid_post"][:, -1], atol=1e-5)
    np.testing.assert_allclose(acts[-3], cache[-1]["resid_mid"][:, -1], atol=1e-5)
    if n_layers == 2:
        np.testing.assert_allclose(acts[2], cache[1]["resid_pre"].reshape(P * P, -1), atol=1e-5)


@pytest.mark.parametrize("embed,activation", [("onehot", "relu"), ("sum", "relu"), ("concat", "relu"),
                                              ("onehot", "bilinear"), ("concat", "bilinear")])
def test_embed_mlp_sections(embed, activation):
    model = _random_model(init_embed_mlp, 3, n_in=P, n_out=P, d_hidden=12, d_embed=8, embed=embed,
                          activation=activation)
    neurons = lambda m, x, acts: jax.vmap(lambda t: m(t, return_activations=True)[1][0]["mlp_post"][0])(x)  # noqa: E731
    s, acts, post = _check_sections(model, TOKENS, _apply, [["input", "logits"]], neurons)
    assert s.names == ("input", "mlp_post", "logits")
    np.testing.assert_allclose(acts[1], post, atol=1e-5)
    assert acts[0].shape[1] == {"onehot": 2 * P, "sum": 8, "concat": 16}[embed]
    if embed == "onehot":
        np.testing.assert_array_equal(acts[0], np.concatenate([np.eye(P)[TOKENS[:, 0]], np.eye(P)[TOKENS[:, 1]]], 1))
    if embed == "sum":  # the pairs alone are inputs too
        np.testing.assert_allclose(s.activations(model, TOKENS[:, :2])[-1], acts[-1], atol=1e-6)


@pytest.mark.parametrize("kind", ["linear", "relu_output", "relu_hidden", "abs"])
def test_toy_model_sections(kind):
    model = _random_model(init_toy_model, 4, n_features=6, n_hidden=3, kind=kind)
    s, acts, hidden = _check_sections(model, SPARSE, lambda m, x: m(x), [["input", "output"]],
                                      lambda m, x, acts: m.hidden(x))
    assert s.names == ("input", "hidden", "output")
    np.testing.assert_allclose(acts[1], hidden, atol=1e-6)


@pytest.mark.parametrize("residual,d_model,bias", [(False, None, False), (False, 5, True), (True, 5, False),
                                                   (True, None, True)])
def test_bilinear_classifier_sections(residual, d_model, bias):
    model = _random_model(init_bilinear_classifier, 5, d_in=6, n_classes=4, d_hidden=8, d_model=d_model, n_layers=2,
                          residual=residual, bias=bias)
    s, acts, stream = _check_sections(model, GAUSS, lambda m, x: m(x), [["input", "logits"]],
                                      lambda m, x, acts: m.residual_stream(x))
    names = list(s.names)
    assert ("resid.0" in names) == (d_model is not None)
    assert ("hidden.0" in names) == (not residual) and ("hidden.1" in names) == (not residual)
    assert names[0] == "input" and names[-2:] == ["resid.2", "logits"]
    np.testing.assert_allclose(acts[names.index("resid.2")], stream, atol=1e-5)


def test_flax_sequential_sections():
    pytest.importorskip("flax")
    import flax.linen as nn

    from toylab.models.flax_interop import from_linen

    seq = nn.Sequential((nn.Dense(8), nn.relu, nn.Dense(3)))
    model = _random_model(lambda key: from_linen(seq, key, jnp.zeros((1, 6))), 6)
    s, acts, _ = _check_sections(model, GAUSS, lambda m, x: m(x), [["layers.0", "layers.2"]])
    assert s.names == ("input", "layers.0", "layers.1", "layers.2")
    np.testing.assert_allclose(acts[2], np.maximum(acts[1], 0))


# ----------------------------------------------------------------------------- vmap over seeds


@pytest.mark.slow
def test_interaction_basis_vmaps_over_seeds():
    s, _, analyse = _analysis("mlp_onehot_relu")
    seeds = [11, 12, 13]
    stack = jax.tree.map(lambda *leaves: jnp.stack(leaves), *[_init("mlp_onehot_relu", seed)[0] for seed in seeds])

    stacked = eqx.filter_jit(jax.vmap(lambda m: ia.interaction_basis(s, m, TOKENS)))(stack)
    assert stacked.importance[0].shape == (3, 2 * P)
    for j, seed in enumerate(seeds):
        out = analyse(_init("mlp_onehot_relu", seed)[0])
        one = out["lib"]
        for i in range(len(s)):
            lam = _np(one.importance[i])
            np.testing.assert_allclose(stacked.importance[i][j], lam, atol=1e-4 * lam.max())
            np.testing.assert_array_equal(stacked.kept[i][j], one.kept[i])
            ok, err = _same_up_to_sign(stacked.C[i][j], one.C[i], 1e-3 * np.abs(_np(one.C[i])).max())
            assert ok, (j, i, err)
    assert not np.allclose(stacked.importance[1][0], stacked.importance[1][1], rtol=1e-2)  # the seeds differ


def test_chunks_of_examples_and_float32_give_the_same_basis():
    s, _, analyse = _analysis("mlp_onehot_relu")
    model = _init("mlp_onehot_relu", 21)[0]
    whole = analyse(model)

    @eqx.filter_jit
    def chunked(m):  # 25 examples = 3 chunks of 7 and a padded one of 4 (interaction_graph sums them the same way)
        return ia.interaction_basis(s, m, TOKENS, batch_size=7), ia.interaction_basis(s, m, TOKENS, precision="float32")

    b, b32 = chunked(model)
    for i in range(len(s)):
        lam = _np(whole["lib"].importance[i])
        np.testing.assert_allclose(b.importance[i], lam, atol=1e-5 * lam.max())
        np.testing.assert_allclose(b.mean[i], whole["lib"].mean[i], atol=1e-6)
        # Grams and eigendecompositions in float32: the same features, to float32's precision
        assert b32.C[i].dtype == jnp.float32
        kept = np.asarray(b32.kept[i]) & np.asarray(whole["lib"].kept[i])
        assert kept.sum() >= 2
        np.testing.assert_allclose(_np(b32.importance[i])[kept], lam[kept], atol=1e-4 * lam.max())


# ----------------------------------------------------------------------------- ablations


def _np_scores(logits, labels):
    logits = _np(logits)
    logits = logits - logits.max(1, keepdims=True)
    logp = logits - np.log(np.exp(logits).sum(1, keepdims=True))
    labels = np.asarray(labels)
    return np.mean(logits.argmax(1) == labels), -np.mean(logp[np.arange(len(labels)), labels])


@functools.cache
def _ablation_setup():
    model = _init("mlp_onehot_relu", 8)[0]
    s, _, analyse = _analysis("mlp_onehot_relu")
    out = analyse(model)
    return model, s, out["lib"], out["lib_edges"], out["acts"], _np_scores(jax.jit(_apply)(model, TOKENS), LABELS), \
        out["pca"]


@pytest.mark.slow
def test_feature_ablation_keeping_everything_is_the_model_and_nothing_is_the_mean():
    model, s, b, _, acts, (full_acc, full_loss) = _ablation_setup()[:6]
    for layer in range(len(s)):
        d = acts[layer].shape[1]
        n_kept = int(b.kept[layer].sum())
        acc, loss = ia.feature_ablation(s, model, TOKENS, LABELS, b, layer, [0, n_kept, d])
        assert acc.shape == loss.shape == (3,)
        assert float(acc[1]) == pytest.approx(full_acc) and float(loss[1]) == pytest.approx(full_loss, abs=1e-4)
        assert float(loss[2]) == pytest.approx(full_loss, abs=1e-4)
        at_mean = s.forward(model, jnp.mean(acts[layer], axis=0), layer)
        mean_acc, mean_loss = _np_scores(jnp.broadcast_to(at_mean, (P * P, P)), LABELS)
        assert float(acc[0]) == pytest.approx(mean_acc) and float(loss[0]) == pytest.approx(mean_loss, abs=1e-4)
        assert abs(float(loss[0]) - full_loss) > 1e-3  # and it does matter
    # the PCA basis ablates as well, here against float targets (the model's own outputs): NaN accuracy and
    # the mean squared error, 0 with every direction kept
    pca = _ablation_setup()[6]
    acc, loss = ia.feature_ablation(s, model, TOKENS, acts[-1], pca, 1, [0, 2, 12])
    assert np.all(np.isnan(acc)) and float(loss[2]) == pytest.approx(0.0, abs=1e-8)
    assert float(loss[0]) > float(loss[1]) > 1e-4
    at_mean = s.forward(model, jnp.mean(acts[1], axis=0), 1)
    assert float(loss[0]) == pytest.approx(np.mean(np.sum((_np(acts[-1]) - _np(at_mean)) ** 2, 1)), rel=1e-4)


@pytest.mark.slow
def test_edge_ablation_keeping_every_edge_is_the_model():
    model, s, b, edges, _, (full_acc, full_loss) = _ablation_setup()[:6]
    for layer in range(len(s) - 1):
        n_edges = edges[layer].size
        acc, loss = ia.edge_ablation(s, model, TOKENS, LABELS, b, edges[layer], layer, [0, n_edges // 3, n_edges])
        assert float(acc[2]) == pytest.approx(full_acc) and float(loss[2]) == pytest.approx(full_loss, abs=1e-4)
        # no edge: every next feature at its value for the mean of this layer
        F0 = (s.maps[layer](model, b.mean[layer]) - b.mean[layer + 1]) @ b.C[layer + 1]
        nxt = b.mean[layer + 1] + (F0 * b.kept[layer + 1]) @ b.C_pinv[layer + 1]
        out = s.forward(model, nxt, layer + 1)
        mean_acc, mean_loss = _np_scores(jnp.broadcast_to(out, (P * P, P)), LABELS)
        assert float(loss[0]) == pytest.approx(mean_loss, abs=1e-4) and float(acc[0]) == pytest.approx(mean_acc)
        assert abs(float(loss[0]) - full_loss) > 1e-3


def test_edge_ablation_keeps_the_largest_edges():
    # a linear last block: next feature j is Σ_i ∂_i F_j f_i exactly, so keeping the edge set K gives
    # f̂_j = Σ_{i:(j,i)∈K} ∂_i F_j · f̂_i + F_j(0); check one k against that by hand
    model, s, b, edges, acts, _ = _ablation_setup()[:6]
    layer, k = 1, 7
    e = np.asarray(edges[layer])
    keep = np.zeros(e.size, bool)
    keep[np.argsort(-e.ravel(), kind="stable")[:k]] = True
    keep = keep.reshape(e.shape)
    f = _np(b.features(layer, acts[layer]))
    Jf = _np(b.C_pinv[layer]) @ _np(model.W_out).T @ _np(b.C[layer + 1])  # (d, d_next): ∂F_j/∂f_i at [i, j]
    F0 = (_np(model.W_out) @ _np(b.mean[layer]) + _np(model.b_out) - _np(b.mean[layer + 1])) @ _np(b.C[layer + 1])
    nf = F0 + np.einsum("ni,ij,ji->nj", f, Jf, keep)
    out = _np(b.mean[layer + 1]) + (nf * np.asarray(b.kept[layer + 1])) @ _np(b.C_pinv[layer + 1])
    _, want = _np_scores(out, LABELS)
    _, loss = ia.edge_ablation(s, model, TOKENS, LABELS, b, edges[layer], layer, [k])
    assert float(loss[0]) == pytest.approx(want, abs=1e-4)


def test_fewest_kept_bisects_a_monotone_score():
    calls = []

    def score(k):
        calls.append(k)
        return k

    assert ia.fewest_kept(score, 10, lambda s: s >= 3) == 3
    assert len(calls) <= 6
    assert ia.fewest_kept(score, 10, lambda s: s >= 0) == 0
    assert ia.fewest_kept(score, 10, lambda s: s >= 10) == 10
    assert ia.fewest_kept(score, 10, lambda s: s >= 11) == 11  # even n fails: n + 1
    assert ia.fewest_kept(score, 0, lambda s: True) == 0
    for n in range(1, 9):
        for t in range(n + 1):
            assert ia.fewest_kept(lambda k: k, n, lambda s, t=t: s >= t) == t


def test_fewest_kept_on_the_feature_ablation():
    model, s, b, _, _, (_, full_loss) = _ablation_setup()[:6]
    d = int(b.kept[1].sum())
    losses = np.asarray(ia.feature_ablation(s, model, TOKENS, LABELS, b, 1, np.arange(d + 1))[1])
    k = ia.fewest_kept(lambda k: losses[k], d, lambda loss: loss <= full_loss + 1e-4)
    assert losses[k] <= full_loss + 1e-4 and (k == 0 or losses[k - 1] > full_loss + 1e-4)


@pytest.mark.slow
def test_edges_for_mass():
    assert int(ia.edges_for_mass(jnp.asarray([5.0, 3.0, 1.0, 1.0]), 0.8)) == 2
    assert int(ia.edges_for_mass(jnp.asarray([1.0, 5.0, 1.0, 3.0]), 0.8)) == 2  # order does not matter
    assert int(ia.edges_for_mass(jnp.asarray([5.0, 3.0, 1.0, 1.0]), 0.81)) == 3
    assert int(ia.edges_for_mass(jnp.asarray([5.0, 3.0, 1.0, 1.0]), 0.5)) == 1
    assert int(ia.edges_for_mass(jnp.asarray([5.0, 3.0, 1.0, 1.0]), 1.0)) == 4
    assert int(ia.edges_for_mass(jnp.asarray([[5.0, 0.0], [3.0, 2.0]]), 0.9)) == 3
    assert int(ia.edges_for_mass(jnp.zeros((2, 3)), 0.9)) == 0


# ----------------------------------------------------------------------------- Fourier labels


_fourier_labels = jax.jit(ia.fourier_labels, static_argnums=1)


@pytest.mark.slow
def test_fourier_labels_name_the_term():
    p = 7
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    w = 2 * np.pi / p
    funcs = np.stack([
        np.cos(w * 2 * (a + b)),  # sum at 2
        np.sin(w * 3 * (a + b) + 0.4),  # sum at 3, any phase
        np.cos(w * 2 * a) + np.cos(w * 2 * b),  # unary at 2
        np.cos(w * 1 * (a - b)),  # difference at 1
        np.full((p, p), 2.5),  # const
        np.cos(w * 1 * a) * np.cos(w * 2 * b),  # a product k₁ ≠ k₂
        np.cos(w * 3 * a),  # unary at 3 (one operand only)
        np.sqrt(6) * np.cos(w * (a + b)) + 1.0,  # a mixture: 3/4 of the power in sum at 1, 1/4 constant
    ], axis=-1)
    lab = _fourier_labels(jnp.asarray(funcs, jnp.float32), p)
    n, K = funcs.shape[-1], 3
    assert lab["unary"].shape == lab["sum"].shape == lab["difference"].shape == (K, n)
    assert lab["const"].shape == lab["product"].shape == (n,)
    total = lab["const"] + lab["unary"].sum(0) + lab["sum"].sum(0) + lab["difference"].sum(0) + lab["product"]
    np.testing.assert_allclose(total, 1.0, atol=1e-5)
    tol = 1e-5
    assert float(lab["sum"][1, 0]) == pytest.approx(1.0, abs=tol)
    assert float(lab["sum"][2, 1]) == pytest.approx(1.0, abs=tol)
    assert float(lab["unary"][1, 2]) == pytest.approx(1.0, abs=tol)
    assert float(lab["difference"][0, 3]) == pytest.approx(1.0, abs=tol)
    assert float(lab["const"][4]) == pytest.approx(1.0, abs=tol)
    assert float(lab["product"][5]) == pytest.approx(1.0, abs=tol)
    assert float(lab["unary"][2, 6]) == pytest.approx(1.0, abs=tol)
    assert float(lab["sum"][0, 7]) == pytest.approx(0.75, abs=tol) and float(lab["const"][7]) == pytest.approx(0.25,
                                                                                                             abs=tol)
    # a sum term is no difference term and vice versa
    assert float(lab["difference"][:, 0].sum()) < tol and float(lab["sum"][:, 3].sum()) < tol
    names = ia.label_names(lab)
    assert names[0].startswith("cos(2(a+b))") and "1.00" in names[0]
    assert names[1].startswith("cos(3(a+b))")
    assert names[2].startswith("cos(2a)+cos(2b)")
    assert names[3].startswith("cos(1(a−b))")
    assert names[4].startswith("const")
    assert names[5].startswith("products")
    assert names[7].startswith("cos(1(a+b)) 0.75")
    top2 = ia.label_names(lab, top=2)[7].split(", ")
    assert len(top2) == 2 and top2[1].startswith("const 0.25")
    # vmaps over models
    stacked = jax.jit(jax.vmap(lambda v: ia.fourier_labels(v, p)))(jnp.stack([jnp.asarray(funcs, jnp.float32),
                                                                             -jnp.asarray(funcs, jnp.float32)]))
    np.testing.assert_allclose(stacked["sum"][1], lab["sum"], atol=1e-6)
    np.testing.assert_allclose(stacked["product"][0], lab["product"], atol=1e-6)


# ----------------------------------------------------------------------------- bad input


def _bad_input_setup():
    model, s, _, _, _, _, pca = _ablation_setup()
    return model, s, pca


def test_bad_node_layers():
    model, s, b = _bad_input_setup()
    with pytest.raises(ConfigError, match="^nodes.*'hidden' is not a node layer"):
        ia.cut(model, ["input", "hidden"])
    with pytest.raises(ConfigError, match="^nodes.*model order"):
        ia.cut(model, ["logits", "input"])
    with pytest.raises(ConfigError, match="^nodes.*model order"):
        ia.cut(model, ["input", "input"])
    with pytest.raises(ConfigError, match="^nodes.*at least two"):
        ia.cut(model, ["input"])
    with pytest.raises(ConfigError, match="^nodes"):
        ia.cut(model, "input")
    with pytest.raises(ConfigError, match="^model"):
        ia.cut(object())
    with pytest.raises(ConfigError, match="^model"):
        ia.node_layers({"W": jnp.zeros(3)})
    with pytest.raises(ConfigError, match="^names"):
        ia.Sections.from_functions(["a", "a"], lambda m, x: x, [lambda m, x: x])
    with pytest.raises(ConfigError, match="^maps"):
        ia.Sections.from_functions(["a", "b", "c"], lambda m, x: x, [lambda m, x: x])
    with pytest.raises(ConfigError, match="^embed"):
        ia.Sections.from_functions(["a", "b"], None, [lambda m, x: x])


def test_bad_inputs_and_options():
    model, s, b = _bad_input_setup()
    floats = jnp.zeros((4, 2), jnp.float32)
    tr = _transformer(1)
    ts = ia.cut(tr)
    with pytest.raises(ConfigError, match=r"^inputs has shape \(4, 2\).*\(n, 3\)"):
        ia.interaction_basis(ts, tr, floats)
    with pytest.raises(ConfigError, match="^inputs"):
        ia.interaction_basis(ts, tr, TOKENS[:, :2])
    with pytest.raises(ConfigError, match="^inputs"):
        ia.pca_basis(s, model, floats)
    with pytest.raises(ConfigError, match="^inputs"):
        ia.interaction_graph(s, model, floats, b)
    toy = _random_model(init_toy_model, 0, n_features=6, n_hidden=3)
    with pytest.raises(ConfigError, match="^inputs"):
        ia.cut(toy).activations(toy, jnp.zeros((4, 5)))
    for bad in (-0.1, 1.0, True, "0.1", float("nan")):
        with pytest.raises(ConfigError, match="^truncation"):
            ia.interaction_basis(s, model, TOKENS, truncation=bad)
        with pytest.raises(ConfigError, match="^truncation"):
            ia.pca_basis(s, model, TOKENS, truncation=bad)
    for bad in ("float16", "bfloat16", None, jnp.float64):
        with pytest.raises(ConfigError, match="^precision"):
            ia.interaction_basis(s, model, TOKENS, precision=bad)
    for bad in (0, -3, 1.5, True):
        with pytest.raises(ConfigError, match="^batch_size"):
            ia.interaction_basis(s, model, TOKENS, batch_size=bad)
    for bad in (0, 65, 2.0, True):
        with pytest.raises(ConfigError, match="^n_alpha"):
            ia.interaction_graph(s, model, TOKENS, b, n_alpha=bad)


def test_bad_ablation_arguments():
    model, s, b = _bad_input_setup()
    with pytest.raises(ConfigError, match=r"^labels has shape \(24,\)"):
        ia.feature_ablation(s, model, TOKENS, LABELS[:-1], b, 1, [0])
    with pytest.raises(ConfigError, match="^labels"):
        ia.feature_ablation(s, model, TOKENS, jnp.zeros((P * P, P + 1)), b, 1, [0])
    with pytest.raises(ConfigError, match="^ks.*0..12"):
        ia.feature_ablation(s, model, TOKENS, LABELS, b, 1, [13])
    with pytest.raises(ConfigError, match="^ks"):
        ia.feature_ablation(s, model, TOKENS, LABELS, b, 1, [-1])
    with pytest.raises(ConfigError, match="^ks"):
        ia.feature_ablation(s, model, TOKENS, LABELS, b, 1, [0.5])
    with pytest.raises(ConfigError, match="^ks"):
        ia.feature_ablation(s, model, TOKENS, LABELS, b, 1, [])
    with pytest.raises(ConfigError, match="^layer"):
        ia.feature_ablation(s, model, TOKENS, LABELS, b, 3, [0])
    with pytest.raises(ConfigError, match="^layer"):
        ia.edge_ablation(s, model, TOKENS, LABELS, b, jnp.zeros((P, 12)), 2, [0])
    with pytest.raises(ConfigError, match="^edges"):
        ia.edge_ablation(s, model, TOKENS, LABELS, b, jnp.zeros((12, P)), 1, [0])
    with pytest.raises(ConfigError, match="^ks"):
        ia.edge_ablation(s, model, TOKENS, LABELS, b, jnp.zeros((P, 12)), 1, [61])
    other = ia.cut(model, ["input", "logits"])
    with pytest.raises(ConfigError, match="^basis.*same node layers"):
        ia.feature_ablation(other, model, TOKENS, LABELS, b, 0, [0])
    with pytest.raises(ConfigError, match="^basis"):
        ia.interaction_graph(other, model, TOKENS, b)
    with pytest.raises(ConfigError, match="^basis"):
        ia.interaction_graph(s, model, TOKENS, {"C": b.C})
    for bad in (0, 1.5, -0.2, True):
        with pytest.raises(ConfigError, match="^share"):
            ia.edges_for_mass(jnp.ones(3), bad)


def test_bad_graph_and_label_arguments():
    e = [np.ones((3, 4)), np.ones((2, 3))]
    with pytest.raises(ConfigError, match="^method"):
        ia.graph_modules(e, 2, method="x")
    for bad in (0, 10, 1.5, True, None):
        with pytest.raises(ConfigError, match="^n_modules"):
            ia.graph_modules(e, bad)
    with pytest.raises(ConfigError, match="^edges.*chain"):
        ia.graph_modules([np.ones((3, 4)), np.ones((2, 2))], 2)
    with pytest.raises(ConfigError, match="^edges.*non-negative"):
        ia.graph_modules([-np.ones((3, 4))], 2)
    with pytest.raises(ConfigError, match="^edges"):
        ia.graph_modules([], 2)
    with pytest.raises(ConfigError, match="^edges"):
        ia.modularity(np.ones((3, 4)), [np.zeros(4), np.zeros(3)])
    with pytest.raises(ConfigError, match="^labels"):
        ia.modularity(e, [np.zeros(4), np.zeros(3)])
    with pytest.raises(ConfigError, match="^labels"):
        ia.cross_module_share(e, [np.zeros(4), np.zeros(2), np.zeros(3)])
    with pytest.raises(ConfigError, match=r"^values has shape \(5, 5, 2\)"):
        ia.fourier_labels(jnp.zeros((5, 5, 2)), 7)
    with pytest.raises(ConfigError, match="^values"):
        ia.fourier_labels(jnp.zeros((7, 7)), 7)


@pytest.mark.slow
def test_fourier_labels_even_p_files_the_nyquist_terms():
    p = 6
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    v = np.stack([np.cos(np.pi * a) + np.cos(np.pi * b), np.cos(np.pi * (a + b))], -1)
    labels = ia.fourier_labels(jnp.asarray(v, jnp.float32), p)
    assert labels["unary"].shape == (p // 2, 2)
    np.testing.assert_allclose(np.asarray(labels["unary"])[-1, 0], 1.0, atol=1e-5)
    np.testing.assert_allclose(np.asarray(labels["sum"])[-1, 1], 1.0, atol=1e-5)


def test_tokens_out_of_range_are_refused():
    from toylab.models.transformer import init_transformer

    model = init_transformer(jax.random.key(0), d_vocab=8, d_vocab_out=7, d_model=8, n_heads=2, d_mlp=8)
    with pytest.raises(ConfigError, match=r"inputs.*token values must be in 0\.\.7"):
        ia.cut(model).activations(model, jnp.asarray([[0, 9, 7]]))
