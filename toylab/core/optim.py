"""Optimizers whose hyperparameters are traced values, so one program serves a grid."""

from __future__ import annotations

import jax.numpy as jnp
import optax

__all__ = ["learning_rate_schedule", "make_optimizer"]


def learning_rate_schedule(config, hparams):
    """lr(count): linear warmup from 0 over ``warmup_steps`` (as torch's LambdaLR
    min(step/warmup, 1)), then constant or cosine decay to 0 at ``steps``."""
    warmup, total, kind = config.warmup_steps, config.steps, config.schedule
    peak = hparams["lr"]

    def schedule(count):
        count = jnp.asarray(count, jnp.float32)
        scale = jnp.minimum(count / warmup, 1.0) if warmup > 0 else 1.0
        if kind == "cosine":
            progress = jnp.clip((count - warmup) / max(total - warmup, 1), 0.0, 1.0)
            scale = scale * 0.5 * (1.0 + jnp.cos(jnp.pi * progress))
        return peak * scale

    return schedule


def make_optimizer(config, hparams) -> optax.GradientTransformation:
    """AdamW with explicit decoupled weight decay (scaled by the lr, as torch.optim.AdamW)."""
    return optax.adamw(
        learning_rate=learning_rate_schedule(config, hparams),
        b1=hparams["beta1"],
        b2=hparams["beta2"],
        eps=1e-8,
        weight_decay=hparams["weight_decay"],
    )
