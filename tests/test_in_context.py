"""The in-context learning toys: the sequence transformer and its heads, the generated tasks,
the head scores, the Bayes predictors of in-context regression and the stage rule, each
against an answer known by construction."""

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from toylab.analysis.bayes_regression import ridge_predictions, task_posterior_predictions
from toylab.analysis.heads import (copying_scores, head_scores, icl_score, induction_scores, induction_targets,
                                   position_losses, previous_token_scores)
from toylab.analysis.stages import stage_boundaries
from toylab.core.config import ConfigError
from toylab.core.family import get_family
from toylab.models import HeadedModel, layer_maps
from toylab.models.sequence import init_sequence_transformer
from toylab.tasks.regression import interleave, regression_batch, task_pool
from toylab.tasks.sequences import copy_span, markov_table, multigram_tokens, repeated_tokens, token_sequences


def _model(mlp=0, embed="tokens", n_layers=2, d_in=11, d_out=None, n_ctx=8, key=0):
    return init_sequence_transformer(jax.random.key(key), d_in=d_in, d_out=d_out or d_in, n_ctx=n_ctx, d_model=16,
                                     n_heads=4, n_layers=n_layers, d_mlp=mlp, embed=embed)


# ----------------------------------------------------------------------------- the model


@pytest.mark.slow
@pytest.mark.parametrize("mlp", [0, 12])
def test_outputs_at_a_position_ignore_later_tokens(mlp):
    model = _model(mlp)
    assert isinstance(model, HeadedModel)
    a = jnp.asarray([1, 2, 3, 4, 5, 6, 7, 8])
    b = a.at[5:].set(0)
    out_a, out_b = model(a), model(b)
    assert out_a.shape == (8, 11)
    np.testing.assert_allclose(out_a[:5], out_b[:5], rtol=1e-6, atol=1e-6)
    assert not np.allclose(out_a[5:], out_b[5:])
    patterns = model.attention_patterns(a)
    assert patterns.shape == (2, 4, 8, 8)
    np.testing.assert_allclose(patterns.sum(-1), 1.0, rtol=1e-6)
    assert float(jnp.abs(jnp.triu(patterns, 1)).max()) == 0.0  # causal


@pytest.mark.slow
def test_head_mask_holds_exactly_one_heads_weights():
    model = _model(mlp=12)
    mask = model.head_mask(1, 2)
    d_head, d_model = 4, 16
    assert sum(int(np.sum(m)) for m in jax.tree.leaves(mask)) == 4 * d_head * d_model  # Q, K, V rows and O columns
    assert jax.tree.structure(mask) == jax.tree.structure(model)
    # zeroing the head's weights removes its output from the residual stream and nothing else
    cut = jax.tree.map(lambda p, m: jnp.where(m, 0.0, p), model, mask)
    tokens = jnp.arange(8) % 11
    x = model.embedded(tokens)
    block0 = model.blocks[0]
    x = x + block0.heads(x, block0.pattern(x)).sum(0)
    x = x + block0.mlp(x, "relu")[0]
    block1 = model.blocks[1]
    heads = block1.heads(x, block1.pattern(x))
    mid = x + heads.sum(0) - heads[2]
    want = (mid + block1.mlp(mid, "relu")[0]) @ model.W_U
    np.testing.assert_allclose(cut(tokens), want, rtol=2e-5, atol=2e-5)
    layer = model.layer_mask(0)
    assert all(bool(np.all(m)) for m in jax.tree.leaves(layer.blocks[0]))
    assert not any(bool(np.any(m)) for m in jax.tree.leaves(layer.blocks[1]))


def test_head_circuits_and_indices():
    model = _model()
    ov = model.head_ov(0, 1)
    np.testing.assert_allclose(ov, model.blocks[0].W_O[:, 4:8] @ model.blocks[0].W_V[1], rtol=1e-6)
    np.testing.assert_allclose(model.head_qk(1, 3), model.blocks[1].W_Q[3].T @ model.blocks[1].W_K[3], rtol=1e-6)
    for layer, head, field in ((2, 0, "layer"), (-1, 0, "layer"), (0, 4, "head"), (0, True, "head")):
        with pytest.raises(ConfigError, match=field):
            model.head_mask(layer, head)


@pytest.mark.slow
@pytest.mark.parametrize("mlp,embed", [(0, "tokens"), (12, "tokens"), (6, "vectors")])
def test_layer_maps_run_the_model(mlp, embed):
    model = _model(mlp, embed=embed, d_in=5, d_out=3 if embed == "vectors" else None)
    if embed == "tokens":
        inputs = jax.random.randint(jax.random.key(1), (3, 8), 0, 5)
    else:
        inputs = jax.random.normal(jax.random.key(1), (3, 8, 5))
    maps = layer_maps(model)
    acts = maps.activations(model, inputs)
    want = jax.vmap(model)(inputs)
    np.testing.assert_allclose(acts["outputs"], want.reshape(3, -1), rtol=2e-5, atol=2e-5)
    assert ("mlp_post.0" in acts) == bool(mlp) and "attn_out.1" in acts
    with pytest.raises(ConfigError, match="inputs"):
        maps.activations(model, inputs[:, :4])


# ----------------------------------------------------------------------------- the sequence tasks


def test_copy_span_moves_one_span_to_a_later_place():
    n_ctx, span, batch = 20, 4, 64
    base = jnp.broadcast_to(jnp.arange(n_ctx), (batch, n_ctx))  # a token names its position
    tokens, copied = copy_span(jax.random.key(0), base, span, 1.0)
    tokens, copied = np.asarray(tokens), np.asarray(copied)
    sources = set()
    for row, mark in zip(tokens, copied):
        moved = np.flatnonzero(row != np.arange(n_ctx))
        assert moved.size == span  # the source lies before the copy: every copied token moved
        t, s = moved[0], row[moved[0]]
        sources.add(int(s))
        assert t == n_ctx - span and 0 <= s <= n_ctx - 2 * span
        np.testing.assert_array_equal(row[t:t + span], np.arange(s, s + span))
        np.testing.assert_array_equal(np.flatnonzero(mark), np.arange(t + 1, t + span))
    assert len(sources) > 5  # the offset varies: position alone cannot find the source
    none, marks = copy_span(jax.random.key(0), base, span, 0.0)
    np.testing.assert_array_equal(none, base)
    assert not np.any(marks)


def test_multigram_follows_its_table():
    d_vocab, branching = 6, 2
    nxt, cum = markov_table(d_vocab, 2, branching, 3)
    tokens = np.asarray(multigram_tokens(jax.random.key(0), 400, d_vocab, 30, 2, branching, 3))
    prev, cur = tokens[:, :-1].ravel(), tokens[:, 1:].ravel()
    assert all(c in nxt[p] for p, c in zip(prev, cur))
    probs = np.diff(np.concatenate([[0.0], cum[0]]))
    seen = cur[prev == 0]
    freq = np.asarray([np.mean(seen == t) for t in nxt[0]])
    assert seen.size > 500
    np.testing.assert_allclose(freq, probs, atol=4 * np.sqrt(0.25 / seen.size))


def test_repeated_tokens_are_periodic():
    tokens = np.asarray(repeated_tokens(jax.random.key(0), 3, 50, 20, 6))
    np.testing.assert_array_equal(tokens[:, 6:], tokens[:, :-6])


@pytest.mark.parametrize("kwargs,field", [({"n_ctx": 7, "span": 4}, "n_ctx"), ({"branching": 9}, "branching"),
                                          ({"task": "text"}, "task"), ({"span": 1}, "span"),
                                          ({"d_vocab": 1024, "ngram": 3}, "ngram")])
def test_sequence_task_refusals(kwargs, field):
    args = dict(task="multigram", d_vocab=8, n_ctx=16, span=4, branching=2) | kwargs
    with pytest.raises(ConfigError, match=field):
        token_sequences(jax.random.key(0), 2, **args)


# ----------------------------------------------------------------------------- in-context regression


def test_regression_batch_uses_the_first_m_tasks_of_the_pool():
    pool = task_pool(0, 32, 3)
    x, y, w = regression_batch(jax.random.key(0), 500, 8, pool, 5.0, 0.1)
    distance = np.abs(pool[None] - np.asarray(w)[:, None]).sum(-1)  # (batch, pool)
    picked = set(np.argmin(distance, axis=1).tolist())
    assert distance.min(axis=1).max() < 1e-6
    assert picked == set(range(5))
    resid = np.asarray(y - jnp.einsum("bkd,bd->bk", x, w))
    assert abs(resid.std() - 0.1) < 0.01
    _, _, fresh = regression_batch(jax.random.key(0), 50, 8, pool, 0.0, 0.1)
    assert np.abs(pool[None] - np.asarray(fresh)[:, None]).sum(-1).min() > 1e-3


def test_interleave_puts_x_then_y():
    x = jnp.arange(12.0).reshape(2, 3, 2)
    y = jnp.asarray([[10.0, 11, 12], [13, 14, 15]])
    tokens = interleave(x, y)
    assert tokens.shape == (2, 6, 3)
    np.testing.assert_array_equal(tokens[0, 2], [0.0, 2, 3])
    np.testing.assert_array_equal(tokens[1, 5], [15.0, 0, 0])


def test_ridge_is_the_gaussian_posterior_mean():
    rng = np.random.default_rng(0)
    x, y, s = rng.standard_normal((10, 3)), rng.standard_normal(10), 0.7
    got = np.asarray(ridge_predictions(x, y, s))
    for k in range(10):
        A = x[:k].T @ x[:k] + s**2 * np.eye(3)
        w = np.linalg.solve(A, x[:k].T @ y[:k])
        assert abs(got[k] - w @ x[k]) < 1e-4
    assert got[0] == 0.0


def test_task_posterior_is_the_discrete_posterior_mean():
    rng = np.random.default_rng(1)
    tasks = rng.standard_normal((6, 2))
    x = rng.standard_normal((12, 2))
    y = x @ tasks[4] + 0.3 * rng.standard_normal(12)
    got = np.asarray(task_posterior_predictions(x, y, tasks, 0.3))
    for k in range(12):
        logw = -((y[:k, None] - x[:k] @ tasks.T) ** 2).sum(0) / (2 * 0.3**2)
        p = np.exp(logw - logw.max())
        p /= p.sum()
        assert abs(got[k] - p @ (tasks @ x[k])) < 1e-4
    assert abs(got[-1] - tasks[4] @ x[-1]) < 0.05  # the posterior has found the task
    # n_tasks masks the pool: the first M rows alone
    np.testing.assert_allclose(task_posterior_predictions(x, y, tasks, 0.3, n_tasks=3),
                               task_posterior_predictions(x, y, tasks[:3], 0.3), rtol=1e-5, atol=1e-6)


# ----------------------------------------------------------------------------- head scores


def test_pattern_scores_of_hand_made_heads():
    n, period = 12, 4
    tokens = jnp.asarray([0, 1, 2, 3] * 3)
    prev = jnp.eye(n, k=-1).at[0, 0].set(1.0)
    target = np.asarray(induction_targets(tokens))
    want = np.zeros((n, n), bool)
    for i in range(period, n):
        want[i, i - period + 1::-period] = True  # after every earlier occurrence of the token at i
        want[i, 0] = False
    np.testing.assert_array_equal(target, want)
    latest = np.zeros((n, n), np.float32)
    for i in range(period, n):
        latest[i, i - period + 1] = 1.0  # the most recent match only
    induction = jnp.asarray(latest).at[:period].set(jnp.eye(n)[:period])
    uniform = jnp.tril(jnp.ones((n, n))) / jnp.arange(1, n + 1)[:, None]
    patterns = jnp.stack([prev, induction, uniform])
    np.testing.assert_allclose(previous_token_scores(patterns), [1.0, 0.0, np.mean(1 / np.arange(2, n + 1))],
                               rtol=1e-6)
    np.testing.assert_allclose(induction_scores(patterns, tokens),
                               [0.0, 1.0, np.mean([(i // period) / (i + 1) for i in range(period, n)])], rtol=1e-6)
    assert np.isnan(induction_scores(patterns, jnp.arange(n)))[0]  # no token recurs: no match to score


@pytest.mark.slow
def test_head_scores_are_vmappable_over_models():
    models = eqx.filter_vmap(lambda k: init_sequence_transformer(k, d_in=7, d_out=7, n_ctx=8, d_model=8, n_heads=2))(
        jax.random.split(jax.random.key(0), 3))
    tokens = repeated_tokens(jax.random.key(1), 5, 7, 8, 3)
    scores = eqx.filter_vmap(lambda m: head_scores(m, tokens))(models)
    one = head_scores(jax.tree.map(lambda x: x[1] if eqx.is_array(x) else x, models), tokens)
    assert scores["induction"].shape == (3, 2, 2)
    np.testing.assert_allclose(scores["previous_token"][1], one["previous_token"], rtol=1e-5)


def test_copying_score_reads_the_ov_circuit():
    model = _model(n_layers=1, d_in=8, n_ctx=4)
    d = 16
    W_E = jnp.eye(d)[:, :8]
    copy = eqx.tree_at(lambda m: (m.W_E, m.W_U, m.blocks[0].W_V, m.blocks[0].W_O), model,
                       (W_E, W_E, jnp.stack([jnp.eye(d)[h * 4:(h + 1) * 4] for h in range(4)]),
                        jnp.eye(d) * jnp.asarray([1.0] * 8 + [-1.0] * 8)))
    scores = copying_scores(copy)
    assert scores.shape == (1, 4)
    np.testing.assert_allclose(scores[0, :2], 1.0, atol=1e-9)  # heads 0, 1 read and write tokens' dims + sign
    assert np.isnan(scores[0, 2:]).all()  # heads 2, 3 see none of the tokens' dimensions: no eigenvalues


def test_icl_score_and_position_losses():
    logits = jnp.zeros((2, 5, 4)).at[:, 3:, 1].set(10.0)
    tokens = jnp.ones((2, 5), jnp.int32)
    losses = position_losses(logits, tokens)
    np.testing.assert_allclose(losses[:3], np.log(4), rtol=1e-5)
    assert float(icl_score(losses)) < -1.0
    with pytest.raises(ConfigError, match="early"):
        icl_score(losses, early=3, late=2)


# ----------------------------------------------------------------------------- stages


def test_stage_boundaries_find_turns_and_plateaus():
    steps = np.logspace(1.8, 4.2, 160)
    t = np.log10(steps)
    # rises to a peak at 10^2.5, falls to a trough at 10^3.5, rises again
    curve = np.sin(np.pi * (t - 2.0))
    stages = stage_boundaries(steps, curve)
    assert stages.kinds == ("turn", "turn")
    np.testing.assert_allclose(np.log10(stages.boundaries), [2.5, 3.5], atol=0.05)
    assert len(stages) == 3 and stages.stages[0][0] == steps[0] and stages.stages[-1][1] == steps[-1]
    # noise of a tenth of the swing moves nothing by more than the smoothing
    noisy = curve + 0.1 * np.random.default_rng(0).standard_normal(curve.size)
    np.testing.assert_allclose(np.log10(stage_boundaries(steps, noisy).boundaries), [2.5, 3.5], atol=0.15)
    # two rises with a rest between them, starting and ending at rest: the first rise's onset,
    # one plateau near 10^3, and the rest after the second rise (symmetric about the plateau)
    steps = np.logspace(1, 5, 160)
    t = np.log10(steps)
    rises = np.tanh(4 * (t - 2.0)) + np.tanh(4 * (t - 4.0))
    plateau = stage_boundaries(steps, rises)
    assert plateau.kinds == ("onset", "plateau", "rest")
    onset, middle, rest = np.log10(plateau.boundaries)
    assert abs(middle - 3.0) < 0.1 and abs((onset + rest) / 2 - 3.0) < 0.05 and onset < 2.0 < 4.0 < rest
    # one sigmoid rise between two rests: where it leaves the first and enters the second,
    # symmetric about its midpoint
    one = stage_boundaries(steps, 1 / (1 + np.exp(-5 * (t - 3.0))))
    assert one.kinds == ("onset", "rest")
    lo, hi = np.log10(one.boundaries)
    assert lo < 3.0 < hi and abs((lo + hi) / 2 - 3.0) < 0.05
    # a steady rise has one stage
    assert stage_boundaries(steps, t).boundaries == ()
    # a turn the noise puts among the last points (the edge, dropped) does not displace the
    # rest found inside: an LLC curve that rises and levels off at 1 800 steps
    llc_steps = np.arange(200, 2401, 200)
    llc = np.array([7, 8.5, 20, 45, 61, 107, 159, 184, 183, 189, 185, 184.0])
    leveled = stage_boundaries(llc_steps, llc)
    assert leveled.kinds == ("rest",) and leveled.boundaries == (2000.0,)


def test_transition_window_brackets_a_phase_change():
    from toylab.analysis.stages import transition_window

    steps = np.arange(0, 2500, 100)  # a step 0 is allowed: no logarithm here
    fall = -2.5 / (1 + np.exp(-(steps - 1100) / 150))
    start, end = transition_window(steps, fall)
    # a logistic reaches 10% and 90% of its change at its midpoint ∓ 150·ln 9 ≈ ∓ 330 steps
    assert start == 800.0 and end == 1500.0
    assert np.isnan(transition_window(steps, np.ones(steps.size))).all()
    with pytest.raises(ConfigError, match="hi"):
        transition_window(steps, fall, lo=0.5, hi=0.4)
    with pytest.raises(ConfigError, match="steps"):
        transition_window(steps[::-1], fall)


def test_stage_rule_refusals():
    steps = np.arange(1.0, 11.0)
    with pytest.raises(ConfigError, match="steps"):
        stage_boundaries(np.arange(0.0, 10.0), steps)
    with pytest.raises(ConfigError, match="values"):
        stage_boundaries(steps, np.r_[steps[:-1], np.nan])
    with pytest.raises(ConfigError, match="smoothing"):
        stage_boundaries(steps, steps, smoothing=0.0)


# ----------------------------------------------------------------------------- the families


def test_family_refusals_name_the_field():
    induction = get_family("induction").config
    with pytest.raises(ConfigError, match="n_ctx"):
        induction(n_ctx=10, span=6)
    with pytest.raises(ConfigError, match="n_layers"):
        induction(n_layers=4)
    regression = get_family("icl_regression").config
    with pytest.raises(ConfigError, match="n_tasks"):
        regression(pool_size=8, n_tasks=9)
    with pytest.raises(ConfigError, match="n_tasks"):
        regression(n_tasks=2.5)


@pytest.mark.slow
def test_a_task_diversity_sweep_is_one_program_and_logs_the_bayes_gaps():
    from toylab.core.sweep import run_sweep

    res = run_sweep("icl_regression", {"dim": 2, "n_points": 4, "pool_size": 16, "d_model": 8, "n_heads": 2,
                                       "d_mlp": 8, "steps": 20, "log_every": 10, "eval_size": 16},
                    {"n_tasks": [0.0, 1.0, 16.0]}, quiet=True)
    assert len(res) == 3
    for run in res:
        for name in ("eval_loss", "delta_ridge", "ridge_loss_fresh"):
            assert np.all(np.isfinite(run.metrics[name]))
    assert np.isnan(res[0].metrics["delta_dmmse"]).all() and np.isfinite(res[2].metrics["delta_dmmse"]).all()
    # with one task the dMMSE predictor knows w: its fresh-task loss is far from ridge's
    assert res[1].metrics["dmmse_loss_fresh"][-1] > res[1].metrics["ridge_loss_fresh"][-1]


@pytest.mark.slow
@settings(max_examples=3, deadline=None)
@given(st.data())
def test_drawn_configs_train(data):
    from toylab.testing import strategies as tst
    from toylab.core.train import make_train

    for family in ("induction", "icl_regression"):
        cfg = data.draw(tst.configs(family, max_size=4, max_steps=3))
        result = make_train(family, cfg)(cfg.hparams(), jax.random.key(0))
        assert np.all(np.isfinite(np.asarray(result.metrics["loss"]))), family
        assert np.all(np.isfinite(np.asarray(result.metrics["eval_loss"]))), family


@pytest.mark.parametrize("call,field", [
    (lambda: repeated_tokens(jax.random.key(0), 0, 8, 8, 2), "batch_size"),
    (lambda: copy_span(jax.random.key(0), jnp.zeros((2, 6), jnp.int32), 4, 1.0), "span"),
    (lambda: copy_span(jax.random.key(0), jnp.zeros(6, jnp.int32), 2, 1.0), "base"),
    (lambda: multigram_tokens(jax.random.key(0), 2, 4, 8, 2, 5, 0), "branching"),
    (lambda: markov_table(4, 2, 2, -1), "language_seed"),
    (lambda: regression_batch(jax.random.key(0), 4, 3, np.zeros(3), 1.0, 0.1), "pool"),
    (lambda: regression_batch(jax.random.key(0), 4, 3, np.zeros((4, 2)), 5.0, 0.1), "n_tasks"),
    (lambda: regression_batch(jax.random.key(0), 4, 0, np.zeros((4, 2)), 1.0, 0.1), "n_points"),
    (lambda: regression_batch(jax.random.key(0), 4, 3, np.zeros((4, 2)), 1.0, -0.1), "noise_std"),
    (lambda: interleave(jnp.zeros((2, 3, 2)), jnp.zeros((2, 4))), "y"),
    (lambda: ridge_predictions(np.zeros((3, 2)), np.zeros(3), "wide"), "noise_std"),
    (lambda: task_posterior_predictions(np.zeros((3, 2)), np.zeros(3), np.zeros((4, 2)), 0.0), "noise_std"),
])
def test_task_and_predictor_refusals_name_the_argument(call, field):
    with pytest.raises(ConfigError, match=field):
        call()
