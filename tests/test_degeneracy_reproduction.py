"""The degeneracy reproduction (`toylab reproduce degeneracy`): its parts checked against
numbers computed here, and every figure set end to end at tiny sizes (the quick reproduction
itself runs under `toylab reproduce`, not pytest)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.experiments.reproductions import degeneracy as repro


def test_second_moment_rows_give_the_loss_of_all_examples():
    from toylab.testing.cases import second_moment_rows

    rng = np.random.default_rng(0)
    x, y = rng.normal(size=(5000, 3)), rng.normal(size=(5000, 2)) + 0.3
    rows = second_moment_rows(x, y)
    assert rows["x"].shape == (5, 3) and rows["y"].shape == (5, 2)
    for _ in range(3):
        W = rng.normal(size=(2, 3))
        full = 0.5 * np.mean(np.sum((x @ W.T - y) ** 2, -1))
        mine = 0.5 * np.mean(np.sum((np.asarray(rows["x"], np.float64) @ W.T - np.asarray(rows["y"], np.float64)) ** 2, -1))
        assert mine == pytest.approx(full, rel=1e-5)


@pytest.mark.slow
def test_linear_network_cases_sit_at_an_exact_minimum_of_the_population_loss():
    from toylab.testing import cases

    for case in (cases.reduced_rank_regression(M=3, N=3, H=2, r=1), cases.deep_linear_network([2, 3, 3, 2], 1)):
        # ½‖W_L⋯W_1 − P*‖² + ½·dim(y): the noise's share only, at the true product
        assert float(case.loss(case.params, case.data)) == pytest.approx(0.5 * case.params[-1].shape[0], rel=1e-6)
        grad = jax.grad(case.loss)(case.params, case.data)
        assert max(float(jnp.max(jnp.abs(g))) for g in grad) < 1e-5
        nudged = [W + 1e-2 * jax.random.normal(jax.random.key(i), W.shape) for i, W in enumerate(case.params)]
        assert float(case.loss(case.params, case.data)) < float(case.loss(nudged, case.data))
        # the most singular true parameter: hidden units beyond r are zero
        assert np.all(np.asarray(case.params[0])[1:] == 0)


def test_kgon_starts_have_k_represented_features():
    from toylab.families.superposition import SUPERPOSITION, SuperpositionConfig

    cfg = SuperpositionConfig(n_features=6, n_hidden=2, steps=1, log_every=1)
    template = SUPERPOSITION.init(cfg, cfg.hparams(), jax.random.key(0))
    for k in (3, 4, 5, 6):
        m = repro.kgon_params(template, k, jax.random.key(k))
        assert repro.polygon_order(m.W) == k
        W = np.asarray(m.W)[:, :k] / np.linalg.norm(np.asarray(m.W)[:, :k], axis=0)
        angles = np.sort(np.mod(np.arctan2(W[1], W[0]), 2 * np.pi))
        gaps = np.diff(np.concatenate([angles, angles[:1] + 2 * np.pi]))
        np.testing.assert_allclose(gaps, 2 * np.pi / k, atol=0.25)  # regular, up to the jitter


def test_pairs_in_order_compares_only_separated_values():
    assert repro._pairs_in_order([1.0, 2.0, 3.0], [1.1, 2.1, 2.9], 0.2) == (3, 3)
    assert repro._pairs_in_order([1.0, 2.0, 3.0], [2.5, 2.1, 2.9], 0.2) == (2, 3)
    assert repro._pairs_in_order([1.0, 1.1], [2.0, 1.0], 0.2) == (0, 0)  # within tolerance: not compared


@pytest.mark.end_to_end
def test_every_figure_set_end_to_end_at_tiny_sizes(tmp_path, monkeypatch):
    from toylab.testing import cases

    from toylab.analysis import degeneracy as dg

    monkeypatch.setattr(repro, "validation_settings", lambda quick: {
        "sgld": dict(chains=2, draws=200), "hmc": dict(chains=2, draws=50, sampler=dg.hmc(warmup=50))})
    monkeypatch.setattr(repro, "validation_cases", lambda quick: [
        cases.sum_of_powers(1, 4), cases.reduced_rank_regression(M=3, N=3, H=2, r=1, n=2000)])
    monkeypatch.setattr(repro, "grokking_setup", lambda quick: (
        {"p": 7, "train_fraction": 0.6, "steps": 200, "log_every": 20, "snapshot_steps": (0, 100, 200),
         "model": "mlp", "d_mlp": 16}, 1))  # the quick mode's transformer trains in minutes, not seconds
    monkeypatch.setattr(repro, "grokking_llc_settings", lambda quick: dict(
        chains=2, draws=50, step_size=3e-5, localization=100.0, batch_size=8))
    setup_c = repro.kgon_setup(True)
    setup_c.update({"seeds": 2, "n_batches": 4, "kgon_starts": (4, 5), "starts_per_k": 1,
                    "llc": dict(chains=2, draws=50, localization=10.0, batch_size=2)})
    setup_c["sweep"].update(steps=200, batch_size=64)
    monkeypatch.setattr(repro, "kgon_setup", lambda quick: setup_c)
    setup_d = repro.degeneracy_setup(True)
    setup_d["sweep"].update(p=7, d_mlp=8, steps=200, log_every=100)
    setup_d["llc"].update(chains=2, draws=100)
    monkeypatch.setattr(repro, "degeneracy_setup", lambda quick: setup_d)

    claims = repro.reproduce(tmp_path, quick=True, quiet=True, work=tmp_path / "work")
    tags = [c.reproduction for c in claims]
    assert tags[:5] == ["degeneracy (a)"] * 5 and "degeneracy (b)" in tags and tags.count("degeneracy (c)") == 2
    assert tags[-3:] == ["degeneracy (d)"] * 3
    for name in ("a_validation", "b_grokking", "c_kgons", "d_counts"):
        assert (tmp_path / f"degeneracy_{name}.png").stat().st_size > 10_000
    # (a): the theory in the claims: the potential's exact finite-nβ value, the RRR's λ and m
    assert claims[0].paper.startswith("exact finite-nβ value") and "(λ = 0.25 as nβ → ∞)" in claims[0].paper
    assert claims[2].paper.startswith("λ = 3.5, m = 2")
    # (d): the parameter count of the 7-token one-hot MLP with 8 neurons, counted by hand
    assert f"d = {8 * 14 + 8 + 7 * 8 + 7};" in claims[-3].measured
    # the sweeps were kept in the work folder and are reused by a second call
    kept = sorted(p.name for p in (tmp_path / "work").iterdir())
    assert kept == ["degeneracy-grokking-quick", "degeneracy-kgons-quick", "degeneracy-mlp-quick"]


@pytest.mark.slow
def test_quadratic_estimate_matches_finite_chains():
    from toylab.analysis import degeneracy as dg

    h = np.array([10.0, 1.0, 0.1, 0.0])
    loss = lambda p, d: 0.5 * jnp.sum(jnp.asarray(h, jnp.float32) * p["w"] ** 2)  # noqa: E731
    for draws, burnin in ((100, 10), (1000, 100)):
        res = dg.learning_coefficient(loss, {"w": jnp.zeros(4)}, jnp.zeros((2, 1)), jax.random.key(0), chains=2048,
                                      draws=draws, burnin=burnin, step_size=1e-3, nbeta=100.0, localization=1.0)
        want = dg.quadratic_estimate(h, nbeta=100.0, localization=1.0, step_size=1e-3, draws=draws, burnin=burnin)
        se = float(res.std) / np.sqrt(2048)
        assert abs(float(res.mean) - want) < 5 * se, (draws, float(res.mean), want, se)
    # short chains have not filled the slow directions yet
    assert dg.quadratic_estimate(h, nbeta=100.0, localization=1.0, step_size=1e-3, draws=100, burnin=10) < \
        dg.quadratic_estimate(h, nbeta=100.0, localization=1.0, step_size=1e-3, draws=100_000, burnin=10)
    assert np.isnan(dg.quadratic_estimate(h, nbeta=100.0, localization=1.0, step_size=1.0, draws=10, burnin=0))
    from toylab.core.config import ConfigError

    with pytest.raises(ConfigError, match="^burnin"):
        dg.quadratic_estimate(h, nbeta=100.0, localization=1.0, step_size=1e-3, draws=10, burnin=10)
    with pytest.raises(ConfigError, match="^localization"):
        dg.quadratic_estimate(h, nbeta=100.0, localization=-1.0, step_size=1e-3, draws=10, burnin=0)
