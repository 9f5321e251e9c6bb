"""Benchmark: SAE-steps per second of a sweep of sparse autoencoders.

One SAE-step is one Adam step of one ReLU + L1 sparse autoencoder (the decoder-norm weighted
penalty) of width 4 × its input on a fresh batch of planted-feature activations (256 features
in 64 dimensions, 8 active per example on average, Zipf exponent 0.5). Measured:

- JAX, the program the sweep runner runs for ``--saes`` seeds of one config
  (:meth:`Trainer.run` in one segment), all drawing one data stream (``data_seed=0``, as a
  sweep compares settings on the same activations): by default at the runner's block size
  and as one vmap over all, where each batch is made once per step for the whole sweep.
- PyTorch, a straightforward loop training SAEs one at a time, as SAELens trains one SAE per
  run: the same generator (Bernoulli presence at the same probabilities, the same feature
  directions), the same SAE, initialisation, loss and Adam settings, each SAE drawing its own
  batches as it trains. Torch's rate is per SAE and does not depend on how many are trained
  one after another, so ``--torch-saes`` (default 2) of them are timed and the rate is
  reported for the sweep.

Each row also prints the GFLOP/s of the step's five matrix products (2·B·D·L each), and a
ceiling line: those products alone at the best rate XLA's matrix product reaches on this
machine (one SAE's shapes, or a large square product), the SAE-steps per second no program
doing them can exceed, so the largest speed-up over the torch loop any sharing could give.

Timing is steady state (the JAX program compiled and run once untimed; torch warmed up with a
few steps). Run ``toylab bench dictionaries --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json

from toylab.experiments.benchmarks._common import (OneLineParser, block_size_arg, devices_line, import_torch, int_list,
                                          json_path, over_torch_threads, positive_int, repeat_steps, time_ensemble,
                                          timed)

D_IN, N_FEATURES, MEAN_ACTIVE, ZIPF, LAMBDA, LR = 64, 256, 8.0, 0.5, 0.1, 1e-3


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog or "bench_dictionaries",
                                description="SAE-steps per second of a sweep of ReLU + L1 sparse autoencoders "
                                            "(width 4x the input): toylab's sweep program against a PyTorch loop "
                                            "training them one at a time.")
    p.add_argument("--saes", type=positive_int, default=64, help="SAEs trained together by the JAX program (default 64)")
    p.add_argument("--batch", type=positive_int, default=4096, help="activation vectors per step (default 4096)")
    p.add_argument("--steps", type=positive_int, default=20, help="steps per measurement (default 20)")
    p.add_argument("--block-size", type=block_size_arg, default=None, metavar="B",
                   help="SAEs per vmapped block of the JAX program, or 'none' for one vmap over all "
                        "(default: the sweep runner's choice)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True, help="time the PyTorch loop")
    p.add_argument("--torch-saes", type=positive_int, default=2, help="SAEs the torch loop trains (default 2)")
    p.add_argument("--torch-threads", type=int_list, default=None, metavar="N1,N2,...",
                   help="thread counts for torch (default: 1 and os.cpu_count())")
    p.add_argument("--json", metavar="PATH", type=json_path, default=None, help="also write the figures as JSON")
    return p


def _config(batch: int, steps: int):
    from toylab.families.dictionaries import DictionaryConfig

    return DictionaryConfig(kind="relu", n_latents=4 * D_IN, batch_size=batch, n_features=N_FEATURES, dim=D_IN,
                            mean_active=MEAN_ACTIVE, zipf_exponent=ZIPF, sparsity=LAMBDA, lr=LR, steps=steps,
                            log_every=steps, eval_size=256, data_seed=0)


def sae_step_flops(cfg) -> float:
    """Floating-point operations of one SAE-step's five matrix products (encoder and decoder
    forward; the decoder's weight and input gradients; the encoder's weight gradient), each
    2·B·D·L, beside which everything else in the step is small."""
    return 5 * 2.0 * cfg.batch_size * D_IN * cfg.n_latents


def _gflops(cfg, sae_steps_per_s: float) -> str:
    return f"{sae_steps_per_s * sae_step_flops(cfg) / 1e9:.0f} GFLOP/s in the products"


def products_ceiling(cfg) -> dict:
    """The most SAE-steps per second any program could reach here: a step's five matrix
    products at the best rate XLA's matrix product reaches on this machine, the larger of
    those products' own rate (one SAE, each at its shape) and a large square product's
    (shapes that sharing work between SAEs could at best reach)."""
    import jax
    import jax.numpy as jnp

    B, L = cfg.batch_size, cfg.n_latents
    keys = jax.random.split(jax.random.key(0), 4)
    x, g_x = (jax.random.normal(k, (B, D_IN)) for k in keys[:2])
    f, g_f = (jax.random.normal(k, (B, L)) for k in keys[2:])
    W = jnp.ones((D_IN, L))

    @jax.jit
    def products(x, f, g_x, g_f, W):
        # encoder and decoder forward; decoder weight and input gradients; encoder weight gradient
        return x @ W, f @ W.T, f.T @ g_x, g_x @ W, x.T @ g_f

    own = sae_step_flops(cfg) / timed(products, x, f, g_x, g_f, W, repeats=20)["min_s"]
    n = 2048
    square = jnp.ones((n, n))
    large = 2.0 * n ** 3 / timed(jax.jit(jnp.matmul), square, square, repeats=5)["min_s"]
    best = max(own, large)
    return {"own_shapes_flops": own, "square_flops": large, "sae_steps_per_s": best / sae_step_flops(cfg)}


def _block_words(block) -> str:
    return "one vmap over all" if block is None else f"a scan over vmapped blocks of {block}"


def _torch_point(torch, cfg, n_saes: int) -> dict:
    """The same SAE, loss, data and Adam in a plain torch loop, one SAE after another."""
    import numpy as np

    from toylab.families.dictionaries import synthetic_generator

    generator = synthetic_generator(cfg)
    directions = torch.tensor(np.asarray(generator.directions()))
    probabilities = torch.tensor(np.asarray(generator.probabilities()))
    L, B = cfg.n_latents, cfg.batch_size
    seconds, losses = 0.0, []
    for i in range(n_saes):
        gen = torch.Generator().manual_seed(i)
        W_dec = torch.randn(L, D_IN, generator=gen)
        W_dec = 0.1 * W_dec / W_dec.norm(dim=1, keepdim=True)
        params = [torch.nn.Parameter(W_dec.T.clone()), torch.nn.Parameter(torch.zeros(L)),
                  torch.nn.Parameter(W_dec), torch.nn.Parameter(torch.zeros(D_IN))]
        W_enc, b_enc, W_dec, b_dec = params
        opt = torch.optim.Adam(params, lr=LR)

        def batch():
            present = torch.rand(B, N_FEATURES, generator=gen) < probabilities
            return present.float() @ directions

        with torch.no_grad():
            b_dec.copy_(batch().mean(0))  # the data mean, as the family initialises b_dec

        def step():
            x = batch()
            f = torch.relu((x - b_dec) @ W_enc + b_enc)
            x_hat = f @ W_dec + b_dec
            loss = ((x - x_hat) ** 2).sum(-1).mean() + LAMBDA * (f * W_dec.norm(dim=1)).sum(-1).mean()
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step_losses.append(loss.detach())
            return loss

        step_losses = []
        repeat_steps(step, 3)  # warm-up
        t = timed(repeat_steps, step, cfg.steps, repeats=1, first=False, sync=lambda _: None)  # CPU: synchronous
        seconds += t["seconds"]
        # the mean over the timed steps, as the JAX program logs its interval's mean loss
        losses.append(float(torch.stack(step_losses[-cfg.steps:]).mean()))
    return {"saes": n_saes, "steps": cfg.steps, "seconds": seconds, "sae_steps_per_s": n_saes * cfg.steps / seconds,
            "final_loss": float(np.mean(losses))}


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    log = lambda m: print(m, flush=True)  # noqa: E731
    log(devices_line())
    cfg = _config(args.batch, args.steps)
    log(f"setting: {args.saes} ReLU + L1 SAEs, {D_IN} → {cfg.n_latents} latents, batch {args.batch}, planted data "
        f"({N_FEATURES} features, {MEAN_ACTIVE:g} active), Adam lr {LR:g}, {args.steps} steps per measurement")
    jax_pts = []
    # Default: the runner's block choice and one vmap over all (with the data stream shared,
    # the whole vmap makes each batch once; on CPU the runner's block comes from XLA's analyses).
    for block in ([args.block_size] if args.block_size is not None else [None, 0]):
        pt = time_ensemble("dictionaries", cfg, args.saes, block)
        if jax_pts and pt["block_size"] == jax_pts[0]["block_size"]:
            continue
        jax_pts.append(pt)
        rate = pt["model_steps_per_s"]
        how = "runner's choice, " if block is None else ""
        log(f"  jax   saes={args.saes:<4} block {pt['block_size']} ({how}{_block_words(pt['block_size'])}) "
            f"{pt['seconds']:.2f}s (compile {pt['compile_s']:.1f}s) {rate:,.1f} SAE-steps/s ({_gflops(cfg, rate)})  "
            f"loss {pt['final_train_loss']:.4g}")
    torch_res, ceiling = {}, None
    torch = import_torch(log) if args.torch else None
    if torch is not None:
        def point(threads):
            pt = _torch_point(torch, cfg, args.torch_saes)
            log(f"  torch saes={args.torch_saes:<4} one at a time, {threads} thread{'s' if threads > 1 else ''}: "
                f"{pt['seconds']:.2f}s {pt['sae_steps_per_s']:,.1f} SAE-steps/s ({_gflops(cfg, pt['sae_steps_per_s'])})"
                f"  loss {pt['final_loss']:.4g}")
            return pt

        torch_res = over_torch_threads(torch, args.torch_threads, point)
        best = max(pt["sae_steps_per_s"] for pt in torch_res.values())
        ceiling = products_ceiling(cfg)
        log(f"ceiling: XLA's matrix product here runs at {ceiling['own_shapes_flops'] / 1e9:.0f} GFLOP/s on one "
            f"SAE's products, {ceiling['square_flops'] / 1e9:.0f} on a 2048² square; at the better of the two a "
            f"step takes its products' time alone at {ceiling['sae_steps_per_s']:,.1f} SAE-steps/s, "
            f"{ceiling['sae_steps_per_s'] / best:.2f}x the best torch loop (the most any program could gain)")
        for pt in jax_pts:
            log(f"jax sweep (block {pt['block_size']}) / best torch loop: {pt['model_steps_per_s'] / best:.2f}x "
                f"(goal on this CPU: 5x)")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump({"jax": jax_pts, "torch": {str(k): v for k, v in torch_res.items()}, "ceiling": ceiling}, fh,
                      indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
