"""The dictionaries reproduction (experiments/reproductions/dictionaries.py): its matched-L0
comparison, and every figure set end to end at tiny sizes (the real sizes run under
``toylab reproduce dictionaries``)."""

import csv

import numpy as np
import pytest

from toylab.experiments.reproductions import dictionaries as repro


def test_matched_l0_interpolates_inside_each_kinds_range_only():
    points = {"a": {"l0": np.array([3.0, 1.0, 2.0]), "mcc": np.array([0.9, 0.5, 0.7])},
              "b": {"l0": np.array([2.0, 4.0]), "mcc": np.array([0.2, 0.6])}}
    at = repro._at_matched_l0(points, ("a", "b"), "mcc", np.array([1.5, 2.5, 3.5]))
    np.testing.assert_allclose(at["a"], [0.6, 0.8, np.nan])  # sorted by L0 first; nothing past L0 = 3
    np.testing.assert_allclose(at["b"], [np.nan, 0.3, 0.5])


@pytest.mark.parametrize("quick", [True, False])
def test_setups_name_the_documented_sizes(quick):
    b = repro.hierarchy_setup(quick)["base"]
    assert (b["n_features"], b["dim"], b["n_latents"]) == ((48, 24, 48) if quick else (16_384, 768, 4096))
    assert repro.grokked_setup(quick)["grokking"]["p"] == (31 if quick else 113)
    for setup in (repro.toy_setup(quick)["dictionary"], b, repro.grokked_setup(quick)["dictionary"]):
        assert setup["data_seed"] == 0  # the dictionaries of a sweep read one stream
    assert set(repro.hierarchy_setup(quick)["grids"]) == set(repro.KINDS)


def _tiny(monkeypatch):
    dictionary = {"batch_size": 64, "steps": 100, "log_every": 50, "eval_size": 256, "data_seed": 0}
    monkeypatch.setattr(repro, "toy_setup", lambda quick: {
        "toy": {"n_features": 20, "n_hidden": 5, "importance_decay": 1.0, "feature_probability": 0.01,
                "steps": 200, "log_every": 100},
        "densities": [0.01, 0.5],
        "dictionary": {**dictionary, "kind": "relu", "n_latents": 40, "lr": 3e-3},
        "sparsity": [0.1, 1.0], "seeds": 1})
    monkeypatch.setattr(repro, "hierarchy_setup", lambda quick: {
        "base": {**dictionary, "n_features": 12, "dim": 8, "n_parents": 2, "children_per_parent": 2,
                 "mean_active": 2.0, "child_probability": 0.8, "magnitude_std": 0.2, "noise_std": 0.01,
                 "n_latents": 12, "lr": 3e-3},
        "grids": {"relu": {"sparsity": [0.03, 0.3]}, "topk": {"k": [1.0, 3.0]}, "batchtopk": {"k": [1.0, 3.0]},
                  "matryoshka": {"k": [1.0, 3.0]}, "jumprelu": {"sparsity": [0.01, 0.1]}},
        "prefixes": (3, 6, 12), "seeds": 1})
    monkeypatch.setattr(repro, "grokked_setup", lambda quick: {
        "grokking": {"p": 7, "train_fraction": 0.8, "steps": 100, "log_every": 50},
        "dictionary": {**dictionary, "kind": "topk", "n_latents": 16, "k": 2.0, "node": "mlp_post.0", "lr": 1e-3},
        "seeds": 2})


@pytest.mark.end_to_end
def test_every_figure_set_end_to_end_at_tiny_sizes(tmp_path, monkeypatch):
    _tiny(monkeypatch)
    monkeypatch.setattr(repro, "GROKKED", 0.0)  # 100 steps do not grok; the rest of (c) runs on what they give
    claims = repro.reproduce(tmp_path, quick=True, quiet=True, work=tmp_path / "work")
    assert [c.reproduction for c in claims] == ["dictionaries (a)"] * 2 + ["dictionaries (b)"] * 2 + ["dictionaries (c)"]
    assert all(isinstance(c.passed, bool) and c.measured for c in claims)
    for name in ("a_recovery.png", "b_mcc.png", "b_f1.png", "b_explained_variance.png", "c_frequencies.png"):
        assert (tmp_path / f"dictionaries_{name}").stat().st_size > 1000, name
    with open(tmp_path / "dictionaries_b_frontier.csv") as fh:
        rows = list(csv.DictReader(fh))
    assert sorted({r["kind"] for r in rows}) == sorted(repro.KINDS) and len(rows) == 10
    assert all(0.0 <= float(r["mcc"]) <= 1.0 and float(r["l0"]) >= 0.0 for r in rows)
    # (a) is judged by the signed MCC and shows the |cos| one beside it; (b) reads the |cos| MCC.
    assert "p=0.01: signed MCC" in claims[0].measured and "p=0.5: signed MCC" in claims[0].measured
    assert claims[0].measured.count("|cos| MCC") == 2
    assert all("signed MCC" in c.claim for c in claims[:2])
    assert all("MCC (|cos|)" in c.claim for c in claims[2:4])
    assert all("MCC (|cos|) frontier" in c.measured or "do not overlap" in c.measured for c in claims[2:4])
    assert "seed 0:" in claims[4].measured and "seed 1:" in claims[4].measured
    # the sweeps are kept under work/ and a second call resumes them instead of retraining
    again = repro.reproduce(tmp_path / "again", quick=True, quiet=True, only="a", work=tmp_path / "work")
    assert [c.measured for c in again] == [c.measured for c in claims[:2]]


@pytest.mark.end_to_end
def test_an_ungrokked_transformer_is_reported_not_analysed(tmp_path, monkeypatch):
    _tiny(monkeypatch)
    claims = repro.reproduce(tmp_path, quick=True, quiet=True, only="c")
    assert len(claims) == 1 and not claims[0].passed and "test accuracy" in claims[0].measured
    assert not (tmp_path / "dictionaries_c_frequencies.png").exists()


def test_frontier_takes_the_best_setting_within_each_l0_budget():
    points = {"a": {"l0": np.array([1.0, 2.0, 4.0]), "mcc": np.array([0.6, 0.9, 0.5])}}
    front = repro._frontier_at(points, ("a",), "mcc", np.array([0.5, 1.0, 3.0, 5.0]))
    np.testing.assert_allclose(front["a"], [np.nan, 0.6, 0.9, 0.9])  # the dominated setting at L0 4 never counts
