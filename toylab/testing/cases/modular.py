"""Hand-built Fourier solutions of modular addition (a + b) mod p, with what the Fourier
analyses (:mod:`toylab.analysis.fourier`) must return on them.

The model is Gromov's closed-form solution as weights of the lab's quadratic one-hot MLP
(:func:`toylab.models.mlp.fourier_solution`): for each key frequency k eight neurons
(cos(θa + φ) + cos(θb + ψ))², θ = 2πk/p, read out so that the logits are exactly

    logits(a, b, c) = 4·scale·Σ_{k∈K} cos(2πk(a + b − c)/p).

Known answers, each derived from that formula:

- the largest logit of every pair is at c = (a + b) mod p (accuracy 1) when
  gcd(p, K) = 1 — otherwise some d ≠ 0 has kd ≡ 0 for every k and ties it;
- the loss is the same on every pair: logsumexp_d L(d) − L(0), L(d) = 4·scale·Σ cos(2πkd/p);
- the logits lie in the cos/sin(2πk(a+b)) directions of the key frequencies, so the
  restricted loss equals the loss and the excluded loss is log p (uniform logits);
- each key frequency carries the same share 1/|K| of the logits' variance;
- each neuron's input weights are one wave: IPR 1; its activation has variance 1/2 + 1/2
  in the (a ± b) terms of frequency k and 1/8 + 1/8 in the 2k terms, so frequency k
  explains 4/5 of it (all of it when 3k ≡ 0 mod p, where 2k aliases to k);
- the embedding's power spectrum is 4p on each key frequency and 0 elsewhere, which
  ``key_frequencies`` finds exactly while the key frequencies are fewer than half of all.

p is odd here (even p adds a Nyquist term whose share depends on the neurons' phases).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from ...core.config import ConfigError

__all__ = ["FourierSolution", "fourier_solution_case"]


@dataclasses.dataclass(frozen=True)
class FourierSolution:
    """A hand-built Fourier solution of (a + b) mod p and its known answers.

    Attributes:
        p: the modulus (odd, >= 3).
        freqs: the key frequencies K, sorted.
        scale: the output scale.
        model: the :class:`~toylab.models.mlp.EmbedMLP` (one-hot inputs, quadratic neurons).
        logits: (p, p, p) float64, the closed form over [a, b, c].
        key_mask: (⌊p/2⌋ + 1,) bool indexed by frequency (as ``key_frequencies`` returns):
            True at the frequencies of K.
        accuracy: 1.0.
        loss: the cross-entropy on every pair (closed form); also the restricted loss.
        excluded_loss: log p.
        logit_shares: (⌊p/2⌋ + 1,) share of the logits' variance per frequency (indexed by
            frequency): 1/|K| on K.
        neuron_frequencies: (8|K|,) the frequency of each neuron (eight per key frequency).
        neuron_fractions: (8|K|,) the share of each neuron's variance its frequency explains.
        neuron_ipr: 1.0, the IPR of every neuron's input weights.
        embedding_power: (⌊p/2⌋ + 1,) power of the a-embedding per frequency (index 0: constant).
        key_frequencies_found: whether ``key_frequencies(embedding_power)`` returns K (a
            sparse spectrum: fewer key frequencies than half of all, or just one).
    """

    p: int
    freqs: tuple
    scale: float
    model: object
    logits: np.ndarray
    key_mask: np.ndarray
    accuracy: float
    loss: float
    excluded_loss: float
    logit_shares: np.ndarray
    neuron_frequencies: np.ndarray
    neuron_fractions: np.ndarray
    neuron_ipr: float
    embedding_power: np.ndarray
    key_frequencies_found: bool


def _logits_of_distance(p: int, freqs, scale: float) -> np.ndarray:
    """L(d) = 4·scale·Σ_k cos(2πkd/p) for d = 0..p−1."""
    d = np.arange(p)
    return 4.0 * scale * sum(np.cos(2 * np.pi * k * d / p) for k in freqs)


def fourier_solution_case(p: int, freqs, scale: float = 1.0) -> FourierSolution:
    """The Fourier solution of (a + b) mod p at key frequencies ``freqs`` and its known answers.

    Args:
        p: an odd modulus >= 3.
        freqs: distinct frequencies in 1..(p−1)/2 with gcd(p, *freqs) = 1.
        scale: the output scale (> 0): logits are 4·scale·Σ_k cos(...).

    Returns:
        a :class:`FourierSolution`.
    """
    if isinstance(p, bool) or not isinstance(p, numbers.Integral) or p < 3 or p % 2 == 0:
        raise ConfigError("p", p, "must be an odd integer >= 3")
    p = int(p)
    try:
        ks = sorted(int(k) for k in freqs)
    except (TypeError, ValueError):
        raise ConfigError("freqs", freqs, f"must be distinct integers in 1..{(p - 1) // 2}") from None
    if not ks or len(set(ks)) != len(ks) or not all(1 <= k <= (p - 1) // 2 for k in ks):
        raise ConfigError("freqs", freqs, f"must be distinct integers in 1..{(p - 1) // 2}, at least one")
    if math.gcd(p, *ks) != 1:
        raise ConfigError("freqs", freqs, f"must have gcd 1 with p={p}: otherwise a wrong answer ties the right one")
    if isinstance(scale, bool) or not isinstance(scale, numbers.Real) or not (math.isfinite(scale) and scale > 0):
        raise ConfigError("scale", scale, "must be a finite number > 0")
    scale = float(scale)
    from ...models.mlp import fourier_solution

    n_freq = p // 2
    L = _logits_of_distance(p, ks, scale)
    a, b, c = np.meshgrid(np.arange(p), np.arange(p), np.arange(p), indexing="ij")
    logits = L[(a + b - c) % p]
    top = L.max()
    loss = float(top + np.log(np.exp(L - top).sum()) - L[0])  # the same on every pair
    key = np.zeros(n_freq + 1, bool)
    key[np.asarray(ks)] = True
    power = np.zeros(n_freq + 1)
    power[ks] = 4.0 * p  # eight neurons, each a wave of norm² p/2 over a
    return FourierSolution(
        p=p, freqs=tuple(ks), scale=scale, model=fourier_solution(p, ks, scale), logits=logits, key_mask=key,
        accuracy=1.0, loss=loss, excluded_loss=math.log(p), logit_shares=key / len(ks),
        neuron_frequencies=np.repeat(ks, 8),
        neuron_fractions=np.repeat([1.0 if (3 * k) % p == 0 else 0.8 for k in ks], 8),
        neuron_ipr=1.0, embedding_power=power, key_frequencies_found=len(ks) == 1 or 2 * len(ks) < n_freq)
