"""Planted dictionaries: a planted-feature data set together with its true dictionary, which
the dictionary metrics (:mod:`toylab.analysis.dictionaries`) must score perfectly.

The data are N features in D >= N dimensions with linearly independent unit directions (the
rows of F, (N, D)), no noise: x = c F. The true dictionary decodes with F and encodes with
its pseudo-inverse, c = x F⁺ (exact, as F F⁺ = I), through JumpReLU thresholds at
``threshold_fraction`` of the smallest magnitude a present feature takes in the sample, so a
latent fires exactly when its feature is present (float32 rounding of x F⁺, ~1e-7 of |x|,
stays far below the threshold unless a present feature is that small).
Its known scores: MCC, MMCS and uniqueness 1 (the decoder is the features), explained
variance 1 and shrinkage 1 (x̂ = x), detection precision, recall and F1 1 (codes fire iff
their feature is active), L0 the mean number of present features and the share of dead
latents the share of features never present in the sample.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers

import numpy as np

from ...core.config import ConfigError

__all__ = ["PlantedDictionary", "planted_dictionary"]


@dataclasses.dataclass(frozen=True)
class PlantedDictionary:
    """A planted-feature data set and the dictionary that recovers it.

    Attributes:
        generator: the :class:`~toylab.tasks.synthetic_features.SyntheticFeatures` of the data.
        features: (N, D) the true directions (unit rows).
        x: (B, D) activations, c @ features.
        c: (B, N) true feature activations (>= 0).
        dictionary: the true :class:`~toylab.models.dictionaries.Dictionary` (JumpReLU kind,
            N latents): decoder rows the features, encoder their pseudo-inverse.
        expected: the known scores, named as ``dictionary_scores`` names them.
    """

    generator: object
    features: np.ndarray
    x: np.ndarray
    c: np.ndarray
    dictionary: object
    expected: dict


def _check_int(name, value, lo):
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < lo:
        raise ConfigError(name, value, f"must be an integer >= {lo}")
    return int(value)


def planted_dictionary(n_features: int = 8, dim: int = 16, batch_size: int = 512, *, mean_active: float = 2.0,
                       zipf_exponent: float = 0.5, magnitude_mean: float = 1.0, magnitude_std: float = 0.0,
                       orthogonal: bool = True, seed: int = 0, threshold_fraction: float = 0.5,
                       generator=None) -> PlantedDictionary:
    """A planted-feature data set and its true dictionary.

    Args:
        n_features, dim: N <= D.
        batch_size: B examples sampled (key ``seed``).
        mean_active, zipf_exponent, magnitude_mean, magnitude_std: the generator's numbers
            (:class:`~toylab.tasks.synthetic_features.SyntheticFeatures`).
        orthogonal: orthonormal directions (else Gaussian ones, independent almost surely).
        seed: seed of the directions and of the sample.
        threshold_fraction: in (0, 1): the JumpReLU threshold as a share of the smallest
            magnitude a present feature takes in the sample.
        generator: a SyntheticFeatures to use instead of the arguments above (N <= D, no noise).

    Returns:
        a :class:`PlantedDictionary`.
    """
    import jax
    import jax.numpy as jnp

    from ...models.dictionaries import Dictionary
    from ...tasks.synthetic_features import SyntheticFeatures

    batch_size = _check_int("batch_size", batch_size, 2)
    seed = _check_int("seed", seed, 0)
    if isinstance(threshold_fraction, bool) or not isinstance(threshold_fraction, numbers.Real) \
            or not 0 < threshold_fraction < 1:
        raise ConfigError("threshold_fraction", threshold_fraction, "must be a number in (0, 1)")
    if generator is None:
        n_features, dim = _check_int("n_features", n_features, 1), _check_int("dim", dim, 1)
        if n_features > dim:
            raise ConfigError("n_features", n_features, f"must be <= dim={dim}: more directions than dimensions "
                                                        "cannot all be recovered by a linear encoder")
        if not isinstance(magnitude_mean, numbers.Real) or not magnitude_mean > 0:
            raise ConfigError("magnitude_mean", magnitude_mean, "must be a number > 0 (present features must be nonzero)")
        generator = SyntheticFeatures(n_features=n_features, dim=dim, mean_active=mean_active,
                                      zipf_exponent=zipf_exponent, magnitude_mean=magnitude_mean,
                                      magnitude_std=magnitude_std, orthogonal_directions=bool(orthogonal), seed=seed)
    elif not isinstance(generator, SyntheticFeatures):
        raise ConfigError("generator", type(generator).__name__, "must be a SyntheticFeatures")
    if generator.n_features > generator.dim:
        raise ConfigError("generator", f"n_features={generator.n_features}, dim={generator.dim}",
                          "must have n_features <= dim")
    if float(generator.noise_std) != 0.0:
        raise ConfigError("generator", f"noise_std={generator.noise_std}", "must have noise_std=0 (noise is not "
                                                                           "in any dictionary's span)")
    if float(generator.magnitude_mean) <= 0 and float(generator.magnitude_std) == 0.0:
        raise ConfigError("generator", f"magnitude_mean={generator.magnitude_mean}", "must be > 0 (present "
                                                                                    "features must be nonzero)")

    x, c = generator.sample(jax.random.key(seed), batch_size)
    features = np.asarray(generator.directions(), np.float64)
    encoder = np.linalg.pinv(features)  # (D, N): features @ encoder = I
    c_np = np.asarray(c)
    threshold = threshold_fraction * float(np.min(c_np[c_np > 0], initial=float(generator.magnitude_mean)))
    n, d = features.shape
    f32 = functools.partial(jnp.asarray, dtype=jnp.float32)
    dictionary = Dictionary(W_enc=f32(encoder), b_enc=jnp.zeros(n, jnp.float32), W_dec=f32(features),
                            b_dec=jnp.zeros(d, jnp.float32), log_threshold=jnp.full(n, math.log(threshold), jnp.float32),
                            since_fired=jnp.zeros(n, jnp.float32), threshold=jnp.zeros((), jnp.float32),
                            k=jnp.ones((), jnp.float32), kind="jumprelu", transcoder=False, prefixes=())
    active = c_np > 0
    expected = {"mmcs": 1.0, "mcc": 1.0, "uniqueness": 1.0, "precision": 1.0, "recall": 1.0, "f1": 1.0,
                "explained_variance": 1.0, "shrinkage": 1.0, "l0": float(active.sum(1).mean()),
                "dead_latents": float((~active.any(0)).mean())}
    return PlantedDictionary(generator, features, np.asarray(x), c_np, dictionary, expected)
