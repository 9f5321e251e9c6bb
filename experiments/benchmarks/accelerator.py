"""Benchmark: every accelerator criterion the lab states, measured in one command on one device,
each figure beside its criterion (PASS / FAIL, or "record" where none is stated) and the
plan's prediction (``toylab.core.plan``; "plan: unavailable" where that module is missing).

Rows (``--only`` picks some; each has a time budget, and once it is spent the row measures no
further sizes and says so):

- ``superposition``: instance-steps/s of the toy (n=20, m=5, batch 1024) at 1 and 4 096
  instances, through the sweep runner's program; criterion: 4 096 at >= 100x one instance's.
- ``grokking``: model-steps/s of Nanda et al.'s p = 113 transformer at 1, 16 and 128 seeds, and
  the projected time for 128 seeds to finish the full reproduction's steps (40 000; compile
  included, logging and snapshots not); criterion: under ten minutes.
- ``llc``: chain-steps/s of the LLC's SGLD chains alone (the compiled scan the estimator runs, a
  fixed step size) at 1, 8, 64 and 512 chains on the superposition toy (8 stored batches, one
  a step) and on the grokking model (its training set, full batch), and over 100 snapshots x 8
  chains of the grokking model in one program (``jax.vmap`` over the stack).
- ``sae``: SAE-steps/s at SynthSAEBench's size (768 dimensions, 4 096 latents, batch 4 096, the
  dictionaries reproduction's planted hierarchy of 16 384 features), one SAE and a sweep of 16.
- ``scoring``: the time of the known-answer scoring (MCC: cosines and the optimal one-to-one
  matching) at 4 096 latents x 16 384 features, by the path ``mcc`` takes on concrete inputs
  (scipy on the host when installed: see ``toylab.analysis.dictionaries.assignment_path``), the
  pure-JAX Hungarian at a quarter of that size, and a sanity check that the two match alike.
- ``interaction``: the time to build the Local Interaction Basis of the p = 113 model on its
  training set (random weights: a trained model's shapes and costs), compile apart.
- ``memory``: the largest superposition ensemble that fits, by doubling from 1 024 until an
  allocation fails (XLA's RESOURCE_EXHAUSTED is caught, never fatal), against the plan's
  ``max_runs``; on a CPU an ensemble whose compiled program asks for more than half this
  machine's memory counts as not fitting (it is not run).

Expected time on one H100: about 6 to 7 minutes. The rows' budgets sum to 6¼ minutes (a
measurement that has started is finished, so a row can pass its budget by one point; a row
that finishes early leaves its time unused) and the plan's predictions come on top, each sweep
planned once (``--no-plan`` leaves them out): 7 sweeps, each compiled, which should take
well under a minute on a 16-core GPU host. That expectation is the budgets' sum, not a
measurement: each run's record says where its time went (``seconds`` per row, ``plan.seconds``).

``--tiny`` runs the same rows at small sizes (a p = 13 transformer 32 wide; 1 and 8
superposition instances; 2 chains; 2 SAEs of 48 latents; ...), judges only the sanity checks
(losses finite, scipy and JAX match alike, some ensemble fits) and leaves the plan out unless
``--plan`` (each prediction compiles the sweep's programs). On a 2-core CPU box (jax 0.10.2) it
took 88 s (91 s with start-up, 88 s of CPU time, almost all of it compiling) while the box ran
other jobs at a load of 2 to 5, and 4 minutes at a load of 10.
Nothing needs the internet. Writes a JSON record (device, versions, every row) to ``--json``,
by default ``accelerator-DEVICE-DATE.json`` in the current folder.

Run ``python -m toylab bench accelerator`` (``--help`` for options); ``main(argv)`` returns the
exit code: 0, or 1 when a row FAILs its criterion or a sanity check, or a row errs (each row
that errs is recorded and the others still run), 2 for bad options.
"""

from __future__ import annotations

import argparse
import datetime
import json
import math
import os
import platform
import re
import sys

from toylab.experiments.benchmarks._common import (Budget, OneLineParser, choice_list, devices_line, is_out_of_memory,
                                                   json_path, now, stopwatch, timed)

ROWS = ("superposition", "grokking", "llc", "sae", "scoring", "interaction", "memory")
# Seconds each row may spend (full run, then --tiny).
BUDGETS = {"superposition": 40, "grokking": 80, "llc": 100, "sae": 45, "scoring": 25, "interaction": 45,
           "memory": 40}
# --tiny: every point is measured on a reasonable machine (a loaded one may skip some)
TINY_BUDGETS = {name: 60 for name in BUDGETS}
# --tiny's transformer (grokking, LLC, interaction): p = 13 and narrow, to keep compiles short
TINY_TRANSFORMER = {"p": 13, "d_model": 32, "n_heads": 2, "d_mlp": 64}
SCALING_TARGET = 100.0  # 4096-instance over 1-instance throughput
GROKKING_SECONDS = 600.0  # 128 seeds of the full grokking mode
NOT_TINY = "not judged at --tiny"


_rows_arg = choice_list(ROWS, "rows")


def build_parser(prog=None) -> argparse.ArgumentParser:
    p = OneLineParser(prog=prog or "bench_accelerator",
                      description="Every accelerator criterion the lab states, measured on this device, each beside "
                                  "its criterion and the plan's prediction (about 6-7 minutes on one H100; --tiny: "
                                  "small sizes, about 2 CPU-minutes).")
    p.add_argument("--tiny", action="store_true", help="the same rows at small sizes (criteria not judged)")
    p.add_argument("--only", type=_rows_arg, default=ROWS, metavar="ROWS",
                   help=f"comma-separated rows to run, of {', '.join(ROWS)} (default: all)")
    p.add_argument("--plan", action=argparse.BooleanOptionalAction, default=None,
                   help="predict each figure with toylab.core.plan (default: on, off at --tiny: each prediction "
                        "compiles the sweep's programs, which takes longer than --tiny's measurements)")
    p.add_argument("--json", type=json_path, default=None, metavar="PATH",
                   help="where to write the JSON record (default: accelerator-DEVICE-DATE.json here)")
    return p


# ----------------------------------------------------------------------------- the record


class _Report:
    """The rows measured so far, printed as they come."""

    def __init__(self, tiny: bool, on_accelerator: bool, plan, target: str | None, log, plan_note: str):
        self.tiny, self.accel, self.plan, self.target, self.log = tiny, on_accelerator, plan, target, log
        self.plan_note = plan_note  # the prediction column without a plan
        self.rows: list[dict] = []
        self.plan_seconds = 0.0  # spent planning: not counted against the rows' budgets
        self._plans: dict = {}

    def budget(self, seconds: float) -> Budget:
        """A row's budget, on a clock that stops while the plan predicts."""
        return Budget(seconds, clock=lambda: now() - self.plan_seconds)

    def verdict(self, ok, sanity: bool = False) -> str:
        if ok is None:
            return "not measured"
        if not sanity and self.tiny:
            return NOT_TINY
        if not sanity and not self.accel:
            return "not judged on cpu"
        return "PASS" if ok else "FAIL"

    def add(self, row: str, figure: str, measured, unit: str, *, criterion: str = "record", verdict: str = "record",
            predicted: str = "-", predicted_value=None, **details):
        r = {"row": row, "figure": figure, "measured": measured, "unit": unit, "criterion": criterion,
             "verdict": verdict, "predicted": predicted, "predicted_value": predicted_value, **details}
        self.rows.append(r)
        self.log(f"  {figure}: {_fmt(measured)} {unit}  [{criterion}: {verdict}]  predicted: {predicted}")
        return r

    def predict(self, family: str, base: dict, seeds: int, what):
        """(text, value) of the plan's prediction ``what(target_plan)`` -> (text, value), each
        sweep planned once (``plan_sweep`` compiles its programs)."""
        if self.plan is None:
            return self.plan_note, None
        key = (family, json.dumps(base, sort_keys=True, default=str), seeds)
        try:
            if key not in self._plans:
                planning = stopwatch()
                try:
                    with planning:
                        self._plans[key] = self.plan.plan_sweep(family, base, seeds=seeds, targets=(self.target,))
                finally:
                    self.plan_seconds += planning.seconds or 0.0
            return what(self._plans[key].targets[self.target])
        except Exception as e:  # a prediction never stops the measurement
            return f"plan: error ({type(e).__name__}: {str(e).splitlines()[0][:80] if str(e) else ''})", None


def _fmt(x) -> str:
    if x is None:
        return "-"
    if isinstance(x, str):
        return x
    if isinstance(x, int):
        return f"{x:,}"
    if x == 0 or not math.isfinite(x):
        return str(x)
    return f"{x:,.0f}" if abs(x) >= 100 else f"{x:.3g}"


def _rate_text(unit: str):
    def what(t):
        return f"{_fmt(t.steps_per_second)} {unit}", float(t.steps_per_second)
    return what


def _seconds_text(t):
    if t.predicted_seconds is None:
        return "does not fit", None
    return f"{t.predicted_seconds:,.0f} s", float(t.predicted_seconds)


def _skipped(report: _Report, row: str, figure: str, unit: str, why: str, criterion: str = "record"):
    report.add(row, figure, None, unit, criterion=criterion, verdict="not measured", note=why)


# ----------------------------------------------------------------------------- rows


def _finite_row(report: _Report, row: str, losses: list):
    """The sanity check that the losses of a row's trainings are finite (not measured: none ran)."""
    finite = all(math.isfinite(x) for x in losses) if losses else None
    report.add(row, f"{row}: losses finite", "-" if finite is None else "yes" if finite else "no", "",
               criterion="sanity", verdict=report.verdict(finite, sanity=True))


def _superposition_base() -> dict:
    from toylab.experiments.benchmarks import superposition as sp

    return {"n_features": sp.N_FEATURES, "n_hidden": sp.N_HIDDEN, "model": "relu_output", "batch_size": sp.BATCH,
            "feature_probability": sp.PROB, "steps": 1000, "log_every": 1000}


def _superposition(report: _Report, budget: Budget, tiny: bool):
    import toylab
    from toylab.core.train import default_block_size
    from toylab.experiments.benchmarks import superposition as sp
    from toylab.families.superposition import SuperpositionConfig

    sizes = (1, 8) if tiny else (1, 4096)
    one = SuperpositionConfig(n_features=sp.N_FEATURES, n_hidden=sp.N_HIDDEN, model="relu_output",
                              batch_size=sp.BATCH, feature_probability=sp.PROB, steps=100, log_every=100)
    block = default_block_size(fn=toylab.make_train("superposition", one), args=(one.hparams(), toylab.make_key(0)))
    base = _superposition_base()
    target = None if tiny else 2.0
    rates, predicted = {}, {}
    for L in sizes:
        figure = f"superposition n=20 m=5: {L} instance{'s' if L > 1 else ''}"
        if not budget.allows():
            _skipped(report, "superposition", figure, "inst-steps/s", "the row's budget ran out")
            continue
        pt = sp._jax_point(L, 20 if tiny else 200, "threefry2x32", target=target and min(target, budget.left() / 6),
                           max_steps=100_000, repeats=1, block_size=block)
        rates[L] = pt["inst_steps_per_s"]
        text, predicted[L] = report.predict("superposition", base, L, _rate_text("inst-steps/s"))
        report.add("superposition", figure, rates[L], "inst-steps/s", predicted=text, predicted_value=predicted[L],
                   steps=pt["steps"], seconds=pt["seconds"], compile_s=pt["compile_s"], block_size=block,
                   final_loss=pt["final_loss"])
    lo, hi = sizes
    ratio = rates[hi] / rates[lo] if lo in rates and hi in rates else None
    p_ratio = predicted[hi] / predicted[lo] if predicted.get(lo) and predicted.get(hi) else None
    report.add("superposition", f"superposition: {hi} / {lo} instance throughput", ratio, "x",
               criterion=f">= {SCALING_TARGET:.0f}x at 4096 / 1", verdict=report.verdict(
                   None if ratio is None else ratio >= SCALING_TARGET),
               predicted=(report.plan_note if report.plan is None else "-") if p_ratio is None
               else f"{p_ratio:.1f}x", predicted_value=p_ratio)
    losses = [r["final_loss"] for r in report.rows if r["row"] == "superposition" and "final_loss" in r]
    _finite_row(report, "superposition", losses)


def _grokking(report: _Report, budget: Budget, tiny: bool):
    from toylab.experiments.benchmarks import grokking as gk
    from toylab.experiments.benchmarks._common import time_ensemble
    from toylab.experiments.reproductions.grokking import grokking_setup
    from toylab.families.grokking import GrokkingConfig

    full, _ = grokking_setup(quick=False)
    full_steps = full["steps"]
    p = TINY_TRANSFORMER["p"] if tiny else full["p"]
    seeds = (1, 2) if tiny else (1, 16, 128)
    target = 4.0
    base = {**full, **(TINY_TRANSFORMER if tiny else {})}
    rate, last, losses = None, None, []
    for n in seeds:
        figure = f"grokking p={p}: {n} seed{'s' if n > 1 else ''}"
        if not budget.allows():
            _skipped(report, "grokking", figure, "model-steps/s", "the row's budget ran out")
            continue
        if tiny:
            steps = 3
        else:
            if rate is None:  # a short probe calibrates the steps (and compiles a one-model program)
                rate = gk._jax_point(p, 1, 5)["model_steps_per_s"]
            # as many steps as `target` seconds at the last rate, with no gain from the seeds vmapped
            steps = max(10, min(2000, int(min(target, budget.left() / 4) * rate / n)))
        try:
            if tiny:  # one vmap (no block choice to compile), the narrow transformer
                pt = time_ensemble("grokking", GrokkingConfig(**TINY_TRANSFORMER, steps=steps, log_every=steps,
                                                              warmup_steps=steps), n, 0)
            else:
                pt = gk._jax_point(p, n, steps)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            _skipped(report, "grokking", figure, "model-steps/s", f"out of memory ({str(e).splitlines()[0][:120]})")
            break
        rate, last = pt["model_steps_per_s"], pt
        losses.append(pt["final_train_loss"])
        text, value = report.predict("grokking", base, n, _rate_text("model-steps/s"))
        report.add("grokking", figure, rate, "model-steps/s", predicted=text, predicted_value=value, steps=steps,
                   seconds=pt["seconds"], compile_s=pt["compile_s"], block_size=pt["block_size"],
                   final_train_loss=pt["final_train_loss"])
    n_full = seeds[-1]
    measured = last is not None and last["models"] == n_full
    projected = n_full * full_steps / last["model_steps_per_s"] + last["compile_s"] if measured else None
    text, value = report.predict("grokking", base, n_full, _seconds_text)
    report.add("grokking", f"grokking p={p}: {n_full} seeds x {full_steps} steps, projected", projected, "s",
               criterion=f"< {GROKKING_SECONDS:.0f} s (128 seeds, p=113)",
               verdict=report.verdict(None if projected is None else projected < GROKKING_SECONDS),
               predicted=text, predicted_value=value)
    _finite_row(report, "grokking", losses)


def _chain_program(loss, params, data, batch_size, chains: int, draws: int, points: int | None = None):
    """The LLC estimator's chains alone (``_Problem.chain``, SGLD, a fixed ε) vmapped over
    ``chains`` keys, and over a stack of ``points`` perturbed copies of ``params`` when given
    (snapshots): (compiled program, its arguments)."""
    import jax
    import jax.numpy as jnp
    from jax.flatten_util import ravel_pytree

    from toylab.analysis import llc as L
    from toylab.analysis.samplers import as_sampler

    flat, unravel = ravel_pytree(params)
    n = int(jax.tree.leaves(data)[0].shape[0])
    problem = L._Problem(loss=loss, unravel=unravel, n=n, batch_size=batch_size, diag_rows=None,
                         sampler=as_sampler(None), chains=chains, threshold=L.BIAS_THRESHOLD)
    move = jnp.ones_like(flat)
    eps, nbeta, gamma = (jnp.asarray(x, flat.dtype) for x in (1e-6, L.default_nbeta(n), 1.0))

    def at(w, key):
        return jax.vmap(lambda k: problem.chain(k, w, move, data, eps, nbeta, gamma, draws)[1])(
            jax.random.split(key, chains))
    if points is None:
        program, args = jax.jit(at), (flat, jax.random.key(0))
    else:
        noise = jax.random.normal(jax.random.key(1), (points, flat.shape[0]), flat.dtype)
        stack = flat + 1e-3 * jnp.linspace(0, 1, points, dtype=flat.dtype)[:, None] * noise
        program, args = jax.jit(jax.vmap(at)), (stack, jax.random.split(jax.random.key(0), points))
    return program.lower(*args).compile(), args


def _llc(report: _Report, budget: Budget, tiny: bool):
    import jax

    from toylab.analysis.llc import family_llc_inputs
    from toylab.core.family import get_family
    from toylab.experiments.benchmarks import llc as llc_bench
    from toylab.families.grokking import GrokkingConfig

    _, t_loss, t_params, t_data, _, t_batch = llc_bench._toy_problem()
    cfg = GrokkingConfig(**TINY_TRANSFORMER) if tiny else GrokkingConfig(p=113)
    model = get_family("grokking").init(cfg, cfg.hparams(), jax.random.key(0))
    g_loss, g_params, g_data, g_settings = family_llc_inputs(model, family="grokking", config=cfg)
    problems = [("superposition toy", t_loss, t_params, t_data, t_batch),
                (f"grokking p={cfg.p}", g_loss, g_params, g_data, g_settings["batch_size"])]
    counts = (2,) if tiny else (1, 8, 64, 512)
    target = 3.0
    share = budget.seconds / (len(problems) + 1)  # the snapshot program gets a share
    rates = {}

    def point(name, loss, params, data, batch, chains, draws, points=None, row_budget=None):
        label = (f"LLC {name}: {points} snapshots x {chains} chains, one program" if points
                 else f"LLC {name}: {chains} chain{'s' if chains > 1 else ''}")
        if not budget.allows() or (row_budget is not None and not row_budget.allows()):
            _skipped(report, "llc", label, "chain-steps/s", "the row's budget ran out")
            return None
        try:
            with stopwatch() as compiling:
                compiled, args = _chain_program(loss, params, data, batch, chains, draws, points)
            t = timed(compiled, *args, repeats=1)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            _skipped(report, "llc", label, "chain-steps/s", f"out of memory ({str(e).splitlines()[0][:120]})")
            return None
        rate = (points or 1) * chains * draws / t["seconds"]
        report.add("llc", label, rate, "chain-steps/s", draws=draws, seconds=t["seconds"],
                   compile_s=compiling.seconds, finite=bool(jax.numpy.all(jax.numpy.isfinite(t["result"]))))
        return rate

    for name, loss, params, data, batch in problems:
        part = Budget(min(share, budget.left()))
        rate = None
        for chains in counts:
            # as many draws as `target` seconds at the last rate, with no gain from more chains
            draws = 5 if tiny else 50 if rate is None else \
                max(20, min(5000, int(min(target, part.left() / 3) * rate / chains)))
            got = point(name, loss, params, data, batch, chains, draws, row_budget=part)
            rate = got or rate
            if got is None:
                break
        rates[name] = rate
    name, loss, params, data, batch = problems[1]
    points = 4 if tiny else 100
    base_rate = rates.get(name)
    draws = 5 if tiny or base_rate is None else max(10, min(1000, int(min(2 * target, budget.left() / 3)
                                                                     * base_rate / (points * 8))))
    point(name, loss, params, data, batch, 2 if tiny else 8, draws, points=points)


def _sae(report: _Report, budget: Budget, tiny: bool):
    from toylab.experiments.benchmarks._common import time_ensemble
    from toylab.experiments.reproductions.dictionaries import hierarchy_setup
    from toylab.families.dictionaries import DictionaryConfig

    fields = DictionaryConfig.field_info()
    setup = hierarchy_setup(quick=tiny)["base"]
    base = {k: v for k, v in setup.items() if k in fields and k not in ("kind", "prefixes", "k", "steps", "log_every")}
    base.update(kind="relu", data_seed=0, eval_size=256)
    desc = f"{base['dim']} -> {base['n_latents']}, batch {base['batch_size']}"
    target = 4.0
    rate = None
    for n in ((1, 2) if tiny else (1, 16)):
        figure = f"SAE {desc}: {'one SAE' if n == 1 else f'a sweep of {n}'}"
        if not budget.allows():
            _skipped(report, "sae", figure, "SAE-steps/s", "the row's budget ran out")
            continue
        if tiny:
            steps = 2
        else:
            if rate is None:  # a short probe calibrates the steps
                rate = time_ensemble("dictionaries", DictionaryConfig(**base, steps=2, log_every=2), 1)[
                    "model_steps_per_s"]
            steps = max(2, min(1000, int(min(target, budget.left() / 4) * rate / n)))
        try:
            pt = time_ensemble("dictionaries", DictionaryConfig(**base, steps=steps, log_every=steps), n,
                               0 if tiny else None)
        except Exception as e:
            if not is_out_of_memory(e):
                raise
            _skipped(report, "sae", figure, "SAE-steps/s", f"out of memory ({str(e).splitlines()[0][:120]})")
            break
        rate = pt["model_steps_per_s"]
        text, value = report.predict("dictionaries", {**base, "steps": 1000, "log_every": 1000}, n,
                                     _rate_text("SAE-steps/s"))
        report.add("sae", figure, rate, "SAE-steps/s", predicted=text, predicted_value=value, steps=steps,
                   seconds=pt["seconds"], compile_s=pt["compile_s"], block_size=pt["block_size"],
                   final_train_loss=pt["final_train_loss"])


def _scoring(report: _Report, budget: Budget, tiny: bool):
    import jax
    import numpy as np

    from toylab.analysis import dictionaries as M

    D = 32 if tiny else 768
    n_lat, n_feat = (512, 2048) if tiny else (4096, 16_384)  # --tiny: the smallest that scipy scores
    rng = np.random.default_rng(0)
    features = rng.normal(size=(n_feat, D)).astype(np.float32)
    # latents near a subset of the features (a partly trained dictionary), the rest random
    decoder = rng.normal(size=(n_lat, D)).astype(np.float32)
    near = rng.permutation(n_feat)[: n_lat // 2]
    decoder[: n_lat // 2] = features[near] + 0.5 * rng.normal(size=(n_lat // 2, D)).astype(np.float32)
    path = M.assignment_path(np.zeros((n_lat, n_feat), np.float32))
    t = timed(lambda: M.mcc(features, decoder), repeats=1)
    report.add("scoring", f"MCC {n_lat} latents x {n_feat} features (D={D}), as scored ({path})", t["seconds"], "s",
               first_s=t["first_s"], path=path, mcc=float(t["result"]))
    # The pure-JAX Hungarian (what jit/vmap run) at a quarter of each side, and the sanity
    # check that both algorithms give the same matching there.
    q_lat, q_feat = n_lat // 4, n_feat // 4
    cos = np.abs(np.asarray(M.cosine_similarities(decoder[:q_lat], features[:q_feat])))
    if not budget.allows():
        _skipped(report, "scoring", f"matching {q_lat} x {q_feat}, pure JAX (jit)", "s", "the row's budget ran out")
        return
    jitted = jax.jit(M.linear_assignment)
    with stopwatch() as compiling:
        compiled = jitted.lower(cos).compile()
    tj = timed(compiled, cos, repeats=1)
    report.add("scoring", f"matching {q_lat} x {q_feat}, pure JAX (jit)", tj["seconds"], "s",
               compile_s=compiling.seconds)
    if M._host_solver() is None:
        report.add("scoring", "matching: scipy = JAX", "scipy not installed", "", criterion="sanity",
                   verdict="not measured")
        return
    th = timed(M._assign_host, cos, repeats=1)
    report.add("scoring", f"matching {q_lat} x {q_feat}, scipy (host)", th["seconds"], "s")
    same = bool(np.array_equal(np.asarray(th["result"]), np.asarray(tj["result"])))
    report.add("scoring", "matching: scipy = JAX", "yes" if same else "no", "", criterion="sanity",
               verdict=report.verdict(same, sanity=True))


def _interaction(report: _Report, budget: Budget, tiny: bool):
    import types

    import equinox as eqx
    import jax
    import jax.numpy as jnp

    from toylab.analysis import interaction as ia
    from toylab.experiments.benchmarks import interaction as ib

    args = types.SimpleNamespace(**TINY_TRANSFORMER) if tiny else \
        types.SimpleNamespace(p=113, d_model=128, n_heads=4, d_mlp=512)
    tokens = jnp.asarray(ib._training_tokens(args.p, 0.3))
    model = ib._models(args, None)
    sections = ia.cut(model)
    params, static = eqx.partition(model, eqx.is_array)
    fn = jax.jit(lambda prm, t: ia.interaction_basis(sections, eqx.combine(prm, static), t, batch_size=256))
    with stopwatch() as compiling:
        compiled = fn.lower(params, tokens).compile()
    t = timed(compiled, params, tokens, repeats=1 if budget.allows() else 0, first=True)
    report.add("interaction", f"interaction basis, p={args.p} transformer ({len(tokens)} pairs), 1 model",
               t["seconds"], "s", compile_s=compiling.seconds, first_s=t["first_s"],
               d_model=args.d_model, d_mlp=args.d_mlp)


def _memory(report: _Report, budget: Budget, tiny: bool):
    import gc

    import jax
    import jax.numpy as jnp

    import toylab
    from toylab.core.devices import memory_bytes
    from toylab.core.train import default_block_size, ensemble_map
    from toylab.experiments.benchmarks import superposition as sp
    from toylab.families.superposition import SuperpositionConfig

    cfg = SuperpositionConfig(n_features=sp.N_FEATURES, n_hidden=sp.N_HIDDEN, model="relu_output",
                              batch_size=sp.BATCH, feature_probability=sp.PROB, steps=2, log_every=2)
    train = toylab.make_train("superposition", cfg)
    block = default_block_size(fn=train, args=(cfg.hparams(), toylab.make_key(0)))
    limit, what = memory_bytes()
    on_cpu = jax.default_backend() == "cpu"
    start, cap = (64, 128) if tiny else (1024, 1 << 24)
    fits, failed, note, L = None, None, None, start
    while L <= cap:
        if not budget.allows():
            note = "the row's budget ran out"
            break
        hparams = {k: jnp.full((L,), v) for k, v in cfg.hparams().items()}
        try:
            keys = jax.vmap(toylab.make_key)(jnp.arange(L, dtype=jnp.uint32))
            compiled = jax.jit(ensemble_map(train, block)).lower(hparams, keys).compile()
            mem = compiled.memory_analysis()
            need = sum(getattr(mem, k, 0) or 0 for k in ("temp_size_in_bytes", "argument_size_in_bytes",
                                                           "output_size_in_bytes")) if mem is not None else 0
            if on_cpu and need > limit // 2:  # the host would swap or kill the process: count it as not fitting
                failed, note = L, f"compiled program needs {need / 2**30:.1f} GiB, over half of {what}"
                break
            jax.block_until_ready(compiled(hparams, keys))
        except Exception as e:
            if not is_out_of_memory(e):
                failed, note = L, f"{type(e).__name__}: {str(e).splitlines()[0][:120] if str(e) else ''}"
                break
            failed, note = L, "allocation failed (RESOURCE_EXHAUSTED)"
            break
        finally:
            hparams = keys = compiled = None
            gc.collect()
        fits = L
        L *= 2
    if failed is None and note is None:
        note = f"reached the cap ({cap:,})"
    text, value = report.predict("superposition", _superposition_base(), 1,
                                 lambda t: (f"{int(t.max_runs):,} instances", int(t.max_runs)))
    if value is None or fits is None:
        verdict, criterion = "record", "record"
    else:
        criterion = "plan's max_runs in [largest fit / 2, first failure)"
        ok = value >= fits / 2 and (failed is None or value < failed)
        verdict = report.verdict(ok)
    report.add("memory", "memory: largest superposition ensemble that fits", fits, "instances", criterion=criterion,
               verdict=verdict, predicted=text, predicted_value=value, first_failure=failed, note=note,
               block_size=block, memory_limit_bytes=limit)
    report.add("memory", "memory: no crash, some ensemble fits", "yes" if fits else "no", "", criterion="sanity",
               verdict=report.verdict(fits is not None, sanity=True))


MEASURE = {"superposition": _superposition, "grokking": _grokking, "llc": _llc, "sae": _sae, "scoring": _scoring,
           "interaction": _interaction, "memory": _memory}


# ----------------------------------------------------------------------------- the command


def _versions() -> dict:
    from importlib import metadata

    out = {"python": platform.python_version()}
    for name in ("toylab", "jax", "jaxlib", "numpy", "equinox", "optax", "scipy"):
        try:
            out[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name] = None
    return out


def _device() -> dict:
    import jax

    from toylab.core.devices import memory_bytes

    devices = jax.devices()
    limit, what = memory_bytes()
    return {"kind": devices[0].device_kind, "platform": devices[0].platform, "backend": jax.default_backend(),
            "count": len(devices), "memory_bytes": limit, "memory": what}


def default_json_name(kind: str, today: datetime.date | None = None) -> str:
    """``accelerator-<device kind>-<YYYY-MM-DD>.json``, the kind lower-cased with every run of
    other characters than letters and digits made one dash."""
    slug = re.sub(r"[^a-z0-9]+", "-", kind.lower()).strip("-") or "device"
    return f"accelerator-{slug}-{(today or datetime.date.today()).isoformat()}.json"


def _plan_module():
    try:
        from toylab.core import plan
    except ImportError:
        return None
    return plan if hasattr(plan, "plan_sweep") else None


def _table(rows, log):
    header = ["figure", "measured", "criterion", "verdict", "predicted"]
    cells = [[r["figure"], f"{_fmt(r['measured'])} {r['unit']}".strip(), r["criterion"], r["verdict"], r["predicted"]]
             for r in rows]
    widths = [max(len(h), *(len(c[i]) for c in cells)) if cells else len(h) for i, h in enumerate(header)]
    line = lambda cs: " | ".join(c.ljust(w) for c, w in zip(cs, widths)).rstrip()  # noqa: E731
    log(line(header))
    log("-+-".join("-" * w for w in widths))
    for c in cells:
        log(line(c))


def main(argv=None, prog=None) -> int:
    parser = build_parser(prog)
    try:
        args = parser.parse_args(argv)
    except SystemExit as e:  # usage errors (code 2, one line) and --help (code 0)
        return e.code if isinstance(e.code, int) else 2
    import jax

    log = lambda m: print(m, flush=True)  # noqa: E731
    device = _device()
    on_accelerator = device["backend"] != "cpu"
    use_plan = not args.tiny if args.plan is None else args.plan
    plan = _plan_module() if use_plan else None
    plan_note = "plan: unavailable" if use_plan else "plan: off" + (" at --tiny" if args.tiny else "")
    target = None
    if plan is not None:
        try:
            target = plan.current_target() if on_accelerator else "cpu"
        except Exception:
            target = "cpu" if not on_accelerator else None
        if target is None:
            plan = None
    path = args.json or default_json_name(device["kind"])
    log(devices_line())
    log(f"accelerator check{' (--tiny: small sizes, criteria not judged)' if args.tiny else ''}: rows "
        f"{', '.join(args.only)}; {'plan: target ' + target if plan is not None else plan_note}")
    report = _Report(args.tiny, on_accelerator, plan, target, log, plan_note)
    budgets = TINY_BUDGETS if args.tiny else BUDGETS
    seconds = {}
    with stopwatch() as whole:
        for name in args.only:
            log(f"{name} (budget {budgets[name]} s)")
            with stopwatch() as row_time:
                try:
                    MEASURE[name](report, report.budget(budgets[name]), args.tiny)
                except Exception as e:  # one row's failure is recorded; the others still run
                    report.add(name, f"{name}: error", None, "", verdict="error",
                               note=f"{type(e).__name__}: {str(e).splitlines()[0][:200] if str(e) else ''}")
            seconds[name] = row_time.seconds
    log("")
    _table(report.rows, log)
    failed = [r["figure"] for r in report.rows if r["verdict"] in ("FAIL", "error")]
    log(f"total {whole.seconds:.0f} s; " + (f"{len(failed)} FAIL or error" if failed else "no FAIL"))
    record = {"date": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
              "device": device, "versions": _versions(), "tiny": args.tiny, "rows_run": list(args.only),
              "plan": {"used": plan is not None, "target": target, "note": None if plan is not None else plan_note,
                       "seconds": report.plan_seconds}, "budgets_s": {k: budgets[k] for k in args.only},
              "seconds": seconds, "total_seconds": whole.seconds, "rows": report.rows, "jax_backend": jax.default_backend()}
    try:
        with open(path, "w") as f:
            json.dump(record, f, indent=1, default=str)
    except OSError as e:
        print(f"{parser.prog}: error: --json {path!r}: cannot write ({e.strerror})", file=sys.stderr)
        return 1
    log(f"wrote {os.path.abspath(path)}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
