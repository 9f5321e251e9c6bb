"""Throughput of the degeneracy tools: chain-steps per second of the local learning
coefficient (SGLD chains vmapped, draws scanned) on the superposition toy (5 features → 2)
and on the grokking transformer, for growing numbers of chains; and the top Hessian
eigenvalues of the one-hot modular-addition MLP (Lanczos on Hessian-vector products).

Run ``toylab bench degeneracy --help``; ``main(argv)`` returns an exit code.

Beside them, in the same command, the peers the issue compares against: devinterp 2.0.1's
LLC (``llc()``) on the same model, data and sampler settings, and PyHessian 0.1's top-5
eigenvalues (and whether its spectral density runs). They live in their own environment
(torch; ``python3 -m venv .peers && .peers/bin/pip install devinterp==2.0.1 pyhessian==0.1``),
whose python runs the scripts in ``_peers/`` on a .npz this side writes (weights, data,
settings; layout in _peers/torch_port.py). ``--peer-python`` picks it (default: the
TOYLAB_PEER_PYTHON environment variable, else ``.peers/bin/python`` at the repository root
when it exists; ``none`` skips the comparison).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from toylab.experiments.benchmarks._common import devices_line, int_list, positive_float, positive_int, timed

MODELS = ("superposition", "grokking")
# The sampler settings of both sides (nβ and the batch come from the family's training data).
STEP_SIZE = 1e-5
LOCALIZATION = 100.0
HESSIAN_K = 5
HESSIAN_ITERS = 64  # at most this many Lanczos steps of ours; PyHessian's maxIter per eigenvalue
PYHESSIAN_TOL = 1e-3  # PyHessian's default relative tolerance; ours stops at the same relative residual
DENSITY_ITERS = 16  # Lanczos steps of the spectral density, PyHessian's density() and ours
DENSITY_PROBES = 4  # probe vectors of our stochastic Lanczos quadrature (one vmapped program)
PEERS_DIR = Path(__file__).resolve().parent / "_peers"
REPO_ROOT = Path(__file__).resolve().parents[2]
VENV_HINT = "python3 -m venv .peers && .peers/bin/pip install devinterp==2.0.1 pyhessian==0.1"


def build_parser(prog=None):
    p = argparse.ArgumentParser(prog=prog or "bench_degeneracy", description=__doc__.splitlines()[0])
    p.add_argument("--chains", type=int_list, default=(1, 8, 32), help="chain counts (default 1,8,32)")
    p.add_argument("--draws", type=positive_int, default=200, help="SGLD draws per chain (default 200)")
    p.add_argument("--models", default="superposition,grokking", help="superposition, grokking or both")
    p.add_argument("--p", type=positive_int, default=113, help="modulus of the grokking model (default 113)")
    p.add_argument("--hessian-neurons", type=int, default=600,
                   help="hidden width of the one-hot MLP whose top-5 Hessian eigenvalues are timed "
                        "(600 at p=113: 204k parameters); 0 skips it")
    p.add_argument("--peer-python", metavar="PATH",
                   help="python of the devinterp/PyHessian environment (default: $TOYLAB_PEER_PYTHON, else "
                        "<repo>/.peers/bin/python if it exists); 'none' skips the comparison")
    p.add_argument("--peer-chains", type=positive_int, default=8, help="devinterp chains (default 8)")
    p.add_argument("--peer-draws", type=positive_int, default=50,
                   help="devinterp draws per chain (default 50; per chain-step rates are compared)")
    p.add_argument("--peer-threads", type=positive_int,
                   help="torch threads of the peers (default: the cores this process may use, as XLA's CPU pool)")
    p.add_argument("--peer-timeout", type=positive_float, default=1800.0,
                   help="seconds each peer script may run (default 1800)")
    p.add_argument("--json", metavar="FILE", help="also write the figures (ours and the peers') as JSON")
    return p


# ----------------------------------------------------------------------------- the models


def _superposition():
    import jax

    from toylab.families.superposition import SUPERPOSITION, SuperpositionConfig

    cfg = SuperpositionConfig(n_features=5, n_hidden=2, batch_size=1024, steps=1, log_every=1)
    model = SUPERPOSITION.init(cfg, cfg.hparams(), jax.random.key(0))
    return model, cfg, SUPERPOSITION


def _grokking(p: int):
    import jax

    from toylab.families.grokking import GROKKING, GrokkingConfig

    cfg = GrokkingConfig(p=p, steps=10, log_every=10)
    model = GROKKING.init(cfg, cfg.hparams(), jax.random.key(0))
    return model, cfg, GROKKING


def _hessian_model(p: int, neurons: int):
    import jax

    from toylab.families.grokking import GROKKING, GrokkingConfig

    cfg = GrokkingConfig(p=p, model="mlp", embed="onehot", d_mlp=neurons, steps=10, log_every=10)
    return GROKKING.init(cfg, cfg.hparams(), jax.random.key(0)), cfg


def _model_description(cfg) -> dict:
    """What the torch port (_peers/torch_port.py) needs to rebuild the model and its loss."""
    import numpy as np

    hp = cfg.hparams()
    if hasattr(cfg, "n_features"):
        from toylab.tasks.sparse_features import importance_weights

        importance = importance_weights(cfg.n_features, hp["importance_decay"], cfg.importance)
        return {"family": "superposition", "kind": cfg.model, "importance": np.asarray(importance, float).tolist()}
    return {"family": "grokking", "arch": cfg.model, "activation": cfg.activation, "alpha": float(hp["alpha"]),
            "embed": cfg.embed, "loss": cfg.loss, "loss_precision": cfg.loss_precision, "n_classes": cfg.p}


# ----------------------------------------------------------------------------- LLC


def llc_inputs(model, cfg, family) -> dict:
    """The family's loss, parameters and training data, and the sampler settings both sides
    use: ε, nβ (n/log n of the training examples), γ and the batch (None: all rows)."""
    from toylab.analysis.degeneracy import family_llc_inputs

    loss, params, data, defaults = family_llc_inputs(model, family=family, config=cfg)
    sampler = {"step_size": STEP_SIZE, "nbeta": float(defaults["nbeta"]), "localization": LOCALIZATION,
               "batch_size": defaults["batch_size"], "n_examples": int(defaults["n_examples"])}
    return {"loss": loss, "params": params, "data": data, "sampler": sampler, "cfg": cfg}


def _llc_point(inputs: dict, chains: int, draws: int) -> dict:
    import jax

    from toylab.analysis.degeneracy import learning_coefficient

    s = inputs["sampler"]

    def run(key):
        # the burn-in handed to the peer too (a tenth); the estimate's diagnostics are in the time
        res = learning_coefficient(inputs["loss"], inputs["params"], inputs["data"], key, chains=chains, draws=draws,
                                   burnin=draws // 10, step_size=s["step_size"], nbeta=s["nbeta"],
                                   localization=s["localization"], batch_size=s["batch_size"])
        return res.traces, res.mean, res.std, res.init_loss
    t = timed(jax.jit(run), jax.random.key(0), repeats=2)  # the first call compiles
    _, mean, std, init_loss = t["result"]
    return {"chains": chains, "draws": draws, "seconds": t["seconds"], "first_s": t["first_s"],
            "chain_steps_per_s": chains * draws / t["seconds"], "ms_per_chain_step": 1e3 * t["seconds"] / (chains * draws),
            "llc_mean": float(mean), "llc_std": float(std), "init_loss": float(init_loss)}


def _named_arrays(params) -> dict:
    """{"blocks.0.W_Q": array, ...}: the pytree's arrays named by their paths."""
    import jax
    import numpy as np

    out = {}
    for path, leaf in jax.tree_util.tree_flatten_with_path(params)[0]:
        parts = []
        for k in path:
            parts.append(str(getattr(k, "name", getattr(k, "idx", getattr(k, "key", k)))))
        out[".".join(parts)] = np.asarray(leaf)
    return out


def _data_arrays(data) -> dict:
    import numpy as np

    if isinstance(data, dict):
        return {k: np.asarray(v) for k, v in data.items()}
    return {"x": np.asarray(data)}


def write_peer_npz(path, settings: dict, params, data) -> Path:
    """The .npz the peer scripts read: ``settings`` as JSON, ``w:<name>`` weights, ``d:<name>``
    data (see _peers/torch_port.py)."""
    import numpy as np

    arrays = {"settings": np.asarray(json.dumps(settings))}
    arrays.update({f"w:{k}": v for k, v in _named_arrays(params).items()})
    arrays.update({f"d:{k}": v for k, v in _data_arrays(data).items()})
    np.savez(path, **arrays)
    return Path(path)


def write_llc_npz(path, inputs: dict, chains: int, draws: int) -> Path:
    """The LLC run for devinterp: the model, its data, and the sampler settings of ours."""
    import jax

    init_loss = float(jax.jit(inputs["loss"])(inputs["params"], inputs["data"]))
    sampler = {**inputs["sampler"], "chains": chains, "draws": draws, "burnin": draws // 10}
    settings = {"model": _model_description(inputs["cfg"]), "sampler": sampler, "init_loss_jax": init_loss}
    return write_peer_npz(path, settings, inputs["params"], inputs["data"])


# ----------------------------------------------------------------------------- Hessian


def hessian_inputs(p: int, neurons: int) -> dict:
    import equinox as eqx
    import jax

    from toylab.families.grokking import GROKKING

    model, cfg = _hessian_model(p, neurons)
    params, static = eqx.partition(model, eqx.is_inexact_array)
    batch = GROKKING.batch(cfg, cfg.hparams(), jax.random.key(0))
    loss = lambda prm, b: GROKKING.loss(eqx.combine(prm, static), b, cfg, cfg.hparams())[0]  # noqa: E731
    return {"loss": loss, "params": params, "batch": batch, "cfg": cfg}


def _hessian_point(inputs: dict) -> dict:
    import jax

    from toylab.analysis.degeneracy import spectral_density, top_eigenvalues

    loss, params, batch = inputs["loss"], inputs["params"], inputs["batch"]
    n_params = sum(x.size for x in jax.tree.leaves(params))
    # the same loss object twice: the second call reuses the compiled Lanczos program
    # at PyHessian's tolerance: Lanczos stops once every Ritz value's residual is below
    # tol·|value| (checked every few steps), at most HESSIAN_ITERS products
    t = timed(lambda: top_eigenvalues(loss, params, batch, jax.random.key(0), k=HESSIAN_K, iters=HESSIAN_ITERS,
                                      tol=PYHESSIAN_TOL, return_steps=True), repeats=1)
    values, steps = t["result"]
    top5 = [float(v) for v in values]
    # our spectral density (stochastic Lanczos quadrature) on the same Hessian, probes batched
    # through one vmapped Hessian-vector product, on a grid that covers the spectrum
    grid = jax.numpy.linspace(-0.1 * top5[0], 1.1 * top5[0], 200)
    dens = timed(lambda: spectral_density(loss, params, batch, jax.random.key(1), grid, probes=DENSITY_PROBES,
                                          iters=DENSITY_ITERS)[0], repeats=1)
    mass = float(jax.numpy.sum(dens["result"]) * (grid[1] - grid[0]))
    return {"parameters": int(n_params), "seconds": t["seconds"], "first_s": t["first_s"], "hvps": steps,
            "top5": top5, "density": {"probes": DENSITY_PROBES, "iter": DENSITY_ITERS, "seconds": dens["seconds"],
                                      "first_s": dens["first_s"], "mass_on_grid": mass}}


def write_hessian_npz(path, inputs: dict) -> Path:
    """The Hessian run for PyHessian: the MLP and the training rows (those the mask keeps)."""
    import jax
    import numpy as np

    batch = inputs["batch"]
    keep = np.asarray(batch["mask"], bool)
    rows = {k: np.asarray(v)[keep] for k, v in batch.items()}
    init_loss = float(jax.jit(inputs["loss"])(inputs["params"], batch))
    settings = {"model": _model_description(inputs["cfg"]), "init_loss_jax": init_loss,
                "hessian": {"k": HESSIAN_K, "iters": HESSIAN_ITERS, "tol": PYHESSIAN_TOL, "density_iter": DENSITY_ITERS}}
    return write_peer_npz(path, settings, inputs["params"], rows)


# ----------------------------------------------------------------------------- the peers


def threads() -> int:
    """CPU cores this process may use (what XLA's CPU thread pool spans)."""
    try:
        return len(os.sched_getaffinity(0))
    except AttributeError:
        return os.cpu_count() or 1


def resolve_peer_python(given):
    """(python path or None, message): ``given`` (or $TOYLAB_PEER_PYTHON) must be an
    executable file — else ValueError with the reason; absent both, <repo>/.peers/bin/python
    when it exists, else None and how to create it."""
    source = "--peer-python"
    if given is None:
        given, source = os.environ.get("TOYLAB_PEER_PYTHON") or None, "TOYLAB_PEER_PYTHON"
    if given is not None:
        if given.strip().lower() == "none":
            return None, f"peer comparison skipped ({source}=none)"
        path = Path(given).expanduser()
        if not path.is_file() or not os.access(path, os.X_OK):
            raise ValueError(f"{source}={given!r}: no executable file there (the python of the devinterp/PyHessian "
                             f"environment; create one with: {VENV_HINT})")
        return str(path), None
    default = REPO_ROOT / ".peers" / "bin" / "python"
    if default.is_file():
        return str(default), None
    return None, (f"devinterp / PyHessian: no peer environment ({default} absent); create it with: "
                  f"{VENV_HINT} (or pass --peer-python PATH); comparison skipped")


def run_peer(python: str, script: str, npz, *extra, timeout: float = 1800.0, n_threads: int | None = None):
    """Run _peers/<script> on ``npz`` with the peer python and ``n_threads`` torch threads
    (default: :func:`threads`): (its JSON dict, None) or (None, one line saying why not)."""
    n_threads = n_threads or threads()
    env = {**os.environ, "TQDM_DISABLE": "1", "OMP_NUM_THREADS": str(n_threads)}
    env.pop("PYTHONPATH", None)
    cmd = [python, str(PEERS_DIR / script), str(npz), "--threads", str(n_threads), *extra]
    try:
        proc = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env, cwd=str(Path(npz).parent))
    except subprocess.TimeoutExpired:
        return None, f"{script} timed out after {timeout:g} s"
    except OSError as e:
        return None, f"{script} could not start {python}: {e.strerror or e}"
    if proc.returncode != 0:
        lines = [ln.strip() for ln in proc.stderr.splitlines() if ln.strip()]
        return None, f"{script} failed (exit {proc.returncode}): {lines[-1] if lines else 'no message'}"
    for line in reversed(proc.stdout.splitlines()):
        if line.startswith("{"):
            try:
                return json.loads(line), None
            except json.JSONDecodeError:
                break
    return None, f"{script} printed no JSON line"


def _loss_check(peer: dict) -> str:
    ours, theirs = peer.get("init_loss_jax"), peer.get("init_loss")
    if ours is None or theirs is None:
        return "L(w*): -"
    rel = abs(theirs - ours) / max(abs(ours), 1e-30)
    flag = "" if rel <= 1e-5 else "  ← the torch port does not reproduce the JAX loss"
    return f"L(w*) jax {ours:.8g}, torch {theirs:.8g} (relative difference {rel:.1e}){flag}"


# ----------------------------------------------------------------------------- the command


def _err(prog, text) -> int:
    print(f"{prog or 'bench_degeneracy'}: error: {text}", file=sys.stderr)
    return 2


def main(argv=None, prog=None) -> int:
    args = build_parser(prog).parse_args(argv)
    models = [m.strip() for m in args.models.split(",") if m.strip()]
    bad = [m for m in models if m not in MODELS]
    if bad or not models:
        return _err(prog, f"--models={args.models!r}: must be some of {', '.join(MODELS)}")
    if args.hessian_neurons < 0:
        return _err(prog, f"--hessian-neurons={args.hessian_neurons}: must be >= 0")
    try:
        peer, skipped = resolve_peer_python(args.peer_python)
    except ValueError as e:
        return _err(prog, str(e))
    print(devices_line())
    report = {"llc": {}, "hessian": None, "sampler": {},
              "peers": {"python": peer, "skipped": skipped, "devinterp": {}, "pyhessian": None}}
    if skipped:
        print(skipped)
    failed = False
    with tempfile.TemporaryDirectory(prefix="toylab-peers-") as tmp:
        for name in models:
            model, cfg, family = _superposition() if name == "superposition" else _grokking(args.p)
            inputs = llc_inputs(model, cfg, family)
            s = inputs["sampler"]
            report["sampler"][name] = s
            rows = int(len(_first_leaf(inputs["data"])))
            per_row = s["n_examples"] // rows  # a stored batch of examples per row (1: the rows are examples)
            unit = f"stored batches of {per_row} examples" if per_row > 1 else "rows"
            batch = f"{s['batch_size']} of the {rows} {unit} drawn per step" if s["batch_size"] else \
                f"all {rows} {unit} every step"
            print(f"LLC of the {name} model ({family.name} loss on its own training data, n = {s['n_examples']}), "
                  f"{args.draws} draws per chain:")
            print(f"  sampler (both sides): ε = {s['step_size']:g}, nβ = {s['nbeta']:.6g}, γ = {s['localization']:g}, "
                  f"batch: {batch}; burn-in: a tenth of the draws")
            dev = None
            if peer:
                npz = write_llc_npz(Path(tmp) / f"llc-{name}.npz", inputs, args.peer_chains, args.peer_draws)
                dev, why = run_peer(peer, "devinterp_llc.py", npz, timeout=args.peer_timeout,
                                    n_threads=args.peer_threads)
                report["peers"]["devinterp"][name] = dev if dev else {"error": why}
                if why:
                    failed = True
                    print(f"  devinterp: {why}")
            print(f"{'':>10} {'chains':>7} {'first call s':>13} {'seconds':>9} {'chain-steps/s':>14} "
                  f"{'ms/chain-step':>14} {'speed-up':>9}")
            if dev:
                print(f"{'devinterp':>10} {dev['chains']:>7} {'-':>13} {dev['seconds']:>9.3f} "
                      f"{dev['chain_steps_per_s']:>14.1f} {dev['ms_per_chain_step']:>14.3f} {'1×':>9}", flush=True)
            points = []
            for chains in args.chains:
                pt = _llc_point(inputs, chains, args.draws)
                if dev:
                    pt["speedup_vs_devinterp"] = dev["ms_per_chain_step"] / pt["ms_per_chain_step"]
                    if dev.get("steady_ms_per_chain_step"):
                        pt["speedup_vs_devinterp_steady"] = dev["steady_ms_per_chain_step"] / pt["ms_per_chain_step"]
                points.append(pt)
                ratio = f"{pt['speedup_vs_devinterp']:.1f}×" if dev else "-"
                print(f"{'toylab':>10} {chains:>7} {pt['first_s']:>13.2f} {pt['seconds']:>9.3f} "
                      f"{pt['chain_steps_per_s']:>14.1f} {pt['ms_per_chain_step']:>14.3f} {ratio:>9}", flush=True)
            report["llc"][name] = points
            if dev:
                ref = next((pt for pt in points if pt["chains"] == dev["chains"]), points[-1])
                print(f"  devinterp {dev['devinterp']} (torch {dev['torch']}, {dev['threads']} threads), "
                      f"{dev['chains']} chains × {dev['draws']} draws, llc() end to end; {_loss_check(dev)}")
                if ref.get("speedup_vs_devinterp_steady"):
                    print(f"  devinterp in steady state (median time between chain steps, without its per-chain "
                          f"costs): {dev['steady_ms_per_chain_step']:.3f} ms/chain-step; toylab at {ref['chains']} "
                          f"chains: {ref['speedup_vs_devinterp_steady']:.1f}× that")
                print(f"  LLC: toylab {ref['llc_mean']:.4g} ± {ref['llc_std']:.2g} ({ref['chains']} chains × {ref['draws']}"
                      f" draws), devinterp {dev['llc_mean_burnin']:.4g} ± {dev['llc_std_burnin']:.2g} (its own estimate, "
                      f"no burn-in: {dev['llc_mean']:.4g})")
        if args.hessian_neurons:
            inputs = hessian_inputs(args.p, args.hessian_neurons)
            theirs = None
            if peer:
                npz = write_hessian_npz(Path(tmp) / "hessian.npz", inputs)
                theirs, why = run_peer(peer, "pyhessian_top.py", npz, timeout=args.peer_timeout,
                                       n_threads=args.peer_threads)
                report["peers"]["pyhessian"] = theirs if theirs else {"error": why}
                if why:
                    failed = True
            pt = _hessian_point(inputs)
            report["hessian"] = pt
            print(f"top-5 Hessian eigenvalues of the one-hot MLP (p={args.p}, {args.hessian_neurons} neurons, "
                  f"{pt['parameters']} parameters), Lanczos to tol {PYHESSIAN_TOL:g} ({pt['hvps']} steps, at most "
                  f"{HESSIAN_ITERS}): {pt['seconds']:.2f} s "
                  f"(first call {pt['first_s']:.2f} s): {', '.join(f'{v:.4g}' for v in pt['top5'])}")
            d = pt["density"]
            print(f"  toylab spectral density ({d['probes']} probes × {d['iter']} Lanczos steps, vmapped): "
                  f"{d['seconds']:.2f} s (first call {d['first_s']:.2f} s), mass {d['mass_on_grid']:.3f} on its grid")
            if peer and not theirs:
                print(f"  PyHessian: {why}")
            elif theirs:
                pt["speedup_vs_pyhessian"] = theirs["seconds"] / pt["seconds"]
                rel = max(abs(a - b) / max(abs(a), 1e-30) for a, b in zip(pt["top5"], theirs["top"]))
                pt["max_relative_difference_vs_pyhessian"] = rel
                print(f"  PyHessian {theirs['pyhessian']} (torch {theirs['torch']}, {theirs['threads']} threads; power "
                      f"iteration, maxIter {theirs['max_iter']} per eigenvalue, tol {theirs['tol']:g}): "
                      f"{theirs['seconds']:.2f} s, {theirs['hvps']} Hessian-vector products: "
                      f"{', '.join(f'{v:.4g}' for v in theirs['top'])}")
                print(f"  toylab {pt['speedup_vs_pyhessian']:.1f}× faster ({pt['hvps']} products); eigenvalues agree "
                      f"to {rel:.1e} (largest relative difference); {_loss_check(theirs)}")
                d = theirs["density"]
                print(f"  PyHessian density(iter={d['iter']}): " + (f"runs ({d['seconds']:.2f} s)" if d["ok"] else
                      f"crashes after {d['seconds']:.2f} s: {d['error']}"))
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 1 if failed else 0


def _first_leaf(data):
    return next(iter(data.values())) if isinstance(data, dict) else data


if __name__ == "__main__":
    sys.exit(main())
