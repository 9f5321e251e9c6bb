"""Non-finite input never becomes a finite-looking answer (toylab.analysis.dictionaries and
toylab.analysis.interaction): a concrete NaN or inf is refused with a ConfigError naming the
argument; a traced one (under jit) makes what it reaches NaN (or unmatched, -1), while what it
does not reach stays finite."""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.analysis import dictionaries as M
from toylab.analysis import interaction as ia
from toylab.core.config import ConfigError
from toylab.models.superposition import init_toy_model

BAD = [np.nan, np.inf, -np.inf]
BAD_IDS = ["nan", "inf", "-inf"]


def _refused(call, name):
    with pytest.raises(ConfigError) as err:
        call()
    assert err.value.field == name
    assert "non-finite" in str(err.value) and "must be finite" in str(err.value)
    return err.value


def _corrupt(a, value, index):
    a = np.array(a, copy=True)
    a[index] = value
    return a


# ----------------------------------------------------------------------------- dictionaries

_rng = np.random.default_rng(0)
# Square (N = L) so that every feature and every latent is matched and detection reads them all.
FEATURES = _rng.normal(size=(4, 3)).astype(np.float32)
DECODER = (FEATURES + 0.3 * _rng.normal(size=(4, 3))).astype(np.float32)[[2, 0, 3, 1]]
C = (_rng.uniform(size=(6, 4)) * (_rng.uniform(size=(6, 4)) < 0.6)).astype(np.float32)
C[0] = 1.0
CODES = np.maximum(_rng.normal(size=(6, 4)), 0).astype(np.float32)
X = C @ FEATURES
X_HAT = CODES @ DECODER
MATCH = np.array([1, 3, 0, 2], np.int32)

GEOMETRY = ["mmcs", "mcc", "uniqueness", "precision", "recall", "f1"]
SCORE_READS = {"features": GEOMETRY, "decoder": GEOMETRY, "x": ["explained_variance", "shrinkage"],
               "x_hat": ["explained_variance", "shrinkage"], "c": ["precision", "recall", "f1"],
               "codes": ["precision", "recall", "f1", "l0", "dead_latents"]}
SCORE_ARGS = {"features": FEATURES, "decoder": DECODER, "x": X, "x_hat": X_HAT, "c": C, "codes": CODES}

# (function, its arguments by name, the names that take float arrays)
PAIR = {"features": FEATURES, "decoder": DECODER}
FUNCTIONS = [
    (M.cosine_similarities, PAIR),
    (M.mmcs, PAIR),
    (M.mcc, PAIR),
    (M.signed_mcc, PAIR),
    (M.uniqueness, PAIR),
    (M.matched_cosines, PAIR),
    (M.cross_seed_agreement, {"decoder_a": FEATURES, "decoder_b": DECODER}),
    (M.linear_assignment, {"score": FEATURES @ DECODER.T}),
    (M.detection_scores, {"c": C, "codes": CODES, "match": MATCH}),
    (M.explained_variance, {"x": X, "x_hat": X_HAT}),
    (M.shrinkage, {"x": X, "x_hat": X_HAT}),
    (M.l0, {"codes": CODES}),
    (M.dead_latents, {"codes": CODES}),
    (M.dictionary_scores, SCORE_ARGS),
]
CASES = [(f, args, name) for f, args in FUNCTIONS for name in args if name != "match"]
CASE_IDS = [f"{f.__name__}-{name}" for f, _, name in CASES]
_JITTED = {f.__name__: jax.jit(f) for f, _ in FUNCTIONS}  # one compile per function, shared by NaN and inf

ROW, COL = 2, 1  # where the bad value goes: row ROW (an example, feature or latent), column COL


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
@pytest.mark.parametrize("fn, args, name", CASES, ids=CASE_IDS)
def test_dictionary_metrics_refuse_concrete_non_finite_input(fn, args, name, bad):
    corrupted = {**args, name: _corrupt(args[name], bad, (ROW, COL))}
    err = _refused(lambda: fn(**corrupted), name)
    assert f"at rows [{ROW}]" in str(err)
    # The same arrays closed over by a jit trace are concrete too, and refused as well.
    _refused(lambda: jax.jit(lambda: fn(**corrupted))(), name)
    # As a jax array and as a list.
    _refused(lambda: fn(**{**args, name: jnp.asarray(corrupted[name])}), name)
    _refused(lambda: fn(**{**args, name: corrupted[name].tolist()}), name)


def _nan(v):
    return bool(np.all(np.isnan(np.asarray(v, np.float64))))


def _finite(v):
    return bool(np.all(np.isfinite(np.asarray(v, np.float64))))


def _none_finite(v):  # NaN or ±inf everywhere: nothing that reads as a number
    return not np.any(np.isfinite(np.asarray(v, np.float64)))


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
@pytest.mark.parametrize("fn, args, name", CASES, ids=CASE_IDS)
def test_dictionary_metrics_under_jit_never_look_finite(fn, args, name, bad):
    corrupted = {**args, name: _corrupt(args[name], bad, (ROW, COL))}
    out = _JITTED[fn.__name__](**corrupted)
    clean = _JITTED[fn.__name__](**args)
    what = fn.__name__
    if what == "cosine_similarities":  # exactly the row (feature) or column (latent) of the bad one
        cos = np.asarray(out)
        hit = np.zeros(cos.shape, bool)
        if name == "features":
            hit[ROW] = True
        else:
            hit[:, ROW] = True
        assert _nan(cos[hit]) and _finite(cos[~hit])
    elif what == "linear_assignment":
        np.testing.assert_array_equal(np.asarray(out), -1)  # nothing matched
        assert np.all(np.asarray(clean) >= 0)
    elif what == "matched_cosines":
        match, cosines = out
        np.testing.assert_array_equal(np.asarray(match), -1)
        assert _nan(cosines)
    elif what == "detection_scores":
        # c's column COL is feature COL; codes' column COL is latent COL, matched to feature 0.
        feature = COL if name == "c" else int(np.flatnonzero(MATCH == COL)[0])
        for k in ("precision", "recall", "f1"):
            per = np.asarray(out[k])
            assert np.isnan(per[feature]) and _finite(np.delete(per, feature)), (k, per)
            assert _nan(out[f"mean_{k}"]) and _finite(clean[f"mean_{k}"])
    elif what == "dictionary_scores":
        for k, v in out.items():
            if k in SCORE_READS[name]:
                assert _nan(v), (k, v)
            else:  # what does not read the bad argument is untouched
                assert float(v) == pytest.approx(float(clean[k]), nan_ok=False), k
            assert _finite(clean[k]), k
    else:  # a scalar score
        assert _nan(out) and _finite(clean), (what, out, clean)


def test_a_vmapped_stack_poisons_only_its_non_finite_member():
    stack = np.stack([DECODER, _corrupt(DECODER, np.nan, (ROW, 0)), 2.0 * DECODER])
    out = np.asarray(jax.jit(jax.vmap(M.mcc, in_axes=(None, 0)))(FEATURES, stack))
    single = float(_JITTED["mcc"](FEATURES, DECODER))
    assert np.isnan(out[1])
    np.testing.assert_allclose(out[[0, 2]], single, rtol=1e-6)


def test_huge_and_tiny_finite_rows_are_not_zero_rows():
    # Squares beyond float32's range would overflow (or underflow) to a zero norm.
    mcc, uniqueness = _JITTED["mcc"], _JITTED["uniqueness"]
    for scale in (1e25, 1e-25):
        assert float(mcc(FEATURES, scale * DECODER)) == pytest.approx(float(mcc(FEATURES, DECODER)), abs=1e-6)
        assert float(uniqueness(FEATURES, scale * FEATURES)) == 1.0


# ----------------------------------------------------------------------------- interaction basis


def _toy():
    model = init_toy_model(jax.random.key(0), n_features=6, n_hidden=3)
    inputs = np.random.default_rng(1).uniform(size=(32, 6)).astype(np.float32)
    return model, ia.cut(model), inputs


MODEL, SECTIONS, INPUTS = _toy()
LABELS = np.argmax(INPUTS, axis=1).astype(np.int32)  # integer classes of the 6 outputs
TARGETS = INPUTS  # float targets: the toy reconstructs its input


# Jitted: compiling each program once costs a fraction of running the analyses op by op.
@eqx.filter_jit
def _traced_bases(model, inputs):
    return ia.interaction_basis(SECTIONS, model, inputs), ia.pca_basis(SECTIONS, model, inputs)


BASIS = _traced_bases(MODEL, INPUTS)[0]
EDGES = eqx.filter_jit(lambda x, b: ia.interaction_graph(SECTIONS, MODEL, x, b, n_alpha=2))(INPUTS, BASIS)


def _bad_model(value):
    return eqx.tree_at(lambda m: m.W, MODEL, MODEL.W.at[1, ROW].set(value))


def _bad_basis(value):
    return eqx.tree_at(lambda b: b.C[1], BASIS, BASIS.C[1].at[0, 0].set(value))


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_interaction_functions_refuse_concrete_non_finite_input(bad):
    x, model, basis = _corrupt(INPUTS, bad, (ROW, 0)), _bad_model(bad), _bad_basis(bad)
    for fn in (ia.interaction_basis, ia.pca_basis):
        assert f"at rows [{ROW}]" in str(_refused(lambda: fn(SECTIONS, MODEL, x), "inputs"))
        assert "in W at rows [1]" in str(_refused(lambda: fn(SECTIONS, model, INPUTS), "model"))
    _refused(lambda: ia.interaction_graph(SECTIONS, MODEL, x, BASIS), "inputs")
    _refused(lambda: ia.interaction_graph(SECTIONS, model, INPUTS, BASIS), "model")
    assert "in C.1" in str(_refused(lambda: ia.interaction_graph(SECTIONS, MODEL, INPUTS, basis), "basis"))
    _refused(lambda: SECTIONS.activations(MODEL, x), "inputs")
    _refused(lambda: SECTIONS.activations(model, INPUTS), "model")
    _refused(lambda: SECTIONS.activations(MODEL, {"x": x}), "inputs")  # any pytree of inputs
    _refused(lambda: SECTIONS.forward(MODEL, x[ROW], 0), "a")
    _refused(lambda: SECTIONS.forward(model, INPUTS[0], 0), "model")
    _refused(lambda: BASIS.features(0, x), "activations")
    _refused(lambda: BASIS.reconstruct(0, x), "features")
    outputs = jax.vmap(MODEL)(jnp.asarray(INPUTS))
    _refused(lambda: ia.output_scores(_corrupt(outputs, bad, (ROW, 0)), LABELS), "outputs")
    _refused(lambda: ia.output_scores(outputs, _corrupt(TARGETS, bad, (ROW, 0))), "labels")
    for ablate, extra in ((ia.feature_ablation, ()), (ia.edge_ablation, (EDGES[0],))):
        def run(m=MODEL, xs=INPUTS, labels=LABELS, b=BASIS, extra=extra):
            return ablate(SECTIONS, m, xs, labels, b, *extra, 0, [1])
        _refused(lambda: run(xs=x), "inputs")
        _refused(lambda: run(m=model), "model")
        _refused(lambda: run(labels=_corrupt(TARGETS, bad, (ROW, 0))), "labels")
        _refused(lambda: run(b=basis), "basis")
    _refused(lambda: ia.edge_ablation(SECTIONS, MODEL, INPUTS, LABELS, BASIS, _corrupt(EDGES[0], bad, (1, 1)), 0,
                                      [1]), "edges")
    bad_edges = [_corrupt(EDGES[0], bad, (1, 1)), EDGES[1]]
    _refused(lambda: ia.edges_for_mass(bad_edges[0]), "edges")
    _refused(lambda: ia.graph_modules(bad_edges, 2), "edges")
    labels = ia.graph_modules(EDGES, 2)
    _refused(lambda: ia.modularity(bad_edges, labels), "edges")
    _refused(lambda: ia.cross_module_share(bad_edges, labels), "edges")
    float_labels = [lab.astype(np.float64) for lab in labels]
    float_labels[1] = _corrupt(float_labels[1], bad, 0)
    _refused(lambda: ia.modularity(EDGES, float_labels), "labels")
    _refused(lambda: ia.cross_module_share(EDGES, float_labels), "labels")
    values = np.random.default_rng(2).normal(size=(5, 5, 3)).astype(np.float32)
    _refused(lambda: ia.fourier_labels(_corrupt(values, bad, (1, 2, 0)), 5), "values")
    shares = {k: np.asarray(v) for k, v in ia.fourier_labels(values, 5).items()}
    _refused(lambda: ia.label_names({**shares, "sum": _corrupt(shares["sum"], bad, (0, 1))}), "labels")


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
@pytest.mark.parametrize("where", ["inputs", "model"])
def test_a_traced_non_finite_basis_is_nan_not_zero(where, bad):
    model, inputs = (MODEL, _corrupt(INPUTS, bad, (ROW, 0))) if where == "inputs" else (_bad_model(bad), INPUTS)
    for basis in _traced_bases(model, inputs):
        for layer in range(len(SECTIONS)):
            if basis.kind == "pca" and where == "model" and layer == 0:
                # PCA of the input layer reads the inputs alone; the LIB one reads the model's Jacobians.
                assert _finite(basis.importance[0]) and np.any(np.asarray(basis.kept[0]))
                continue
            # Zero importances and zero columns would read as "nothing important here".
            assert _nan(basis.importance[layer]) and _nan(basis.C[layer]) and _nan(basis.C_pinv[layer])
            assert not np.any(np.asarray(basis.kept[layer]))
    lib, pca = _traced_bases(MODEL, INPUTS)
    assert all(_finite(lam) and np.any(np.asarray(k)) for b in (lib, pca) for lam, k in zip(b.importance, b.kept))


@eqx.filter_jit
def _traced_downstream(inputs, basis, edges, targets):
    graph = ia.interaction_graph(SECTIONS, MODEL, inputs, basis, n_alpha=2)
    feature = ia.feature_ablation(SECTIONS, MODEL, inputs, LABELS, basis, 1, jnp.asarray([0, 2]))
    edge = ia.edge_ablation(SECTIONS, MODEL, inputs, LABELS, basis, edges, 0, jnp.asarray([0, 5]))
    fitted = ia.feature_ablation(SECTIONS, MODEL, inputs, targets, basis, 1, jnp.asarray([3]))
    return graph, feature, edge, fitted, ia.edges_for_mass(edges), ia.output_scores(jax.vmap(MODEL)(inputs), LABELS)


@pytest.mark.parametrize("bad", BAD, ids=BAD_IDS)
def test_traced_non_finite_input_makes_graph_ablations_and_counts_nan(bad):
    clean = _traced_downstream(INPUTS, BASIS, EDGES[0], TARGETS)
    graph, feature, edge, fitted, mass, scores = clean
    assert all(_finite(e) for e in graph) and _finite(feature) and _finite(edge) and _finite(fitted[1])
    assert _finite(mass) and float(mass) == int(ia.edges_for_mass(EDGES[0])) and _finite(scores)

    graph, feature, edge, fitted, mass, scores = _traced_downstream(_corrupt(INPUTS, bad, (ROW, 0)), BASIS,
                                                                     EDGES[0], TARGETS)
    # Every edge reads every example: NaN, or inf where an infinite input's attribution is.
    assert all(_none_finite(e) for e in graph)
    assert _nan(feature) and _nan(edge) and _nan(fitted) and _nan(scores)
    assert _finite(mass)  # the edges were given, not computed from the inputs

    _, feature, edge, fitted, _, _ = _traced_downstream(INPUTS, _bad_basis(bad), EDGES[0], TARGETS)
    assert _nan(feature) and _nan(edge) and _nan(fitted)

    graph, feature, edge, fitted, mass, scores = _traced_downstream(INPUTS, BASIS, _corrupt(EDGES[0], bad, (1, 1)),
                                                                     TARGETS)
    assert _nan(edge) and _nan(mass)  # which edges are kept is undefined
    assert _finite(feature) and _finite(scores)  # these never read the edges

    fitted = _traced_downstream(INPUTS, BASIS, EDGES[0], _corrupt(TARGETS, bad, (ROW, 0)))[3]
    assert _nan(fitted)  # float targets: accuracy is NaN anyway, and the loss is too


def test_traced_non_finite_values_give_nan_fourier_shares_for_that_direction_only():
    values = np.random.default_rng(2).normal(size=(5, 5, 3)).astype(np.float32)
    labels = jax.jit(ia.fourier_labels, static_argnums=1)(_corrupt(values, np.nan, (1, 2, 0)), 5)
    for k, v in labels.items():
        v = np.asarray(v)
        assert _nan(v[..., 0]) and _finite(v[..., 1:]), k


def test_a_vmapped_basis_poisons_only_its_non_finite_member():
    stack = np.stack([INPUTS, _corrupt(INPUTS, np.nan, (ROW, 0))])
    lib = eqx.filter_jit(jax.vmap(lambda x: ia.interaction_basis(SECTIONS, MODEL, x)))(stack)
    for layer in range(len(SECTIONS)):
        assert _nan(lib.importance[layer][1]) and not np.any(np.asarray(lib.kept[layer][1]))
        np.testing.assert_allclose(lib.importance[layer][0], BASIS.importance[layer], rtol=1e-4,
                                   atol=1e-6 * float(np.max(BASIS.importance[layer])))


def test_the_accelerator_check_reads_a_concrete_array_inside_a_trace():
    # Host arrays are checked with numpy; an accelerator's in place, which this CPU run can only
    # reach by asking for it. A closed-over jax array is concrete, yet jnp inside the trace would
    # trace it: the check must still see its values.
    clean, bad = jnp.asarray(DECODER), jnp.asarray(_corrupt(DECODER, np.nan, (ROW, COL)))
    seen = {}

    from toylab.analysis._validate import _concretely_finite

    def probe(x):
        seen["clean"], seen["bad"] = _concretely_finite(clean, host=False), _concretely_finite(bad, host=False)
        return x
    jax.jit(probe)(1.0)
    assert seen == {"clean": True, "bad": False}
    assert _concretely_finite(clean, host=True) and not _concretely_finite(bad, host=True)
