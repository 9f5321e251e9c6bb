"""Fourier labels of features of a model of Z_p × Z_p: each direction split into Fourier terms."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from ...core.config import ConfigError, described
from .._validate import _refuse_non_finite, _refuse_non_finite_tree

__all__ = ["fourier_labels", "label_names"]


def fourier_labels(values, p: int) -> dict:
    """Each direction's function on Z_p × Z_p split into Fourier terms by share of power.

    ``values`` (p, p, n): n functions over the inputs (a, b) (e.g. features over
    ``fourier.grid_tokens(p)`` reshaped). Returns arrays of shares (they sum to 1 per
    direction): ``const`` (n,); ``unary`` (n, K): cos/sin(k a) and cos/sin(k b) terms;
    ``sum`` (n, K): cos/sin(k(a+b)); ``difference`` (n, K): cos/sin(k(a−b)); ``product``
    (n,): every other product cos/sin(k₁a)·cos/sin(k₂b), k₁ ≠ k₂. K = ⌊p/2⌋, index k−1 for
    frequency k (for even p, k = p/2 is cos(πx), whose product cos πa·cos πb is filed as the
    sum). Pure jnp: vmaps over models; traced values holding NaN or inf give NaN shares."""
    from .. import fourier as fa

    values = jnp.asarray(_refuse_non_finite(values, "values"))
    if values.ndim != 3 or values.shape[:2] != (p, p):
        raise ConfigError("values", described(f"shape {values.shape}"), f"must be (p, p, n) = ({p}, {p}, n)")
    coeffs = fa.fourier_2d(values.astype(jnp.float32), p)  # (p, p, n); rows const, cos1, sin1, ...
    power = coeffs ** 2
    total = jnp.maximum(power.sum((0, 1)), 1e-30)
    K = (p - 1) // 2
    cos_i = 1 + 2 * jnp.arange(K)
    sin_i = cos_i + 1
    const = power[0, 0]
    unary = (power[cos_i, 0] + power[sin_i, 0] + power[0, cos_i] + power[0, sin_i])
    cc, ss = coeffs[cos_i, cos_i], coeffs[sin_i, sin_i]
    cs, sc = coeffs[cos_i, sin_i], coeffs[sin_i, cos_i]
    # cos k(a+b) = cc − ss, sin k(a+b) = sc + cs; cos k(a−b) = cc + ss, sin k(a−b) = sc − cs
    plus = ((cc - ss) ** 2 + (sc + cs) ** 2) / 2
    minus = ((cc + ss) ** 2 + (sc - cs) ** 2) / 2
    if p % 2 == 0:  # the Nyquist row cos(πx), k = p/2: cos π(a+b) = cos π(a−b) = cos πa·cos πb, filed as a sum
        ny = p - 1
        unary = jnp.concatenate([unary, (power[ny, 0] + power[0, ny])[None]])
        plus = jnp.concatenate([plus, power[ny, ny][None]])
        minus = jnp.concatenate([minus, jnp.zeros_like(minus[:1])])
    rest = total - const - unary.sum(0) - plus.sum(0) - minus.sum(0)
    return {"const": const / total, "unary": unary / total, "sum": plus / total, "difference": minus / total,
            "product": jnp.maximum(rest, 0.0) / total}


def label_names(labels: dict, top: int = 1) -> list:
    """A readable label per direction from :func:`fourier_labels`: its largest term(s) with
    their share, e.g. "cos(14(a+b)) 0.93"."""
    _refuse_non_finite_tree(labels, "labels")
    names = []
    n = np.asarray(labels["const"]).shape[0]
    for j in range(n):
        terms = [("const", float(labels["const"][j])), ("products k₁≠k₂", float(labels["product"][j]))]
        for kind, fmt in (("unary", "cos({k}a)+cos({k}b)"), ("sum", "cos({k}(a+b))"), ("difference", "cos({k}(a−b))")):
            col = np.asarray(labels[kind])[:, j]
            for k in np.argsort(-col)[:3]:
                terms.append((fmt.format(k=k + 1), float(col[k])))
        terms.sort(key=lambda t: -t[1])
        names.append(", ".join(f"{t} {s:.2f}" for t, s in terms[:top]))
    return names
