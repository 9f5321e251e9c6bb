"""PyHessian's top Hessian eigenvalues (and whether its spectral density runs) on the model
and data the JAX side wrote: one JSON line on stdout.

Run by the peer environment's python (torch, PyHessian 0.1; never jax or toylab):

    python pyhessian_top.py HESSIAN.npz [--threads N] [--check]

The .npz (experiments/benchmarks/degeneracy.py, layout in torch_port.py) holds the one-hot
modular-addition MLP and its training rows (those the train mask keeps). PyHessian gets the
whole batch as ``data=(tokens, labels)`` and the family's loss (cross-entropy in float64, as
the JAX loss) as its criterion. ``eigenvalues`` is power iteration with deflation, up to
``maxIter`` Hessian-vector products per eigenvalue, stopping early when two consecutive
estimates agree to the relative ``tol``; the products it made are counted (ours: one Lanczos
run of ``iters`` products for all five). Timed: the ``hessian(...)`` constructor (the
gradient graph it keeps) and ``eigenvalues``. Then ``density`` (stochastic Lanczos
quadrature) is tried: its outcome, or the exception's one line.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("npz")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--check", action="store_true", help="only the torch loss at w* (no PyHessian)")
    args = p.parse_args(argv)

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torch_port import prepare

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    settings, model, data, _, out = prepare(args.npz)
    if args.check:
        print(json.dumps(out))
        return 0

    from importlib.metadata import version

    import importlib

    ph = importlib.import_module("pyhessian.hessian")  # the module (the package's `hessian` is the class)

    h = settings["hessian"]
    precision = settings["model"]["loss_precision"]
    inputs, targets = data["tokens"], data["labels"]

    def criterion(logits, labels):
        x = logits.double() if precision == "float64" else logits
        return torch.nn.functional.cross_entropy(x, labels).float()

    products = [0]
    plain_hvp = ph.hessian_vector_product

    def counted_hvp(*a, **k):
        products[0] += 1
        return plain_hvp(*a, **k)
    ph.hessian_vector_product = counted_hvp

    torch.manual_seed(0)
    t0 = time.perf_counter()
    H = ph.hessian(model, criterion, data=(inputs, targets), cuda=False)
    values, _ = H.eigenvalues(maxIter=h["iters"], tol=h["tol"], top_n=h["k"])
    seconds = time.perf_counter() - t0
    out.update({"pyhessian": version("pyhessian"), "seconds": seconds, "top": [float(v) for v in values],
                "hvps": products[0], "max_iter": h["iters"], "tol": h["tol"]})
    products[0] = 0
    t0 = time.perf_counter()
    try:
        H.density(iter=h["density_iter"], n_v=1)
        out["density"] = {"ok": True, "iter": h["density_iter"], "seconds": time.perf_counter() - t0}
    except Exception as e:  # noqa: BLE001 — reported, not raised: whether it runs is the finding
        line = (str(e).strip().splitlines() or [""])[0]
        out["density"] = {"ok": False, "iter": h["density_iter"], "seconds": time.perf_counter() - t0,
                          "error": f"{type(e).__name__}: {line}", "hvps_before": products[0]}
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main())
