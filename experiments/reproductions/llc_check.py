"""One check of the LLC estimator against a closed form (not yet a `toylab reproduce` set):
reduced-rank regression y = B₀A₀x + N(0, I), x Gaussian, n = 20 000, the true product of
rank r; loss ½·mean‖y − BAx‖²; Adam to the empirical minimum; full-batch SGLD with 8 chains
and ε = 5·10⁻⁵ at two localizations. Prints the estimate beside Aoyagi & Watanabe's λ.

Run: ``python -m experiments.reproductions.llc_check`` (about a minute on 2 CPU cores).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import optax

from toylab.analysis import learning_coefficients as lc
from toylab.analysis.degeneracy import learning_coefficient

CASES = ((4, 3, 3, 0), (3, 3, 2, 1))  # (M, N, H, r)
SETTINGS = ((1.0, 6000, 2000), (100.0, 3000, 1000))  # (γ, draws, burn-in)


def problem(M, N, H, r, n=20_000, seed=0):
    rng = np.random.default_rng(seed)
    A0, B0 = np.zeros((H, M)), np.zeros((N, H))
    A0[:r], B0[:, :r] = rng.normal(size=(r, M)), rng.normal(size=(N, r))
    x = rng.normal(size=(n, M))
    y = x @ (B0 @ A0).T + rng.normal(size=(n, N))
    data = {"x": jnp.asarray(x, jnp.float32), "y": jnp.asarray(y, jnp.float32)}

    def loss(p, b):
        return 0.5 * jnp.mean(jnp.sum((b["x"] @ (p["B"] @ p["A"]).T - b["y"]) ** 2, -1))
    params = {"A": jnp.asarray(A0, jnp.float32), "B": jnp.asarray(B0, jnp.float32)}
    opt = optax.adam(1e-2)

    def step(carry, _):
        p, st = carry
        u, st = opt.update(jax.grad(loss)(p, data), st)
        return (optax.apply_updates(p, u), st), None
    (params, _), _ = jax.lax.scan(step, (params, opt.init(params)), length=3000)  # to the empirical minimum
    return loss, params, data


def main():
    print(f"{'M, N, H, r':>12} {'closed form':>12} {'γ':>6} {'estimate':>16} {'R-hat':>6}")
    for case in CASES:
        loss, params, data = problem(*case)
        lam, m = lc.reduced_rank_regression(*case)
        for gamma, draws, burnin in SETTINGS:
            res = learning_coefficient(loss, params, data, jax.random.key(0), chains=8, draws=draws, burnin=burnin,
                                       step_size=5e-5, localization=gamma)
            print(f"{str(case):>12} {float(lam):>8.2f} (m={m}) {gamma:>6g} {float(res.mean):>8.2f} ± "
                  f"{float(res.std):<5.2f} {float(res.rhat):>6.3f}", flush=True)


if __name__ == "__main__":
    main()
