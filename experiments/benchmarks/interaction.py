"""Benchmark: the time to build the Local Interaction Basis and its interaction graph for the
grokking transformer (p = 113, Nanda et al.'s sizes: d_model 128, 4 heads, d_mlp 512, one
layer) on its training set (the 3 830 pairs of the grokking family's 30% split), for one
model and for several models vmapped (``jax.vmap`` over a stack of models made by
``eqx.filter_vmap`` over init keys).

The model is cut at every node layer (``resid_pre.0`` with the three positions flattened,
384 wide; ``resid_mid.0`` and ``resid_post.0`` at the answer position, 128; ``logits``, 113).
The weights are random (the init), which changes no shape and so no cost. Timed separately,
each compiled ahead of time once (its compile time reported on its own) and then timed warm
(the compiled program, ``block_until_ready``, median of ``--repeats`` calls):

- the node layers' activations;
- the per-example Jacobian Grams E[JᵀJ] of each section (``jacrev``, vmapped in chunks of
  ``--batch-size``), from the next layer's LIB features, as ``interaction_basis`` computes them;
- the Grams, eigendecompositions and rotations (float64, scoped ``enable_x64``) from the
  activations and those Jacobian Grams: the rest of ``interaction_basis``;
- the whole ``interaction_basis``; the ``pca_basis`` baseline;
- ``interaction_graph``: integrated-gradient edges, ``--n-alpha`` Gauss–Legendre nodes (each
  node one more per-example Jacobian of every section: the cost is linear in it);
- basis + graph end to end for 1 model and for N models vmapped: seconds per model.

A table, then one line saying what dominates. Run ``toylab bench interaction --help``;
``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import sys

from experiments.benchmarks.common import devices_line, int_list, positive_float, positive_int, stopwatch, timed

PARTS = ("activations", "jacobians", "eigh", "basis", "pca", "graph", "vmap")
PART_HELP = {"activations": "the node layers' activations", "jacobians": "the per-section Jacobian Grams",
             "eigh": "Grams + eigendecompositions (float64)", "basis": "the whole interaction_basis",
             "pca": "pca_basis", "graph": "interaction_graph",
             "vmap": "basis + graph end to end, for each count of --models"}
DEFAULT_MODELS = (1, 4)
# The module's default is 8 nodes; at p = 113 on a 2-core CPU one node costs about as much as
# one pass of Jacobians over the training set (~6 s a model), and the end-to-end rows run
# 1 + 4 models, so 8 nodes would take the default run past 7 minutes. The graph's cost is
# linear in the nodes (the table prints the cost of one): 2 keeps the run near 3 minutes.
DEFAULT_N_ALPHA = 2


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line (``prog: error: ...``), no usage block."""

    def error(self, message):
        self.exit(2, f"{self.prog}: error: {message}\n")


def _parts(text: str) -> tuple:
    names = [s.strip() for s in text.split(",") if s.strip()]
    bad = [n for n in names if n not in PARTS]
    if bad or not names:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a comma-separated list of "
                                         f"{', '.join(PARTS)} (or 'all')")
    return tuple(n for n in PARTS if n in names)


def _parts_arg(text: str) -> tuple:
    return PARTS if text.strip().lower() == "all" else _parts(text)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number in (0, 1]")
    return value


def _n_alpha(text: str) -> int:
    value = positive_int(text)
    if value > 64:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be an integer in 1..64")
    return value


def _modulus(text: str) -> int:
    value = positive_int(text)
    if value < 2:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be an integer >= 2")
    return value


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = _Parser(prog=prog or "bench_interaction",
                description="Time to build the Local Interaction Basis and the interaction graph of the p=113 "
                            "grokking transformer on its training set: one model and several vmapped, and which "
                            "part dominates (Jacobians or eigendecompositions).")
    p.add_argument("--p", type=_modulus, default=113, help="modulus (default 113)")
    p.add_argument("--train-fraction", type=_fraction, default=0.3, metavar="F",
                   help="share of the p² pairs the basis is built on: the grokking family's split (default 0.3)")
    p.add_argument("--models", type=int_list, default=DEFAULT_MODELS, metavar="N1,N2,...",
                   help=f"numbers of models timed end to end (basis + graph); N > 1 vmapped "
                        f"(default {','.join(map(str, DEFAULT_MODELS))})")
    p.add_argument("--n-alpha", type=_n_alpha, default=DEFAULT_N_ALPHA, metavar="K",
                   help=f"Gauss–Legendre nodes of the graph's integrated gradients, 1..64 (default {DEFAULT_N_ALPHA}; "
                        "the module's default is 8; the cost is linear in K)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="B",
                   help="examples per chunk of per-example Jacobians and activations (default 256, the module's)")
    p.add_argument("--repeats", type=positive_int, default=1, metavar="N",
                   help="timed calls of each compiled program, the median reported (default 1)")
    p.add_argument("--parts", type=_parts_arg, default=PARTS, metavar="P1,P2,...",
                   help="what to time, from: " + "; ".join(f"{k} ({v})" for k, v in PART_HELP.items())
                        + " (default all)")
    p.add_argument("--d-model", type=positive_int, default=128, metavar="D", help="residual width (default 128)")
    p.add_argument("--n-heads", type=positive_int, default=4, metavar="H", help="attention heads (default 4)")
    p.add_argument("--d-mlp", type=positive_int, default=512, metavar="D", help="MLP width (default 512)")
    p.add_argument("--truncation", type=positive_float, default=1e-6, metavar="T",
                   help="eigenvalue truncation of both bases, in (0, 1) (default 1e-6, the module's)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    return p


# ----------------------------------------------------------------------------- setup


def _training_tokens(p: int, fraction: float):
    """The grokking family's training pairs as transformer tokens [a, b, =] (n, 3)."""
    import numpy as np

    from toylab.analysis.fourier import grid_tokens
    from toylab.families.grokking import GrokkingConfig, grid_train_mask

    mask = grid_train_mask(GrokkingConfig(p=p), train_fraction=fraction)
    return np.asarray(grid_tokens(p)[mask.ravel()])


def _models(args, n: int | None):
    """One model (n None) or a stack of n (eqx.filter_vmap over init keys)."""
    import equinox as eqx
    import jax

    from toylab.models.transformer import init_transformer

    def init(key):
        return init_transformer(key, d_vocab=args.p + 1, d_vocab_out=args.p, d_model=args.d_model,
                                n_heads=args.n_heads, d_mlp=args.d_mlp)
    if n is None:
        return init(jax.random.key(0))
    return eqx.filter_vmap(init)(jax.random.split(jax.random.key(0), n))


def _measure(fn, *args, repeats: int, x64: bool = False) -> dict:
    """``fn(*args)`` jitted and compiled ahead of time (``compile_s``), then ``repeats``
    warm calls of the compiled program (``seconds``: their median). ``x64``: all of it in a
    scoped enable_x64 (float64 arguments stay float64)."""
    import contextlib

    import jax

    from toylab.tasks.losses import x64_scope

    with x64_scope(True) if x64 else contextlib.nullcontext():
        with stopwatch() as compiling:
            compiled = jax.jit(fn).lower(*args).compile()
        t = timed(compiled, *args, repeats=repeats, first=False)
    return {"compile_s": compiling.seconds, "seconds": t["seconds"], "times": t["times"], "result": t["result"]}


def _eigh_part(acts, Mps, truncation: float):
    """What interaction_basis does after the Jacobian Grams ``Mps``: per node layer the
    float64 Gram, its eigendecomposition, the whitened Jacobian Gram's eigendecomposition and
    the rotation C, C⁺ (the output layer: its PCA), with the module's own helpers."""
    import jax.numpy as jnp

    from toylab.analysis import interaction as ia

    dtype = acts[-1].dtype
    wide = jnp.float64
    layers = [None] * len(acts)
    layers[-1] = ia._pca_layer(acts[-1], truncation, "float64", dtype)
    with ia._scope("float64"):
        for i in range(len(acts) - 2, -1, -1):
            mean, G = ia._gram(acts[i], wide)
            D, U = ia._desc_eigh(G)
            kept_g = ia._keep(D, truncation)
            sqrtD = jnp.where(kept_g, jnp.sqrt(jnp.where(kept_g, D, 1.0)), 0.0)
            inv_sqrtD = jnp.where(kept_g, 1.0 / jnp.where(kept_g, sqrtD, 1.0), 0.0)
            Us = U * sqrtD[None, :]
            M = Us.T @ Mps[i].astype(wide) @ Us
            lam, V = ia._desc_eigh(M)
            kept = ia._keep(lam, truncation)
            root = jnp.where(kept, jnp.sqrt(jnp.where(kept, lam, 1.0)), 0.0)
            inv_root = jnp.where(kept, 1.0 / jnp.where(kept, root, 1.0), 0.0)
            C = (U * inv_sqrtD[None, :]) @ V * root[None, :]
            C_pinv = (inv_root[:, None] * V.T) @ Us.T
            layers[i] = (mean.astype(dtype), C.astype(dtype), C_pinv.astype(dtype),
                         jnp.where(kept, lam, 0.0).astype(dtype), kept)
    return layers


# ----------------------------------------------------------------------------- the command


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (code 2, one line) and --help (code 0)
        return e.code if isinstance(e.code, int) else 2

    def fail(text):
        print(f"{parser.prog}: error: {text}", file=sys.stderr)
        return 2
    if args.d_model % args.n_heads:
        return fail(f"argument --n-heads: invalid value {args.n_heads}: must divide --d-model={args.d_model}")
    if not args.truncation < 1:
        return fail(f"argument --truncation: invalid value {args.truncation!r}: must be a number in (0, 1)")
    tokens_np = _training_tokens(args.p, args.train_fraction)
    if len(tokens_np) < 2:
        return fail(f"argument --train-fraction: invalid value {args.train_fraction!r}: keeps {len(tokens_np)} of the "
                    f"{args.p}² pairs; the Grams need at least 2")

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from toylab.analysis import interaction as ia
    from toylab.tasks.losses import x64_scope

    log = lambda m: print(m, flush=True)  # noqa: E731
    parts, bs, R, T = args.parts, args.batch_size, args.repeats, args.truncation
    tokens = jnp.asarray(tokens_np)
    model = _models(args, None)
    sections = ia.cut(model)
    params, static = eqx.partition(model, eqx.is_array)
    with_model = lambda fn: (lambda prm, *a: fn(eqx.combine(prm, static), *a))  # noqa: E731

    log(devices_line())
    log(f"setting: p={args.p}, {len(tokens_np)} training pairs ({args.train_fraction:g} of {args.p}², the grokking "
        f"split); transformer d_model {args.d_model}, {args.n_heads} heads, d_mlp {args.d_mlp}, 1 layer, RANDOM "
        f"weights (the init: shapes, and so costs, as a trained model's)")
    acts_fn = with_model(lambda m, t: sections.activations(m, t, bs))
    acts_res = _measure(acts_fn, params, tokens, repeats=R)
    acts = acts_res["result"]
    widths = [a.shape[-1] for a in acts]
    log(f"node layers: {', '.join(f'{n} ({w})' for n, w in zip(sections.names, widths))}; chunks of {bs} examples, "
        f"truncation {T:g}, Grams and eigendecompositions in float64; graph: {args.n_alpha} Gauss–Legendre node(s); "
        f"each program compiled once, then the median of {R} warm call(s)")
    rows = []
    report = {"p": args.p, "examples": int(len(tokens_np)), "d_model": args.d_model, "n_heads": args.n_heads,
                        "d_mlp": args.d_mlp, "n_alpha": args.n_alpha, "batch_size": bs, "repeats": R,
                        "node_layers": dict(zip(sections.names, widths)), "weights": "random (init)",
                        "jax": jax.__version__, "backend": jax.default_backend()}

    def row(key, label, res, **extra):
        r = {"key": key, "part": label, "compile_s": res["compile_s"], "seconds": res["seconds"], **extra}
        rows.append(r)
        log(f"  {label:<52} compile {res['compile_s']:7.2f} s   {res['seconds']:8.3f} s")
        return r

    log("")
    if "activations" in parts:
        row("activations", "activations (all node layers)", acts_res)

    basis_fn = with_model(lambda m, t: ia.interaction_basis(sections, m, t, truncation=T, batch_size=bs))
    basis = None
    if "basis" in parts:
        res = _measure(basis_fn, params, tokens, repeats=R)
        basis = res["result"]
        row("basis", "interaction_basis (whole)", res)

    Mps = None
    if "jacobians" in parts or "eigh" in parts:
        if basis is None:
            basis = jax.block_until_ready(jax.jit(basis_fn)(params, tokens))
        grams = []
        for i, f in enumerate(sections.maps):
            def gram(prm, a, mean_n, C_n, f=f):
                m = eqx.combine(prm, static)
                return ia._jacobian_gram(lambda x: (f(m, x) - mean_n) @ C_n, a, bs, "float64")
            args_i = (params, acts[i], basis.mean[i + 1], basis.C[i + 1])
            if "jacobians" in parts:
                res = _measure(gram, *args_i, repeats=R)
                label = f"Jacobian Gram {sections.names[i]} → {sections.names[i + 1]} ({widths[i]}→{widths[i + 1]})"
                grams.append(row(f"jacobian.{i}", label, res))
                Mp = res["result"]
            else:
                with x64_scope(True):
                    Mp = jax.jit(gram)(*args_i)
            Mps = (Mps or []) + [Mp]
        if grams:
            total = {"compile_s": sum(g["compile_s"] for g in grams), "seconds": sum(g["seconds"] for g in grams)}
            row("jacobians", "Jacobian Grams, all sections (sum)", total)
    if "eigh" in parts:
        res = _measure(lambda a, M: _eigh_part(a, M, T), acts, Mps, repeats=R, x64=True)
        row("eigh", "Grams + eigendecompositions + rotations (float64)", res)

    if "pca" in parts:
        pca_fn = with_model(lambda m, t: ia.pca_basis(sections, m, t, truncation=T, batch_size=bs))
        row("pca", "pca_basis (whole)", _measure(pca_fn, params, tokens, repeats=R))

    graph_fn = with_model(lambda m, t, b: ia.interaction_graph(sections, m, t, b, n_alpha=args.n_alpha, batch_size=bs))
    if "graph" in parts:
        if basis is None:
            basis = jax.block_until_ready(jax.jit(basis_fn)(params, tokens))
        res = _measure(graph_fn, params, tokens, basis, repeats=R)
        row("graph", f"interaction_graph (whole, {args.n_alpha} node{'s' if args.n_alpha > 1 else ''})", res,
            seconds_per_node=res["seconds"] / args.n_alpha)

    def both(m, t):
        b = ia.interaction_basis(sections, m, t, truncation=T, batch_size=bs)
        return b, ia.interaction_graph(sections, m, t, b, n_alpha=args.n_alpha, batch_size=bs)
    one = None
    if "vmap" in parts:
        for n in args.models:
            if n == 1:
                res = _measure(with_model(both), params, tokens, repeats=R)
                label = "basis + graph, 1 model"
            else:
                stack = _models(args, n)
                prm_n, static_n = eqx.partition(stack, eqx.is_array)
                fn = jax.vmap(lambda prm, t: both(eqx.combine(prm, static_n), t), in_axes=(0, None))
                res = _measure(fn, prm_n, tokens, repeats=R)
                label = f"basis + graph, {n} models vmapped"
            r = row(f"models.{n}", label, res, models=n, seconds_per_model=res["seconds"] / n)
            if n == 1:
                one = r
            if one is not None:
                r["per_model_vs_one"] = r["seconds_per_model"] / one["seconds"]

    _table(rows, log)
    verdict = _verdict(rows, args.n_alpha)
    report["verdict"] = verdict
    log("")
    log(f"verdict: {verdict}")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({**report, "rows": [{k: v for k, v in r.items() if k != "result"} for r in rows]}, f, indent=2)
        log(f"wrote {args.json}")
    return 0


def _table(rows, log):
    by = {r["key"]: r for r in rows}
    basis = by.get("basis")
    log("")
    log(f"{'part':<52} | {'compile s':>9} | {'seconds':>8} | {'s/model':>8} | note")
    for r in rows:
        if r["key"].startswith("models."):
            ratio = r.get("per_model_vs_one")
            note = f"{ratio:.2f}× one model's time, per model" if ratio is not None and r["models"] > 1 else ""
            s_model = f"{r['seconds_per_model']:8.3f}"
        else:
            s_model = ""
            note = ""
            part_of_basis = r["key"] in ("activations", "jacobians", "eigh") or r["key"].startswith("jacobian.")
            if part_of_basis and basis is not None:
                note = f"{100 * r['seconds'] / basis['seconds']:.0f}% of interaction_basis"
            elif r["key"] == "pca" and basis is not None:
                note = f"{r['seconds'] / basis['seconds']:.2f}× interaction_basis"
            elif r["key"] == "graph":
                note = f"{r['seconds_per_node']:.2f} s per node"
                if basis is not None:
                    note += f"; {r['seconds'] / basis['seconds']:.2f}× interaction_basis"
        log(f"{r['part']:<52} | {r['compile_s']:>9.2f} | {r['seconds']:>8.3f} | {s_model:>8} | {note}")


def _verdict(rows, n_alpha: int) -> str:
    """One line: which of Jacobians, eigendecompositions, activations costs most, and how
    the vmapped models scale."""
    by = {r["key"]: r for r in rows}
    costs = {}
    if "jacobians" in by or "graph" in by:
        costs["Jacobians"] = by.get("jacobians", {}).get("seconds", 0.0) + by.get("graph", {}).get("seconds", 0.0)
    if "eigh" in by:
        costs["Grams + eigendecompositions"] = by["eigh"]["seconds"]
    if "activations" in by:
        costs["activations"] = by["activations"]["seconds"]
    parts = []
    if costs:
        top = max(costs, key=costs.get)
        total = sum(costs.values())
        share = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(costs.items(), key=lambda kv: -kv[1]))
        what = f"{top} dominate" if top != "activations" else "the activations dominate"
        parts.append(f"{what} ({100 * costs[top] / total:.0f}% of the parts timed: {share})")
        if "Jacobians" in costs and ("jacobians" in by and "graph" in by):
            parts.append(f"per-example Jacobians: {by['jacobians']['seconds']:.2f} s for the basis's Grams, "
                         f"{by['graph']['seconds']:.2f} s for the graph's {n_alpha} node(s) "
                         f"({by['graph']['seconds_per_node']:.2f} s each)")
    many = [r for r in rows if r["key"].startswith("models.") and r["models"] > 1 and "per_model_vs_one" in r]
    if many:
        r = max(many, key=lambda r: r["models"])
        parts.append(f"{r['models']} models vmapped: {r['seconds_per_model']:.2f} s per model, "
                     f"{r['per_model_vs_one']:.2f}× one model's")
    return "; ".join(parts) if parts else "nothing timed that compares parts"


if __name__ == "__main__":
    sys.exit(main())
