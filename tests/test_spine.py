"""The spine: configs, the training loop, sweeps, the results store, resume after kill -9."""

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

import toylab
from toylab.core.config import ConfigError
from toylab.core.optim import learning_rate_schedule
from toylab.core.sweep import load_results, run_sweep
from toylab.core.train import Trainer, ensemble_map, stack_hparams
from toylab.families.superposition import SuperpositionConfig

SMALL = dict(n_features=6, n_hidden=2, batch_size=64, steps=200, log_every=20)


def small(**kw):
    return SuperpositionConfig(**{**SMALL, **kw})


# ----------------------------------------------------------------------------- configs


@pytest.mark.parametrize("field,value,phrase", [
    ("feature_probability", 1.5, "[0, 1]"),
    ("feature_probability", -0.1, "[0, 1]"),
    ("n_hidden", 0, "positive"),
    ("n_features", -3, "positive"),
    ("batch_size", 2.5, "integer"),
    ("model", "quadratic", "one of"),
    ("lr", 0.0, "> 0"),
    ("steps", "many", "integer"),
    ("log_every", 30, "divide steps"),
    ("snapshot_steps", (10,), "multiple of log_every"),
    ("importance", (1.0, 2.0), "n_features"),
    ("weight_decay", float("nan"), ">= 0"),
])
def test_bad_field_names_field_value_and_rule(field, value, phrase):
    with pytest.raises(ConfigError) as e:
        small(**{field: value})
    assert e.value.field == field
    assert field in str(e.value) and phrase in str(e.value)


def test_fields_split_static_and_sweepable():
    cfg = small()
    assert {"lr", "weight_decay", "feature_probability", "importance_decay"} <= set(cfg.hparams())
    static = dict(cfg.static_key())
    assert {"n_features", "n_hidden", "model", "steps", "batch_size"} <= set(static)
    assert "seed" not in static and "seed" not in cfg.hparams()
    # Parsing from strings, as the CLI does.
    assert SuperpositionConfig.parse_field("importance", "1,0.5") == (1.0, 0.5)
    assert SuperpositionConfig.parse_field("n_hidden", "7") == 7


def test_schedule_warmup_and_cosine():
    cfg = small(warmup_steps=10, schedule="cosine", steps=110, log_every=10)
    f = learning_rate_schedule(cfg, {"lr": jnp.float32(2.0)})
    np.testing.assert_allclose([f(0), f(5), f(10), f(60), f(110)], [0.0, 1.0, 2.0, 1.0, 0.0], atol=1e-6)
    g = learning_rate_schedule(small(), {"lr": jnp.float32(0.5)})
    np.testing.assert_allclose([g(0), g(150)], [0.5, 0.5])


# ----------------------------------------------------------------------------- training


def test_training_reduces_loss_and_logs():
    cfg = small(steps=400, log_every=40, feature_probability=0.3, lr=1e-2)
    res = jax.jit(toylab.make_train("superposition", cfg))(cfg.hparams(), toylab.make_key(0))
    loss = np.asarray(res.metrics["loss"])
    assert loss.shape == (10,) and np.all(np.isfinite(loss))
    assert loss[-1] < loss[0]
    # Far below the all-zero model's loss (1/n) Σ I_i p E[x²] = (1/n) Σ I_i p / 3.
    zero_model = np.mean(0.7 ** np.arange(6)) * 0.3 / 3
    assert loss[-1] < 0.5 * zero_model
    np.testing.assert_array_equal(res.steps, np.arange(40, 401, 40))


_ENSEMBLE_CFG = small(steps=100, log_every=20)
_ENSEMBLE_TRAIN = toylab.make_train("superposition", _ENSEMBLE_CFG)
_ENSEMBLE_JIT = jax.jit(jax.vmap(_ENSEMBLE_TRAIN))
_SINGLE_JIT = jax.jit(_ENSEMBLE_TRAIN)


@settings(max_examples=6)
@given(seeds=st.lists(st.integers(0, 2**31 - 1), min_size=3, max_size=3, unique=True),
       probs=st.lists(st.floats(0.01, 1.0), min_size=3, max_size=3))
def test_vmapped_ensemble_equals_separate_runs(seeds, probs):
    cfgs = [_ENSEMBLE_CFG.replace(feature_probability=p) for p in probs]
    hp = stack_hparams(cfgs)
    keys = jax.vmap(toylab.make_key)(jnp.asarray(seeds, jnp.uint32))
    together = _ENSEMBLE_JIT(hp, keys)
    single = _SINGLE_JIT
    for i, (c, s) in enumerate(zip(cfgs, seeds)):
        alone = single(c.hparams(), toylab.make_key(s))
        np.testing.assert_allclose(together.model.W[i], alone.model.W, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(together.metrics["loss"][i], alone.metrics["loss"], rtol=2e-5, atol=1e-8)


@pytest.mark.parametrize("block_size,groups", [(2, 1), (3, 1), (1, 2)])
def test_blocked_ensemble_equals_vmap(block_size, groups):
    # 8 instances: blocks of 3 leave a remainder; groups=2 blocks each half on its own.
    seeds = jnp.arange(8, dtype=jnp.uint32)
    cfgs = [_ENSEMBLE_CFG.replace(feature_probability=p) for p in np.linspace(0.05, 0.9, 8)]
    hp = stack_hparams(cfgs)
    keys = jax.vmap(toylab.make_key)(seeds)
    blocked = jax.jit(ensemble_map(_ENSEMBLE_TRAIN, block_size, groups))(hp, keys)
    np.testing.assert_allclose(blocked.model.W, _ENSEMBLE_JIT(hp, keys).model.W, rtol=2e-5, atol=2e-6)
    np.testing.assert_allclose(blocked.metrics["loss"], _ENSEMBLE_JIT(hp, keys).metrics["loss"], rtol=2e-5)
    with pytest.raises(ValueError, match="block_size"):
        ensemble_map(_ENSEMBLE_TRAIN, 0)


def test_same_seed_same_result_other_seed_differs():
    cfg = small()
    train = jax.jit(toylab.make_train("superposition", cfg))
    a, b, c = (train(cfg.hparams(), toylab.make_key(s)) for s in (3, 3, 4))
    np.testing.assert_array_equal(a.model.W, b.model.W)
    assert not np.allclose(a.model.W, c.model.W)


@pytest.mark.slow
def test_snapshots_equal_shorter_runs():
    cfg = small(steps=200, log_every=20, snapshot_steps=(0, 60, 200))
    res = jax.jit(toylab.make_train("superposition", cfg))(cfg.hparams(), toylab.make_key(5))
    assert res.snapshots.W.shape == (3, 2, 6)
    short = small(steps=60, log_every=20)
    ref = jax.jit(toylab.make_train("superposition", short))(short.hparams(), toylab.make_key(5))
    init = Trainer("superposition", cfg).init(cfg.hparams(), toylab.make_key(5))
    np.testing.assert_allclose(res.snapshots.W[0], init.params.W)
    np.testing.assert_allclose(res.snapshots.W[1], ref.model.W, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(res.snapshots.W[2], res.model.W)


def test_segmented_training_equals_one_scan():
    cfg = small()
    t = Trainer("superposition", cfg)
    hp, key = cfg.hparams(), toylab.make_key(1)
    whole = jax.jit(t.train)(hp, key)
    state = t.init(hp, key)
    seg = jax.jit(lambda s: t.segment(s, hp, key, 2))
    logs = []
    for _ in range(5):
        state, m = seg(state)
        logs.append(m["loss"])
    np.testing.assert_allclose(state.params.W, whole.model.W, rtol=1e-6, atol=1e-7)
    np.testing.assert_allclose(np.concatenate(logs), whole.metrics["loss"], rtol=1e-6)


def _batch_recording(name="superposition-recording"):
    """The superposition family with each step's batch sum logged as a metric."""
    import dataclasses

    from toylab.core.family import get_family

    base = get_family("superposition")

    def loss(model, batch, cfg, hp):
        value, aux = base.loss(model, batch, cfg, hp)
        return value, {**aux, "batch_sum": jnp.sum(batch)}
    return dataclasses.replace(base, name=name, loss=loss)


@pytest.mark.slow
def test_data_seed_gives_every_run_the_batches_of_that_seed():
    family = _batch_recording()
    cfg = small(steps=40, log_every=4, data_seed=7)
    seeds = np.asarray([0, 1, 2], np.uint32)
    hp = stack_hparams([cfg.replace(lr=lr) for lr in (1e-3, 1e-2, 1e-2)])  # lr differs: batched hparams too
    state, metrics = Trainer(family, cfg, block_size=None).run(hp, seeds, segments=3)
    sums = metrics["batch_sum"]
    np.testing.assert_array_equal(sums[1], sums[0])
    np.testing.assert_array_equal(sums[2], sums[0])
    assert not np.allclose(state.params.W[1], state.params.W[2])  # same data, own initialisation
    # The batches are those that seed 7 draws without a data_seed ...
    own = cfg.replace(data_seed=None)
    _, alone = Trainer(family, own, block_size=None).run(stack_hparams([own]), np.asarray([7], np.uint32))
    np.testing.assert_allclose(alone["batch_sum"][0], sums[0], rtol=1e-6)
    # ... and without one each run draws its own.
    _, separate = Trainer(family, own, block_size=None).run(hp, seeds)
    assert not np.allclose(separate["batch_sum"][0], separate["batch_sum"][1])
    with pytest.raises(ConfigError, match="data_seed"):
        small(data_seed=-1)


@pytest.mark.parametrize("block_size", [None, 2])
def test_ensemble_with_shared_hparams_and_data_equals_single_runs(block_size):
    """Hparams equal across the ensemble go in unbatched (and with a data_seed, so does the
    data); the numbers stay those of each run trained alone, in any number of segments."""
    cfg = small(steps=60, log_every=6, data_seed=3)
    cfgs = [cfg.replace(feature_probability=p) for p in (0.1, 0.1, 0.3)]  # lr etc. shared, p batched
    seeds = np.asarray([4, 5, 6], np.uint32)
    trainer = Trainer("superposition", cfg, block_size=block_size)
    state, metrics = trainer.run(stack_hparams(cfgs), seeds, segments=4)
    single = jax.jit(toylab.make_train("superposition", cfg))
    for i, (c, s) in enumerate(zip(cfgs, seeds)):
        alone = single(c.hparams(), toylab.make_key(int(s)))
        np.testing.assert_allclose(state.params.W[i], alone.model.W, rtol=2e-5, atol=2e-6)
        np.testing.assert_allclose(metrics["loss"][i], alone.metrics["loss"], rtol=2e-5, atol=1e-8)


def test_ensemble_map_leaves_shared_arguments_unmapped():
    def f(x, scale):
        assert scale.shape == ()  # traced once, not per instance
        return x * scale
    xs = jnp.arange(6.0)
    for block in (None, 2):
        np.testing.assert_allclose(jax.jit(ensemble_map(f, block, n_shared=1))(xs, jnp.float32(3.0)), 3 * xs)
    with pytest.raises(ValueError, match="n_shared"):
        ensemble_map(f, None, n_shared=-1)


# ----------------------------------------------------------------------------- sweeps and store


@pytest.mark.slow
def test_sweep_results_addressable_and_equal_to_single_runs(tmp_path):
    out = tmp_path / "sweep"
    grid = {"feature_probability": [0.5, 0.05], "model": ["linear", "relu_output"]}
    res = run_sweep("superposition", SMALL, grid, seeds=2, out=out, quiet=True, segments=3)
    assert len(res) == 8
    assert res.values("model") == ["linear", "relu_output"]
    run = res.one(model="linear", feature_probability=0.05, seed=1)
    cfg = small(model="linear", feature_probability=0.05)
    ref = jax.jit(toylab.make_train("superposition", cfg))(cfg.hparams(), toylab.make_key(1))
    np.testing.assert_allclose(run.model.W, ref.model.W, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(run.metrics["loss"], ref.metrics["loss"], rtol=1e-5)
    # summary.json has every point and seed with its hyperparameters and final measures.
    rows = json.loads((out / "summary.json").read_text())
    assert len(rows) == 8 and {r["run"] for r in rows} == set(range(8))
    row = next(r for r in rows if r["model"] == "linear" and r["feature_probability"] == 0.05 and r["seed"] == 1)
    assert row["loss"] == pytest.approx(float(ref.metrics["loss"][-1]), rel=1e-5)
    assert "dimensions_per_feature" in row
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["jax_version"] == jax.__version__ and manifest["devices"]
    # The loader reads the folder back identically.
    again = load_results(out)
    np.testing.assert_array_equal(again.one(model="linear", feature_probability=0.05, seed=1).model.W, run.model.W)
    assert len(again.final("loss", model="relu_output")) == 4
    with pytest.raises(ConfigError, match="exactly one run, but 4 match"):
        again.one(model="linear")
    with pytest.raises(ConfigError, match="name='accuracy'"):
        again.final("accuracy")


@pytest.mark.slow
def test_sweep_chunks_and_snapshots(tmp_path):
    res = run_sweep("superposition", {**SMALL, "snapshot_steps": (0, 100)}, {"lr": [1e-3, 3e-3, 1e-2]},
                    seeds=2, out=tmp_path / "s", chunk_size=4, quiet=True)
    assert len(res) == 6 and len(list((tmp_path / "s" / "chunks").glob("*.npz"))) == 2
    r = res.one(lr=3e-3, seed=0)
    assert r.snapshots.W.shape == (2, 2, 6)
    assert not (tmp_path / "s" / "checkpoints").exists() or not any((tmp_path / "s" / "checkpoints").iterdir())


@pytest.mark.slow
def test_store_refuses_other_sweep_and_leaves_it_untouched(tmp_path):
    out = tmp_path / "s"
    run_sweep("superposition", SMALL, {"lr": [1e-3]}, out=out, quiet=True)
    before = {p: p.read_bytes() for p in out.rglob("*") if p.is_file()}
    with pytest.raises(ConfigError, match="different sweep"):
        run_sweep("superposition", SMALL, {"lr": [2e-3]}, out=out, quiet=True)
    # The same sweep, finished: loaded, nothing trained or written.
    loaded = run_sweep("superposition", SMALL, {"lr": [1e-3]}, out=out, quiet=True)
    assert len(loaded) == 1 and loaded.work["trained"] == 0
    (tmp_path / "other").mkdir()
    (tmp_path / "other" / "notes.txt").write_text("mine")
    with pytest.raises(ConfigError, match="not a toylab results folder"):
        run_sweep("superposition", SMALL, out=tmp_path / "other", quiet=True)
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file()} == before
    assert (tmp_path / "other" / "notes.txt").read_text() == "mine"
    # Resuming a finished sweep trains nothing and changes nothing.
    res = run_sweep("superposition", SMALL, {"lr": [1e-3]}, out=out, resume=True, quiet=True)
    assert len(res) == 1
    assert {p: p.read_bytes() for p in out.rglob("*") if p.is_file() and p.name != "summary.json"} == \
        {p: b for p, b in before.items() if p.name != "summary.json"}


def test_bad_sweep_arguments():
    with pytest.raises(ConfigError, match="seeds"):
        run_sweep("superposition", SMALL, seeds=0, quiet=True)
    with pytest.raises(ConfigError, match="bogus"):
        run_sweep("superposition", {"bogus": 1}, quiet=True)
    with pytest.raises(ConfigError, match="feature_probability"):
        run_sweep("superposition", SMALL, {"feature_probability": [0.5, 2.0]}, quiet=True)
    with pytest.raises(ConfigError, match="family"):
        run_sweep("no_such_family", quiet=True)
    with pytest.raises(ConfigError, match="block_size"):
        run_sweep("superposition", SMALL, block_size=0, quiet=True)


SHARDED_SCRIPT = textwrap.dedent("""
    import os, sys
    os.environ["XLA_FLAGS"] = "--xla_force_host_platform_device_count=4"
    import jax, numpy as np
    from toylab.core.sweep import run_sweep
    assert len(jax.devices()) == 4, jax.devices()
    # block_size=1: each device's share is trained one instance at a time (blocked program).
    res = run_sweep("superposition", {SMALL}, {{"feature_probability": [0.5, 0.1, 0.02]}}, seeds=2,
                    out=sys.argv[1], quiet=True, block_size=1)
    print("devices", len(jax.devices()))
""")


@pytest.mark.slow
def test_sharded_sweep_equals_unsharded(tmp_path):
    script = SHARDED_SCRIPT.format(SMALL=repr(SMALL))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "sharded")], capture_output=True, text=True,
                          timeout=300, env={**os.environ, "JAX_PLATFORMS": "cpu"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "devices 4" in proc.stdout
    sharded = load_results(tmp_path / "sharded")
    assert json.loads((tmp_path / "sharded" / "manifest.json").read_text())["devices"].__len__() == 4
    plain = run_sweep("superposition", SMALL, {"feature_probability": [0.5, 0.1, 0.02]}, seeds=2, quiet=True)
    assert len(sharded) == len(plain) == 6
    for a, b in zip(sharded, plain):
        assert (a.config, a.seed) == (b.config, b.seed)
        np.testing.assert_allclose(a.model.W, b.model.W, rtol=1e-5, atol=1e-6)
        np.testing.assert_allclose(a.metrics["loss"], b.metrics["loss"], rtol=1e-5)


@pytest.mark.slow
def test_sweep_killed_with_sigkill_resumes_without_loss_or_retraining(tmp_path):
    """Kill -9 the CLI at several moments; --resume each time; the finished folder equals
    an uninterrupted sweep, and chunks finished before a kill are never rewritten."""
    out = tmp_path / "killed"
    args = [sys.executable, "-m", "toylab", "run", "superposition",
            "--set", "n_features=6", "--set", "n_hidden=2", "--set", "batch_size=64",
            "--set", "steps=3000", "--set", "log_every=20",
            "--grid", "feature_probability=0.5,0.2,0.1,0.05", "--seeds", "2",
            "--chunk-size", "2", "--segments", "10", "--quiet", "--out", str(out)]
    env = {**os.environ, "JAX_PLATFORMS": "cpu"}
    chunks_done = lambda: len(list((out / "chunks").glob("*.done.json"))) if (out / "chunks").exists() else 0  # noqa: E731
    mid_chunk = lambda: (out / "checkpoints").exists() and any((out / "checkpoints").glob("*.ckpt"))  # noqa: E731
    # Kill points: mid first chunk (after a checkpoint), after 1 chunk, after 2 chunks + a bit.
    triggers = [(mid_chunk, 0.0), (lambda: chunks_done() >= 1, 0.0), (lambda: chunks_done() >= 2, 0.3)]
    finished_before: dict[str, tuple] = {}
    kills = 0
    for ready, extra in triggers:
        proc = subprocess.Popen(args + (["--resume"] if kills else []), env=env,
                                stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        t0 = time.time()
        while not ready() and proc.poll() is None and time.time() - t0 < 240:
            time.sleep(0.01)
        time.sleep(extra)
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait()
        kills += 1
        for p in (out / "chunks").glob("*.npz") if (out / "chunks").exists() else []:
            stamp = (p.stat().st_mtime_ns, p.stat().st_ino)
            if p.name in finished_before:  # finished earlier: never rewritten by a resume
                assert finished_before[p.name] == stamp
            finished_before[p.name] = stamp
        # No torn files: only dot-prefixed temporaries may be left half-written (and the lock).
        assert not [p for p in out.rglob("*") if p.is_file() and p.name.startswith(".")
                    and p.suffix != ".tmp" and p.name != ".lock"]
    assert kills >= 2, "the sweep finished before it could be killed twice; make it longer"
    final = subprocess.run(args + ["--resume"], env=env, capture_output=True, text=True, timeout=300)
    assert final.returncode == 0, final.stderr[-2000:]
    for name, stamp in finished_before.items():
        p = out / "chunks" / name
        assert (p.stat().st_mtime_ns, p.stat().st_ino) == stamp
    resumed = load_results(out)
    assert len(resumed) == 8 and sorted(r.index for r in resumed) == list(range(8))
    assert len(json.loads((out / "summary.json").read_text())) == 8
    assert not any((out / "checkpoints").glob("*.ckpt"))
    assert not list(out.rglob(".*.tmp")), "temporaries of killed writes are removed on resume"
    base = dict(n_features=6, n_hidden=2, batch_size=64, steps=3000, log_every=20)
    ref = run_sweep("superposition", base, {"feature_probability": [0.5, 0.2, 0.1, 0.05]}, seeds=2,
                    chunk_size=2, quiet=True)
    for a, b in zip(resumed, ref):  # resumed chunks continue exactly: the same bits
        assert (a.config, a.seed) == (b.config, b.seed)
        np.testing.assert_array_equal(a.model.W, b.model.W)
        np.testing.assert_array_equal(a.metrics["loss"], b.metrics["loss"])


@pytest.mark.slow
def test_a_family_may_bring_its_own_optimizer():
    """The family record's optimizer replaces AdamW; here plain SGD, checked against the
    update done by hand (one step: params - lr * grad)."""
    import dataclasses

    import equinox as eqx
    import jax
    import optax

    from toylab.core.family import get_family
    from toylab.core.train import Trainer, make_key

    base = get_family("superposition")
    sgd = dataclasses.replace(base, name="superposition-sgd", optimizer=lambda cfg, hp: optax.sgd(hp["lr"]))
    cfg = base.config(n_features=5, n_hidden=2, batch_size=16, steps=1, log_every=1, lr=0.5)
    key = make_key(3)
    result = Trainer(sgd, cfg).train(cfg.hparams(), key)
    trainer = Trainer(base, cfg)
    state = trainer.init(cfg.hparams(), key)
    k_data = jax.random.split(key)[1]
    batch = base.batch(cfg, cfg.hparams(), jax.random.fold_in(k_data, 0))
    grads = jax.grad(lambda p: base.loss(trainer.model(p), batch, cfg, cfg.hparams())[0])(state.params)
    by_hand = jax.tree.map(lambda p, g: p - 0.5 * g, state.params, grads)
    np.testing.assert_allclose(result.model.W, by_hand.W, rtol=1e-6, atol=1e-7)
    adamw = Trainer(base, cfg).train(cfg.hparams(), key)  # the default is not SGD
    assert not np.allclose(adamw.model.W, result.model.W)
    assert eqx.tree_equal(jax.tree.structure(result.model), jax.tree.structure(adamw.model))
