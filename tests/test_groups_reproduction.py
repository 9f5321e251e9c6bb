"""The groups reproduction's logit measures and claim: known answers on constructed logits."""

import numpy as np
import pytest

from toylab.experiments.reproductions import groups as rep
from toylab.analysis import representations as ra
from toylab.core.config import ConfigError
from toylab.tasks.composition import group_of


def _gcr_logits(g, weights):
    """Σ_ρ w_ρ χ_ρ(a∘b∘c⁻¹): the GCR logits."""
    return np.tensordot(np.asarray(weights, np.float64), ra.character_cubes(g).astype(np.float64), 1)


def _run(logits, g):
    sims = np.asarray(ra.logit_similarity(logits, g))
    key = sims > ra.KEY_THRESHOLD
    return {"explained": float(ra.logit_variance_explained(sims, key)), "composed": rep.composition_share(logits, g)}


@pytest.mark.parametrize("name", ["D13", "S4", "C26"])
def test_gcr_logits_are_all_cubes_and_all_composed(name):
    g = group_of(name)
    w = np.random.default_rng(0).uniform(1.0, 1.5, len(ra.real_irreps_of(g)))  # every irrep key
    run = _run(_gcr_logits(g, w), g)
    assert run["explained"] == pytest.approx(1.0, abs=1e-5)
    assert run["composed"] == pytest.approx(1.0, abs=1e-5)
    assert rep.logit_claim(name, name, [run]).passed


def test_composition_share_known_answers():
    g = group_of("D13")
    n = g.order
    rng = np.random.default_rng(1)
    f = rng.normal(size=(n, n))[np.asarray(g.mul)]  # F(a∘b, c)
    h = rng.normal(size=(n, n))
    h -= h.mean(0, keepdims=True)  # H(a, c) with Σ_a H(a, c) = 0: averages to 0 over every fibre
    h = np.broadcast_to(h[:, None, :], (n, n, n))
    assert rep.composition_share(f, g) == pytest.approx(1.0, abs=1e-5)
    assert rep.composition_share(h, g) == pytest.approx(0.0, abs=1e-5)
    fc = f - f.mean(-1, keepdims=True)
    hc = h - h.mean(-1, keepdims=True)
    expected = np.sum(fc ** 2) / (np.sum(fc ** 2) + np.sum(hc ** 2) + 2 * np.sum(fc * hc))
    assert np.sum(fc * hc) == pytest.approx(0.0, abs=1e-6 * np.sum(fc ** 2))  # the two parts are orthogonal
    assert rep.composition_share(f + h, g) == pytest.approx(expected, rel=1e-4)
    with pytest.raises(ConfigError, match="logits"):
        rep.composition_share(f[:, :, :3], g)


def test_non_trace_readout_solves_the_task_but_fails_the_claim():
    # sign(y) + Σ_k ρ_k(y)_00 at y = a∘b∘c⁻¹ peaks at c = a∘b, is a function of (a∘b, c), but
    # reads ρ(y) through one matrix entry, not the trace: half of each 2-dim part is a cube.
    g = group_of("D13")
    reps = ra.real_irreps_of(g)
    y = ra.composition_index(g)
    logits = sum(r.matrices[:, 0, 0][y] for r in reps[1:])
    assert (logits.argmax(-1) == np.asarray(g.mul)).all()
    run = _run(logits, g)
    assert run["composed"] == pytest.approx(1.0, abs=1e-5)
    assert run["explained"] == pytest.approx((1 + 6 / 4) / (1 + 6 / 2), abs=1e-4)  # entry (0, 0) has norm² 1/2, its trace part 1/4
    assert not rep.logit_claim("D13", "D13", [run]).passed


def test_logit_claim_follows_the_papers_table():
    cyclic = rep.logit_claim("C26", "C26", [{"explained": 0.75, "composed": 0.76}])
    assert "most of the centred logits' variance" in cyclic.claim and cyclic.passed
    assert not rep.logit_claim("C26", "C26", [{"explained": 0.55, "composed": 0.56}]).passed
    dihedral = rep.logit_claim("D13", "D13", [{"explained": 0.55, "composed": 0.56}])
    assert "through a∘b" in dihedral.claim and "49%-57%" in dihedral.paper and dihedral.passed
    assert not rep.logit_claim("D13", "D13", [{"explained": 0.45, "composed": 0.56}]).passed
    assert rep.paper_logit_fve("C113")[1] >= rep.MOST
    assert all(rep.paper_logit_fve(name)[1] < rep.MOST for name in ("D59", "S5", "A5"))
    assert rep.paper_logit_fve("S4xC2") is None
    assert "paper" not in rep.logit_claim("G", "S4xC2", [{"explained": 0.5, "composed": 0.5}]).paper


def test_quick_mode_has_a_cyclic_group_for_the_papers_logit_claim():
    groups = [base["group"] for base, _ in rep.setups(quick=True).values()]
    assert any(rep.paper_logit_fve(gr) and rep.paper_logit_fve(gr)[1] >= rep.MOST for gr in groups)
    assert "D13" in groups
