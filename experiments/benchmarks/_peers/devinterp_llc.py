"""devinterp's LLC on the model and data the JAX side wrote: one JSON line on stdout.

Run by the peer environment's python (torch, devinterp 2.0.1; never jax or toylab):

    python devinterp_llc.py RUN.npz [--threads N] [--noise-level S] [--trace]
    python devinterp_llc.py --check A.npz [B.npz ...]

The .npz comes from experiments/benchmarks/degeneracy.py (see torch_port.py for its layout).
devinterp samples a HF ``datasets.Dataset`` with an "input_ids" column through a per-token
loss ``loss_fn(model, input_ids) -> (batch, seq-1)``; here each dataset row is [i, i], the
index i of one row of the stored data, and the loss is that row's loss as (batch, 1), so a
step's loss (devinterp takes the mean over the batch) is the JAX loss on the same rows.

The update rule. devinterp 2.0.1's ``sample`` builds ``SGMCMC.sgld(nbeta=n_beta, lr=lr,
localization=γ, noise_level=σ, weight_decay=0)`` (slt/sampling.py), whose ``step``
(optim/sgmcmc.py, identity preconditioner, CompositePrior of one GaussianPrior centred at
the initial parameters) does

    d_p = nβ·∇(mean batch loss) + γ·(w − w0);  w ← w − (lr/2)·d_p;  w ← w + √lr·N(0, σ²)

and ours (toylab/analysis/degeneracy.py) is Δw = −(ε/2)(nβ∇L_batch + γ(w − w*)) + √ε·N(0, 1):
the same rule with lr = ε and σ = 1 — no factor differs (devinterp's lr is ε itself, its noise
is √lr·N(0, 1), not √(2·lr)). The loss recorded at a step is the batch loss before the step
on both sides. What differs, and cannot be removed through devinterp's interface: the batches
(ours: rows drawn with replacement, each chain its own; devinterp: one shuffled pass of the
rows, cycled — ``match_sampling_input_ids_across_chains=False`` gives each chain its own
order), and the estimate (devinterp's ``llc_mean`` averages every draw; ours drops a burn-in,
reported here as ``llc_mean_burnin`` from devinterp's own loss trace). Chains run one after
another in devinterp (ours: vmapped), so its time per chain-step does not depend on the
number of chains.

Timing: ``llc()`` end to end (initial loss, every chain, devinterp's zarr writes and its
reduction), after an untimed warm-up call (1 chain, 2 draws); imports, model and dataset
building are outside it. ``steady_ms_per_chain_step`` is the median time between
consecutive chain steps (what a step costs once a chain runs, without the per-chain costs).
``--check`` only builds each model and prints its loss at w*
(torch only, no devinterp import; any of the benchmark's .npz files, several at once).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("npz", nargs="+", help="the .npz (several only with --check)")
    p.add_argument("--threads", type=int, default=0, help="torch.set_num_threads (0: torch's default)")
    p.add_argument("--noise-level", type=float, default=1.0, help="devinterp's σ (1: SGLD; 0: a noise-free check)")
    p.add_argument("--trace", action="store_true", help="also print the (chains, draws) loss trace")
    p.add_argument("--check", action="store_true", help="only the torch loss at w* (no devinterp)")
    args = p.parse_args(argv)
    if len(args.npz) > 1 and not args.check:
        p.error("several .npz files only with --check")

    import torch

    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from torch_port import prepare, row_losses

    if args.threads > 0:
        torch.set_num_threads(args.threads)
    for path in args.npz:  # --check: one line per file
        settings, model, data, arrays, out = prepare(path)
        if args.check:
            print(json.dumps(out))
    if args.check:
        return 0
    npz = args.npz[0]

    from importlib.metadata import version

    from datasets import Dataset
    from devinterp.slt.llc import llc

    s = settings["sampler"]
    rows = len(next(iter(arrays.values())))
    batch = s["batch_size"] or rows  # None: every row every step (full batch)
    dataset = Dataset.from_dict({"input_ids": [[i, i] for i in range(rows)]}).with_format("torch")

    stamps = []  # (perf_counter, chain step?) at every call: a step's time is the gap to the next

    def loss_fn(model, input_ids):
        stamps.append((time.perf_counter(), torch.is_grad_enabled()))  # init-loss calls run without grad
        return row_losses(settings, model, data, input_ids[:, 0])[:, None]

    common = dict(lr=s["step_size"], n_beta=s["nbeta"], localization=s["localization"], noise_level=args.noise_level,
                  batch_size=batch, num_burnin_steps=0, num_init_loss_batches=max(rows // batch, 1),
                  match_sampling_input_ids_across_chains=False, device="cpu", loss_fn=loss_fn)
    with tempfile.TemporaryDirectory(dir=Path(npz).resolve().parent) as tmp, warnings.catch_warnings():
        warnings.simplefilter("ignore")
        llc(model, dataset, {}, num_chains=1, num_draws=2, output_path=str(Path(tmp) / "warm.zarr"), **common)
        stamps.clear()
        t0 = time.perf_counter()
        res = llc(model, dataset, {}, num_chains=s["chains"], num_draws=s["draws"],
                  output_path=str(Path(tmp) / "run.zarr"), **common)
        llc_mean, trace = float(res["llc_mean"]), res["loss_trace"].values.astype(float)
        seconds = time.perf_counter() - t0
        dev_init = float(res["init_loss"])
    chains, draws = trace.shape
    # steady state: the median gap between consecutive chain steps (loss, backward, SGLD step,
    # devinterp's bookkeeping), which leaves out what a chain costs once (devinterp copies the
    # model and runs gc.collect() twice per chain) and the initial loss
    gaps = [b[0] - a[0] for a, b in zip(stamps, stamps[1:]) if a[1] and b[1]]
    steady_ms = 1e3 * statistics.median(gaps) if gaps else None
    burnin = s.get("burnin", draws // 10)
    per_chain = s["nbeta"] * (trace[:, burnin:].mean(axis=1) - dev_init)
    out.update({"devinterp": version("devinterp"), "chains": chains, "draws": draws, "seconds": seconds,
                "ms_per_chain_step": 1e3 * seconds / (chains * draws), "chain_steps_per_s": chains * draws / seconds,
                "steady_ms_per_chain_step": steady_ms,
                "llc_mean": llc_mean, "llc_mean_burnin": float(per_chain.mean()), "llc_std_burnin": float(per_chain.std()),
                "burnin": burnin, "devinterp_init_loss": dev_init, "batch_size": batch, "rows": rows,
                "sampler": {"lr": s["step_size"], "n_beta": s["nbeta"], "localization": s["localization"],
                            "noise_level": args.noise_level, "batch_size": batch}})
    if args.trace:
        out["trace"] = trace.tolist()
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("TQDM_DISABLE", "1")
    sys.exit(main())
