"""The grokking family: the task, the models, the float64 loss and the Fourier analysis."""

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import example, given, settings, strategies as st

import toylab
from toylab.tasks.table import program_config
from toylab.analysis import fourier as fa
from toylab.core.config import ConfigError
from toylab.tasks.losses import weighted_cross_entropy
from toylab.core.train import stack_hparams
from toylab.families.grokking import GrokkingConfig, train_rows
from toylab.models.mlp import EmbedMLP, fourier_solution
from toylab.models.transformer import init_transformer
from toylab.tasks.modular import corrupted_mask, modular_table, noisy_labels, train_mask
from toylab.testing import cases

PRIMES = [p for p in range(3, 48) if all(p % d for d in range(2, p))]


# ----------------------------------------------------------------------------- the task


@pytest.mark.parametrize("op,fn", [("+", lambda a, b, p: (a + b) % p), ("-", lambda a, b, p: (a - b) % p),
                                   ("*", lambda a, b, p: (a * b) % p), ("a**2+a*b+b**2", lambda a, b, p: (a * a + a * b + b * b) % p)])
def test_table_computes_the_operation_on_every_pair(op, fn):
    t = modular_table(11, op, data_seed=3)
    assert t.n == 121 and len({(a, b) for a, b in zip(t.a, t.b)}) == 121
    np.testing.assert_array_equal(t.c, fn(t.a.astype(int), t.b.astype(int), 11))
    np.testing.assert_array_equal(t.tokens()[:, 2], 11)


def test_division_excludes_zero_and_inverts_multiplication():
    t = modular_table(13, "/")
    assert t.n == 13 * 12 and (t.b != 0).all()
    np.testing.assert_array_equal((t.c.astype(int) * t.b) % 13, t.a)


@settings(max_examples=25)
@given(f=st.floats(0.01, 1.0), xi=st.floats(0.0, 0.99), seed=st.integers(0, 5))
def test_train_mask_and_label_noise_counts(f, xi, seed):
    t = modular_table(17, "+", data_seed=seed)
    n_train = max(math.floor(f * t.n + 1e-4), 1)
    mask = np.asarray(train_mask(t.n, f))
    assert mask.sum() == n_train and mask[:n_train].all()  # a prefix of the split order
    corrupted = np.asarray(corrupted_mask(t, f, xi))
    assert corrupted.sum() == math.floor(xi * n_train + 1e-4)
    assert not corrupted[~mask].any()  # held-out labels are never corrupted
    labels = np.asarray(noisy_labels(t, f, xi))
    np.testing.assert_array_equal(labels[~corrupted], t.c[~corrupted])
    assert ((labels >= 0) & (labels < 17)).all()


@pytest.mark.parametrize("fields,needle", [
    ({"p": 1}, "p=1"),
    ({"p": 12, "op": "/"}, "op='/'"),
    ({"p": 12, "op": "*"}, "not prime"),
    ({"train_fraction": 0.0}, "train_fraction"),
    ({"train_fraction": 1.5}, "train_fraction"),
    ({"label_noise": 1.0}, "label_noise"),
    ({"label_noise": -0.1}, "label_noise"),
    ({"d_model": 130, "n_heads": 4}, "n_heads=4: must divide d_model=130"),
    ({"op": "a + import"}, "op"),
    ({"op": "a + c"}, "unknown name 'c'"),
    ({"train_fraction": 0.5, "train_capacity": 0.3}, "train_capacity"),
    ({"model": "lstm"}, "model"),
])
def test_bad_config_names_the_field(fields, needle):
    with pytest.raises(ConfigError, match=needle.replace("(", r"\(").replace("*", r"\*")):
        GrokkingConfig(**fields)


def test_expressions_are_exact_and_checked_on_every_pair():
    t = modular_table(7, "a**40 + 3*b")  # a**40 overflows int64; the table must not
    np.testing.assert_array_equal(t.c, [(int(a) ** 40 + 3 * int(b)) % 7 for a, b in zip(t.a, t.b)])
    with pytest.raises(ConfigError, match="op"):
        GrokkingConfig(p=7, op="a // b")
    with pytest.raises(ConfigError, match="ZeroDivisionError"):  # only b = 5 divides by zero
        GrokkingConfig(p=7, op="a // (b - 5)")
    with pytest.raises(ConfigError, match="exponents"):
        GrokkingConfig(p=7, op="a + 9**9**9")
    with pytest.raises(ConfigError, match="data_seed"):
        modular_table(7, "+", data_seed=-1)
    with pytest.raises(ConfigError, match="p=7.5"):
        modular_table(7.5, "+")


def test_sum_projections_at_even_p():
    # At even p, sin(π(a+b)) vanishes on the grid: the frequency p/2 has one direction only.
    p = 10
    a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
    L = np.zeros((p, p, p), np.float32)
    L[:, :, 0] = np.cos(np.pi * (a + b))
    L[:, :, 1] = np.cos(2 * np.pi * 2 * (a + b) / p)
    mask = np.zeros(p // 2 + 1, bool)  # indexed by frequency
    mask[p // 2] = True
    r = np.asarray(fa.restricted_logits(L, p, mask))
    np.testing.assert_allclose(r[:, :, 0], L[:, :, 0], atol=1e-5)
    np.testing.assert_allclose(r[:, :, 1], 0.0, atol=1e-5)  # frequency 2 is not kept
    mask[2] = True
    np.testing.assert_allclose(fa.restricted_logits(L, p, mask), L, atol=1e-5)
    np.testing.assert_allclose(fa.excluded_logits(L, p, mask), 0.0, atol=1e-5)
    mask[0] = True  # entry 0 (the constant) is not a frequency of a+b: ignored
    np.testing.assert_allclose(fa.excluded_logits(L, p, mask), 0.0, atol=1e-5)
    with pytest.raises(ValueError, match="key_mask.*indexed by frequency"):  # the old (⌊p/2⌋,) layout
        fa.restricted_logits(L, p, mask[:-1])


@pytest.mark.slow
def test_fourier_ablations_keep_all_and_remove_all():
    p = 11
    t = init_transformer(jax.random.key(3), d_vocab=p + 1, d_vocab_out=p, d_model=16, n_heads=2, d_mlp=24)
    every = np.ones(p // 2 + 1, bool)
    full = float(fa.cross_entropy(fa.grid_logits(t, p).reshape(p * p, p), fa.sum_labels(p).ravel()))
    assert float(fa.embedding_ablation_loss(t, p, every, keep=True)) == pytest.approx(full, rel=1e-4)
    assert float(fa.neuron_ablation_loss(t, p, every, keep=True)) == pytest.approx(full, rel=1e-4)
    # Removing every frequency makes all tokens' embeddings equal: the logits cannot depend on
    # (a, b), so the loss is at least that of the best constant guess, log p.
    assert float(fa.embedding_ablation_loss(t, p, every, keep=False)) >= math.log(p) - 1e-4
    with pytest.raises(ValueError, match="neuron_ipr needs an embedding MLP"):
        fa.neuron_ipr(t, p)
    with pytest.raises(ValueError, match="p=13: the model reads 11"):
        fa.grid_logits(t, 13)


# ----------------------------------------------------------------------------- the models


def _reference_transformer(model, tokens, alpha):
    """Every position through every layer (no last-position shortcut), written plainly."""
    x = model.W_E.T[tokens] + model.W_pos[: len(tokens)]
    n = len(tokens)
    for blk in model.blocks:
        heads = []
        for h in range(blk.W_Q.shape[0]):
            q, k, v = x @ blk.W_Q[h].T, x @ blk.W_K[h].T, x @ blk.W_V[h].T
            s = q @ k.T / math.sqrt(q.shape[-1])
            s = jnp.where(jnp.tril(jnp.ones((n, n), bool)), s, -jnp.inf)
            uniform = jnp.tril(jnp.ones((n, n))) / jnp.arange(1, n + 1)[:, None]
            heads.append((alpha * jax.nn.softmax(s, -1) + (1 - alpha) * uniform) @ v)
        x = x + jnp.concatenate(heads, -1) @ blk.W_O.T
        x = x + jax.nn.relu(x @ blk.W_in.T + blk.b_in) @ blk.W_out.T + blk.b_out
    return x[-1] @ model.W_U


@pytest.mark.slow
@pytest.mark.parametrize("n_layers,alpha", [(1, 1.0), (2, 0.3), (1, 0.0)])
def test_transformer_last_position_shortcut_equals_full_computation(n_layers, alpha):
    model = init_transformer(jax.random.key(0), d_vocab=8, d_vocab_out=7, d_model=16, n_heads=2, d_mlp=24,
                             n_layers=n_layers)
    model = jax.tree.map(lambda x: x + 0.1 if eqx.is_inexact_array(x) and x.ndim == 1 else x, model)  # nonzero biases
    for tokens in ([1, 2, 7], [6, 0, 7]):
        t = jnp.asarray(tokens)
        np.testing.assert_allclose(model(t, alpha), _reference_transformer(model, t, alpha), rtol=1e-5, atol=1e-5)
        logits, cache = model(t, alpha, return_activations=True)
        assert cache[-1]["pattern"].shape == (2, 1, 3) and cache[-1]["mlp_post"].shape == (1, 24)
        np.testing.assert_allclose(cache[-1]["pattern"].sum(-1), 1.0, rtol=1e-6)


def test_paper_transformer_has_226_688_parameters():
    cfg = GrokkingConfig()
    model = toylab.get_family("grokking").init(cfg, cfg.hparams(), jax.random.key(0))
    n = sum(x.size for x in jax.tree.leaves(eqx.filter(model, eqx.is_inexact_array)))
    p, d, d_mlp = 113, 128, 512
    # W_E (d, p+1), W_pos (3, d), W_Q/W_K/W_V (4 heads × 32 × d each), W_O (d, d), W_in + b_in,
    # W_out + b_out, W_U (d, p): Nanda et al.'s one-layer model.
    by_hand = d * (p + 1) + 3 * d + 3 * d * d + d * d + (d_mlp * d + d_mlp) + (d * d_mlp + d) + d * p
    assert n == by_hand == 226_688


# ----------------------------------------------------------------------------- float64 loss


@pytest.mark.slow
def test_float64_cross_entropy_is_exact_where_float32_rounds_to_zero():
    # A confident model: loss ≈ (C−1)·e^(−margin), far below float32 resolution of log-softmax.
    margin, C = 25.0, 7
    logits = jnp.zeros((3, C)).at[:, 2].set(margin)
    labels = jnp.full((3,), 2)
    exact = math.log1p((C - 1) * math.exp(-margin))
    assert float(weighted_cross_entropy(logits, labels, precision="float64")) == pytest.approx(exact, rel=1e-5)
    assert float(weighted_cross_entropy(logits, labels, precision="float32")) != pytest.approx(exact, rel=1e-2)
    # Its gradient is (softmax − onehot)/rows, and survives in float32.
    g = jax.grad(lambda x: weighted_cross_entropy(x, labels, precision="float64"))(logits)
    p_other = math.exp(-margin) / (1 + (C - 1) * math.exp(-margin))
    np.testing.assert_allclose(g[0, 0], p_other / 3, rtol=1e-5)
    np.testing.assert_allclose(g.sum(-1), 0.0, atol=1e-12)


@pytest.mark.slow
@settings(max_examples=20)
@given(seed=st.integers(0, 1000))
def test_float64_cross_entropy_gradient_matches_float32_on_ordinary_logits(seed):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    logits = jax.random.normal(k1, (6, 5)) * 2
    labels = jax.random.randint(k2, (6,), 0, 5)
    w = (jax.random.uniform(k3, (6,)) < 0.6).astype(jnp.float32)
    f64 = jax.value_and_grad(lambda x: weighted_cross_entropy(x, labels, w, "float64"))(logits)
    f32 = jax.value_and_grad(lambda x: weighted_cross_entropy(x, labels, w, "float32"))(logits)
    np.testing.assert_allclose(f64[0], f32[0], rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(f64[1], f32[1], rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- Fourier basis


@pytest.mark.slow
@settings(max_examples=30)
@given(p=st.integers(2, 60), seed=st.integers(0, 100))
def test_fourier_basis_is_orthonormal_and_parseval_holds(p, seed):
    F = fa.fourier_basis(p)
    np.testing.assert_allclose(F @ F.T, np.eye(p), atol=1e-10)
    x = np.random.default_rng(seed).normal(size=p)
    np.testing.assert_allclose(np.sum((F @ x) ** 2), np.sum(x ** 2), rtol=1e-10)
    power = np.asarray(fa.frequency_power(F @ x, p))
    assert power.shape == (p // 2 + 1,)
    np.testing.assert_allclose(power.sum(), np.sum(x ** 2), rtol=1e-5)
    assert len(fa.basis_names(p)) == p


@pytest.mark.slow
@settings(max_examples=10)
@given(p=st.integers(2, 30), seed=st.integers(0, 100))
def test_2d_fourier_transform_is_orthonormal(p, seed):
    x = np.random.default_rng(seed).normal(size=(p, p, 3)).astype(np.float32)
    c = fa.fourier_2d(x, p)
    np.testing.assert_allclose(np.sum(np.asarray(c) ** 2), np.sum(x ** 2), rtol=1e-4)
    np.testing.assert_allclose(fa.fourier_2d_inverse(c, p), x, atol=1e-4)
    # cos(2πka/p)·cos(2πkb/p) is one basis function (up to scale): a single coefficient.
    if p >= 3:
        a, b = np.meshgrid(np.arange(p), np.arange(p), indexing="ij")
        one = np.cos(2 * np.pi * a / p) * np.cos(2 * np.pi * b / p)
        c1 = np.abs(np.asarray(fa.fourier_2d(one, p)))
        assert (c1 > 1e-4).sum() == 1 and c1[1, 1] == pytest.approx(p / 2, rel=1e-4)


@pytest.mark.slow
def test_progress_measures_vmap_over_snapshots_like_a_loop():
    p = 7
    models = [init_transformer(jax.random.key(i), d_vocab=p + 1, d_vocab_out=p, d_model=8, n_heads=2, d_mlp=12)
              for i in range(3)]
    stacked = jax.tree.map(lambda *xs: jnp.stack(xs) if eqx.is_array(xs[0]) else xs[0], *models)
    key = np.zeros(p // 2 + 1, bool)
    key[2] = True
    train = np.random.default_rng(0).random((p, p)) < 0.5
    together = jax.jit(jax.vmap(lambda m: fa.progress_measures(m, p, key, train)))(stacked)
    for i, m in enumerate(models):
        alone = fa.progress_measures(m, p, key, train)
        for k, v in alone.items():
            np.testing.assert_allclose(together[k][i], v, rtol=1e-4, atol=1e-6)


def _np_cross_entropy(logits, labels, rows):
    z = logits - logits.max(-1, keepdims=True)
    logp = z - np.log(np.exp(z).sum(-1, keepdims=True))
    return float(-np.take_along_axis(logp, labels[..., None], -1)[..., 0][rows].mean())


def _np_fourier_norms(W, p):
    """Norms of W's rows' components along const, cos k, sin k (unit vectors), over rows."""
    x = np.arange(p)
    basis = [np.ones(p)] + [f(2 * np.pi * k * x / p) for k in range(1, (p - 1) // 2 + 1) for f in (np.cos, np.sin)]
    basis = np.stack([v / np.linalg.norm(v) for v in basis])
    return np.sqrt(((np.asarray(W, np.float64) @ basis.T) ** 2).sum(0))


def _np_gini(x):
    x = np.sort(np.abs(x))
    n = len(x)
    return float(((2 * np.arange(1, n + 1) - n - 1) * x).sum() / (n * x.sum()))


@pytest.mark.slow
def test_progress_measures_of_a_hand_built_fourier_solution_equal_independent_values():
    """On Gromov's closed-form solution (the testing kit's case) every logit is a key-frequency
    term, so the values of the measures are known: restricted loss = full loss, excluded loss
    = log p; the Gini coefficients and the weight norm are recomputed here in numpy."""
    case = cases.fourier_solution_case(13, (2, 5), scale=0.6)
    p, model, key, logits = case.p, case.model, case.key_mask, case.logits
    train = np.random.default_rng(0).random((p, p)) < 0.4
    np.testing.assert_allclose(fa.grid_logits(model, p), logits, atol=1e-4)  # the model is the closed form
    labels = fa.sum_labels(p)
    full = _np_cross_entropy(logits, labels, np.ones((p, p), bool))
    assert full == pytest.approx(case.loss, rel=1e-9)
    m = fa.progress_measures(model, p, key, train)
    np.testing.assert_allclose(m["full_loss"], full, rtol=1e-5)
    np.testing.assert_allclose(m["restricted_loss"], full, rtol=1e-4)
    np.testing.assert_allclose(m["excluded_loss"], np.log(p), rtol=1e-5)
    # The other frequencies carry nothing: restricting to them leaves uniform logits, and
    # removing them leaves the training loss as it was.
    other = fa.progress_measures(model, p, ~key, train)
    np.testing.assert_allclose(other["restricted_loss"], np.log(p), rtol=1e-5)
    np.testing.assert_allclose(other["excluded_loss"], _np_cross_entropy(logits, labels, train), rtol=1e-4)
    left = np.asarray(model.W_in)[:, :p]
    np.testing.assert_allclose(m["gini_W_E"], _np_gini(_np_fourier_norms(left, p)), rtol=1e-4)
    np.testing.assert_allclose(m["gini_W_L"], _np_gini(_np_fourier_norms(np.asarray(model.W_out).T, p)), rtol=1e-4)
    assert m["gini_W_E"] > 0.6  # 4 of 13 basis directions carry everything
    np.testing.assert_allclose(m["weight_norm"], (np.asarray(model.W_in, np.float64) ** 2).sum()
                               + (np.asarray(model.W_out, np.float64) ** 2).sum(), rtol=1e-5)


# A few lengths (each new length compiles gini's ops anew); values and positions vary freely.
@pytest.mark.slow
@settings(max_examples=20)
@given(n=st.sampled_from([2, 3, 17, 200]), value=st.floats(0.1, 10), which=st.integers(0, 199))
def test_gini_is_zero_when_flat_and_maximal_for_one_frequency(n, value, which):
    assert float(fa.gini(jnp.full(n, value))) == pytest.approx(0.0, abs=1e-6)
    spike = jnp.zeros(n).at[which % n].set(value)
    assert float(fa.gini(spike)) == pytest.approx((n - 1) / n, rel=1e-5)
    other = jax.random.uniform(jax.random.key(n), (n,)) * value
    assert -1e-6 <= float(fa.gini(other)) <= (n - 1) / n + 1e-6


# ----------------------------------------------------------------------------- a hand-built Fourier MLP


def test_fourier_solution_rejects_bad_frequencies():
    with pytest.raises(ValueError, match="freqs"):
        fourier_solution(11, [0])
    with pytest.raises(ValueError, match="freqs"):
        fourier_solution(11, [2, 2])
    with pytest.raises(ValueError, match="p=2"):
        fourier_solution(2, [1])


ODD = [p for p in range(3, 48, 2)]  # primes and odd composites (whose frequencies need gcd 1 with p)


@st.composite
def moduli_and_frequencies(draw):
    p = draw(st.sampled_from(ODD))
    ks = draw(st.lists(st.integers(1, (p - 1) // 2), min_size=1, max_size=4, unique=True)
              .filter(lambda ks: math.gcd(p, *ks) == 1))
    return p, tuple(ks)


@pytest.mark.slow
@settings(max_examples=5)  # each example's shapes compile the analyses anew (~3 s each)
@example(pk=(9, (1, 3)))  # 3·3 ≡ 0 (mod 9): the k = 3 neurons' 2k terms alias to k
@given(pk=moduli_and_frequencies())
def test_hand_built_fourier_mlp_gives_the_known_answers(pk):
    p, ks = pk
    case = cases.fourier_solution_case(p, ks, scale=40.0 / len(ks))
    model = case.model
    logits = fa.grid_logits(model, p)
    np.testing.assert_allclose(logits, case.logits, rtol=1e-5, atol=1e-4)
    labels = fa.sum_labels(p)
    assert float((np.asarray(jnp.argmax(logits, -1)) == labels).mean()) == case.accuracy == 1.0
    loss = float(fa.cross_entropy(logits.reshape(p * p, p), labels.ravel()))
    assert loss == pytest.approx(case.loss, rel=1e-3, abs=1e-7)
    assert float(fa.restricted_loss(logits, p, case.key_mask)) == pytest.approx(loss, rel=1e-3, abs=1e-7)
    # Keeping only the other frequencies leaves nothing to go on either: loss ≈ log p.
    assert float(fa.restricted_loss(logits, p, ~case.key_mask)) == pytest.approx(math.log(p), rel=0.05)
    # Removing the key frequencies leaves nothing to go on: loss ≈ log p.
    everything = np.ones((p, p), bool)
    assert float(fa.excluded_loss(logits, p, case.key_mask, everything)) == pytest.approx(case.excluded_loss, rel=0.05)
    np.testing.assert_allclose(fa.neuron_ipr(model, p), case.neuron_ipr, rtol=1e-5)
    freq, frac, _ = fa.neuron_frequency_clusters(fa.grid_neurons(model, p), p)
    np.testing.assert_array_equal(np.asarray(freq), case.neuron_frequencies)
    np.testing.assert_allclose(frac, case.neuron_fractions, rtol=1e-4)
    # The logits are Σ_k cos(k(a+b−c)) terms at exactly the chosen frequencies, in equal shares.
    _, share = fa.logit_frequency_components(logits, p)
    np.testing.assert_allclose(np.asarray(share), case.logit_shares, atol=1e-4)
    power = fa.frequency_power(model.W_in[:, :p] @ fa.fourier_basis(p).T, p, axis=-1).sum(0)
    np.testing.assert_allclose(np.asarray(power), case.embedding_power, rtol=1e-4, atol=1e-3)
    # A sparse spectrum (the chosen frequencies under half of all, or the only one) is found exactly.
    found = np.asarray(fa.key_frequencies(power))
    np.testing.assert_array_equal(found, case.key_mask if case.key_frequencies_found else np.zeros_like(found))
    if case.key_frequencies_found:  # indexed like frequency_power: the nonzero entries are the frequencies
        assert tuple(np.flatnonzero(found)) == case.freqs and found.shape == power.shape
    with pytest.raises(ValueError, match="ratio"):
        fa.key_frequencies(power, ratio=0)


@pytest.mark.slow
@settings(max_examples=10)
@given(p=st.sampled_from(PRIMES), k=st.integers(1, 100), phase=st.floats(0, 2 * np.pi))
def test_ipr_of_a_pure_cosine_neuron_is_one_and_of_noise_is_low(p, k, phase):
    k = 1 + k % ((p - 1) // 2)
    x = np.arange(p)
    wave = np.cos(2 * np.pi * k * x / p + phase)
    noise = np.random.default_rng(k).normal(size=p)
    W_in = jnp.asarray(np.stack([np.concatenate([wave, wave]), np.concatenate([noise, noise])]), jnp.float32)
    model = EmbedMLP(None, None, W_in, None, jnp.zeros((p, 2)), None, embed="onehot", activation="relu")
    ipr = np.asarray(fa.neuron_ipr(model, p))
    assert ipr[0] == pytest.approx(1.0, rel=1e-5)
    if p >= 11:  # with only one or two frequencies any vector is nearly "pure"
        assert ipr[1] < 0.8


# ----------------------------------------------------------------------------- training


_CFG = GrokkingConfig(p=11, steps=60, log_every=20, d_model=16, n_heads=2, d_mlp=32, train_fraction=0.5,
                      train_capacity=0.8)


@pytest.mark.slow
def test_vmapped_grokking_runs_equal_single_runs():
    cfgs = [_CFG.replace(train_fraction=f, label_noise=x) for f, x in ((0.5, 0.0), (0.8, 0.2), (0.3, 0.1))]
    train = toylab.make_train("grokking", _CFG)
    keys = jax.vmap(toylab.make_key)(jnp.arange(3, dtype=jnp.uint32))
    together = jax.jit(jax.vmap(train))(stack_hparams(cfgs), keys)
    for i, c in enumerate(cfgs):
        alone = jax.jit(train)(c.hparams(), toylab.make_key(i))
        np.testing.assert_allclose(together.model.W_E[i], alone.model.W_E, rtol=1e-4, atol=1e-5)
        for k in ("loss", "test_loss", "train_accuracy"):
            np.testing.assert_allclose(together.metrics[k][i], alone.metrics[k], rtol=1e-4, atol=1e-6)


def test_capacity_rows_and_evaluated_accuracy_follow_the_masks():
    assert train_rows(_CFG) == math.floor(0.8 * 121 + 1e-4)
    assert train_rows(_CFG.replace(train_capacity=None)) == math.floor(0.5 * 121 + 1e-4)
    # No capacity given: train fractions still share one program, sized for the largest of them.
    a, b = _CFG.replace(train_capacity=None), _CFG.replace(train_capacity=None, train_fraction=0.4)
    assert a.static_key() == b.static_key()
    assert train_rows(program_config([b, a])) == math.floor(0.5 * 121 + 1e-4)
    assert train_rows(program_config([b])) == math.floor(0.4 * 121 + 1e-4)
    assert program_config([_CFG, _CFG.replace(train_fraction=0.4)]) is _CFG  # a given capacity is kept
    assert _CFG.static_key() == _CFG.replace(train_fraction=0.4).static_key()
    cfg = _CFG.replace(model="mlp", steps=400, log_every=400, lr=1e-2, weight_decay=0.0, label_noise=0.3)
    res = jax.jit(toylab.make_train("grokking", cfg))(cfg.hparams(), toylab.make_key(0))
    # Without weight decay the MLP memorises every training label, corrupted ones included.
    assert float(res.metrics["train_accuracy"][-1]) == 1.0
    assert float(res.metrics["train_clean_accuracy"][-1]) < 0.85


# ----------------------------------------------------------------------------- the CLI


@pytest.mark.slow
def test_cli_bad_grokking_input_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    # One process checks several bad inputs (each would be its own `toylab run`).
    script = (
        "import sys\nfrom toylab.cli import main\n"
        "for args in [['--set','p=1'], ['--set','p=12','--set','op=/'], ['--grid','train_fraction=0.5,0'],\n"
        "             ['--set','label_noise=1'], ['--set','n_heads=3'], ['--set','op=a+q']]:\n"
        "    code = main(['run','grokking',*args,'--out',sys.argv[1]])\n"
        "    print('EXIT', code, flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert proc.stdout.count("EXIT 2") == 6, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 6 and "Traceback" not in proc.stderr
    for needle, line in zip(["p=", "op=", "train_fraction", "label_noise", "n_heads", "op="], err):
        assert needle in line, line
    assert not (tmp_path / "o").exists()


def test_pruning_all_or_no_neurons():
    model = fourier_solution(11, [1, 3], scale=5.0)
    d = model.W_in.shape[0]
    same = fa.prune_neurons(model, np.ones(d, bool))
    np.testing.assert_array_equal(fa.grid_logits(same, 11), fa.grid_logits(model, 11))
    none = fa.prune_neurons(model, np.zeros(d, bool))
    np.testing.assert_array_equal(fa.grid_logits(none, 11), 0.0)
    t = init_transformer(jax.random.key(1), d_vocab=12, d_vocab_out=11, d_model=8, n_heads=2, d_mlp=6)
    half = fa.prune_neurons(t, np.arange(6) < 3)
    assert float(jnp.abs(half.blocks[-1].W_out[:, 3:]).max()) == 0.0
    np.testing.assert_array_equal(half.blocks[-1].W_out[:, :3], t.blocks[-1].W_out[:, :3])


def test_phases_are_located_from_synthetic_curves():
    from toylab.experiments.reproductions.grokking import locate_phases

    steps = np.arange(1, 101) * 100
    train_acc = np.where(steps >= 500, 1.0, 0.5)
    # Test loss rises to a peak at 1000, falls log-linearly to 1e-6 at 6000, then flat.
    log_loss = np.interp(steps, [100, 1000, 6000, 10000], [np.log(4.0), np.log(20.0), np.log(1e-6), np.log(1e-6)])
    t_mem, t_clean, t_end = locate_phases(steps, train_acc, np.exp(log_loss))
    assert t_mem == 1000
    assert 3400 <= t_clean <= 3600  # half-way in log between 20 and 1e-6
    assert 5400 <= t_end <= 5600  # within a factor 10 of the final loss
    assert locate_phases(steps, np.zeros(100), np.exp(log_loss)) == (None, None, None)


@pytest.mark.end_to_end
def test_bench_grokking_plumbing(tmp_path, capsys):
    """The benchmark runs end to end at a tiny size (its figures are not asserted here)."""
    import json

    from toylab.experiments.benchmarks.grokking import main

    out = tmp_path / "b.json"
    assert main(["--p", "7", "--steps", "10", "--seeds", "1,2", "--no-torch", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert [pt["models"] for pt in data["jax"]] == [1, 2]
    for pt in data["jax"]:  # the rate printed is the work timed over the time it took
        assert pt["steps"] >= 10 and pt["seconds"] > 0 and pt["block_size"] >= 1
        assert pt["model_steps_per_s"] == pytest.approx(pt["models"] * pt["steps"] / pt["seconds"])
    assert main(["--seeds", "0"]) == 2 and main(["--p", "1"]) == 2
    assert main(["--p", "7", "--steps", "10", "--seeds", "2", "--block-size", "none", "--no-torch", "--json", str(out)]) == 0
    assert json.loads(out.read_text())["jax"][0]["block_size"] is None
    assert main(["--block-size", "0"]) == 2


@pytest.mark.parametrize("embed", ["onehot", "sum", "concat"])
def test_embedding_mlp_input_weights_are_its_first_layer(embed):
    from toylab.models.mlp import init_embed_mlp

    m = init_embed_mlp(jax.random.key(0), n_in=7, n_out=7, d_hidden=10, d_embed=6, embed=embed, bias=True)
    m = eqx.tree_at(lambda m: m.b_in, m, jnp.arange(10.0))
    W_in, b_in = np.asarray(m.W_in, np.float64), np.asarray(m.b_in, np.float64)

    def first_layer(a, b):  # the paper's network written out in numpy, not through input_weights
        eye = np.eye(7)
        if embed == "onehot":
            x = np.concatenate([eye[a], eye[b]])
        elif embed == "sum":
            x = np.asarray(m.W_E_left, np.float64)[:, a] + np.asarray(m.W_E_right, np.float64)[:, b]
        else:
            x = np.concatenate([np.asarray(m.W_E_left, np.float64)[:, a], np.asarray(m.W_E_right, np.float64)[:, b]])
        return W_in @ x + b_in

    left, right = m.input_weights()
    for a, b in ((0, 3), (6, 2), (5, 5)):
        want = first_layer(a, b)
        np.testing.assert_allclose(m.hidden_pre(a, b), want, rtol=1e-5, atol=1e-5)
        np.testing.assert_allclose(np.asarray(left)[:, a] + np.asarray(right)[:, b] + b_in, want, rtol=1e-5, atol=1e-5)
    logits = m(jnp.asarray([4, 5, 7]))
    want = np.asarray(m.W_out, np.float64) @ np.maximum(first_layer(4, 5), 0) + np.asarray(m.b_out, np.float64)
    np.testing.assert_allclose(logits, want, rtol=1e-5, atol=1e-5)
    with pytest.raises(ValueError, match="activation='gelu'"):
        init_embed_mlp(jax.random.key(0), n_in=7, n_out=7, activation="gelu")
