"""Benchmark: the time to build the Local Interaction Basis and its interaction graph for the
grokking transformer (p = 113, Nanda et al.'s sizes: d_model 128, 4 heads, d_mlp 512, one
layer) on its training set (the 3 830 pairs of the grokking family's 30% split), for one
model and for several models vmapped (``jax.vmap`` over a stack of models made by
``eqx.filter_vmap`` over init keys).

The model is cut at every node layer (``resid_pre.0``, the three positions flattened: 384
wide; ``resid_mid.0`` and ``resid_post.0`` at the answer position: 128; ``logits``: 113).
The weights are random (the init): shapes, and so costs, are a trained model's. Each part is
a jitted program compiled ahead of time once (its compile time reported on its own), then
timed warm (the compiled program to ``block_until_ready``; the median of up to ``--repeats``
calls, fewer once a part's calls have taken ``--seconds``):

- the node layers' activations;
- the per-example Jacobian Grams E[JᵀJ] of each section (``jacrev``, vmapped in chunks of
  ``--batch-size``; products and sums in float64) from the next layer's LIB features, as
  ``interaction_basis`` computes them;
- the Grams, eigendecompositions and rotations (float64, scoped ``enable_x64``) from the
  activations and those Jacobian Grams: the rest of ``interaction_basis``;
- the whole ``interaction_basis``; the ``pca_basis`` baseline;
- ``interaction_graph``: integrated-gradient edges on ``--n-alpha`` Gauss–Legendre nodes (each
  node one more per-example Jacobian of every section: the cost is linear in them);
- basis + graph end to end for 1 model and for N models vmapped: seconds per model.

A table, then one line saying what dominates.

A watchdog ends the run (exit code 3, after printing the rows measured so far) if a timed
program makes no progress — no CPU time at all — for ``--stall`` seconds. It was written for
a real hang: on a CPU with two threads, jaxlib 0.10's batched LAPACK eigh (what a vmapped
basis's eigendecompositions became) deadlocked XLA's thread pool (each pool thread inside one
eigh, waiting for batch tasks that no free thread would run). The module now runs its
eighs one at a time under vmap; the watchdog stays, so a hang of that kind ends in one line.

Run ``toylab bench interaction --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import threading
import time

from toylab.experiments.benchmarks._common import (OneLineParser, devices_line, int_list, positive_float, positive_int, stopwatch,
                                          timed)

PARTS = ("activations", "jacobians", "eigh", "basis", "pca", "graph", "vmap")
PART_HELP = {"activations": "the node layers' activations", "jacobians": "the per-section Jacobian Grams",
             "eigh": "Grams + eigendecompositions (float64)", "basis": "the whole interaction_basis",
             "pca": "pca_basis", "graph": "interaction_graph",
             "vmap": "basis + graph end to end, for each count of --models"}
DEFAULT_MODELS = (1, 2)
# The module's default is 8 nodes. At p = 113 on a 2-core CPU one node costs about one pass
# of per-example Jacobians over the training set (3.6 s a model on an idle box, 6.8 s on a busy
# one), and the graph runs in the graph row and in the end-to-end rows (1 + 2 models): 8 nodes
# would take the default run to 5-9 minutes. The cost is linear in the nodes (the table prints
# one node's); 2 keep the run within 3-5 minutes.
DEFAULT_N_ALPHA = 2
EXIT_STALLED = 3


def _parts_arg(text: str) -> tuple:
    if text.strip().lower() == "all":
        return PARTS
    names = [s.strip() for s in text.split(",") if s.strip()]
    if not names or any(n not in PARTS for n in names):
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be 'all' or a comma-separated list of "
                                         f"{', '.join(PARTS)}")
    return tuple(n for n in PARTS if n in names)


def _fraction(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number in (0, 1]")
    return value


def _truncation(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        value = float("nan")
    if not 0 <= value < 1:
        raise argparse.ArgumentTypeError(f"invalid value {text!r}: must be a number in [0, 1)")
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
    p = OneLineParser(prog=prog or "bench_interaction",
                description="Time to build the Local Interaction Basis and the interaction graph of the p=113 "
                            "grokking transformer on its training set, one model and several vmapped, and which "
                            "part dominates (Jacobians or eigendecompositions).")
    p.add_argument("--p", type=_modulus, default=113, help="modulus (default 113)")
    p.add_argument("--train-fraction", type=_fraction, default=0.3, metavar="F",
                   help="share of the p² pairs the basis is built on: the grokking family's split (default 0.3)")
    p.add_argument("--models", type=int_list, default=DEFAULT_MODELS, metavar="N1,N2,...",
                   help=f"numbers of models timed end to end (basis + graph); N > 1 are vmapped "
                        f"(default {','.join(map(str, DEFAULT_MODELS))})")
    p.add_argument("--n-alpha", type=_n_alpha, default=DEFAULT_N_ALPHA, metavar="K",
                   help=f"Gauss–Legendre nodes of the graph's integrated gradients, 1..64 (default {DEFAULT_N_ALPHA}; "
                        "the module's default is 8; the graph's cost is linear in K)")
    p.add_argument("--batch-size", type=positive_int, default=256, metavar="B",
                   help="examples per chunk of per-example Jacobians and activations (default 256, the module's)")
    p.add_argument("--repeats", type=positive_int, default=3, metavar="N",
                   help="timed calls of each compiled program at most; the median is reported (default 3)")
    p.add_argument("--seconds", type=positive_float, default=15.0, metavar="S",
                   help="no further timed calls of a part once its calls have taken S seconds (default 15)")
    p.add_argument("--parts", type=_parts_arg, default=PARTS, metavar="P1,P2,...",
                   help="what to time, 'all' (default) or some of: "
                        + "; ".join(f"{k} ({v})" for k, v in PART_HELP.items()))
    p.add_argument("--d-model", type=positive_int, default=128, metavar="D", help="residual width (default 128)")
    p.add_argument("--n-heads", type=positive_int, default=4, metavar="H", help="attention heads (default 4)")
    p.add_argument("--d-mlp", type=positive_int, default=512, metavar="D", help="MLP width (default 512)")
    p.add_argument("--truncation", type=_truncation, default=1e-6, metavar="T",
                   help="eigenvalue truncation of both bases, in [0, 1) (default 1e-6, the module's)")
    p.add_argument("--blas-threads", type=positive_int, default=None, metavar="N",
                   help="limit the BLAS/LAPACK threads (scipy's OpenBLAS, which jaxlib's eigh calls) to N for the "
                        "run, with threadpoolctl (default: as the environment sets them)")
    p.add_argument("--stall", type=positive_float, default=30.0, metavar="S",
                   help="end the run (exit 3) if a timed program uses no CPU for S seconds: a deadlock (default 30)")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    return p


# ----------------------------------------------------------------------------- a deadlock watchdog


class Watchdog:
    """While ``watching(label)``: if the process's CPU time (all threads) has not advanced by
    ``min_cpu`` seconds for ``stall_s`` seconds, call ``on_stall(label, seconds)`` from the
    watchdog's thread (a deadlock: a slow program still burns CPU). ``clock`` and
    ``cpu_clock`` are for tests."""

    def __init__(self, stall_s: float, on_stall, poll_s: float = 1.0, min_cpu: float = 0.05,
                 clock=time.monotonic, cpu_clock=time.process_time):
        self.stall_s, self.on_stall, self.poll_s, self.min_cpu = stall_s, on_stall, poll_s, min_cpu
        self.clock, self.cpu_clock = clock, cpu_clock
        self._label = None
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="bench-interaction-watchdog", daemon=True)
        self._thread.start()

    def watching(self, label: str):
        dog = self

        class _Scope:
            def __enter__(self):
                with dog._lock:
                    dog._label = label
                    dog._since, dog._cpu = dog.clock(), dog.cpu_clock()

            def __exit__(self, *exc):
                with dog._lock:
                    dog._label = None
                return False
        return _Scope()

    def close(self):
        self._stop.set()
        self._thread.join(timeout=5 * self.poll_s)

    def _run(self):
        while not self._stop.wait(self.poll_s):
            with self._lock:
                if self._label is None:
                    continue
                now, cpu = self.clock(), self.cpu_clock()
                if cpu - self._cpu > self.min_cpu:
                    self._since, self._cpu = now, cpu
                    continue
                if now - self._since < self.stall_s:
                    continue
                label, idle = self._label, now - self._since
                self._label = None
            self.on_stall(label, idle)


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
    if args.json and not os.path.isdir(os.path.dirname(os.path.abspath(args.json))):
        return fail(f"argument --json: invalid value {args.json!r}: its folder does not exist")
    if args.d_model % args.n_heads:
        return fail(f"argument --n-heads: invalid value {args.n_heads}: must divide --d-model={args.d_model}")
    tokens_np = _training_tokens(args.p, args.train_fraction)
    if len(tokens_np) < 2:
        return fail(f"argument --train-fraction: invalid value {args.train_fraction!r}: keeps {len(tokens_np)} of the "
                    f"{args.p}² pairs; the Grams need at least 2")

    rows: list = []
    report = {"p": args.p, "examples": int(len(tokens_np)), "d_model": args.d_model, "n_heads": args.n_heads,
              "d_mlp": args.d_mlp, "n_alpha": args.n_alpha, "batch_size": args.batch_size, "repeats": args.repeats,
              "weights": "random (init)"}
    log = lambda m: print(m, flush=True)  # noqa: E731

    def finish(stalled=None) -> int:
        _table(rows, log)
        report["verdict"] = _verdict(rows, args.n_alpha)
        report["stalled"] = stalled
        log("")
        log(f"verdict: {report['verdict']}")
        if args.json:
            with open(args.json, "w") as f:
                json.dump({**report, "rows": [{k: v for k, v in r.items() if k != "result"} for r in rows]}, f,
                          indent=2)
            log(f"wrote {args.json}")
        return 0

    def on_stall(label, idle):
        finish(stalled=label)
        print(f"{parser.prog}: error: {label}: no CPU time for {idle:.0f} s, a deadlock: jaxlib's batched LAPACK eigh "
              f"(a vmapped basis's eigendecompositions) can block every thread of XLA's CPU pool; the rows above are "
              f"complete (leave the vmapped rows out with --models 1)", file=sys.stderr, flush=True)
        os._exit(EXIT_STALLED)

    limits = None
    if args.blas_threads:
        try:
            import threadpoolctl
        except ImportError:
            return fail("argument --blas-threads: needs threadpoolctl (pip install threadpoolctl)")
        _load_lapack()
        limits = threadpoolctl.threadpool_limits(args.blas_threads, user_api="blas")
    report["blas"] = _blas_line()
    watchdog = Watchdog(args.stall, on_stall)
    try:
        _run(args, tokens_np, rows, report, log, watchdog)
    finally:
        watchdog.close()
        if limits is not None:
            limits.restore_original_limits()
    return finish()


def _load_lapack():
    """Run one tiny eigh: jaxlib loads its LAPACK (scipy's OpenBLAS) on first use."""
    import jax
    import jax.numpy as jnp

    jax.block_until_ready(jnp.linalg.eigh(jnp.eye(2)))


def _blas_line() -> str:
    """Which BLAS the eigendecompositions run on and with how many threads."""
    _load_lapack()
    try:
        import threadpoolctl
    except ImportError:
        return f"OPENBLAS_NUM_THREADS={os.environ.get('OPENBLAS_NUM_THREADS', 'unset')} (threadpoolctl absent)"
    libs = [f"{os.path.basename(i['filepath'])} {i['num_threads']} thread{'s' if i['num_threads'] != 1 else ''}"
            for i in threadpoolctl.threadpool_info() if i.get("user_api") == "blas"]
    return ", ".join(libs) or "none found"


def _run(args, tokens_np, rows, report, log, watchdog):
    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from toylab.analysis import interaction as ia
    from toylab.tasks.losses import x64_scope

    parts, bs, T = args.parts, args.batch_size, args.truncation
    tokens = jnp.asarray(tokens_np)
    model = _models(args, None)
    sections = ia.cut(model)
    params, static = eqx.partition(model, eqx.is_array)
    with_model = lambda fn: (lambda prm, *a: fn(eqx.combine(prm, static), *a))  # noqa: E731

    def measure(label, fn, *fn_args, x64=False) -> dict:
        """``fn(*fn_args)`` jitted and compiled ahead of time, then timed warm: up to
        ``--repeats`` calls, fewer once they have taken ``--seconds``; the median."""
        import contextlib

        with watchdog.watching(label), (x64_scope(True) if x64 else contextlib.nullcontext()):
            with stopwatch() as compiling:
                compiled = jax.jit(fn).lower(*fn_args).compile()
            times, result = [], None
            while len(times) < args.repeats and (not times or sum(times) < args.seconds):
                t = timed(compiled, *fn_args, repeats=1, first=False)
                times.append(t["seconds"])
                result = t["result"]
        return {"compile_s": compiling.seconds, "seconds": statistics.median(times), "times": times, "result": result}

    def row(key, label, res, **extra):
        r = {"key": key, "part": label, "compile_s": res["compile_s"], "seconds": res["seconds"],
             "calls": len(res.get("times", ())), "times": res.get("times", []), **extra}
        rows.append(r)
        log(f"  {label:<52} compile {res['compile_s']:7.2f} s   {res['seconds']:9.4g} s"
            + (f"   ({r['calls']} call{'s' if r['calls'] != 1 else ''})" if r["calls"] else ""))
        return r

    log(devices_line() + f"; BLAS/LAPACK: {report['blas']}")
    log(f"setting: p={args.p}, {len(tokens_np)} training pairs ({args.train_fraction:g} of {args.p}², the grokking "
        f"split); transformer d_model {args.d_model}, {args.n_heads} heads, d_mlp {args.d_mlp}, 1 layer, RANDOM "
        f"weights (the init: shapes, and so costs, as a trained model's)")
    acts_fn = with_model(lambda m, t: sections.activations(m, t, bs))
    acts_res = measure("activations", acts_fn, params, tokens)
    acts = acts_res["result"]
    widths = [a.shape[-1] for a in acts]
    report["node_layers"] = dict(zip(sections.names, widths))
    report.update(jax=jax.__version__, backend=jax.default_backend())
    log(f"node layers: {', '.join(f'{n} ({w})' for n, w in zip(sections.names, widths))}; chunks of {bs} examples, "
        f"truncation {T:g}, Grams, Jacobian Grams and eigendecompositions in float64; graph: {args.n_alpha} "
        f"Gauss–Legendre node(s); each part compiled once, then the median of up to {args.repeats} warm call(s) "
        f"(fewer past {args.seconds:g} s)")
    log("")
    if "activations" in parts:
        row("activations", "activations (all node layers)", acts_res)

    basis_fn = with_model(lambda m, t: ia.interaction_basis(sections, m, t, truncation=T, batch_size=bs))
    basis = None
    if "basis" in parts:
        res = measure("interaction_basis", basis_fn, params, tokens)
        basis = res["result"]
        row("basis", "interaction_basis (whole)", res)

    if "jacobians" in parts or "eigh" in parts:
        if basis is None:  # the next layers' features the Jacobians are taken of
            with watchdog.watching("interaction_basis (untimed)"):
                basis = jax.block_until_ready(jax.jit(basis_fn)(params, tokens))
        grams, Mps = [], []
        for i, f in enumerate(sections.maps):
            def gram(prm, a, mean_n, C_n, f=f):
                m = eqx.combine(prm, static)
                return ia._jacobian_gram(lambda x: (f(m, x) - mean_n) @ C_n, a, bs, "float64")
            gram_args = (params, acts[i], basis.mean[i + 1], basis.C[i + 1])
            label = f"Jacobian Gram {sections.names[i]} → {sections.names[i + 1]} ({widths[i]}→{widths[i + 1]})"
            if "jacobians" in parts:
                res = measure(label, gram, *gram_args)
                grams.append(row(f"jacobian.{i}", label, res))
                Mps.append(res["result"])
            else:
                with watchdog.watching(f"{label} (untimed)"), x64_scope(True):
                    Mps.append(jax.block_until_ready(jax.jit(gram)(*gram_args)))
        if grams:
            row("jacobians", "Jacobian Grams, all sections (sum)",
                {"compile_s": sum(g["compile_s"] for g in grams), "seconds": sum(g["seconds"] for g in grams)})
        if "eigh" in parts:
            res = measure("Grams + eigendecompositions", lambda a, M: _eigh_part(a, M, T), acts, Mps, x64=True)
            row("eigh", "Grams + eigendecompositions + rotations (float64)", res)

    if "pca" in parts:
        pca_fn = with_model(lambda m, t: ia.pca_basis(sections, m, t, truncation=T, batch_size=bs))
        row("pca", "pca_basis (whole)", measure("pca_basis", pca_fn, params, tokens))

    if "graph" in parts:
        if basis is None:
            with watchdog.watching("interaction_basis (untimed)"):
                basis = jax.block_until_ready(jax.jit(basis_fn)(params, tokens))
        graph_fn = with_model(lambda m, t, b: ia.interaction_graph(sections, m, t, b, n_alpha=args.n_alpha,
                                                                   batch_size=bs))
        res = measure("interaction_graph", graph_fn, params, tokens, basis)
        row("graph", f"interaction_graph (whole, {args.n_alpha} node{'s' if args.n_alpha > 1 else ''})", res,
            seconds_per_node=res["seconds"] / args.n_alpha)

    def both(m, t):
        b = ia.interaction_basis(sections, m, t, truncation=T, batch_size=bs)
        return b, ia.interaction_graph(sections, m, t, b, n_alpha=args.n_alpha, batch_size=bs)
    if "vmap" in parts:
        one = None
        for n in args.models:
            if n == 1:
                label = "basis + graph, 1 model"
                res = measure(label, with_model(both), params, tokens)
            else:
                label = f"basis + graph, {n} models vmapped"
                prm_n, static_n = eqx.partition(_models(args, n), eqx.is_array)
                fn = jax.vmap(lambda prm, t: both(eqx.combine(prm, static_n), t), in_axes=(0, None))
                res = measure(label, fn, prm_n, tokens)
            r = row(f"models.{n}", label, res, models=n, seconds_per_model=res["seconds"] / n)
            if n == 1:
                one = r
            elif one is not None:
                r["per_model_vs_one"] = r["seconds_per_model"] / one["seconds"]


def _table(rows, log):
    by = {r["key"]: r for r in rows}
    basis = by.get("basis")
    log("")
    log(f"{'part':<52} | {'compile s':>9} | {'seconds':>8} | {'s/model':>8} | note")
    for r in rows:
        s_model, note = "", ""
        if r["key"].startswith("models."):
            s_model = f"{r['seconds_per_model']:.4g}"
            if r.get("per_model_vs_one") is not None:
                note = f"{r['per_model_vs_one']:.2f}× one model's time, per model"
        elif r["key"] in ("activations", "jacobians", "eigh") or r["key"].startswith("jacobian."):
            if basis is not None:
                note = f"{100 * r['seconds'] / basis['seconds']:.0f}% of interaction_basis"
        elif r["key"] == "pca" and basis is not None:
            note = f"{r['seconds'] / basis['seconds']:.2f}× interaction_basis"
        elif r["key"] == "graph":
            note = f"{r['seconds_per_node']:.2f} s per node"
            if basis is not None:
                note += f"; {r['seconds'] / basis['seconds']:.2f}× interaction_basis"
        log(f"{r['part']:<52} | {r['compile_s']:>9.2f} | {r['seconds']:>8.4g} | {s_model:>8} | {note}")


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
    out = []
    if len(costs) == 1:
        (name, seconds), = costs.items()
        out.append(f"only the {name} among Jacobians, eigendecompositions and activations timed: {seconds:.2f} s")
    elif costs:
        top = max(costs, key=costs.get)
        listed = ", ".join(f"{k} {v:.2f} s" for k, v in sorted(costs.items(), key=lambda kv: -kv[1]))
        out.append(f"{'the activations' if top == 'activations' else top} dominate "
                   f"({100 * costs[top] / sum(costs.values()):.0f}% of the parts timed: {listed})")
    if "jacobians" in by and "graph" in by:
        out.append(f"per-example Jacobians: {by['jacobians']['seconds']:.2f} s for the basis's Grams, "
                   f"{by['graph']['seconds']:.2f} s for the graph's {n_alpha} node(s) "
                   f"({by['graph']['seconds_per_node']:.2f} s each)")
    many = [r for r in rows if r["key"].startswith("models.") and "per_model_vs_one" in r]
    if many:
        r = max(many, key=lambda r: r["models"])
        out.append(f"{r['models']} models vmapped: {r['seconds_per_model']:.2f} s per model, "
                   f"{r['per_model_vs_one']:.2f}× one model's")
    return "; ".join(out) if out else "nothing timed that compares parts"


if __name__ == "__main__":
    sys.exit(main())
