"""The precision policy (toylab.core.precision), checked in the compiled programs: every
analysis program and the training programs are lowered and each matrix product's precision
config (and operand type) read back; and two reduced-precision runs on CPU (the LLC of a
known-answer case, a short grokking training) compared with full float32, where XLA:CPU
honours what it can (a dtype; it ignores the precision config)."""

from __future__ import annotations

import collections

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toylab
from toylab.analysis import eigen, fourier, hessian, layer_degeneracy, llc
from toylab.analysis import interaction as ia
from toylab.core.config import ConfigError
from toylab.core.family import get_family
from toylab.core.precision import POLICIES, check_precision, dot_precisions, precision_scope
from toylab.core.train import Trainer, make_key
from toylab.testing import cases

RRR = cases.reduced_rank_regression(M=3, N=2, H=2, r=1)  # λ = 5/2, m = 1; a two-layer linear network: dots
LEVEL = {"float32": "HIGHEST", "tf32": "DEFAULT", "bfloat16": "DEFAULT"}


def _dots(fn, *args):
    """(op, precision, operand types) of every matrix product of ``jax.jit(fn)`` lowered."""
    found = dot_precisions(jax.jit(fn).lower(*args).as_text())
    assert found, "the program has no matrix product to check"
    return found


def _assert_policy(found, policy, *, pinned: int = 0):
    """Every product carries the policy's precision (HIGHEST for float32, DEFAULT otherwise),
    but for ``pinned`` products a family pins at HIGHEST in its own code; under bfloat16 some
    products (the loss's) have bfloat16 operands and the rest float32."""
    levels = collections.Counter(level for _, level, _ in found)
    want = LEVEL[policy]
    if policy == "float32":
        assert levels == {"HIGHEST": len(found)}, levels
    else:
        assert levels[want] == len(found) - pinned and levels["HIGHEST"] == pinned, levels
    types = {t for _, _, t in found}
    if policy == "bfloat16":
        assert ("bf16", "bf16") in types, types
        assert types <= {("bf16", "bf16"), ("f32", "f32")}, types
        assert all(level == "DEFAULT" for _, level, t in found if t == ("bf16", "bf16"))
    else:
        assert types == {("f32", "f32")}, types


# ----------------------------------------------------------------------------- the policy's inputs


def test_a_bad_policy_is_a_config_error_naming_the_parameter_value_and_choices():
    with pytest.raises(ConfigError, match=r"precision='fp8': must be one of float32, tf32, bfloat16"):
        check_precision("fp8")
    assert check_precision("fast") == "tf32"
    for call in (lambda: llc.learning_coefficient(RRR.loss, RRR.params, RRR.data, jax.random.key(0), precision="half"),
                 lambda: hessian.hessian_trace(RRR.loss, RRR.params, RRR.data, jax.random.key(0), precision="half"),
                 lambda: layer_degeneracy.activation_nullity(jnp.ones((4, 2)), precision="half"),
                 lambda: fourier.restricted_loss(jnp.zeros((5, 5, 5)), 5, jnp.ones(3, bool), precision="half")):
        with pytest.raises(ConfigError, match=r"^precision='half': must be one of"):
            call()
    with pytest.raises(ConfigError, match=r"^matmul_precision='half': must be one of float32, tf32, bfloat16"):
        get_family("superposition").config(matmul_precision="half")
    assert get_family("superposition").config().matmul_precision == "float32"


# ----------------------------------------------------------------------------- training programs

SMALL = {"superposition": dict(n_features=5, n_hidden=2, batch_size=16),
         "grokking": dict(p=7, d_model=8, n_heads=2, d_mlp=16, warmup_steps=0),
         "dictionaries": dict(n_latents=8, batch_size=16, eval_size=16)}
# its synthetic data generator's products are HIGHEST in its own code (tasks/synthetic_features.py):
# (in one segment, in the whole train, whose init draws data too)
PINNED = {"dictionaries": (3, 4)}


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("family", sorted(SMALL))
def test_the_training_segment_carries_the_configs_precision(family, policy):
    cfg = get_family(family).config(steps=4, log_every=2, matmul_precision=policy, **SMALL[family])
    trainer = Trainer(family, cfg, block_size=None)
    hp = cfg.hparams()
    state = jax.eval_shape(lambda: trainer.init(hp, make_key(0, cfg.prng_impl)))
    found = _dots(lambda st, h, s: trainer.segment(st, h, make_key(s, cfg.prng_impl), 2), state, hp, 0)
    _assert_policy(found, policy, pinned=PINNED.get(family, (0, 0))[0])
    # make_train's pure train is the same loop: the same products
    whole = _dots(toylab.make_train(family, cfg), hp, make_key(0, cfg.prng_impl))
    assert collections.Counter(whole) >= collections.Counter(found)
    _assert_policy(whole, policy, pinned=PINNED.get(family, (0, 0))[1])


@pytest.mark.parametrize("policy", ["float32", "tf32"])
def test_the_ensemble_programs_carry_the_configs_precision(policy):
    cfg = get_family("superposition").config(steps=4, log_every=2, matmul_precision=policy, **SMALL["superposition"])
    trainer = Trainer("superposition", cfg, block_size=2)
    hp = {k: np.full(4, v, np.float32) for k, v in cfg.hparams().items()}
    seeds = np.arange(4, dtype=np.uint32)
    state = jax.eval_shape(trainer._program("init"), hp, seeds)
    seg = trainer._program("segment", 1).lower(state, hp, seeds, {}, np.int32(0)).as_text()
    _assert_policy(dot_precisions(seg), policy)
    # the summary measures (superposition's dimensionalities) pin their one product at HIGHEST
    final = dot_precisions(trainer._program("final").lower(state, hp).as_text())
    assert [level for _, level, _ in final] == ["HIGHEST"]


def test_bfloat16_training_casts_exactly_the_losss_products():
    """Under bfloat16 the products of the loss and its gradient (and only those: the
    evaluation's stay float32) take bfloat16 operands: as many as the loss's value_and_grad
    has on its own. (The hparams are cast too: the transformer's attention-rate alpha, a
    float32 scalar, would otherwise promote every product after the attention pattern.)"""
    family = get_family("grokking")
    cfg = family.config(steps=4, log_every=2, matmul_precision="bfloat16", **SMALL["grokking"])
    trainer = Trainer("grokking", cfg, block_size=None)
    hp = cfg.hparams()
    key = make_key(0, cfg.prng_impl)
    model = family.init(cfg, hp, key)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    batch = family.batch(cfg, hp, key)

    def loss(p):  # what the policy does by hand: bfloat16 parameters, inputs and hparams
        bf16 = lambda t: jax.tree.map(  # noqa: E731
            lambda x: jnp.asarray(x).astype(jnp.bfloat16) if jnp.issubdtype(jnp.result_type(x), jnp.floating) else x, t)
        return family.loss(eqx.combine(bf16(p), static), bf16(batch), cfg, bf16(hp))[0]
    alone = _dots(jax.value_and_grad(loss), params)
    assert {t for _, _, t in alone} == {("bf16", "bf16")}  # no float32 left to promote the loss's products
    n_loss = len(alone)
    state = jax.eval_shape(lambda: trainer.init(hp, key))
    found = _dots(lambda st, h, s: trainer.segment(st, h, make_key(s, cfg.prng_impl), 2), state, hp, 0)
    assert sum(t == ("bf16", "bf16") for _, _, t in found) == n_loss


# ----------------------------------------------------------------------------- analysis programs


@pytest.mark.parametrize("policy", POLICIES)
def test_the_llc_programs_carry_the_precision(policy):
    # traced params: the whole estimate (spectrum at w*, the rule's step size and localization,
    # the chains, the diagnostics at the checkpoints) is one program
    def estimate(params, key):
        res = llc.learning_coefficient(RRR.loss, params, RRR.data, key, draws=8, burnin=2, precision=policy,
                                       **RRR.settings)
        return res.mean, res.step_bias
    _assert_policy(_dots(estimate, RRR.params, jax.random.key(0)), policy)



@pytest.mark.parametrize("policy", POLICIES)
def test_the_hessian_programs_carry_the_precision(policy):
    params, data = RRR.params, RRR.data
    d = sum(p.size for p in params)
    v = jnp.ones(d)
    for kind, iters, arg in (("lanczos", 4, v), ("slq", 4, jnp.ones((2, d))), ("hutchinson", 0, jnp.ones((2, d)))):
        text = hessian._program(kind, RRR.loss, iters, policy).lower(params, data, arg).as_text()
        _assert_policy(dot_precisions(text), policy)
    state = jax.eval_shape(lambda: hessian._lanczos_start(v, 8))
    text = hessian._segment_program(RRR.loss, 4, policy).lower(params, data, state, jnp.asarray(0)).as_text()
    _assert_policy(dot_precisions(text), policy)
    _assert_policy(_dots(lambda p: hessian.hessian(RRR.loss, p, data, precision=policy), params), policy)
    hvp = lambda p, u: hessian.hessian_vector_product(RRR.loss, p, data, precision=policy)[0](u)  # noqa: E731
    _assert_policy(_dots(hvp, params, v), policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_layer_degeneracy_grams_carry_the_precision(policy):
    x = jnp.asarray(np.random.default_rng(0).normal(size=(16, 3)), jnp.float32)
    J = jnp.asarray(np.random.default_rng(1).normal(size=(16, 2, 4)), jnp.float32)
    _assert_policy(_dots(lambda a: layer_degeneracy.activation_nullity(a, precision=policy)[1], x), policy)
    _assert_policy(_dots(lambda j: layer_degeneracy.jacobian_nullity(j, precision=policy)[1], J), policy)


@pytest.mark.parametrize("policy", POLICIES)
def test_the_restricted_and_excluded_losses_carry_the_precision(policy):
    p = 7
    logits = jnp.asarray(np.random.default_rng(0).normal(size=(p, p, p)), jnp.float32)
    key = jnp.asarray([False, True, False, True])
    train = jnp.asarray(np.random.default_rng(1).uniform(size=(p, p)) < 0.5)
    _assert_policy(_dots(lambda lg: fourier.restricted_loss(lg, p, key, precision=policy), logits), policy)
    _assert_policy(_dots(lambda lg: fourier.excluded_loss(lg, p, key, train, precision=policy), logits), policy)


@pytest.mark.parametrize("ambient", POLICIES)
def test_the_interaction_basis_and_eigen_are_highest_whatever_the_ambient_policy(ambient):
    from toylab.models.bilinear import BilinearLayer, init_bilinear_classifier

    shapes = jax.eval_shape(lambda: init_bilinear_classifier(jax.random.key(0), d_in=6, n_classes=4, d_hidden=8,
                                                             d_model=5, n_layers=2, residual=True))
    rng = np.random.default_rng(0)
    model = jax.tree.map(lambda s: jnp.asarray(rng.normal(size=s.shape) / np.sqrt(s.shape[-1]), s.dtype), shapes)
    inputs = jnp.asarray(rng.normal(size=(32, 6)), jnp.float32)
    sections = ia.cut(model)
    with precision_scope(ambient):  # a user's own scope does not reach the basis's products
        for precision in ("float32", "float64"):
            text = eqx.filter_jit(lambda m: ia.interaction_basis(sections, m, inputs, precision=precision).C).lower(
                model).as_text()
            levels = {level for _, level, _ in dot_precisions(text)}
            assert levels == {"HIGHEST"}, (precision, levels)
        layer = BilinearLayer(*(jnp.asarray(rng.normal(size=s), jnp.float32) for s in ((8, 7), (8, 7), (4, 8))))
        found = _dots(lambda l: eigen.class_eigendecomposition(l).vectors, layer)
        found += _dots(lambda B: eigen.hosvd(B).core, jnp.ones((4, 7, 7)))
        found += _dots(lambda l, U: eigen.interaction_matrices(l, U), layer, jnp.ones((3, 4)))
    assert {level for _, level, _ in found} == {"HIGHEST"}


# ----------------------------------------------------------------------------- what reduced precision does on CPU


@pytest.mark.slow
def test_bfloat16_breaks_the_llc_of_a_known_answer_case_and_its_diagnostics_say_so():
    """RRR M=3 H=2 N=2 at r = 1 (λ = 5/2, nβ = n/log n at n = 10⁵): L(w*) = 1 (the noise), so
    nβ·(L(w) − L(w*)) needs L to about 1e-4 relative; bfloat16 rounds it to 2⁻⁷. Measured
    (4 chains × 2000 draws at ε = 4e-6, key 0; float32's spread over keys 0, 1, 2 at 4000
    draws: 2.23, 2.35, 2.02): float32 2.126 (chains' std 0.061), tf32 the same bits (CPU
    ignores the config), bfloat16 −9.3e-5 with every chain
    frozen at w* (R-hat ~1e7, one effective draw): each proposed step changes the loss by less
    than its rounding. The rule's step size refuses bfloat16 outright: the bfloat16 Hessian
    at w* has a negative eigenvalue (−0.002) where float32's smallest is 0."""
    key = jax.random.key(0)
    settings = dict(step_size=4e-6, draws=2000, **RRR.settings)
    full = llc.learning_coefficient(RRR.loss, RRR.params, RRR.data, key, **settings)
    tf32 = llc.learning_coefficient(RRR.loss, RRR.params, RRR.data, key, precision="tf32", **settings)
    low = llc.learning_coefficient(RRR.loss, RRR.params, RRR.data, key, precision="bfloat16", **settings)
    print(f"LLC float32 {float(full.mean):.4f} ± {float(full.std):.4f}, tf32 {float(tf32.mean):.4f}, "
          f"bfloat16 {float(low.mean):.3g} (R-hat {float(low.rhat):.3g})")
    assert 1.5 < float(full.mean) < 3.5 and float(full.rhat) < 1.1
    assert float(tf32.mean) == float(full.mean)  # XLA:CPU ignores the precision config
    assert abs(float(low.mean)) < 0.1  # nowhere near λ: far beyond float32's spread over keys
    assert any("R-hat" in w for w in low.warnings) and any("negative" in w for w in low.warnings)
    assert any("bfloat16" in n for n in low.notes)
    with pytest.raises(ConfigError, match="local minimum"):
        llc.learning_coefficient(RRR.loss, RRR.params, RRR.data, key, precision="bfloat16", **RRR.settings)


@pytest.mark.slow
def test_bfloat16_grokking_training_ends_elsewhere_and_float32_is_bit_identical():
    """p = 23, 300 full-batch steps. Measured: float32 twice (and tf32 too: CPU ignores the
    config) gives the same bits — final loss 0.002824516, train loss 0.001538268; bfloat16
    ends at loss 0.00300312, train loss 0.00163908: 6.3% and 6.6% apart, against no
    run-to-run noise at all. Asserted: above 1% (a float32 rounding is 1e-7 relative)."""
    fields = dict(p=23, d_model=32, n_heads=4, d_mlp=64, steps=300, log_every=100, lr=1e-2)
    out = {}
    for policy in ("float32", "bfloat16"):
        cfg = get_family("grokking").config(matmul_precision=policy, **fields)
        train = jax.jit(toylab.make_train("grokking", cfg))
        out[policy] = {k: np.asarray(v) for k, v in train(cfg.hparams(), make_key(0, cfg.prng_impl)).metrics.items()}
        if policy == "float32":
            again = {k: np.asarray(v) for k, v in train(cfg.hparams(), make_key(0, cfg.prng_impl)).metrics.items()}
            for k in again:
                np.testing.assert_array_equal(again[k], out[policy][k])
    full, low = out["float32"], out["bfloat16"]
    for name in ("loss", "train_loss"):
        rel = abs(float(low[name][-1]) - float(full[name][-1])) / float(full[name][-1])
        print(f"{name}: float32 {float(full[name][-1]):.7g}, bfloat16 {float(low[name][-1]):.7g}, relative {rel:.3f}")
        assert rel > 0.01
    assert float(full["train_accuracy"][-1]) == 1.0 and float(low["train_accuracy"][-1]) == 1.0
