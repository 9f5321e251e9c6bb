"""The Local Interaction Basis (Bushnaq et al. 2024) on the lab's models, beside PCA.

    (a) a grokked modular-addition transformer cut at its residual stream (before attention,
        before the MLP, after the MLP) and logits: how many LIB and PCA features each node
        layer needs to keep 99% of the model's accuracy, and how many edges each block needs
        (those carrying 90% of the edge mass; the fewest keeping accuracy within 0.001) —
        the paper finds about equal node counts and fewer edges for LIB
    (b) the same model's LIB features after the MLP labelled by their Fourier terms: the
        paper finds them dominated by cos(k(a+b)) at the key frequencies the Fourier analysis
        finds
    (c) a network with known modules (a block-diagonal MLP trained on two independent
        modular sub-tasks, inputs on the full product grid): no edges across blocks, and the
        clustering of the graph recovers the blocks
    (d) the superposition toy and a bilinear digit classifier through the same code: LIB
        drops the input directions the model cannot see (the Jacobian degeneracy), and the
        two graphs' sparsity beside PCA

Each figure set is four pieces (:class:`~toylab.experiments.reproductions._common.FigureSet`):
(a) and (b) share the transformer, which :func:`prepare` trains once and cuts, building its
LIB and PCA bases, graphs and counts (their train piece hands it on); (c) trains the block
MLP and (d) the toy and the bilinear classifier. ``analyse_X`` measures (for (a), nothing past
the accuracy when the transformer did not grok), ``draw_X`` writes the PNGs, ``claims_X``
checks the paper's statements on the measured numbers.

``--quick`` runs on 2 CPU cores in minutes (p = 31, one seed); the full mode uses p = 113
and three seeds (a GPU job).
Run: ``toylab reproduce interaction [--quick]`` or ``python -m toylab.experiments.reproductions.interaction``.
"""

from __future__ import annotations

from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import optax

from toylab.experiments.reproductions._claims import Claim
from toylab.experiments.reproductions._common import FigureSet, run_figures, save_figure, script_main
from toylab.experiments.reproductions.grokking import grokking_runs, grokking_setup
from toylab.analysis import fourier as fa
from toylab.analysis import interaction as ia
from toylab.core.sweep import run_sweep
from toylab.plots import interaction as plots

NAME = "interaction"
# import name -> distribution of what this reproduction needs beyond toylab's dependencies
# (the digits of (d)'s bilinear classifier); all in the reproduce extra
REQUIRES = {"sklearn": "scikit-learn"}
ACCURACY_SHARE = 0.99  # (a): a node layer's features must keep 99% of the full model's accuracy
EDGE_SLACK = 0.001  # (a): the edges kept must hold accuracy within this of the full model
MASS = 0.9  # edges carrying this share of a block's mass
N_ALPHA = 8  # Gauss–Legendre nodes of the attribution integral


def _sweep_dir(work, name):
    return None if work is None else Path(work) / name


def _resume(folder):
    return folder is not None and folder.exists()


def interaction_setup(quick: bool) -> dict:
    base, _ = grokking_setup(quick)
    return {"sweep": base, "seeds": 1 if quick else 3}


# ----------------------------------------------------------------------------- shared: the grokked transformer


def _counts(sections, model, tokens, labels, basis, edges, full_acc):
    """Per node layer, the fewest features keeping ACCURACY_SHARE of ``full_acc``; per block,
    the edges carrying MASS of the mass and the fewest keeping accuracy within EDGE_SLACK."""
    nodes = []
    for l in range(len(sections)):
        n = int(np.sum(np.asarray(basis.kept[l])))
        # the arrays are arguments, not closed-over constants, which XLA would try to fold
        one = jax.jit(lambda k, m, t, y, b, l=l: ia.feature_ablation(sections, m, t, y, b, l, k[None])[0][0])
        nodes.append(ia.fewest_kept(lambda k: float(one(jnp.asarray(k), model, tokens, labels, basis)), n,
                                    lambda acc: acc >= ACCURACY_SHARE * full_acc))
    mass, needed = [], []
    for l, e in enumerate(edges):
        mass.append(int(ia.edges_for_mass(e, MASS)))
        n = int(np.sum(np.asarray(e) > 0))
        one = jax.jit(lambda k, m, t, y, b, e, l=l: ia.edge_ablation(sections, m, t, y, b, e, l, k[None],
                                                                      batch_size=256)[0][0])
        needed.append(ia.fewest_kept(lambda k: float(one(jnp.asarray(k), model, tokens, labels, basis, e)), n,
                                     lambda acc: acc >= full_acc - EDGE_SLACK))
    return nodes, mass, needed


def _curves(sections, model, tokens, labels, basis):
    out = []
    for l in range(len(sections)):
        n = int(np.sum(np.asarray(basis.kept[l])))
        ks = np.unique(np.round(np.geomspace(1, max(n, 1), 14)).astype(int))
        ks = np.concatenate([[0], ks])
        acc, _ = ia.feature_ablation(sections, model, tokens, labels, basis, l, ks)
        out.append((ks, np.asarray(acc)))
    return out


def prepare(quick: bool, quiet: bool, work=None):
    setup = interaction_setup(quick)
    res = grokking_runs(quick, quiet, setup["seeds"], work)  # grokking (a)-(c)'s transformer, seed 0 shared with it
    p = setup["sweep"]["p"]
    tokens = jnp.asarray(fa.grid_tokens(p))
    labels = jnp.asarray(fa.sum_labels(p).ravel())
    models = []
    for run in res:
        model = run.model
        sections = ia.cut(model)
        full_acc, full_loss = (float(x) for x in ia.output_scores(jax.vmap(model)(tokens), labels))
        if not quiet:
            print(f"  (a) seed {run.seed}: accuracy {full_acc:.4f} on all {p}² pairs; building LIB and PCA", flush=True)
        entry = {"seed": run.seed, "model": model, "sections": sections, "accuracy": full_acc, "loss": full_loss}
        for kind, build in (("LIB", ia.interaction_basis), ("PCA", ia.pca_basis)):
            basis = build(sections, model, tokens)
            edges = ia.interaction_graph(sections, model, tokens, basis, n_alpha=N_ALPHA)
            nodes, mass, needed = _counts(sections, model, tokens, labels, basis, edges, full_acc)
            entry[kind] = {"basis": basis, "edges": edges, "nodes": nodes, "mass": mass, "needed": needed}
            if not quiet:
                print(f"  (a) seed {run.seed} {kind}: features {nodes}, edges for {MASS:.0%} mass {mass}, "
                      f"edges keeping accuracy {needed}", flush=True)
        models.append(entry)
    return {"p": p, "tokens": tokens, "labels": labels, "models": models, "setup": setup}


def train_shared(quick: bool, quiet: bool, work=None, shared=None):
    """(a) and (b) read the transformer :func:`prepare` trained, with its bases and graphs
    (``shared``): nothing more to train."""
    return shared


# ----------------------------------------------------------------------------- (a)


def analyse_a(shared, quick) -> dict:
    """The first seed's accuracy (below 0.99 nothing more is read: it did not grok); else its
    feature-ablation curves per node layer for LIB and PCA, its LIB graph's four spectral
    modules, and every seed's feature and edge counts."""
    models = shared["models"]
    first = models[0]
    sections = first["sections"]
    names = list(sections.names)
    if first["accuracy"] < 0.99:
        return {"accuracy": first["accuracy"], "grokked": False}
    curves = {kind: _curves(sections, first["model"], shared["tokens"], shared["labels"], first[kind]["basis"])
              for kind in ("LIB", "PCA")}
    lib_mods = ia.graph_modules(first["LIB"]["edges"], method="spectral", n_modules=4)
    counts = [{"seed": m["seed"], **{kind: {k: m[kind][k] for k in ("nodes", "mass", "needed")} for kind in ("LIB", "PCA")}}
              for m in models]
    return {"accuracy": first["accuracy"], "grokked": True, "p": shared["p"], "seed": first["seed"], "names": names,
            "curves": curves, "edges": first["LIB"]["edges"], "importance": first["LIB"]["basis"].importance,
            "modules": lib_mods, "counts": counts}


def draw_a(m, out, quick):
    if not m["grokked"]:  # nothing was read: no figures
        return
    names, first = m["names"], m["counts"][0]
    blocks = [f"{a} → {b}" for a, b in zip(names, names[1:])]
    tag = f"(a+b) mod {m['p']}, seed {m['seed']}"
    save_figure(plots.ablation_curves_plot(m["curves"], names, m["accuracy"], ACCURACY_SHARE * m["accuracy"],
                                           f"(a) top-k features kept per node layer, LIB and PCA, grokked transformer "
                                           f"{tag}; the rest set to the mean"), out, "interaction_a_ablation.png")
    totals = [e.size for e in m["edges"]]
    save_figure(plots.edge_counts_plot(blocks, {f"{k}, {MASS:.0%} of mass": first[k]["mass"] for k in ("LIB", "PCA")}
                                       | {f"{k}, accuracy within {EDGE_SLACK}": first[k]["needed"] for k in ("LIB", "PCA")},
                                       totals, "edges", f"(a) edges per block, {tag} (attributions integrated over α "
                                       f"by {N_ALPHA}-node Gauss–Legendre)"), out, "interaction_a_edges.png")
    save_figure(plots.interaction_graph_plot(m["edges"], names, m["importance"], m["modules"],
                                             title=f"(a) LIB interaction graph, {tag}: top features per layer, 4 spectral "
                                             f"modules"), out, "interaction_a_graph.png")


def claims_a(m, quick) -> list[Claim]:
    if m["accuracy"] < 0.99:
        return [Claim("interaction (a)", "the transformer groks (accuracy ≥ 0.99 on all pairs)", "grokking",
                      f"accuracy {m['accuracy']:.3f}", False)]
    rows = []
    node_ratio, edge_lib, edge_pca, mass_lib, mass_pca = [], [], [], [], []
    for c in m["counts"]:
        lib, pca = c["LIB"], c["PCA"]
        rows.append(f"seed {c['seed']}: features LIB {lib['nodes']} PCA {pca['nodes']}; edges keeping accuracy LIB "
                    f"{lib['needed']} PCA {pca['needed']}; {MASS:.0%} mass LIB {lib['mass']} PCA {pca['mass']}")
        # the input layer (token embeddings) and logits are the same for both up to rotation: compare the inner ones
        node_ratio += [l / max(q, 1) for l, q in zip(lib["nodes"], pca["nodes"])]
        edge_lib.append(sum(lib["needed"]))
        edge_pca.append(sum(pca["needed"]))
        mass_lib.append(sum(lib["mass"]))
        mass_pca.append(sum(pca["mass"]))
    layers = ", ".join(m["names"])
    return [
        Claim("interaction (a)", f"LIB and PCA need about as many features per node layer (ratio within 0.5–2) to keep "
              f"{ACCURACY_SHARE:.0%} accuracy", "about equal node counts (Bushnaq et al. 2024, modular addition)",
              f"layers {layers}; " + " | ".join(rows), bool(all(0.5 <= r <= 2 for r in node_ratio))),
        Claim("interaction (a)", f"LIB needs fewer edges than PCA to keep accuracy within {EDGE_SLACK} (summed over "
              "blocks)", "fewer edges for LIB: its interaction graph is sparser",
              f"LIB {edge_lib}, PCA {edge_pca} (per seed); {MASS:.0%} of mass: LIB {mass_lib}, PCA {mass_pca}",
              bool(all(a < b for a, b in zip(edge_lib, edge_pca)))),
    ]


# ----------------------------------------------------------------------------- (b)


def analyse_b(shared, quick) -> dict:
    """Per seed: the key frequencies of the embedding and, after the MLP, the LIB (and PCA)
    features carrying 90% of the importance: their importance-weighted share of power in
    cos(k(a+b)) at key k and each one's leading k(a+b) frequency; the first seed's Fourier
    labels for the figure."""
    p = shared["p"]
    seeds, figure = [], None
    for m in shared["models"]:
        model, sections = m["model"], m["sections"]
        layer = sections.names.index("resid_post.0")
        key_mask = np.asarray(fa.key_frequencies(fa.frequency_power(
            fa.embedding_fourier_norms(fa.embedding_matrix(model), p), p)))
        key = np.flatnonzero(key_mask)
        acts = sections.activations(model, shared["tokens"], 256)
        per_kind = {}
        for kind in ("LIB", "PCA"):
            basis = m[kind]["basis"]
            feats = np.asarray(basis.features(layer, acts[layer])).reshape(p, p, -1)
            labels = {k: np.asarray(v) for k, v in ia.fourier_labels(feats, p).items()}
            imp = np.asarray(basis.importance[layer], np.float64)
            kept = np.asarray(basis.kept[layer])
            # the features that carry 90% of the importance (LIB) / variance (PCA)
            top = int(np.searchsorted(np.cumsum(imp) / imp.sum(), 0.9) + 1)
            w = imp[:top] / imp[:top].sum()
            key_sum = labels["sum"][key - 1, :top].sum(0)
            per_kind[kind] = (float(w @ key_sum), top, labels, imp, kept)
        lib_share, top, labels, imp, _ = per_kind["LIB"]
        dominant = np.argmax(labels["sum"][:, :top], axis=0) + 1
        seeds.append({"seed": m["seed"], "key": key, "top": top, "share": lib_share, "dominant": dominant,
                      "pca_top": per_kind["PCA"][1], "pca_share": per_kind["PCA"][0]})
        if m is shared["models"][0]:
            figure = {"seed": m["seed"], "labels": labels, "importance": imp, "key": key,
                      "names": ia.label_names({k: v[..., :16] for k, v in labels.items()})}
    return {"p": p, "seeds": seeds, "figure": figure}


def draw_b(m, out, quick):
    f, p = m["figure"], m["p"]
    save_figure(plots.fourier_labels_plot(f["labels"], f["importance"], f["key"], names=f["names"],
                                          title=f"(b) LIB features after the MLP (resid_post), (a+b) mod {p}, seed "
                                          f"{f['seed']}: Fourier terms by share of power; key frequencies "
                                          f"{f['key'].tolist()}"), out, "interaction_b_fourier.png")


def claims_b(m, quick) -> list[Claim]:
    claims_rows, shares, freq_ok = [], [], []
    for s in m["seeds"]:
        key, dominant = s["key"], s["dominant"]
        in_key = np.isin(dominant, key)
        shares.append(s["share"])
        freq_ok.append(float(in_key.mean()))
        claims_rows.append(f"seed {s['seed']}: key frequencies {key.tolist()}; top {s['top']} LIB features carry "
                           f"{s['share']:.2f} of their power in cos(k(a+b)) at key k (PCA's top {s['pca_top']}: "
                           f"{s['pca_share']:.2f}); dominant k(a+b) frequencies {sorted(set(dominant.tolist()))}")
    return [
        Claim("interaction (b)", "the layer after the MLP is dominated by cos(k(a+b)) at the key frequencies "
              "(importance-weighted share of power ≥ 0.5 among the features carrying 90% of Λ)",
              "LIB features of modular addition are Fourier features, cos(k(a+b)) after the MLP",
              " | ".join(claims_rows), bool(all(s >= 0.5 for s in shares))),
        Claim("interaction (b)", "each of those features' leading cos(k(a+b)) frequency is a key frequency",
              "the LIB features use the key frequencies", f"share of features: {', '.join(f'{x:.2f}' for x in freq_ok)}",
              bool(all(x == 1.0 for x in freq_ok))),
    ]


# ----------------------------------------------------------------------------- (c) known modules


class BlockMLP(eqx.Module):
    """An MLP whose weights are masked block-diagonal: block b reads only its own inputs and
    writes only its own outputs (W ⊙ mask in every forward pass)."""

    W_in: jax.Array
    b_in: jax.Array
    W_out: jax.Array
    b_out: jax.Array
    mask_in: jax.Array
    mask_out: jax.Array

    def hidden(self, x):
        return jax.nn.relu((self.W_in * self.mask_in) @ x + self.b_in)

    def out(self, h):
        return (self.W_out * self.mask_out) @ h + self.b_out


def block_task(moduli=(5, 3)):
    """Two independent sub-tasks (a_i + b_i) mod m_i on the full product grid of their inputs:
    inputs (n, Σ 2m_i) one-hots, labels (n, 2), and each input/output coordinate's block."""
    grids = [np.stack(np.meshgrid(np.arange(m), np.arange(m), indexing="ij"), -1).reshape(-1, 2) for m in moduli]
    idx = np.stack(np.meshgrid(*[np.arange(len(g)) for g in grids], indexing="ij"), -1).reshape(-1, len(grids))
    parts, labels = [], []
    for b, (m, g) in enumerate(zip(moduli, grids)):
        pairs = g[idx[:, b]]
        parts += [np.eye(m)[pairs[:, 0]], np.eye(m)[pairs[:, 1]]]
        labels.append((pairs[:, 0] + pairs[:, 1]) % m)
    x = np.concatenate(parts, 1).astype(np.float32)
    in_block = np.concatenate([np.full(2 * m, b) for b, m in enumerate(moduli)])
    out_block = np.concatenate([np.full(m, b) for b, m in enumerate(moduli)])
    return jnp.asarray(x), np.stack(labels, 1), in_block, out_block


def train_block_mlp(key, moduli=(5, 3), hidden=(32, 24), steps: int = 2000):
    x, labels, in_block, out_block = block_task(moduli)
    hid_block = np.concatenate([np.full(h, b) for b, h in enumerate(hidden)])
    k1, k2 = jax.random.split(key)
    d_in, d_h, d_out = x.shape[1], hid_block.size, out_block.size
    model = BlockMLP(jax.random.normal(k1, (d_h, d_in)) / np.sqrt(4.0), jnp.zeros(d_h),
                     jax.random.normal(k2, (d_out, d_h)) / np.sqrt(d_h / len(moduli)), jnp.zeros(d_out),
                     jnp.asarray(hid_block[:, None] == in_block[None, :], jnp.float32),
                     jnp.asarray(out_block[:, None] == hid_block[None, :], jnp.float32))
    splits = np.cumsum(moduli)[:-1]
    y = jnp.asarray(labels)

    def loss(m):
        logits = jax.vmap(lambda v: m.out(m.hidden(v)))(x)
        total = 0.0
        for b, part in enumerate(jnp.split(logits, splits, axis=1)):
            total += -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(part), y[:, b:b + 1], axis=1))
        return total
    params, static = eqx.partition(model, eqx.is_inexact_array)
    params = eqx.tree_at(lambda m: (m.mask_in, m.mask_out), params, replace=(None, None))
    masks = (model.mask_in, model.mask_out)
    opt = optax.adam(1e-2)

    def full(p):
        m = eqx.combine(p, static)
        return eqx.tree_at(lambda q: (q.mask_in, q.mask_out), m, masks, is_leaf=lambda v: v is None)

    def step(carry, _):
        p, st = carry
        g = jax.grad(lambda q: loss(full(q)))(p)
        u, st = opt.update(g, st)
        return (optax.apply_updates(p, u), st), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=steps)
    model = full(params)
    logits = jax.vmap(lambda v: model.out(model.hidden(v)))(x)
    acc = [float(jnp.mean(jnp.argmax(part, 1) == y[:, b])) for b, part in enumerate(jnp.split(logits, splits, axis=1))]
    return model, x, acc, (in_block, hid_block, out_block)


def block_sections() -> ia.Sections:
    return ia.Sections.from_functions(("input", "hidden", "logits"), lambda m, x: x,
                                      (lambda m, x: m.hidden(x), lambda m, h: m.out(h)))


def feature_blocks(basis, coordinate_blocks):
    """Each feature's block (where its column of C has most weight) and the largest share of a
    column outside its block, over kept features."""
    blocks, leak = [], 0.0
    for C, kept, cb in zip(basis.C, basis.kept, coordinate_blocks):
        C = np.asarray(C, np.float64)
        weight = np.stack([np.sum(C[cb == b] ** 2, 0) for b in range(cb.max() + 1)])  # (blocks, features)
        total = np.maximum(weight.sum(0), 1e-300)
        own = np.argmax(weight, 0)
        blocks.append(np.where(np.asarray(kept), own, -1))
        k = np.asarray(kept)
        if k.any():
            leak = max(leak, float(np.max(1 - weight.max(0)[k] / total[k])))
    return blocks, leak


C_MODULI, C_HIDDEN = (5, 3), (32, 24)


def train_c(quick: bool, quiet: bool, work=None, shared=None):
    """The block-diagonal MLP on the two sub-tasks: (model, inputs, accuracy per block,
    each coordinate's block per layer)."""
    return train_block_mlp(jax.random.key(0), C_MODULI, C_HIDDEN, steps=2000 if quick else 5000)


def analyse_c(trained, quick) -> dict:
    """The LIB basis and graph of the block MLP: the share of edge mass across blocks, each
    feature's block, the two spectral modules and whether they are the blocks, modularity."""
    model, x, acc, coord_blocks = trained
    moduli = C_MODULI
    sections = block_sections()
    basis = ia.interaction_basis(sections, model, x)
    edges = ia.interaction_graph(sections, model, x, basis, n_alpha=N_ALPHA)
    blocks, leak = feature_blocks(basis, coord_blocks)
    cross = total = 0.0
    for l, e in enumerate(edges):
        e = np.asarray(e, np.float64)
        src, dst = blocks[l], blocks[l + 1]
        valid = (dst[:, None] >= 0) & (src[None, :] >= 0)
        cross += e[valid & (dst[:, None] != src[None, :])].sum()
        total += e.sum()
    share = cross / total
    mods = ia.graph_modules(edges, 2, method="spectral")
    agree = []
    for lab, blk in zip(mods, blocks):
        ok = blk >= 0
        agree.append((lab[ok], blk[ok]))
    lab_all = np.concatenate([a for a, _ in agree])
    blk_all = np.concatenate([b for _, b in agree])
    # recovered: one module label per block, different between the blocks
    recovered = all(len(set(lab_all[blk_all == b])) == 1 for b in range(len(moduli))) and \
        len({lab_all[blk_all == b][0] for b in range(len(moduli)) if np.any(blk_all == b)}) == len(moduli)
    q = ia.modularity(edges, mods)
    counts = [int(k.sum()) for k in map(np.asarray, basis.kept)]
    return {"accuracy": acc, "share": share, "leak": leak, "counts": counts, "recovered": recovered,
            "modularity": q, "edges": edges, "names": list(sections.names), "importance": basis.importance,
            "modules": mods}


def draw_c(m, out, quick):
    acc = m["accuracy"]
    save_figure(plots.interaction_graph_plot(m["edges"], m["names"], m["importance"], m["modules"], top=40,
                                             title=f"(c) block-diagonal MLP on (a+b) mod {C_MODULI[0]} ⊕ (a+b) mod "
                                             f"{C_MODULI[1]} (accuracy {acc[0]:.2f}, {acc[1]:.2f}): LIB graph, 2 spectral "
                                             f"modules"), out, "interaction_c_modules.png")


def claims_c(m, quick) -> list[Claim]:
    acc, share, recovered = m["accuracy"], m["share"], m["recovered"]
    return [
        Claim("interaction (c)", "no edges across the blocks: cross-block share of edge mass < 1e-6",
              "a modular network's interaction graph has no edges between modules",
              f"cross-block share {share:.2e}; largest weight of a feature column outside its block {m['leak']:.1e}; "
              f"features {m['counts']}; accuracy {acc[0]:.3f}, {acc[1]:.3f}", bool(share < 1e-6 and min(acc) == 1.0)),
        Claim("interaction (c)", "spectral clustering of the graph into 2 modules recovers the blocks",
              "modules are found by clustering the interaction graph",
              f"recovered: {recovered}; modularity Q = {m['modularity']:.3f} (1/2 is two equal disconnected halves)",
              bool(recovered)),
    ]


# ----------------------------------------------------------------------------- (d) the toy and bilinear models


def train_d(quick: bool, quiet: bool, work=None, shared=None):
    """The superposition toy 5 → 2 and a bilinear digit classifier, one seed each."""
    toy_cfg = {"n_features": 5, "n_hidden": 2, "feature_probability": 0.05, "importance_decay": 0.9, "steps": 4000}
    folder = _sweep_dir(work, "interaction-toy")
    toy = run_sweep("superposition", toy_cfg, seeds=1, quiet=quiet, out=folder, resume=_resume(folder))
    bil_cfg = {"dataset": "digits", "hidden": 64, "d_model": 0, "steps": 1500 if quick else 4000, "batch_size": 512}
    folder = _sweep_dir(work, "interaction-bilinear")
    bil = run_sweep("bilinear", bil_cfg, seeds=1, quiet=quiet, out=folder, resume=_resume(folder))
    return {"toy": toy, "bilinear": bil}  # two sweeps of one run each


def analyse_d(trained, quick) -> dict:
    """The toy's LIB and PCA features per layer beside rank(W), and its LIB graph; the
    bilinear classifier's LIB and PCA graphs (edges for MASS of each block's mass, features
    kept) and its test accuracy."""
    from toylab.tasks.images import load_images
    from toylab.tasks.sparse_features import sparse_features

    toy = trained["toy"][0].model
    x = sparse_features(jax.random.key(1), 4096, 5, 0.05)
    sections = ia.cut(toy)
    lib = ia.interaction_basis(sections, toy, x)
    pca = ia.pca_basis(sections, toy, x)
    lib_n = [int(np.asarray(k).sum()) for k in lib.kept]
    pca_n = [int(np.asarray(k).sum()) for k in pca.kept]
    rank = int(np.linalg.matrix_rank(np.asarray(toy.W)))
    lib_edges = ia.interaction_graph(sections, toy, x, lib, n_alpha=N_ALPHA)
    toy_m = {"lib_n": lib_n, "pca_n": pca_n, "rank": rank, "edges": lib_edges, "names": list(sections.names),
             "importance": lib.importance}
    # a bilinear digit classifier: input pixels → bilinear hidden layer → stream → logits
    bil = trained["bilinear"][0].model
    data = load_images("digits")
    xt, yt = jnp.asarray(data.x_test, jnp.float32), jnp.asarray(data.y_test)
    sections = ia.cut(bil)
    rows = {}
    for kind, build in (("LIB", ia.interaction_basis), ("PCA", ia.pca_basis)):
        basis = build(sections, bil, xt)
        edges = ia.interaction_graph(sections, bil, xt, basis, n_alpha=N_ALPHA)
        rows[kind] = {"mass": [int(ia.edges_for_mass(e, MASS)) for e in edges],
                      "features": [int(np.asarray(k).sum()) for k in basis.kept], "edges": edges,
                      "importance": basis.importance}
    acc = float(ia.output_scores(jax.vmap(bil)(xt), yt)[0])
    return {"toy": toy_m, "bilinear": {"rows": rows, "accuracy": acc, "names": list(sections.names)}}


def draw_d(m, out, quick):
    bil, toy = m["bilinear"], m["toy"]
    lib = bil["rows"]["LIB"]
    save_figure(plots.interaction_graph_plot(lib["edges"], bil["names"], lib["importance"],
                                             title=f"(d) bilinear digit classifier (test accuracy {bil['accuracy']:.3f}): "
                                             f"LIB graph"),
                out, "interaction_d_bilinear.png")
    save_figure(plots.interaction_graph_plot(toy["edges"], toy["names"], toy["importance"],
                                             title="(d) superposition toy 5 → 2: LIB graph"), out, "interaction_d_toy.png")


def claims_d(m, quick) -> list[Claim]:
    toy, bil = m["toy"], m["bilinear"]
    lib_n, pca_n, rank = toy["lib_n"], toy["pca_n"], toy["rank"]
    rows, acc = bil["rows"], bil["accuracy"]
    lm, pm = sum(rows["LIB"]["mass"]), sum(rows["PCA"]["mass"])
    return [
        Claim("interaction (d)", "superposition toy 5 → 2: LIB keeps rank(W) input features, PCA all 5",
              "LIB drops the directions the next layer cannot see (Jacobian degeneracy); PCA cannot",
              f"features per layer (input, hidden, output): LIB {lib_n}, PCA {pca_n}; rank(W) = {rank}",
              bool(lib_n[0] == rank and pca_n[0] == 5)),
        Claim("interaction (d)", f"bilinear digit classifier: LIB's graph is sparser than PCA's (edges for "
              f"{MASS:.0%} of each block's mass, summed)", "LIB's gain is a sparser interaction graph",
              f"LIB {rows['LIB']['mass']} (sum {lm}), PCA {rows['PCA']['mass']} (sum {pm}); features LIB "
              f"{rows['LIB']['features']}, PCA {rows['PCA']['features']}; layers {', '.join(bil['names'])}; test "
              f"accuracy {acc:.3f}", bool(lm < pm)),
    ]


FIGURES = {"a": FigureSet(train_shared, analyse_a, draw_a, claims_a),
           "b": FigureSet(train_shared, analyse_b, draw_b, claims_b),
           "c": FigureSet(train_c, analyse_c, draw_c, claims_c),
           "d": FigureSet(train_d, analyse_d, draw_d, claims_d)}


def reproduce(out, quick: bool = True, quiet: bool = False, only: str | None = None, work=None) -> list[Claim]:
    """Run the interaction-basis figure sets (``only``: some of "abcd"); returns the claims."""
    needs_model = only is None or bool(set(only) & set("ab"))

    def prep(q, quiet_, w):
        return prepare(q, quiet_, w) if needs_model else None
    return run_figures(FIGURES, out, quick, quiet, only, work, prepare=prep)


if __name__ == "__main__":
    script_main(__doc__, reproduce, "figure sets, some of abcd")
