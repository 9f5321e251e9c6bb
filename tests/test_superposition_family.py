"""The superposition family: data, models, loss, the CLI on bad input, quick reproductions."""

import json
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.families.superposition import SuperpositionConfig, reconstruction_loss
from toylab.models.superposition import ToyModel, init_toy_model
from toylab.tasks.sparse_features import sparse_features


# ----------------------------------------------------------------------------- data


@pytest.mark.parametrize("p", [1.0, 0.3, 0.05])
def test_features_have_probability_p_and_uniform_values(p):
    x = np.asarray(sparse_features(jax.random.key(0), 200_000, 4, p))
    present = x > 0
    np.testing.assert_allclose(present.mean(0), p, atol=4 * np.sqrt(p * (1 - p) / 200_000) + 1e-6)
    vals = x[present]
    assert vals.min() >= 0 and vals.max() <= 1
    np.testing.assert_allclose([vals.mean(), (vals ** 2).mean()], [1 / 2, 1 / 3], atol=0.01)


@pytest.mark.slow
def test_signed_features_for_abs_are_uniform_minus_one_to_one():
    x = np.asarray(sparse_features(jax.random.key(1), 100_000, 3, 0.5, signed=True))
    vals = x[x != 0]
    assert vals.min() >= -1 and vals.max() <= 1
    np.testing.assert_allclose([vals.mean(), (vals ** 2).mean(), (x != 0).mean()], [0, 1 / 3, 0.5], atol=0.01)


@pytest.mark.slow
def test_correlated_and_anticorrelated_sets():
    x = np.asarray(sparse_features(jax.random.key(2), 100_000, 10, 0.2, correlated_sets=2,
                                   anticorrelated_sets=2, set_size=2))
    on = x > 0
    # Correlated sets (features 0-1, 2-3): present together or not at all.
    assert np.all(on[:, 0] == on[:, 1]) and np.all(on[:, 2] == on[:, 3])
    # Anti-correlated sets (features 4-5, 6-7): never both present.
    assert not np.any(on[:, 4] & on[:, 5]) and not np.any(on[:, 6] & on[:, 7])
    # Every feature keeps marginal probability p.
    np.testing.assert_allclose(on.mean(0), 0.2, atol=0.01)


# ----------------------------------------------------------------------------- models and loss


def test_models_compute_the_paper_formulas():
    key = jax.random.key(3)
    x = jax.random.uniform(key, (7, 6))
    W = jax.random.normal(jax.random.key(4), (3, 6))
    b = jax.random.normal(jax.random.key(5), (6,))
    W_out = jax.random.normal(jax.random.key(6), (6, 3))
    relu = jax.nn.relu
    np.testing.assert_allclose(ToyModel(W, b, None, "linear")(x), x @ W.T @ W + b, rtol=1e-5)
    np.testing.assert_allclose(ToyModel(W, b, None, "relu_output")(x), relu(x @ W.T @ W + b), rtol=1e-5)
    np.testing.assert_allclose(ToyModel(W, b, None, "relu_hidden")(x), relu(relu(x @ W.T) @ W + b), rtol=1e-5)
    np.testing.assert_allclose(ToyModel(W, b, W_out, "abs")(x), relu(relu(x @ W.T) @ W_out.T + b), rtol=1e-5)


def test_init_is_per_instance_xavier():
    W = np.asarray(init_toy_model(jax.random.key(0), 400, 100).W)
    np.testing.assert_allclose(W.std(), np.sqrt(2 / 500), rtol=0.02)


@pytest.mark.slow
@settings(max_examples=20)
@given(p=st.floats(0.05, 1.0), decay=st.floats(0.5, 1.5),
       bias=st.lists(st.floats(0.0, 1.0), min_size=5, max_size=5))
def test_loss_of_the_zero_weight_model_equals_its_closed_form(p, decay, bias):
    """W = 0 outputs the constant c = ReLU(b); the loss is (1/n) Σ I_i E[(x_i − c_i)²] with
    E[x_i] = p/2 and E[x_i²] = p/3 for the sparse Uniform[0,1] features."""
    cfg = SuperpositionConfig(n_features=5, n_hidden=2)
    c = np.asarray(bias, np.float32)
    model = ToyModel(jnp.zeros((2, 5)), jnp.asarray(c), None, "relu_output")
    x = sparse_features(jax.random.key(7), 400_000, 5, p)
    hp = {**cfg.hparams(), "importance_decay": jnp.float32(decay)}
    measured = float(reconstruction_loss(model, x, cfg, hp))
    importance = decay ** np.arange(5)
    closed = float(np.mean(importance * (p / 3 - c * p + c ** 2)))
    assert measured == pytest.approx(closed, rel=0.01, abs=1e-4)


# ----------------------------------------------------------------------------- CLI


def _cli(*args, cwd=None):
    return subprocess.run([sys.executable, "-m", "toylab", *args], capture_output=True, text=True, cwd=cwd, timeout=300)


@pytest.mark.parametrize("args,needle", [
    (["run", "superposition", "--set", "feature_probability=1.5"], "feature_probability"),
    (["run", "superposition", "--set", "n_hidden=0"], "n_hidden"),
    (["run", "superposition", "--set", "model=cubic"], "model"),
    (["run", "superposition", "--set", "unknown_field=3"], "unknown_field"),
    (["run", "superposition", "--grid", "lr=0.001,abc"], "lr"),
    (["run", "superposition", "--grid", "n_hidden=2,,3"], "n_hidden"),
    (["run", "superposition", "--set", "batch_size=1.5"], "batch_size"),
    (["run", "no_such_family"], "family"),
    (["run", "superposition", "--seeds", "-1"], "--seeds"),
    (["reproduce", "no_such_paper"], "no_such_paper"),
])
@pytest.mark.slow
def test_cli_bad_input_one_line_exit_2(args, needle, tmp_path):
    proc = _cli(*args, "--out", str(tmp_path / "o")) if args[0] == "run" else _cli(*args)
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert needle in proc.stderr
    assert not (tmp_path / "o").exists()  # nothing written on bad input


@pytest.mark.slow
def test_cli_run_writes_results_and_refuses_a_different_sweep(tmp_path):
    out = tmp_path / "o"
    common = ["--set", "steps=200", "--set", "n_features=5", "--set", "n_hidden=2", "--set", "batch_size=32",
              "--out", str(out), "--quiet"]
    proc = _cli("run", "superposition", "--grid", "feature_probability=1,0.1", "--seeds", "2", *common)
    assert proc.returncode == 0, proc.stderr
    rows = json.loads((out / "summary.json").read_text())
    assert sorted((r["feature_probability"], r["seed"]) for r in rows) == [(0.1, 0), (0.1, 1), (1.0, 0), (1.0, 1)]
    snapshot = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    proc = _cli("run", "superposition", "--grid", "feature_probability=1,0.2", "--seeds", "2", *common)
    assert proc.returncode == 2 and "different sweep" in proc.stderr and "Traceback" not in proc.stderr
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == snapshot


def test_help_explains_every_command(capsys):
    from toylab.cli import main

    for cmd in ([], ["run"], ["reproduce"], ["figures"], ["fields"]):
        with pytest.raises(SystemExit) as e:
            main([*cmd, "--help"])
        assert e.value.code == 0 and "usage: toylab" in capsys.readouterr().out
    assert main(["fields", "superposition"]) == 0
    assert "feature_probability" in capsys.readouterr().out


# ----------------------------------------------------------------------------- reproductions


@pytest.mark.end_to_end
def test_quick_reproductions_d_and_e_hold(tmp_path):
    """The n=2, m=1 phase diagram and the n=5, m=2 pentagon, quick mode, as `toylab
    reproduce` runs them (the other quick figures run under `toylab reproduce`, not pytest)."""
    from toylab.experiments.reproductions import superposition as repro

    claims = repro.reproduce(tmp_path, quick=True, quiet=True, only="de")
    assert len(claims) == 6
    failed = [c for c in claims if not c.passed]
    assert not failed, failed
    assert (tmp_path / "superposition_d_phase_diagram.png").stat().st_size > 10_000
    assert (tmp_path / "superposition_e_geometry.png").stat().st_size > 10_000


# ----------------------------------------------------------------------------- benchmark script


@pytest.mark.slow
def test_bench_script_measures_blocked_and_plain_programs(tmp_path, capsys):
    """Smoke check of the benchmark's plumbing (figures are not asserted: speed lives in the
    benchmark, not in tests): both PRNGs measured, JSON written, bad options exit 2."""
    from toylab.experiments.benchmarks.superposition import main

    out = tmp_path / "b.json"
    assert main(["--instances", "1,3", "--steps", "3", "--block-size", "2", "--no-torch", "--json", str(out)]) == 0
    data = json.loads(out.read_text())
    assert data["block_size"] == 2 and data["instances"] == [1, 3]
    for impl in ("threefry2x32", "unsafe_rbg"):
        points = data["jax"][impl]
        assert [p["instances"] for p in points] == [1, 3] and all(p["steps"] == 3 for p in points)
        assert all(np.isfinite(p["final_loss"]) and p["inst_steps_per_s"] > 0 for p in points)
    assert main(["--block-size", "0"]) == 2
    assert main(["--instances", "1,x"]) == 2
    assert "must be a positive integer or 'none'" in capsys.readouterr().err
