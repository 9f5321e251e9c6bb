"""The groups family and the representation analysis: the GCR construction, character cubes,
agreement with the Fourier analysis on cyclic groups, training, bad input."""

import jax
import numpy as np
import pytest
from hypothesis import assume, given, settings, strategies as st

from toylab.analysis import fourier as fa
from toylab.analysis import representations as ra
from toylab.core.config import ConfigError
from toylab.core.sweep import run_sweep
from toylab.families.groups import GroupsConfig, grid_train_mask, train_rows
from toylab.groups import group, real_irreps
from toylab.models.mlp import gcr_solution
from toylab.tasks.composition import composition_table
from toylab.testing import strategies as tst


def _faithful(rep) -> bool:
    chi = np.trace(rep.matrices, axis1=1, axis2=2)
    return int((np.abs(chi - rep.dim) < 1e-6).sum()) == 1


@pytest.mark.slow
@settings(max_examples=6, deadline=None)
@given(g=tst.groups(min_order=3, max_order=60), data=st.data())
def test_gcr_construction_computes_composition(g, data):
    reps = real_irreps(g)
    faithful = [i for i, r in enumerate(reps) if _faithful(r)]
    assume(faithful)  # e.g. C2xC2 has none: no irrep tells all its elements apart
    i = data.draw(st.sampled_from(faithful))
    model = gcr_solution(reps[i].matrices)
    logits = np.asarray(ra.group_logits(model, g))
    assert (logits.argmax(-1) == g.mul).all()  # full accuracy
    # Its logits are exactly the character cube of ρ: similarity 1 with ρ, 0 with the rest.
    np.testing.assert_allclose(logits, ra.character_cube(g, np.trace(reps[i].matrices, axis1=1, axis2=2)), atol=1e-4)
    sim = np.asarray(ra.logit_similarity(logits, g))
    expected = np.zeros(len(reps))
    expected[i] = 1.0
    np.testing.assert_allclose(sim, expected, atol=1e-4)
    key = expected.astype(bool)
    full = float(ra.cross_entropy(logits, g.mul))
    assert float(ra.restricted_loss(logits, g, key)) == pytest.approx(full, rel=1e-4)
    # Removing ρ leaves constant logits: chance loss log|G| on every pair.
    everything = np.ones((g.order, g.order), bool)
    assert float(ra.excluded_loss(logits, g, key, everything)) == pytest.approx(np.log(g.order), rel=1e-4)
    shares = np.asarray(ra.embedding_shares(model, g)["left"])
    np.testing.assert_allclose(shares, expected, atol=1e-5)


@settings(max_examples=20, deadline=None)
@given(g=tst.groups(max_order=60), data=st.data())
def test_character_cube_gather_equals_direct_evaluation(g, data):
    reps = real_irreps(g)
    cubes = ra.character_cubes(g)
    for _ in range(5):
        a, b, c = (data.draw(tst.group_elements(g)) for _ in range(3))
        for r, cube in zip(reps, cubes):
            m = r.matrices
            direct = np.trace(m[a] @ m[b] @ np.linalg.inv(m[c]))  # tr ρ(a)ρ(b)ρ(c)⁻¹, no table used
            assert cube[a, b, c] == pytest.approx(direct, abs=1e-5)


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(g=tst.groups(min_order=3, max_order=60), seed=st.integers(0, 2**31 - 1))
def test_logit_similarity_is_cosine_with_centred_cubes(g, seed):
    n = g.order
    logits = np.random.default_rng(seed).normal(size=(n, n, n)).astype(np.float32)
    cubes = ra.character_cubes(g).astype(np.float64)
    lc = logits - logits.mean(-1, keepdims=True)
    cc = cubes - cubes.mean(-1, keepdims=True)
    norms = np.linalg.norm(cc.reshape(len(cubes), -1), axis=1)
    direct = np.where(norms > 1e-9, (cc * lc).reshape(len(cubes), -1).sum(1) / np.maximum(norms, 1e-30), 0.0)
    direct /= np.linalg.norm(lc)
    np.testing.assert_allclose(np.asarray(ra.logit_similarity(logits, g)), direct, atol=1e-5)


@pytest.mark.parametrize("name", ["S4", "D6", "C12", "A4", "S3xC2"])
def test_spans_are_orthogonal_and_fill_the_group_algebra(name):
    g = group(name)
    bases = ra.span_bases(g)
    B = np.concatenate(bases, axis=1)
    assert B.shape == (g.order, g.order)
    np.testing.assert_allclose(B.T @ B, np.eye(g.order), atol=1e-8)
    W = np.random.default_rng(0).normal(size=(7, g.order))
    assert float(np.asarray(ra.span_shares(W, g)).sum()) == pytest.approx(1.0, rel=1e-5)


@pytest.mark.slow
def test_cyclic_group_agrees_with_fourier_analysis():
    p = 11
    g = group(f"C{p}")
    rng = np.random.default_rng(3)
    # Logits with some Fourier structure plus noise.
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    logits = (2 * np.cos(2 * np.pi * 3 * (a + b - c) / p) + np.cos(2 * np.pi * 5 * (a + b - c) / p)
              + 0.5 * rng.normal(size=(p, p, p))).astype(np.float32)
    names = ra.irrep_labels(g)
    assert names == ["trivial"] + [f"k={k}" for k in range(1, (p - 1) // 2 + 1)]
    sim = np.asarray(ra.logit_similarity(logits, g))
    _, share = (np.asarray(x) for x in fa.logit_frequency_components(logits, p))
    np.testing.assert_allclose(sim[1:] ** 2, share[1:], atol=1e-5)  # irrep k = frequency k
    assert share[0] == 0.0  # the logits are centred over c
    key = np.zeros(len(names), bool)
    key[[3, 5]] = True
    fkey = key  # a Fourier key mask is indexed by frequency, as the cyclic group's irreps are
    assert float(ra.restricted_loss(logits, g, key)) == pytest.approx(float(fa.restricted_loss(logits, p, fkey)), rel=1e-4)
    train = np.random.default_rng(1).random((p, p)) < 0.4
    assert float(ra.excluded_loss(logits, g, key, train)) == pytest.approx(
        float(fa.excluded_loss(logits, p, fkey, train)), rel=1e-4)
    W = rng.normal(size=(6, p))
    power = np.asarray(fa.frequency_power(fa.fourier_norms(W, p), p))  # norms² per frequency
    np.testing.assert_allclose(np.asarray(ra.span_shares(W, g)), power / power.sum(), atol=1e-5)


@pytest.mark.slow
def test_hidden_shares_and_pair_projection():
    g = group("S3")
    bases = ra.span_bases(g)
    rng = np.random.default_rng(0)
    f = rng.normal(size=(6, 6, 4))
    once = np.asarray(ra.project_pair_functions(f, g, bases[1:2]))
    twice = np.asarray(ra.project_pair_functions(once, g, bases[1:2]))
    np.testing.assert_allclose(once, twice, atol=1e-5)  # a projection
    # A function of a∘b only lies entirely in the spans: the shares add up to 1.
    x = rng.normal(size=(6, 3))
    of_product = x[g.mul]
    shares = np.asarray(ra.hidden_shares(of_product, g))
    assert shares.sum() == pytest.approx(1.0, rel=1e-5) and shares[0] == pytest.approx(0.0, abs=1e-6)
    # A function of a alone has no component through a∘b beyond the constant.
    of_a = np.repeat(x[:, None, :], 6, axis=1)
    assert np.asarray(ra.hidden_shares(of_a, g)).sum() == pytest.approx(0.0, abs=1e-6)


def test_learning_order():
    steps = np.array([100, 200, 300, 400])
    sims = np.array([[0.0, 0.0, 0.0, 0.0], [0.05, 0.2, 0.3, 0.4], [0.3, 0.05, 0.3, 0.3], [0.2, 0.2, 0.0, 0.0]]).T
    np.testing.assert_array_equal(ra.learning_order(sims, steps), [-1, 200, 300, -1])
    batched = ra.learning_order(np.stack([sims, sims]), steps)
    assert batched.shape == (2, 4)
    with pytest.raises(match="steps"):
        ra.learning_order(sims, steps[:3])


# ----------------------------------------------------------------------------- the family


def test_table_and_train_mask():
    t = composition_table("S3", 0)
    g = group("S3")
    assert t.n == 36 and sorted(zip(t.a.tolist(), t.b.tolist())) == [(i, j) for i in range(6) for j in range(6)]
    assert (t.c == g.mul[t.a, t.b]).all() and (t.tokens()[:, 2] == 6).all()
    cfg = GroupsConfig(group="S3", train_fraction=0.5, steps=10, log_every=10)
    assert train_rows(cfg) == 18 and grid_train_mask(cfg).sum() == 18


@pytest.mark.parametrize("field,value,needle", [
    ("group", "Q8", "'Q8' is not a group name"), ("group", "S9", "n must be in 1..7"), ("group", "D1", "n must be >= 2"),
    ("train_fraction", 0.0, "train_fraction"), ("train_fraction", 1.5, "train_fraction"),
    ("model", "cnn", "model"), ("train_capacity", 0.2, "train_capacity"),
])
def test_bad_config_is_one_clear_error(field, value, needle):
    with pytest.raises(ConfigError) as e:
        GroupsConfig(**{field: value, "train_fraction": 0.4 if field != "train_fraction" else value})
    assert needle in str(e.value) and e.value.field == field


def test_training_learns_and_logs_irrep_similarities():
    base = {"group": "S3", "train_fraction": 0.8, "steps": 600, "log_every": 100, "d_embed": 32, "d_hidden": 32,
            "lr": 3e-3}
    res = run_sweep("groups", base, seeds=2, quiet=True)
    for r in res:
        m = r.metrics
        assert m["train_loss"][-1] < 0.5 * m["train_loss"][0]
        names = ra.irrep_labels(group("S3"))
        assert {f"sim/{n}" for n in names} <= set(m)
        # The logged similarity is the analysis of the final model.
        sims = np.asarray(ra.logit_similarity(ra.group_logits(r.model, group("S3")), group("S3")))
        np.testing.assert_allclose([m[f"sim/{n}"][-1] for n in names], sims, atol=2e-4)
    # The paper's MLP: concatenated left/right embeddings, no biases.
    model = res[0].model
    assert model.W_E_left.shape == (32, 6) and model.b_in is None and model.b_out is None


@pytest.mark.slow
def test_transformer_and_train_fraction_grid_in_one_program(compile_counter):
    # No train_capacity: the grid over the train fraction is one program, sized for 0.8.
    base = {"group": "C5", "model": "transformer", "d_model": 16, "n_heads": 2, "d_mlp": 16, "steps": 20,
            "log_every": 10}
    grid = {"train_fraction": [0.4, 0.8, 0.6]}
    with compile_counter:
        res = run_sweep("groups", base, grid, seeds=1, segments=1, quiet=True)
    assert compile_counter.count_of("jit(train_segment)") == 1 and len(res) == 3
    # Separate programs would compile once per fraction; the count sees that.
    n_apart = 0
    for f in grid["train_fraction"]:
        with compile_counter:
            run_sweep("groups", {**base, "train_fraction": f}, seeds=1, segments=1, quiet=True)
        n_apart += compile_counter.count_of("jit(train_segment)")
    assert n_apart == 3
    for r in res:
        assert np.isfinite(r.metrics["test_loss"]).all() and r.model.W_E.shape == (16, 6)
        alone = run_sweep("groups", {**base, "train_fraction": r.config.train_fraction}, seeds=1, quiet=True)[0]
        # The shared program computes the loss over more (masked) rows: equal up to float32 sums.
        np.testing.assert_allclose(r.metrics["train_loss"], alone.metrics["train_loss"], rtol=1e-5)
        np.testing.assert_allclose(r.metrics["test_accuracy"], alone.metrics["test_accuracy"])


def test_analysis_input_errors():
    g = group("S3")
    with pytest.raises(match="logits"):
        ra.logit_similarity(np.zeros((6, 6, 5)), g)
    with pytest.raises(match="key"):
        ra.restricted_loss(np.zeros((6, 6, 6)), g, np.ones(2, bool))
    with pytest.raises(match="character"):
        ra.character_cube(g, np.ones(5))
    with pytest.raises(match="threshold"):
        ra.key_irreps(np.zeros(3), threshold=1.5)
    with pytest.raises(ValueError, match="orthogonal"):
        gcr_solution(2 * real_irreps(g)[1].matrices)
    with pytest.raises(match="axis"):
        ra.span_shares(np.zeros((3, 6)), g, axis=2)
    with pytest.raises(ValueError, match="scale"):
        gcr_solution(real_irreps(g)[1].matrices, scale=0.0)
    with pytest.raises(match="threshold"):
        ra.learning_order(np.zeros((2, 3)), np.arange(2), threshold=0.0)


@pytest.mark.slow
def test_cli_bad_groups_input_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\nfrom toylab.cli import main\n"
        "for args in [['--set','group=Q8'], ['--set','group=S8'], ['--grid','train_fraction=0.5,0']]:\n"
        "    code = main(['run','groups',*args,'--out',sys.argv[1]])\n"
        "    print('EXIT', code, flush=True)\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o")], capture_output=True, text=True, timeout=300)
    assert proc.stdout.count("EXIT 2") == 3, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 3 and "Traceback" not in proc.stderr
    for needle, line in zip(["group=", "group=", "train_fraction"], err):
        assert needle in line, line
    assert not (tmp_path / "o").exists()


def test_measures_vmap_over_seeds_and_snapshots_like_a_loop():
    import jax

    g = group("D4")
    n = g.order
    logits = np.random.default_rng(0).normal(size=(3, 2, n, n, n)).astype(np.float32)  # (seeds, snapshots, ...)
    batched = np.asarray(jax.vmap(jax.vmap(lambda L: ra.logit_similarity(L, g)))(logits))
    looped = np.stack([[np.asarray(ra.logit_similarity(L, g)) for L in row] for row in logits])
    np.testing.assert_allclose(batched, looped, atol=1e-6)
    W = np.random.default_rng(1).normal(size=(4, 5, n)).astype(np.float32)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda w: ra.span_shares(w, g))(W)),
                               np.stack([np.asarray(ra.span_shares(w, g)) for w in W]), atol=1e-6)
    key = np.zeros(len(ra.irrep_labels(g)), bool)
    key[1:3] = True
    flat = logits.reshape(-1, n, n, n)
    np.testing.assert_allclose(np.asarray(jax.vmap(lambda L: ra.restricted_loss(L, g, key))(flat)),
                               [float(ra.restricted_loss(L, g, key)) for L in flat], rtol=1e-5)


def test_bench_groups_bad_input_exits_2(capsys):
    from toylab.experiments.benchmarks.groups import main

    assert main(["--group", "Q8"]) == 2
    assert "group=" in capsys.readouterr().err
    assert main(["--irreps-group", "S9"]) == 2
    with pytest.raises(SystemExit) as e:
        main(["--seeds", "0"])
    assert e.value.code == 2
