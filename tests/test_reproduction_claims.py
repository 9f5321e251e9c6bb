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


# ----------------------------------------------------------------------------- grokking


def _grokking_abc(**changes):
    p = 31
    key = np.zeros(p // 2 + 1, bool)
    key[[4, 9, 13]] = True
    measures = {"restricted_loss": np.array([3.0, 1.0, 0.01]), "excluded_loss": np.array([3.0, 5.0, 8.0]),
                "train_loss": np.array([3.0, 0.01, 0.001]), "gini_W_E": np.array([0.2, 0.4, 0.7]),
                "gini_W_L": np.array([0.2, 0.5, 0.8]), "weight_norm": np.array([40.0, 60.0, 30.0])}
    m = {"p": p, "seeds": 3, "t_fit": [400, 440, 480], "t_grok": [2400, 2800, 3000],
         "final_test": np.array([1.0, 1.0, 0.995]), "bounds": (800, 2000, 3200), "measures": measures,
         "key": key, "key_share": 0.9, "cluster_frac": np.full(100, 0.95), "cluster_freq": np.full(100, 9),
         "key_logit_share": 0.8, "full_loss": 1e-3,
         "ablations": {"embedding: keep key": 2e-3, "embedding: remove key": 4.0,
                       "neurons: keep key": 2e-3, "neurons: remove key": 4.0}}
    return m | changes


def test_grokking_claims_follow_the_numbers():
    from toylab.experiments.reproductions import grokking as rep

    assert _verdicts(rep.claims_abc(_grokking_abc(), True)) == [True] * 9
    # train and test fitted together (no delay), and one seed never generalises
    no_grok = _grokking_abc(t_grok=[420, 460, None], final_test=np.array([1.0, 0.6, 0.3]))
    assert _verdicts(rep.claims_abc(no_grok, True))[:2] == [False, False]
    # no cleanup reached; a dense spectrum; neurons not in key clusters; ablating the key frequencies harmless
    broken = _grokking_abc(bounds=(800, None, None), key=np.ones(16, bool), key_share=0.3,
                           cluster_freq=np.full(100, 2), key_logit_share=0.1,
                           ablations={"embedding: keep key": 2.0, "embedding: remove key": 1e-3,
                                      "neurons: keep key": 2.0, "neurons: remove key": 1e-3})
    broken["key"][[4, 9, 13]] = True
    broken["key"][2] = False
    assert _verdicts(rep.claims_abc(broken, True)) == [True, True, False, True, True, False, False, False, False]


def _grokking_d(**changes):
    p, fractions, noises = 31, [0.4, 0.6, 0.8], [0.0, 0.1, 0.2, 0.3]
    expected = np.asarray([[1 - x + x / p for x in noises] for _ in fractions])
    acc = lambda corrupted, test: {"corrupted": corrupted, "test": test, "clean_train": 1.0, "train": 0.9}  # noqa: E731
    m = {"fractions": fractions, "noises": noises, "expected": expected, "test_wd": np.full((3, 4), 0.99),
         "train_wd": expected + 0.005, "test_0": np.array([0.8, 0.7, 0.6]), "train_0": np.array([1.0, 1.0, 1.0]),
         "shares": np.linspace(0, 0.9, 10), "pruning": [acc(1.0, 0.8)] + [acc(0.2, 0.9)] * 9,
         "ipr": np.array([0.1, 0.2, 0.3, 0.1]), "size": np.ones(4),
         "ipr_reg": np.array([0.6, 0.7, 0.8, 0.9]), "size_reg": np.ones(4)}
    return m | changes


def test_grokking_label_noise_claims_follow_the_numbers():
    from toylab.experiments.reproductions import grokking as rep

    assert _verdicts(rep.claims_d(_grokking_d(), True)) == [True] * 4
    # the regularised net fits the corrupted labels too (train accuracy 1, not 1−ξ+ξ/p); the
    # unregularised one does not memorise; pruning changes nothing; the IPRs are alike
    fails = _grokking_d(train_wd=np.ones((3, 4)), train_0=np.array([0.9, 0.85, 0.8]),
                        pruning=[{"corrupted": 1.0, "test": 0.8, "clean_train": 1.0, "train": 1.0}] * 10,
                        ipr_reg=np.array([0.1, 0.2, 0.3, 0.1]))
    assert _verdicts(rep.claims_d(fails, True)) == [False] * 4


# ----------------------------------------------------------------------------- groups


def test_groups_claims_follow_the_numbers():
    from toylab.experiments.reproductions import groups as rep

    grokked = {"S4": {"n_grokked": 7, "n_runs": 8, "delays": [3.0, 4.0, 6.0]}}
    assert _verdicts(rep.claims_a({"groups": grokked}, True)) == [True]
    late_few = {"S4": {"n_grokked": 3, "n_runs": 8, "delays": [3.0, 4.0, 6.0]}}
    at_once = {"S4": {"n_grokked": 8, "n_runs": 8, "delays": [1.0, 1.2, 1.1]}}  # generalises as it fits
    assert _verdicts(rep.claims_a({"groups": late_few | {"C26": at_once["S4"]}}, True)) == [False, False]

    names = ["triv", "sign", "(4, 1)"]
    varied = {"names": names, "key": np.array([[False, True, True], [False, True, False]]), "first": np.array([1, 2])}
    same = {"names": names, "key": np.array([[False, True, True], [False, True, True]]), "first": np.array([1, 1])}
    verdicts = _verdicts(rep.claims_b({"stats": {"D13": varied}, "faithful": {"D13": [True, True]}}, True))
    assert verdicts == [True, True]
    # a run whose key irreps do not single out a∘b; every seed learns the same irreps in the same order
    verdicts = _verdicts(rep.claims_b({"stats": {"D13": same}, "faithful": {"D13": [True, False]}}, True))
    assert verdicts == [False, False]
    none = rep.claims_b({"stats": {"D13": varied}, "faithful": {"D13": []}}, True)
    assert not none[0].passed and none[0].measured == "no run grokked"

    run = {"restricted": 0.01, "test_loss": 0.02, "excluded": 5.0, "train_loss": 0.01, "embed_key_share": 0.8,
           "unembed_key_share": 0.7, "explained": 0.9, "composed": 0.92}
    groups = {"C26": {"group": "C26", "runs": [run] * 3, "n_irreps": 14, "key_counts": np.array([2, 3, 2])}}
    assert _verdicts(rep.claims_c({"groups": groups}, True)) == [True, True, True]
    # the logits are not the cubes; the loss survives removing the key irreps; the weights are elsewhere
    off = run | {"explained": 0.3, "excluded": 0.02, "embed_key_share": 0.2, "unembed_key_share": 0.1}
    groups["C26"]["runs"] = [off] * 3
    assert _verdicts(rep.claims_c({"groups": groups}, True)) == [False, False, False]


# ----------------------------------------------------------------------------- dictionaries


def _dictionary_rows(signed):
    return [{"density": d, "signed_mcc": s, "signed_mcc_min": s - 0.01, "mcc": s, "l0": 2.0,
             "explained_variance": 0.9, "f1": 0.8, "sparsity": 0.1} for d, s in zip([0.01, 0.1, 0.5], signed)]


def test_dictionaries_claims_follow_the_numbers():
    from toylab.experiments.reproductions import dictionaries as rep

    assert _verdicts(rep.claims_a({"represented": 20, "rows": _dictionary_rows([0.98, 0.85, 0.6])}, True)) == [True, True]
    # the toy stores only 12 features; the dense inputs are recovered as well as the sparse ones
    m = {"represented": 12, "rows": _dictionary_rows([0.98, 0.97, 0.96])}
    claims = rep.claims_a(m, True)
    assert _verdicts(claims) == [False, False] and "does not break up to p = 0.5" in claims[1].measured

    def kind(l0, score):
        return {"l0": np.asarray(l0, float), "mcc": np.asarray(score, float), "f1": np.asarray(score, float)}

    l0 = [1.0, 2.0, 3.0, 4.0]
    better = {"matryoshka": kind(l0, [0.6, 0.7, 0.8, 0.9]), "batchtopk": kind(l0, [0.5, 0.6, 0.7, 0.8]),
              "jumprelu": kind(l0, [0.6, 0.7, 0.8, 0.9]), "relu": kind(l0, [0.5, 0.6, 0.7, 0.8])}
    assert _verdicts(rep.claims_b({"points": better}, True)) == [True, True]
    swapped = {"matryoshka": better["batchtopk"], "batchtopk": better["matryoshka"],
               "jumprelu": kind([5.0, 6.0], [0.9, 0.95]), "relu": better["relu"]}  # L0 ranges apart
    claims = rep.claims_b({"points": swapped}, True)
    assert _verdicts(claims) == [False, False] and "do not overlap" in claims[1].measured

    key = np.zeros(16, bool)
    key[[3, 7]] = True
    seed = {"live": 50, "width": 64, "key_share": 0.95, "median_frac": 0.4, "ev": 0.9, "l0": 4.0}
    assert _verdicts(rep.claims_c({"test_acc": 1.0, "key": key, "per_seed": [seed, seed]}, True)) == [True]
    off_key = dict(seed, key_share=0.5)  # one seed's latents are led by other frequencies
    assert _verdicts(rep.claims_c({"test_acc": 1.0, "key": key, "per_seed": [seed, off_key]}, True)) == [False]
    ungrokked = rep.claims_c({"test_acc": 0.4, "grokked": False}, True)
    assert _verdicts(ungrokked) == [False] and "test accuracy 0.400" in ungrokked[0].measured


# ----------------------------------------------------------------------------- interaction


def test_interaction_claims_follow_the_numbers():
    from toylab.experiments.reproductions import interaction as rep

    def counts(lib_needed, pca_needed, lib_nodes=(30, 8, 8, 31)):
        return [{"seed": 0, "LIB": {"nodes": list(lib_nodes), "mass": [40, 30, 20], "needed": lib_needed},
                 "PCA": {"nodes": [31, 9, 10, 31], "mass": [60, 50, 40], "needed": pca_needed}}]

    names = ["resid_pre.0", "resid_mid.0", "resid_post.0", "logits"]
    holds = {"accuracy": 1.0, "names": names, "counts": counts([20, 15, 10], [40, 30, 20])}
    assert _verdicts(rep.claims_a(holds, True)) == [True, True]
    # LIB needs a quarter of PCA's features in a layer, and more edges
    fails = {"accuracy": 1.0, "names": names, "counts": counts([50, 40, 30], [40, 30, 20], lib_nodes=(30, 2, 8, 31))}
    assert _verdicts(rep.claims_a(fails, True)) == [False, False]
    ungrokked = rep.claims_a({"accuracy": 0.5, "grokked": False}, True)
    assert _verdicts(ungrokked) == [False] and "accuracy 0.500" in ungrokked[0].measured

    seed = {"seed": 0, "key": np.array([4, 9, 13]), "top": 6, "share": 0.8, "dominant": np.array([4, 9, 13, 4, 9, 13]),
            "pca_top": 8, "pca_share": 0.6}
    assert _verdicts(rep.claims_b({"seeds": [seed]}, True)) == [True, True]
    off = seed | {"share": 0.3, "dominant": np.array([4, 9, 2, 4, 9, 13])}  # one feature led by a non-key frequency
    assert _verdicts(rep.claims_b({"seeds": [seed, off]}, True)) == [False, False]

    c = {"accuracy": [1.0, 1.0], "share": 1e-9, "leak": 1e-8, "counts": [16, 20, 8], "recovered": True,
         "modularity": 0.5}
    assert _verdicts(rep.claims_c(c, True)) == [True, True]
    assert _verdicts(rep.claims_c(c | {"share": 0.1, "recovered": False}, True)) == [False, False]
    assert _verdicts(rep.claims_c(c | {"accuracy": [1.0, 0.9]}, True)) == [False, True]  # a block not learned

    def d(lib_n, lib_mass):
        return {"toy": {"lib_n": lib_n, "pca_n": [5, 2, 5], "rank": 2},
                "bilinear": {"rows": {"LIB": {"mass": lib_mass, "features": [40, 64, 10]},
                                      "PCA": {"mass": [300, 200], "features": [64, 64, 10]}},
                             "accuracy": 0.97, "names": ["input", "hidden", "logits"]}}

    assert _verdicts(rep.claims_d(d([2, 2, 5], [100, 80]), True)) == [True, True]
    assert _verdicts(rep.claims_d(d([5, 2, 5], [400, 200]), True)) == [False, False]


# ----------------------------------------------------------------------------- degeneracy


def _comparison(ok, estimate, expected, warnings=()):
    from toylab.testing.assertions import Comparison

    return Comparison(ok=ok, estimate=estimate, expected=expected, tolerance=0.05, parts={}, warnings=list(warnings),
                      message="")


def _degeneracy_row(name, value, estimate, ok=True, warnings=()):
    return {"name": name, "value": value, "multiplicity": 1, "exact": None, "nbeta": 1000.0,
            "c_hmc": _comparison(ok, estimate, value, warnings), "c_sgld": _comparison(ok, estimate, value, warnings),
            "sgld": {"mean": estimate, "std": 0.01, "step_size": 1e-4, "draws": 1000, "predicted_bias": 0.01},
            "hmc": {"mean": estimate, "std": 0.01, "chains": 8, "draws": 1000, "localization": 0.1}}


def test_degeneracy_claims_follow_the_numbers():
    from toylab.experiments.reproductions import degeneracy as rep

    rows = [_degeneracy_row("A", 0.5, 0.51), _degeneracy_row("B", 1.5, 1.49)]
    assert _verdicts(rep.claims_a({"rows": rows}, True)) == [True] * 5
    # B's estimates are off the theory without a warning, and below A's: the order is wrong
    rows[1] = _degeneracy_row("B", 1.5, 0.3, ok=False)
    assert _verdicts(rep.claims_a({"rows": rows}, True)) == [True, True, False, False, False]
    rows[1] = _degeneracy_row("B", 1.5, 1.2, ok=False, warnings=["too few effective draws"])  # off, but warns
    assert _verdicts(rep.claims_a({"rows": rows}, True)) == [True, True, True, True, True]
    # the multiplicity check: the estimate nearer λ than the shifted value fails
    row = _degeneracy_row("DLN", 1.5, 1.3) | {"multiplicity": 3, "shifted": _comparison(True, 1.3, 1.35),
                                            "unshifted": _comparison(False, 1.3, 1.5)}
    assert _verdicts(rep.claims_a({"rows": [row]}, True))[2] is True
    row["unshifted"] = _comparison(False, 1.3, 1.32)
    assert _verdicts(rep.claims_a({"rows": [row]}, True))[2] is False

    steps = np.arange(0, 8001, 800)
    falls = {"snap_steps": steps, "mean": np.array([5, 40, 60, 70, 65, 50, 30, 20, 15, 14, 14.0]),
             "std": np.full(11, 2.0), "bounds": (1600, 4000, 5600), "warnings": []}
    assert _verdicts(rep.claims_b(falls, True)) == [True]
    assert _verdicts(rep.claims_b(falls | {"mean": np.linspace(5, 70, 11)}, True)) == [False]  # keeps rising
    no_grok = rep.claims_b(falls | {"bounds": (1600, None, None)}, True)
    assert _verdicts(no_grok) == [False] and no_grok[0].claim == "the run groks (phases located)"

    # k: (median LLC, median loss, count)
    ordered = {"per_k": {4: (2.0, 0.05, 3), 5: (2.5, 0.04, 8), 6: (3.0, 0.03, 4)}, "from_random": {4: 0, 5: 8, 6: 0},
               "warnings": [], "feature_probability": 0.03}
    assert _verdicts(rep.claims_c(ordered, True)) == [True, True]
    flat = ordered | {"per_k": {4: (3.0, 0.05, 3), 5: (2.5, 0.04, 8), 6: (2.0, 0.03, 4)}}  # LLC falls with k
    assert _verdicts(rep.claims_c(flat, True)) == [False, False]
    alone = ordered | {"per_k": {5: (2.5, 0.04, 8), 6: (3.0, 0.03, 1)}}  # only one k found twice
    assert _verdicts(rep.claims_c(alone, True)) == [False, False]

    freed = {"freed_activation": 10, "freed_jacobian": 5, "freed_sync": 4, "freed_dead": 6, "freed_total": 25}
    d = {"d": 300, "zero": 80, "freed": freed, "rescalings": 40, "n_eff": 150.0, "n_eff_std": 3.0, "quadratic": 140.0}
    assert _verdicts(rep.claims_d(d, True)) == [True, True, True]
    # fewer flat directions than freed; 2·λ̂ above d − freed and below the quadratic part
    assert _verdicts(rep.claims_d(d | {"zero": 50, "n_eff": 260.0, "quadratic": 300.0}, True)) == [False, False, False]


# ----------------------------------------------------------------------------- development


def test_development_settings_hold_together():
    from toylab.core.family import get_family
    from toylab.experiments.reproductions import development as rep

    for quick in (True, False):
        setup = rep.induction_setup(quick)
        cfg = get_family("induction").config(**setup["base"])  # valid: a field out of range raises
        assert set(setup["head_snapshots"]) <= set(cfg.snapshot_steps), quick
        assert len([s for s in cfg.snapshot_steps if s > 0]) >= 5  # enough for the stage rule
        reg = rep.regression_setup(quick)
        get_family("icl_regression").config(**reg["base"])
        assert any(m <= reg["small"] for m in reg["n_tasks"]) and any(m >= reg["large"] for m in reg["n_tasks"])


def test_development_claims_follow_the_numbers():
    from toylab.analysis.stages import Stages
    from toylab.experiments.reproductions import development as rep

    steps = np.arange(0, 2500, 100)
    rise = 1 / (1 + np.exp(-(steps - 1100) / 150))

    def row(prev_end=0.3, induction_mid=1100):
        induction = 0.1 + 0.35 / (1 + np.exp(-(steps - induction_mid) / 150))
        return {"seed": 0, "steps": steps, "icl": -2.5 * rise, "prev": 0.1 + (prev_end - 0.1) * rise,
                "induction": induction, "window": (800.0, 1500.0), "prev_cross": 1100.0,
                "induction_cross": float(steps[np.argmax((induction - induction[0]) / (induction[-1] - induction[0])
                                                         >= 0.5)])}
    assert _verdicts(rep.claims_a({"rows": [row(), row()]}, True)) == [True]
    assert _verdicts(rep.claims_a({"rows": [row(), row(prev_end=0.15)]}, True)) == [False]  # no previous-token head
    assert _verdicts(rep.claims_a({"rows": [row(induction_mid=2300)]}, True)) == [False]  # induction head too late

    def stages(bounds):
        edges = (100.0,) + tuple(bounds) + (2400.0,)
        return Stages(boundaries=tuple(bounds), kinds=("plateau",) * len(bounds),
                      stages=tuple(zip(edges[:-1], edges[1:])), smoothed=np.zeros(3), slope=np.zeros(3))
    b = {"window": (800.0, 1500.0), "stages": stages([1600.0]), "loss_stages": stages([]), "mean": np.array([5.0, 50.0]),
         "warnings": []}
    assert _verdicts(rep.claims_b(b, True)) == [True]
    assert _verdicts(rep.claims_b(dict(b, stages=stages([1100.0, 1600.0])), True)) == [False]  # a boundary mid-window
    assert _verdicts(rep.claims_b(dict(b, stages=stages([])), True)) == [False]  # no boundary at its end

    labels = ["L0H0", "L0H1", "L1H0", "L1H1"]
    types = {"L0H0": "other", "L0H1": "previous-token", "L1H0": "induction", "L1H1": "induction"}
    apart = np.array([[0.1, 5, 20, 22], [0.2, 6, 22, 24], [0.1, 2, 7, 6], [0.2, 2, 8, 6.5]])
    mixed = np.array([[0.1, 5, 20, 22], [0.2, 2, 7, 6], [0.1, 2, 7, 6], [0.2, 6, 22, 24]])
    c = {"labels": labels, "types": types, "mean": apart, "warnings": ["w"]}
    assert _verdicts(rep.claims_c(c, True)) == [True]
    assert _verdicts(rep.claims_c(dict(c, mean=mixed), True)) == [False]

    d = {"n_tasks": np.array([1.0, 4, 16, 64, 256]), "dmmse": np.array([0.0, 0.9, 1.1, 0.8, 0.6]),
         "ridge": np.array([3.5, 3.5, 0.8, 0.4, 0.4]), "small": 4, "large": 64}
    assert _verdicts(rep.claims_d(d, True)) == [True]
    assert "4–16" in rep.claims_d(d, True)[0].measured
    assert _verdicts(rep.claims_d(dict(d, ridge=np.array([3.5, 0.5, 0.8, 0.4, 0.4])), True)) == [False]
    assert _verdicts(rep.claims_d(dict(d, dmmse=np.array([0.0, 0.9, 1.1, 0.3, 0.6])), True)) == [False]
