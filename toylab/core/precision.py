"""The precision policy: which programs run at full float32, which may use fast modes, and
how a user chooses.

On NVIDIA GPUs since Ampere a float32 matrix product may run in TF32 (a 10-bit mantissa:
about three decimal digits) unless the program asks for more, and TPUs multiply float32 in
one or a few bfloat16 passes. Many numbers in toylab need real float32 or more: the LLC's
nβ·(L(w) − L(w*)) is a small difference of two losses times a large nβ, the interaction
basis's Gram matrices are eigendecomposed down to a 1e-6 truncation, grokking's losses fall
to 1e-7, Nanda's restricted loss is a small difference of projected logits, Hessian
eigenvalues near zero are what the degeneracy analyses count. On an accelerator those
would change silently. So toylab asks for the precision it needs in the compiled program
itself — every ``dot_general`` and convolution carries a precision config — and a test
(tests/test_precision.py) lowers each program and reads it back.

Policies (one name, everywhere):

- ``"float32"`` (the default of every analysis and of training): every matrix product at
  ``Precision.HIGHEST`` — full float32 (six passes of bfloat16 on a TPU, no TF32 on a GPU).
  Float32 operands, float32 results.
- ``"tf32"`` (alias ``"fast"``): matrix products at ``Precision.DEFAULT``, the backend's fast
  mode: TF32 on Ampere and later GPUs, one bfloat16 pass on TPUs, no change on CPU (XLA:CPU
  ignores the precision config, so a CPU run cannot show what it costs).
- ``"bfloat16"``: the model's parameters, its float inputs (and, in training, the float
  hparams the loss reads: a float32 scalar would promote what it touches back to float32)
  are cast to bfloat16 where the loss is computed — the forward pass and the loss, and so
  their gradients — with the parameters, the optimizer's (or sampler's) state and every
  update kept in float32; products at DEFAULT, the loss handed back as float32. A dtype,
  unlike a precision config, is honoured on every backend: a CPU run shows what
  reduced-precision arithmetic does to a result. It is stricter than an accelerator's fast
  mode (which rounds only the products' operands and accumulates in float32): an upper
  bound on the damage, not a simulation of TF32. The evaluation metrics of training stay
  float32 (at DEFAULT).

Who runs at what:

- Training: ``TrainConfig.matmul_precision`` (a static field, default ``"float32"``; CLI
  ``--set matmul_precision=tf32``). It applies to the whole traced program of :class:`Trainer`
  (init, every segment — loss, gradient, optimizer, evaluation — and the final summary) and
  to ``make_train``'s pure ``train``. A family whose loss needs more than float32 keeps its
  own field for it (grokking's ``loss_precision="float64"``: the log-softmax in float64 under
  any matmul policy; only the logits reaching it are then reduced).
- Analyses: a ``precision=`` argument, default ``"float32"``, on the LLC
  (``learning_coefficient``, ``learning_coefficients``, ``calibrate``,
  ``family_learning_coefficient``, ``fine_tune_to_minimum``), the Hessian tools
  (``hessian``, ``hessian_vector_product``, ``top_eigenvalues``, ``hessian_trace``,
  ``spectral_density``), the layer degeneracies (``activation_nullity``,
  ``jacobian_nullity``, ``layer_degeneracy``, ``mlp_degeneracy``) and grokking's restricted
  and excluded losses (``toylab.analysis.fourier``). The interaction basis keeps its own
  ``precision="float64"|"float32"`` (the dtype of its Grams) and its products are always
  HIGHEST; the bilinear eigendecompositions (``toylab.analysis.eigen``) are always HIGHEST
  (small tensors: nothing to gain from a fast mode). Products that a family's own code pins
  at HIGHEST (superposition's dimensionalities, the synthetic feature generator) stay
  HIGHEST under every policy. A fast mode is a choice for speed on
  an accelerator, made knowing that the diagnostics below may then be what flags it.

Measured on CPU (tests/test_precision.py, where these are asserted):

- The LLC of reduced-rank regression M=3 H=2 N=2 at r = 1 (toylab.testing.cases; λ = 5/2,
  nβ = n/log n at n = 10⁵, L(w*) = 1), SGLD at ε = 4e-6, 4 chains × 2000 draws: float32
  2.126 (across keys 2.02–2.35); "tf32" the same bits (CPU ignores the config); "bfloat16"
  −9.3e-5: L(w) is rounded to 2⁻⁷ of L(w*) = 1, every proposed step leaves the loss where
  it was, the chains never move, and the diagnostics say so (R-hat 1.2e7, one effective
  draw, a negative estimate). With ``step_size="auto"`` bfloat16 is refused outright: its
  Hessian at w* has an eigenvalue −0.002 where float32's smallest is 0.
- A grokking training (p = 23, d_model 32, 300 full-batch steps, lr 1e-2): float32 twice,
  and "tf32", give the same bits (final loss 0.002824516); "bfloat16" ends at 0.00300312,
  6.3% away (train loss 0.001538268 vs 0.00163908, 6.6%), against no run-to-run noise.
"""

from __future__ import annotations

import re

import jax
import jax.numpy as jnp

from .config import ConfigError

__all__ = ["POLICIES", "ALIASES", "DEFAULT_POLICY", "check_precision", "precision_scope", "compute_dtype",
           "cast_compute", "to_float32", "reduced_loss", "dot_precisions"]

POLICIES = ("float32", "tf32", "bfloat16")
ALIASES = {"fast": "tf32"}
DEFAULT_POLICY = "float32"
_MATMUL = {"float32": "highest", "tf32": "default", "bfloat16": "default"}


def check_precision(value, name: str = "precision") -> str:
    """The policy ``value`` names (an alias resolved), or a ConfigError naming ``name``."""
    if isinstance(value, str):
        value = ALIASES.get(value, value)
    if not isinstance(value, str) or value not in POLICIES:
        raise ConfigError(name, value, f"must be one of {', '.join(POLICIES)} (or {', '.join(ALIASES)} for tf32): "
                                       "float32 is full float32 matrix products (HIGHEST), tf32 the backend's fast "
                                       "mode (DEFAULT), bfloat16 the loss computed from bfloat16 operands")
    return value


def precision_scope(policy: str = DEFAULT_POLICY, name: str = "precision"):
    """A context in which JAX traces matrix products at the policy's precision (HIGHEST for
    "float32", DEFAULT otherwise). It acts at trace time: enter it around the code that
    traces a program (inside the jitted function, or around its first call)."""
    policy = check_precision(policy, name)
    return jax.default_matmul_precision(_MATMUL[policy])


def compute_dtype(policy: str):
    """The dtype the loss is computed in under ``policy``: bfloat16 or None (unchanged)."""
    return jnp.bfloat16 if check_precision(policy) == "bfloat16" else None


def cast_compute(tree, policy: str):
    """``tree`` with its floating arrays cast to the policy's compute dtype (bfloat16 under
    "bfloat16"; unchanged otherwise). Integer arrays (tokens, labels) and non-arrays are
    left as they are; the cast is differentiable, so gradients come back in float32."""
    dtype = compute_dtype(policy)
    if dtype is None:
        return tree

    def cast(x):
        if isinstance(x, (jax.Array, jnp.ndarray)) or hasattr(x, "dtype"):
            if jnp.issubdtype(getattr(x, "dtype", None), jnp.floating):
                return jnp.asarray(x).astype(dtype)
        return x
    return jax.tree.map(cast, tree)


def to_float32(tree):
    """``tree`` with its bfloat16 arrays cast back to float32 (the loss and metrics of a
    reduced-precision computation, in the dtype the rest of the program expects)."""
    def cast(x):
        if hasattr(x, "dtype") and x.dtype == jnp.bfloat16:
            return x.astype(jnp.float32)
        return x
    return jax.tree.map(cast, tree)


def reduced_loss(loss, policy: str):
    """``loss(params, batch, *rest)`` computed under ``policy``: with "bfloat16" its params
    and batch cast to bfloat16 and its bfloat16 outputs cast back to float32; otherwise
    ``loss`` itself."""
    if compute_dtype(policy) is None:
        return loss

    def wrapped(params, batch, *rest):
        return to_float32(loss(cast_compute(params, policy), cast_compute(batch, policy), *rest))
    return wrapped


_DOT = re.compile(r"stablehlo\.(dot_general|dot|convolution)\b(.*)$")
_PREC = re.compile(r"precision = \[([A-Z_, ]*)\]")
_OPERANDS = re.compile(r":\s*\((tensor<[^>]*>),\s*(tensor<[^>]*>)\)\s*->")  # the op's type signature


def dot_precisions(hlo_text: str) -> list[tuple[str, str, tuple[str, str]]]:
    """Every matrix product in a lowered program's text (``jax.jit(f).lower(...).as_text()``):
    a list of (op, precision — e.g. "HIGHEST", "DEFAULT", or "none" when the op carries no
    precision config —, (lhs element type, rhs element type))."""
    found = []
    for line in hlo_text.splitlines():
        m = _DOT.search(line)
        if not m:
            continue
        prec = _PREC.search(line)
        if prec:
            levels = set(prec.group(1).replace(" ", "").split(","))
        else:  # a convolution: precision_config = [#stablehlo<precision HIGHEST>, ...]
            levels = set(re.findall(r"#stablehlo<precision ([A-Z_]+)>", line)) or {"none"}
        ops = _OPERANDS.search(line)
        types = tuple(re.sub(r"^tensor<(?:[0-9?]+x)*", "", t)[:-1] for t in ops.groups()) if ops else ("?", "?")
        found.append((m.group(1), "/".join(sorted(levels)), types))
    return found
