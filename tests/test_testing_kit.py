"""The testing kit (toylab.testing): strategies draw valid objects and refuse impossible
arguments, the known-answer cases hold against the lab's own loss and analyses."""

from __future__ import annotations

import math
import re
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import toylab
from toylab.analysis import dictionaries as dm
from toylab.analysis import fourier as fa
from toylab.analysis import superposition as geo
from toylab.core.config import ConfigError
from toylab.core.family import family_names, get_family
from toylab.groups import Group, group
from toylab.testing import cases, strategies as tst

pytest_plugins = ["pytester"]

FAST = settings(max_examples=25, deadline=None)


# ----------------------------------------------------------------------------- configs

# Fields that hold a size, bounded by max_size (batch sizes by 8 × max_size).
SIZE_FIELDS = {"n_features", "n_hidden", "p", "d_model", "d_mlp", "d_embed", "d_hidden", "hidden", "n_latents", "dim"}


def test_every_family_has_a_config_strategy():
    assert set(family_names()) <= set(tst.CONFIG_FAMILIES)


@pytest.mark.parametrize("family", tst.CONFIG_FAMILIES)
@FAST
@given(data=st.data())
def test_drawn_configs_are_valid_and_bounded(family, data):
    cfg = data.draw(tst.configs(family, max_size=4, max_steps=6))
    cls = get_family(family).config
    assert type(cfg) is cls
    assert cls(**cfg.to_dict()) == cfg  # its fields pass the config's own checks again
    assert 1 <= cfg.steps <= 6 and cfg.steps % cfg.log_every == 0
    for name in SIZE_FIELDS & set(cls.field_info()):
        assert getattr(cfg, name) <= 4, name
    if "batch_size" in cls.field_info():
        assert cfg.batch_size <= 32
    if family == "groups":
        assert group(cfg.group).order <= 4


@pytest.mark.parametrize("family", tst.CONFIG_FAMILIES)
@settings(max_examples=3, deadline=None)
@given(data=st.data())
def test_drawn_configs_build_their_training_program(family, data):
    # Traced, not compiled: the whole loop (init, batches, loss, scan) must type-check.
    cfg = data.draw(tst.configs(family, max_size=4, max_steps=4))
    out = jax.eval_shape(toylab.make_train(family, cfg), cfg.hparams(), toylab.make_key(0, cfg.prng_impl))
    assert out.metrics["loss"].shape == (cfg.steps // cfg.log_every,)
    assert out.steps.shape == (cfg.steps // cfg.log_every,)


SWEEP_BASE = get_family("superposition").config(n_features=3, n_hidden=2, batch_size=16, steps=20, log_every=10)


@pytest.mark.slow
@settings(max_examples=1, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(cfg=tst.configs("superposition", static_from=SWEEP_BASE))
def test_configs_sharing_static_fields_sweep_in_one_program(cfg, compile_counter):
    assert cfg.static_key() == SWEEP_BASE.static_key()
    with compile_counter:
        res = toylab.run_sweep("superposition", cfg, {"feature_probability": [0.1, 0.9], "lr": [1e-3, 1e-2]},
                               seeds=2, quiet=True)
    assert compile_counter.count_of("train_segment") == 1  # 8 runs, one training program
    losses = np.stack([np.asarray(run.metrics["loss"]) for run in res])
    assert losses.shape == (8, 2) and np.all(np.isfinite(losses))


# ----------------------------------------------------------------------------- groups


def _orders(names):
    return [group(n).order for n in names]


def test_group_names_enumerate_every_library_group_in_range():
    names = tst._group_range(1, 8, tst.GROUP_KINDS)
    singles = {f"C{n}" for n in range(1, 9)} | {"D2", "D3", "D4", "S1", "S2", "S3", "A1", "A2", "A3"}
    assert singles <= set(names)
    assert {"C2xC2", "C2xC4", "C2xD2", "C2xS2"} <= set(names) and "C2xC5" not in names
    assert all(1 <= o <= 8 for o in _orders(names))
    assert _orders(names) == sorted(_orders(names))  # shrinking goes to the smallest group
    big = tst._group_range(60, 120, ("symmetric", "alternating"))
    assert set(big) == {"S5", "A5"}


@FAST
@given(tst.groups(min_order=6, max_order=24, kinds=("dihedral", "product")))
def test_groups_are_library_groups_within_bounds(g):
    assert isinstance(g, Group) and 6 <= g.order <= 24
    assert g.name.startswith("D") or "x" in g.name
    assert g is tst._group(g.name)  # built once, shared


@FAST
@given(tst.groups(max_order=24), st.data())
def test_elements_and_irreps_belong_to_their_group(g, data):
    a, b = data.draw(tst.group_elements(g)), data.draw(tst.group_elements(g))
    assert 0 <= a < g.order and 0 <= b < g.order
    rho = data.draw(tst.irreps(g))
    M = rho.matrices
    assert M.shape[0] == g.order
    np.testing.assert_allclose(M[g.mul[a, b]], M[a] @ M[b], atol=1e-10)


@FAST
@given(tst.group_irreps(max_order=24, over="R"))
def test_real_irreps_are_real_orthogonal(pair):
    g, rho = pair
    M = rho.matrices
    assert rho.over == "R" and M.dtype == np.float64
    np.testing.assert_allclose(np.einsum("gji,gjk->gik", M, M), np.broadcast_to(np.eye(rho.dim), M.shape), atol=1e-10)
    np.testing.assert_allclose(M[g.mul], np.einsum("aij,bjk->abik", M, M), atol=1e-10)


# ----------------------------------------------------------------------------- data


@FAST
@given(tst.sparse_feature_batches(max_features=5, max_batch=20), tst.sparse_feature_batches(signed=True))
def test_sparse_batches_have_the_task_support(batch, signed):
    x, p = batch
    assert x.dtype == np.float32 and 1 <= x.shape[0] <= 20 and 1 <= x.shape[1] <= 5 and 0 <= p <= 1
    assert np.all((x >= 0) & (x < 1))
    if p == 0:
        assert not x.any()
    assert np.all((signed.x >= -1) & (signed.x < 1))


@settings(max_examples=2, deadline=None)
@given(tst.sparse_feature_batches(min_batch=20_000, max_batch=20_000, min_features=3, max_features=3,
                                  feature_probability=st.sampled_from([0.05, 0.3, 1.0])))
def test_sparse_batches_are_distributed_as_the_task(batch):
    x, p = batch
    present = x > 0
    n = x.size
    assert abs(present.mean() - p) <= 5 * math.sqrt(p * (1 - p) / n) + 1e-9
    values = x[present].astype(np.float64)  # Uniform[0, 1): mean 1/2, sd 1/√12
    assert abs(values.mean() - 0.5) <= 5 / math.sqrt(12 * values.size)


@FAST
@given(tst.synthetic_generators(max_features=6, max_dim=5, hierarchy=True, correlation=True, noise=False))
def test_generators_are_valid_with_the_structure_asked_for(gen):
    gen.validate()
    assert 1 <= gen.n_features <= 6 and 1 <= gen.dim <= 5
    assert gen.n_parents >= 1 and gen.children_per_parent >= 1 and gen.correlation_rank >= 1
    assert gen.noise_std == 0.0


@FAST
@given(tst.superposition_weights(max_hidden=3, max_features=5, well_scaled=True), tst.orthogonal_matrices(4),
       tst.bilinear_layers(shapes=[(2, 3, 1)], bias=True))
def test_weight_strategies(W, Q, layer):
    assert W.dtype == np.float32 and 1 <= W.shape[0] <= 3 and 1 <= W.shape[1] <= 5
    nonzero = np.abs(W[W != 0])
    assert np.all((nonzero >= 0.125) & (nonzero <= 1.0))
    np.testing.assert_allclose(Q.T @ Q, np.eye(4), atol=1e-12)
    assert (layer.d_in, layer.d_hidden, layer.d_out, layer.bias) == (2, 3, 1, True)


# ----------------------------------------------------------------------------- bad arguments


BAD_ARGUMENTS = [
    (lambda: tst.configs("no_such_family"), "family", "no_such_family"),
    (lambda: tst.configs("superposition", max_size=0), "max_size", 0),
    (lambda: tst.configs("grokking", max_size=1), "max_size", 1),  # p >= 2
    (lambda: tst.configs("superposition", max_steps=-1), "max_steps", -1),
    (lambda: tst.configs("superposition", n_feature=3), "n_feature", 3),
    (lambda: tst.configs("superposition", static_from={"n_features": 3}), "static_from", None),
    (lambda: tst.group_names(max_order=0), "max_order", 0),
    (lambda: tst.groups(min_order=5, max_order=3), "min_order", 5),
    (lambda: tst.groups(max_order=10_000), "max_order", 10_000),
    (lambda: tst.groups(max_order=2.5), "max_order", 2.5),
    (lambda: tst.groups(min_order=7, max_order=7, kinds="symmetric"), "max_order", 7),
    (lambda: tst.group_names(kinds=("cyclic", "quaternion")), "kinds", ("cyclic", "quaternion")),
    (lambda: tst.group_elements("S3"), "group", None),
    (lambda: tst.irreps(group("S3"), over="H"), "over", "H"),
    (lambda: tst.group_irreps(over="Q"), "over", "Q"),
    (lambda: tst.sparse_feature_batches(min_features=5, max_features=2), "min_features", 5),
    (lambda: tst.sparse_feature_batches(max_batch=0), "max_batch", 0),
    (lambda: tst.sparse_feature_batches(feature_probability=1.5), "feature_probability", 1.5),
    (lambda: tst.sparse_feature_batches(signed="yes"), "signed", "yes"),
    (lambda: tst.synthetic_generators(min_dim=0), "min_dim", 0),
    (lambda: tst.synthetic_generators(min_features=5, max_dim=3, orthogonal=True), "max_dim", 3),
    (lambda: tst.synthetic_generators(max_features=1, hierarchy=True), "max_features", 1),
    (lambda: tst.synthetic_generators(noise="some"), "noise", "some"),
    (lambda: tst.synthetic_generators(seed=-1), "seed", -1),
    (lambda: tst.planted_features(batch_size=0), "batch_size", 0),
    (lambda: tst.superposition_weights(max_hidden=0), "max_hidden", 0),
    (lambda: tst.superposition_weights(well_scaled=1), "well_scaled", 1),
    (lambda: tst.orthogonal_matrices(0), "n", 0),
    (lambda: tst.orthogonal_matrices(3, dtype=np.int32), "dtype", None),
    (lambda: tst.bilinear_layers(shapes=[(1, 0, 1)]), "shapes", [(1, 0, 1)]),
    (lambda: tst.bilinear_layers(bias="x"), "bias", "x"),
]


@pytest.mark.parametrize("make, field, value", BAD_ARGUMENTS, ids=[f"{i}-{b[1]}" for i, b in enumerate(BAD_ARGUMENTS)])
def test_impossible_arguments_raise_config_error_naming_them(make, field, value):
    with pytest.raises(ConfigError) as e:
        make()
    assert e.value.field == field
    assert str(e.value).startswith(field) and e.value.allowed and e.value.allowed in str(e.value)
    if value is not None:
        assert e.value.value == value and repr(value) in str(e.value)


# ----------------------------------------------------------------------------- the plugin


def test_float64_enables_x64_inside_the_test(float64):
    assert float64 == jnp.float64
    assert jnp.zeros(2, jnp.float64).dtype == jnp.float64
    assert jnp.asarray(1.0).dtype == jnp.float64


def test_enable_x64_is_scoped():
    from toylab.testing.plugin import enable_x64

    before = jnp.asarray(1.0).dtype
    with enable_x64(True):
        assert jnp.asarray(1.0).dtype == jnp.float64
    assert jnp.asarray(1.0).dtype == before == jnp.float32  # the lab never turns x64 on globally


def test_compile_counter_counts_programs_built_in_its_block(compile_counter):
    def double_plus_one(x):
        return 2 * x + 1

    f = jax.jit(double_plus_one)
    x3, x4 = jnp.ones(3), jnp.ones(4)
    with compile_counter:
        f(x3)
        f(x3)  # cached: no new program
    assert compile_counter.count_of("double_plus_one") == 1
    f(x4)  # outside any block: not counted
    assert compile_counter.count_of("double_plus_one") == 1
    with compile_counter:  # a new block starts from zero
        f(x3)
        f(jnp.ones(5))
    assert compile_counter.count_of("double_plus_one") == 1 and "jit(double_plus_one)" in compile_counter.names
    with pytest.raises(ConfigError, match="text"):
        compile_counter.count_of(3)


def test_profiles_and_their_choice(request):
    from hypothesis import HealthCheck as HC, settings as hsettings

    from toylab.testing.plugin import profile_name, register_profiles

    assert profile_name({}) == "dev" and profile_name({"CI": "true"}) == "ci"
    assert profile_name({"CI": "false"}) == "dev" and profile_name({"CI": "0"}) == "dev"
    assert profile_name({"CI": "1", "HYPOTHESIS_PROFILE": "dev"}) == "dev"
    assert register_profiles()
    ci, dev = hsettings.get_profile("ci"), hsettings.get_profile("dev")
    assert ci.derandomize and ci.deadline is None and ci.print_blob and HC.too_slow in ci.suppress_health_check
    assert not dev.derandomize and dev.deadline is None and HC.too_slow in dev.suppress_health_check
    if request.config.getoption("--hypothesis-profile", None) is None:
        assert hsettings.get_current_profile_name() == profile_name()  # what this session loaded


PLUGIN_TESTS = '''
import jax, jax.numpy as jnp

def test_a(prng_key, float64):
    assert jnp.issubdtype(prng_key.dtype, jax.dtypes.prng_key)
    assert jnp.asarray(1.0).dtype == jnp.float64
    print("KEY_A", jax.random.key_data(prng_key).tolist())

def test_b(prng_key, compile_counter):
    assert jnp.asarray(1.0).dtype == jnp.float32  # float64 of test_a was undone
    x = jnp.ones(2)
    with compile_counter:
        jax.jit(lambda x: x - 1)(x)
    assert compile_counter.count == 1
    print("KEY_B", jax.random.key_data(prng_key).tolist())
'''


def test_plugin_fixtures_in_a_fresh_session(pytester):
    pytester.makepyfile(test_fixtures=PLUGIN_TESTS)
    runs = [pytester.runpytest_inprocess("-p", "no:cacheprovider", "-s", "-q") for _ in range(2)]
    keys = []
    for run in runs:
        run.assert_outcomes(passed=2)
        keys.append(dict(re.findall(r"(KEY_[AB]) (\[[^]]*\])", run.stdout.str())))
    assert set(keys[0]) == {"KEY_A", "KEY_B"}
    assert keys[0] == keys[1]  # fixed across sessions
    assert keys[0]["KEY_A"] != keys[0]["KEY_B"]  # and different per test


NO_HYPOTHESIS = r'''
import sys, importlib.abc

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "hypothesis" or name.startswith("hypothesis."):
            raise ImportError("hypothesis is not installed here")

sys.meta_path.insert(0, Block())
import toylab.testing.plugin as plugin
assert "jax" not in sys.modules and "hypothesis" not in sys.modules, sorted(sys.modules)
assert plugin.register_profiles() is False
import pytest
code = pytest.main(["-q", "-p", "no:cacheprovider", "-p", "no:hypothesispytest", sys.argv[1]])
assert "hypothesis" not in sys.modules
sys.exit(code)
'''


@pytest.mark.slow
def test_plugin_imports_without_jax_and_works_without_hypothesis(pytester):
    pytester.makepyfile(test_fixtures=PLUGIN_TESTS)
    script = pytester.makepyfile(no_hypothesis=NO_HYPOTHESIS)
    pytester.makeini("[pytest]\n")  # not the lab's addopts (xdist workers)
    run = pytester.run(sys.executable, str(script), str(pytester.path / "test_fixtures.py"))
    assert run.ret == 0, run.outlines + run.errlines
    assert any("2 passed" in line for line in run.outlines)


# ----------------------------------------------------------------------------- superposition cases


def _monte_carlo_loss(case, W=None, b=None, n=200_000, seed=0):
    """The lab's reconstruction loss of (W, b) on n fresh batches rows, and its standard error."""
    from toylab.families.superposition import reconstruction_loss
    from toylab.tasks.sparse_features import sparse_features

    cfg = case.config()
    model = case.model()
    if W is not None:
        model = type(model)(jnp.asarray(W, jnp.float32), jnp.asarray(b, jnp.float32), None, "relu_output")
    x = sparse_features(jax.random.key(seed), n, 2, case.feature_probability)
    hp = cfg.hparams()
    per_row = jax.vmap(lambda row: reconstruction_loss(model, row[None], cfg, hp))(x)
    per_row = np.asarray(per_row, np.float64)
    return per_row.mean(), per_row.std() / math.sqrt(n)


POINTS = [(0.3, 1.0), (1.0, 0.1), (3.0, 0.3)]


@pytest.mark.slow
@pytest.mark.parametrize("importance, p", POINTS)
def test_phase_losses_are_the_lab_loss_on_the_family_data(importance, p):
    for case in cases.superposition_phases(importance, p):
        measured, se = _monte_carlo_loss(case, seed=int(1000 * p) + case.phase)
        assert abs(measured - case.expected_loss) <= 4.5 * se, (case.name, measured, case.expected_loss, se)
        assert int(geo.classify_phase(jnp.asarray(case.W, jnp.float32))) == case.phase


def test_which_phases_exist_where():
    assert [c.name for c in cases.superposition_phases(0.3, 1.0)] == ["not represented", "dedicated"]
    assert [c.name for c in cases.superposition_phases(1.0, 0.1)] == list(cases.PHASES)
    with pytest.raises(ConfigError) as e:
        cases.superposition_phase("superposed", 0.3, 1.0)
    assert e.value.field == "phase"


@settings(max_examples=6, deadline=None)
@given(W=st.lists(st.floats(-1.5, 1.5), min_size=2, max_size=2), b=st.lists(st.floats(-0.5, 0.5), min_size=2, max_size=2),
       importance=st.floats(0.1, 10.0), p=st.sampled_from([0.05, 0.4, 1.0]))
def test_closed_form_loss_of_any_parameters_is_the_lab_loss(W, b, importance, p):
    case = cases.superposition_phase(0, importance, p)  # only its data settings are used
    measured, se = _monte_carlo_loss(case, [W], b, seed=7)
    expected = cases.superposition_loss([W], b, importance, p)
    assert abs(measured - expected) <= 4.5 * se + 1e-7, (measured, expected, se)


@pytest.mark.parametrize("importance, p", [(0.5, 0.2), (2.0, 0.05)])
def test_superposed_case_is_a_local_minimum_and_the_others_have_their_formulas(importance, p):
    phases = cases.superposition_phases(importance, p)
    v = p / 3 - p * p / 4
    assert phases[0].expected_loss == pytest.approx(importance * v / 2, rel=1e-12)
    assert phases[1].expected_loss == pytest.approx(v / 2, rel=1e-12)
    for case in phases:  # the integrator agrees with the formulas
        assert cases.superposition_loss(case.W, case.b, importance, p) == pytest.approx(case.expected_loss, rel=1e-9)
    sup = phases[2]
    params = np.array([sup.W[0, 0], sup.W[0, 1], *sup.b])
    for i in range(4):
        for step in (1e-3, -1e-3):
            moved = params.copy()
            moved[i] += step
            assert cases.superposition_loss(moved[:2], moved[2:], importance, p) > sup.expected_loss


def test_lowest_loss_phase_is_the_papers_phase_diagram():
    # Dense features: the more important one takes the dimension; sparse features of
    # comparable importance share it antipodally (Elhage et al., the phase-change figure).
    assert [cases.lowest_loss_phase(r, 1.0) for r in (0.1, 0.3, 0.5, 2.0, 4.0, 10.0)] == [0, 0, 0, 1, 1, 1]
    assert {cases.lowest_loss_phase(r, p) for r in (0.5, 1.0, 2.0) for p in (0.01, 0.03)} == {2}
    # Superposition spreads to less equal importances as features get sparser.
    assert cases.lowest_loss_phase(10.0, 0.3) == 1 and cases.lowest_loss_phase(10.0, 0.03) == 2


@pytest.mark.parametrize("call, field", [
    (lambda: cases.superposition_phase(3, 1.0, 0.1), "phase"),
    (lambda: cases.superposition_phase("antipodal", 1.0, 0.1), "phase"),
    (lambda: cases.superposition_phase(0, 0.0, 0.1), "importance"),
    (lambda: cases.superposition_phase(0, float("nan"), 0.1), "importance"),
    (lambda: cases.superposition_phases(1.0, 0.0), "feature_probability"),
    (lambda: cases.lowest_loss_phase(1.0, 1.5), "feature_probability"),
    (lambda: cases.superposition_loss([[1.0, 0.0, 2.0]], [0, 0], 1.0, 0.1), "W"),
    (lambda: cases.superposition_loss([[1.0, 0.0]], [0, float("inf")], 1.0, 0.1), "b"),
])
def test_superposition_cases_refuse_bad_arguments(call, field):
    with pytest.raises(ConfigError) as e:
        call()
    assert e.value.field == field


# ----------------------------------------------------------------------------- modular cases


@pytest.mark.parametrize("p, freqs, field", [
    (10, (1,), "p"), (1, (1,), "p"), (True, (1,), "p"),
    (9, (3,), "freqs"),  # gcd 3: d = 3 ties the right answer
    (11, (0,), "freqs"), (11, (6,), "freqs"), (11, (2, 2), "freqs"), (11, (), "freqs"), (11, "ab", "freqs"),
])
def test_fourier_case_refuses_bad_arguments(p, freqs, field):
    with pytest.raises(ConfigError) as e:
        cases.fourier_solution_case(p, freqs)
    assert e.value.field == field
    with pytest.raises(ConfigError, match="scale"):
        cases.fourier_solution_case(11, (1,), scale=0.0)


# ----------------------------------------------------------------------------- dictionary cases


@pytest.mark.slow
def test_planted_dictionary_scores_perfectly():
    # Gaussian directions (the encoder a true pseudo-inverse) and spread magnitudes; the
    # orthonormal default is scored through the family in test_dictionaries.py.
    case = cases.planted_dictionary(n_features=5, dim=7, batch_size=300, magnitude_std=0.3, orthogonal=False, seed=3)
    model = case.dictionary
    codes = model.encode(jnp.asarray(case.x))
    scores = jax.jit(dm.dictionary_scores)(case.features, model.directions(), case.x, model.decode(codes), case.c, codes)
    assert set(case.expected) == set(scores)
    for name, value in case.expected.items():
        assert float(scores[name]) == pytest.approx(value, abs=1e-5), name
    assert case.expected["l0"] > 0  # the sample has present features to recover
    np.testing.assert_allclose(np.asarray(codes), case.c, atol=1e-5)


@pytest.mark.parametrize("kwargs, field", [
    (dict(n_features=9, dim=8), "n_features"),
    (dict(batch_size=1), "batch_size"),
    (dict(threshold_fraction=1.0), "threshold_fraction"),
    (dict(magnitude_mean=0.0), "magnitude_mean"),
    (dict(generator="planted"), "generator"),
])
def test_planted_dictionary_refuses_bad_arguments(kwargs, field):
    with pytest.raises(ConfigError) as e:
        cases.planted_dictionary(**kwargs)
    assert e.value.field == field


def test_planted_dictionary_refuses_a_noisy_generator():
    from toylab.tasks.synthetic_features import SyntheticFeatures

    with pytest.raises(ConfigError, match="noise_std"):
        cases.planted_dictionary(generator=SyntheticFeatures(n_features=4, dim=4, mean_active=1.0, noise_std=0.1))
