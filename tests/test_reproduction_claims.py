"""Each reproduction's claims pieces are pure: handed numbers where the paper's statement
holds they pass, handed numbers where it does not they fail (no training; the numbers are
made up here, in the shapes the analyse pieces measure)."""

import numpy as np


def _verdicts(claims):
    return [bool(c.passed) for c in claims]


# ----------------------------------------------------------------------------- bilinear


def test_bilinear_claims_follow_the_numbers():
    from toylab.experiments.reproductions import bilinear as rep

    # (a): the classifier's accuracy
    assert _verdicts(rep.claims_a({"dataset": "digits", "accuracy": np.array([0.99, 0.98, 0.97, 0.99])}, True)) == [True]
    assert _verdicts(rep.claims_a({"dataset": "digits", "accuracy": np.array([0.60, 0.98, 0.70, 0.80])}, True)) == [False]
    # (b): the top 10 of 64 eigenvalues carry most of Σλ² (or do not: a flat spectrum)
    steep = np.broadcast_to(np.minimum(np.arange(1, 65) / 10, 1.0), (2, 10, 64))
    flat = np.broadcast_to(np.arange(1, 65) / 64, (2, 10, 64))
    assert _verdicts(rep.claims_b({"d_in": 64, "cum_share": steep}, True)) == [True]
    assert _verdicts(rep.claims_b({"d_in": 64, "cum_share": flat}, True)) == [False]
    # (c): accuracy against the number of eigenvectors kept per class
    ks = (1, 2, 3, 5, 10, 20, 50, 64)
    fast = np.array([[0.4, 0.6, 0.8, 0.95, 0.99, 0.99, 0.99, 0.99]] * 2)
    slow = np.array([[0.1, 0.2, 0.3, 0.5, 0.7, 0.9, 0.99, 0.99]] * 2)
    assert _verdicts(rep.claims_c({"ks": ks, "truncated": {rep.HEADLINE: fast}}, True)) == [True]
    assert _verdicts(rep.claims_c({"ks": ks, "truncated": {rep.HEADLINE: slow}}, True)) == [False]
    # (d): weight decay lowers the rank; noise moves mass off the border
    ranks = {"none": [3.0], "decay": [2.0], "noise": [8.0], "noise+decay": [5.0]}
    edge = {"none": [0.3], "decay": [0.3], "noise": [0.1], "noise+decay": [0.1]}
    assert _verdicts(rep.claims_d({"ranks": ranks, "edge": edge, "shape": (8, 8)}, True)) == [True, True]
    higher = dict(ranks, decay=[4.0])  # decay raises the rank
    on_edge = dict(edge, noise=[0.5])  # noise leaves the eigenvectors on the border
    assert _verdicts(rep.claims_d({"ranks": higher, "edge": on_edge, "shape": (8, 8)}, True)) == [False, False]
    # (e): the top eigenvector found again across seeds
    sim = {"none": np.full((10, 3), 0.8), rep.HEADLINE: np.full((10, 3), 0.95)}
    assert _verdicts(rep.claims_e({"similarity": sim}, True)) == [True]
    assert _verdicts(rep.claims_e({"similarity": dict(sim, **{rep.HEADLINE: np.full((10, 3), 0.3)})}, True)) == [False]
    # (f): the eigenvector mask flips most inputs while a random one barely changes accuracy
    n = len(rep.MASK_STRENGTHS)
    shift = np.linspace(0.0, 1.0, n)
    keeps = np.full(n, 0.95)
    assert _verdicts(rep.claims_f({"shift_eig": shift, "acc_rand": keeps, "n_classes": 10}, True)) == [True]
    drops = np.linspace(0.95, 0.1, n)  # the random mask of the same norm breaks the model too
    assert _verdicts(rep.claims_f({"shift_eig": shift, "acc_rand": drops, "n_classes": 10}, True)) == [False]
    never = rep.claims_f({"shift_eig": np.full(n, 0.2), "acc_rand": keeps, "n_classes": 10}, True)
    assert _verdicts(never) == [False] and "at most 20%" in never[0].measured
