"""Benchmark: model-steps per second of the grokking transformer (Nanda et al.'s p = 113 setup).

One model-step is one full-batch AdamW step of one model on the 3 830 training pairs (30% of
113²): the one-layer transformer (d_model 128, 4 heads, d_mlp 512, ReLU, no LayerNorm), the
cross-entropy computed in float64. Measured:

- JAX, the program the sweep runner compiles: ``make_train("grokking", cfg)`` mapped over
  seeds by ``ensemble_map`` with the runner's block size (on CPU one p=113 model's working
  set is ~90 MB, so the seeds train one after another inside the compiled program; on an
  accelerator they are one vmap), for 1 model and for several seeds.
- PyTorch, a straightforward implementation of the same network and loss: every position
  through attention and MLP, logits at the last position, ``cross_entropy(logits.double())``,
  ``torch.optim.AdamW`` with the same hyperparameters and warmup, one model per loop (seeds
  run one after another, as a researcher would without vmap).

Before timing, the torch network is loaded with the JAX run's initial weights: the benchmark
prints the largest difference of their logits on the training set, and of the training loss
both reach after 20 AdamW steps each, so the two implement the same network and training. Timing is steady state (compiled,
warm-up call untimed); figures are model-steps per second.

Run ``toylab bench grokking --help``; ``main(argv)`` returns an exit code.
"""

from __future__ import annotations

import argparse
import json
import math
import sys

from toylab.experiments.benchmarks._common import (block_size_arg, import_torch, int_list, over_torch_threads, positive_int,
                                          repeat_steps, time_ensemble, timed)

DEFAULT_SEEDS = (1, 4, 16)


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog=prog or "bench_grokking",
                                description="Model-steps per second of the grokking transformer (p=113, 30%% train, "
                                            "d_model 128): toylab's JAX program against a straightforward PyTorch loop.")
    p.add_argument("--seeds", type=int_list, default=DEFAULT_SEEDS, metavar="S1,S2,...",
                   help=f"numbers of models trained together by the JAX program (default {','.join(map(str, DEFAULT_SEEDS))})")
    p.add_argument("--p", type=positive_int, default=113, help="modulus (default 113)")
    p.add_argument("--steps", type=positive_int, default=None, metavar="N",
                   help="timed steps per measurement (default: about 5 seconds' worth)")
    p.add_argument("--block-size", type=block_size_arg, default=None, metavar="B",
                   help="models per vmapped block of the JAX program, or 'none' for one vmap over all "
                        "(default: the sweep runner's choice, measured from one model's program)")
    p.add_argument("--torch", action=argparse.BooleanOptionalAction, default=True, help="time the PyTorch loop")
    p.add_argument("--torch-threads", type=int_list, default=None, metavar="N1,N2,...",
                   help="thread counts to time the torch loop at (default: 1 and os.cpu_count())")
    p.add_argument("--json", metavar="PATH", default=None, help="also write the figures as JSON")
    return p


def _config(p: int, steps: int):
    from toylab.families.grokking import GrokkingConfig

    return GrokkingConfig(p=p, steps=steps, log_every=steps, warmup_steps=min(10, steps))


def _jax_point(p: int, n_models: int, steps: int, block_size: int | None = None) -> dict:
    return time_ensemble("grokking", _config(p, steps), n_models, block_size)


class _TorchTransformer:
    """Nanda et al.'s network in plain torch, every position computed."""

    def __init__(self, torch, jax_model):
        import numpy as np

        t = lambda x: torch.nn.Parameter(torch.tensor(np.asarray(x), dtype=torch.float32))  # noqa: E731
        blk = jax_model.blocks[0]
        self.torch = torch
        self.W_E, self.W_pos, self.W_U = t(jax_model.W_E), t(jax_model.W_pos), t(jax_model.W_U)
        self.W_Q, self.W_K, self.W_V, self.W_O = t(blk.W_Q), t(blk.W_K), t(blk.W_V), t(blk.W_O)
        self.W_in, self.b_in, self.W_out, self.b_out = t(blk.W_in), t(blk.b_in), t(blk.W_out), t(blk.b_out)

    def parameters(self):
        return [self.W_E, self.W_pos, self.W_U, self.W_Q, self.W_K, self.W_V, self.W_O, self.W_in, self.b_in,
                self.W_out, self.b_out]

    def __call__(self, tokens):
        torch = self.torch
        x = self.W_E.T[tokens] + self.W_pos  # (B, 3, d)
        q = torch.einsum("hdm,bpm->bhpd", self.W_Q, x)
        k = torch.einsum("hdm,bpm->bhpd", self.W_K, x)
        v = torch.einsum("hdm,bpm->bhpd", self.W_V, x)
        scores = q @ k.transpose(-1, -2) / math.sqrt(q.shape[-1])
        n = tokens.shape[1]
        causal = torch.tril(torch.ones(n, n, dtype=torch.bool))
        pattern = torch.softmax(scores.masked_fill(~causal, float("-inf")), dim=-1)
        z = (pattern @ v).transpose(1, 2).reshape(x.shape[0], n, -1)
        x = x + z @ self.W_O.T
        x = x + torch.relu(x @ self.W_in.T + self.b_in) @ self.W_out.T + self.b_out
        return (x @ self.W_U)[:, -1]


def _torch_point(torch, p: int, n_models: int, steps: int, jax_models) -> dict:
    import numpy as np

    from toylab.families.grokking import table_of, train_rows

    cfg = _config(p, steps)
    table = table_of(p, "+", 0)
    rows = train_rows(cfg)
    tokens = torch.tensor(table.tokens()[:rows], dtype=torch.long)
    labels = torch.tensor(table.c[:rows], dtype=torch.long)
    seconds, losses = 0.0, []
    for i in range(n_models):
        net = _TorchTransformer(torch, jax_models[i % len(jax_models)])
        opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / 10, 1.0))  # as toylab: lr 0 at step 0

        def step():
            loss = torch.nn.functional.cross_entropy(net(tokens).double(), labels)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
            return loss

        repeat_steps(step, 5)  # warm-up: the first few torch steps are slow (kernel set-up, optimizer state)
        t = timed(repeat_steps, step, steps, repeats=1, first=False, sync=lambda _: None)  # CPU torch: synchronous
        seconds += t["seconds"]
        losses.append(float(t["result"].detach()))
    return {"models": n_models, "steps": steps, "seconds": seconds, "model_steps_per_s": n_models * steps / seconds,
            "final_train_loss": float(np.mean(losses))}


def _same_function(torch, p: int, steps: int = 20):
    """The JAX and torch networks at the same initial weights: the largest |difference| of
    their logits on the training rows, and of their training losses after ``steps`` AdamW
    steps each (same data, schedule and optimizer settings). Returns (logit diff, loss
    diff after training, the JAX loss after training, the initial JAX model)."""
    import jax
    import jax.numpy as jnp
    import numpy as np

    import toylab
    from toylab.core.train import Trainer
    from toylab.families.grokking import table_of, train_rows

    cfg = _config(p, steps)
    trainer = Trainer("grokking", cfg)
    key = toylab.make_key(0)
    model = trainer._model(trainer.init(cfg.hparams(), key).params)  # the run's initial model
    table = table_of(p, "+", 0)
    rows = train_rows(cfg)
    tok = table.tokens()[:rows]
    logits_jax = np.asarray(jax.vmap(model)(jnp.asarray(tok)))
    net = _TorchTransformer(torch, model)
    tokens_t = torch.tensor(tok, dtype=torch.long)
    labels_t = torch.tensor(table.c[:rows], dtype=torch.long)
    with torch.no_grad():
        d_logits = float(np.max(np.abs(logits_jax - net(tokens_t).numpy())))
    # Train both for `steps` steps and compare the training loss they reach.
    trained = jax.jit(toylab.make_train("grokking", cfg))(cfg.hparams(), key)
    loss_jax = float(trained.metrics["train_loss"][-1])
    opt = torch.optim.AdamW(net.parameters(), lr=1e-3, weight_decay=1.0, betas=(0.9, 0.98))
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(s / 10, 1.0))  # as toylab: lr 0 at step 0
    for _ in range(steps):
        loss = torch.nn.functional.cross_entropy(net(tokens_t).double(), labels_t)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    with torch.no_grad():
        loss_torch = float(torch.nn.functional.cross_entropy(net(tokens_t).double(), labels_t))
    return d_logits, abs(loss_jax - loss_torch), loss_jax, model


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:
        return e.code if isinstance(e.code, int) else 2
    if args.p < 2:
        print(f"{parser.prog}: error: argument --p: invalid value {args.p}: must be >= 2", file=sys.stderr)
        return 2
    import jax

    log = lambda m: print(m, flush=True)  # noqa: E731
    on_gpu = jax.default_backend() != "cpu"
    log(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    # Calibrate the step count on one short JAX run (about 5 s per measurement).
    steps = args.steps
    if steps is None:
        probe = _jax_point(args.p, 1, 20)
        steps = max(10, int(5.0 * probe["model_steps_per_s"]))
    log(f"setting: p={args.p}, 30% train, d_model 128, 4 heads, d_mlp 512, float64 cross-entropy; {steps} steps per point")
    jax_res = []
    for n in args.seeds:
        s = max(10, steps // n) if not on_gpu else steps
        pt = _jax_point(args.p, n, s, args.block_size)
        jax_res.append(pt)
        log(f"  jax   models={n:<4} steps={s:<6} block {pt['block_size']} {pt['seconds']:.2f}s (compile {pt['compile_s']:.1f}s) "
            f"{pt['model_steps_per_s']:,.1f} model-steps/s  loss {pt['final_train_loss']:.3g}")
    torch_res, check = {}, None
    torch = import_torch(log) if args.torch else None
    if torch is not None:
        d_logits, d_loss, loss_jax, model = _same_function(torch, args.p)
        check = {"max_abs_logit_diff": d_logits, "loss_after_20_steps": loss_jax, "abs_loss_diff_after_20_steps": d_loss}
        log(f"same network: max |logits_jax − logits_torch| at the same weights = {d_logits:.2e}; "
            f"after 20 AdamW steps each, train loss {loss_jax:.6f} (jax) differs by {d_loss:.2e}")

        def point(threads):
            s = max(10, steps // 2)
            pt = _torch_point(torch, args.p, 1, s, [model])
            log(f"  torch models=1    steps={s:<6} {pt['seconds']:.2f}s {pt['model_steps_per_s']:,.1f} model-steps/s "
                f"({threads} thread{'s' if threads > 1 else ''}) loss {pt['final_train_loss']:.3g}")
            return pt

        torch_res = over_torch_threads(torch, args.torch_threads, point)
    best = max((pt["model_steps_per_s"] for pt in torch_res.values()), default=None)
    log("")
    cols = "".join(f" | torch {t}t" for t in torch_res)
    log(f"models | jax model-steps/s{cols} | jax / best torch")
    for pt in jax_res:
        cells = "".join(f" | {torch_res[t]['model_steps_per_s']:>8,.1f}" for t in torch_res)
        ratio = f"{pt['model_steps_per_s'] / best:.1f}x" if best else "-"
        log(f"{pt['models']:>6} | {pt['model_steps_per_s']:>17,.1f}{cells} | {ratio}")
    log("(torch trains one model at a time; its model-steps/s is the same for any number of seeds)")
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"jax": jax_res, "torch": {str(k): v for k, v in torch_res.items()}, "same_function": check, "p": args.p,
                       "jax_version": jax.__version__, "backend": jax.default_backend()}, f, indent=2)
        log(f"wrote {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
