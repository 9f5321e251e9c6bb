"""flax models (linen and nnx) trained by toylab's own loop and sweep runner."""

import dataclasses
import functools
import sys

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

pytest.importorskip("flax")
import flax.linen as nn  # noqa: E402
from flax import nnx  # noqa: E402

import toylab  # noqa: E402
from toylab.core.config import TrainConfig, positive_int, static, sweepable  # noqa: E402
from toylab.models.flax_interop import FlaxModel, as_flax_model, flax_family, from_linen, from_nnx  # noqa: E402
from toylab.core.sweep import run_sweep  # noqa: E402


@dataclasses.dataclass(frozen=True)
class RegressionConfig(TrainConfig):
    """Regress y = sin(x @ T) for a fixed random teacher map T."""

    d_in: int = static(4, check=positive_int, help="input dimension")
    d_out: int = static(2, check=positive_int, help="output dimension")
    width: int = static(32, check=positive_int, help="hidden width of the MLP")
    batch_size: int = static(64, check=positive_int, help="samples per step")
    steps: int = static(200, check=positive_int, help="optimizer steps")
    log_every: int = static(20, check=positive_int, help="steps between logged metrics")
    lr: float = sweepable(1e-2, help="peak learning rate")
    input_scale: float = sweepable(1.0, help="std of the inputs")


def regression_batch(cfg, hparams, key):
    x = hparams["input_scale"] * jax.random.normal(key, (cfg.batch_size, cfg.d_in))
    teacher = jax.random.normal(jax.random.key(1234), (cfg.d_in, cfg.d_out))  # fixed across runs
    return x, jnp.sin(x @ teacher)


def mse_loss(model, batch, cfg, hparams):
    x, y = batch
    err = model(x) - y
    return jnp.mean(err ** 2), {"max_err": jnp.max(jnp.abs(err))}


class LinenMLP(nn.Module):
    width: int
    d_out: int

    @nn.compact
    def __call__(self, x):
        h = nn.tanh(nn.Dense(self.width, name="hidden")(x))
        return nn.Dense(self.d_out, name="out")(h)


class NnxMLP(nnx.Module):
    def __init__(self, d_in, width, d_out, *, rngs):
        self.hidden = nnx.Linear(d_in, width, rngs=rngs)
        self.out = nnx.Linear(width, d_out, rngs=rngs)

    def __call__(self, x):
        return self.out(jnp.tanh(self.hidden(x)))


def linen_init(cfg, hparams, key):
    return from_linen(LinenMLP(cfg.width, cfg.d_out), key, jnp.zeros((1, cfg.d_in)))


def nnx_init(cfg, hparams, key):
    return from_nnx(lambda rngs: NnxMLP(cfg.d_in, cfg.width, cfg.d_out, rngs=rngs), key)


def nnx_init_instance(cfg, hparams, key):
    # An nnx Module built from the key inside init is accepted as is.
    return NnxMLP(cfg.d_in, cfg.width, cfg.d_out, rngs=nnx.Rngs(key))


FAMILIES = {
    "linen": flax_family("test-flax-linen", RegressionConfig, linen_init, regression_batch, mse_loss),
    "nnx": flax_family("test-flax-nnx", RegressionConfig, nnx_init, regression_batch, mse_loss),
    "nnx-instance": flax_family("test-flax-nnx-inst", RegressionConfig, nnx_init_instance, regression_batch, mse_loss),
}


# ----------------------------------------------------------------------------- training


@functools.lru_cache(maxsize=None)
def jitted_init(kind):
    """The family's init under one jit (eager flax init compiles every small op: slow)."""
    return jax.jit(lambda key: FAMILIES[kind].init(BASE, BASE.hparams(), key))

BASE = RegressionConfig()
SINGLE = dict(lr=1e-2, seed=1)  # the run trained alone and compared with its sweep twin


@pytest.fixture(scope="module")
def single_runs():
    """One jitted ``make_train`` run per kind, shared by the tests below (compiles are the cost)."""
    cache = {}

    def get(kind):
        if kind not in cache:
            cfg = BASE.replace(lr=SINGLE["lr"])
            train = toylab.make_train(FAMILIES[kind], cfg)
            cache[kind] = jax.jit(train)(cfg.hparams(), toylab.make_key(SINGLE["seed"]))
        return cache[kind]

    return get


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_make_train_trains_flax_model(kind, single_runs):
    result = single_runs(kind)
    loss = np.asarray(result.metrics["loss"])
    assert loss.shape == (BASE.steps // BASE.log_every,) and np.isfinite(loss).all()
    # Measured over seeds 0-2 at 200 steps, lr 1e-2: final/first logged loss 0.08-0.10 for
    # both kinds (the first log already averages 20 steps of descent).
    assert loss[-1] < 0.3 * loss[0], loss
    assert isinstance(result.model, FlaxModel)
    # The trained model, called on fresh data, does as well as the logged loss says.
    x, y = regression_batch(BASE, BASE.hparams(), jax.random.key(7))
    assert float(eqx.filter_jit(lambda m: jnp.mean((m(x) - y) ** 2))(result.model)) < 0.3 * loss[0]


def test_linen_and_nnx_parameter_trees():
    cfg = BASE
    lin, nx = jitted_init("linen")(jax.random.key(0)), jitted_init("nnx")(jax.random.key(0))
    assert lin.kind == "linen" and nx.kind == "nnx"
    assert lin.params["hidden"]["kernel"].shape == (cfg.d_in, cfg.width)
    assert nx.params["hidden"]["kernel"].shape == (cfg.d_in, cfg.width)
    assert isinstance(lin.module, nn.Module) and isinstance(nx.module, NnxMLP)
    x = jnp.ones((3, cfg.d_in))
    np.testing.assert_allclose(nx.module(x), nx(x))
    np.testing.assert_allclose(lin.module(x), lin(x))
    assert "FlaxModel(kind='nnx'" in repr(nx)
    # An nnx Module returned by init is split as from_nnx would.
    inst = jitted_init("nnx-instance")(jax.random.key(0))
    assert isinstance(inst, FlaxModel) and inst.spec == nx.spec
    for a, b in zip(jax.tree.leaves(inst.params), jax.tree.leaves(nx.params)):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_filter_jit_compiles_once_for_models_of_equal_structure(kind):
    cfg = BASE
    traces = []

    @eqx.filter_jit
    def apply(model, x):
        traces.append(1)
        return model(x)

    x = jnp.ones((2, cfg.d_in))
    a, b = jitted_init(kind)(jax.random.key(0)), jitted_init(kind)(jax.random.key(1))
    apply(a, x), apply(b, x)
    # Equal static parts (linen Module / nnx GraphDef) hash alike: one compile for both.
    # (vmapped init over seeds is checked by the sweep test, against single runs.)
    assert len(traces) == 1


@pytest.mark.parametrize("kind", ["linen", "nnx"])
def test_sweep_of_flax_family_matches_single_runs(kind, single_runs, tmp_path):
    lrs = [3e-3, SINGLE["lr"]]
    # segments=2: the sweep runs the loop as two compiled segments with a checkpoint between.
    results = run_sweep(FAMILIES[kind], BASE, grid={"lr": lrs}, seeds=2, out=tmp_path / kind,
                        segments=2, quiet=True)
    assert len(results) == 4
    for lr in lrs:
        for seed in (0, 1):
            loss = results.one(lr=lr, seed=seed).metrics["loss"]
            # Measured: final/first 0.19-0.30 at lr 3e-3, 0.08-0.10 at lr 1e-2.
            assert np.isfinite(loss).all() and loss[-1] < 0.5 * loss[0], (lr, seed, loss)
    single = single_runs(kind)
    run = results.one(**SINGLE)
    np.testing.assert_allclose(run.metrics["loss"], np.asarray(single.metrics["loss"]), rtol=1e-5, atol=1e-7)
    # The stored model comes back as a FlaxModel with the single run's parameters.
    model = run.model
    assert isinstance(model, FlaxModel) and model.kind == kind
    for a, b in zip(jax.tree.leaves(model.params), jax.tree.leaves(single.model.params)):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)


# ----------------------------------------------------------------------------- input checks


@pytest.mark.slow
def test_from_linen_rejects_non_linen_module():
    with pytest.raises(TypeError, match=r"module must be a flax\.linen\.Module.*got builtins\.int"):
        from_linen(3, jax.random.key(0), jnp.zeros((1, 2)))
    inst = NnxMLP(2, 4, 1, rngs=nnx.Rngs(0))
    with pytest.raises(TypeError, match="from_nnx"):
        from_linen(inst, jax.random.key(0), jnp.zeros((1, 2)))


def test_from_linen_rejects_mutable_collections_and_unhashable_fields():
    class WithStats(nn.Module):
        @nn.compact
        def __call__(self, x):
            return nn.BatchNorm(use_running_average=False)(nn.Dense(2)(x))

    with pytest.raises(ValueError, match="batch_stats"):
        from_linen(WithStats(), jax.random.key(0), jnp.zeros((4, 2)))

    class ListField(nn.Module):
        sizes: list

        def __call__(self, x):
            return x

    with pytest.raises(TypeError, match="hashable"):
        from_linen(ListField([1, 2]), jax.random.key(0), jnp.zeros((1, 2)))


def test_from_nnx_checks_its_inputs():
    with pytest.raises(TypeError, match="use from_linen"):
        from_nnx(LinenMLP(4, 1), jax.random.key(0))
    with pytest.raises(TypeError, match="key is required"):
        from_nnx(lambda rngs: NnxMLP(2, 4, 1, rngs=rngs))
    with pytest.raises(TypeError, match="key must be None"):
        from_nnx(NnxMLP(2, 4, 1, rngs=nnx.Rngs(0)), jax.random.key(0))
    with pytest.raises(TypeError, match=r"model\(rngs\) must return an nnx Module"):
        from_nnx(lambda rngs: 3, jax.random.key(0))
    with pytest.raises(TypeError, match="model must be an nnx Module.*got builtins.str"):
        from_nnx("mlp", jax.random.key(0))

    class WithRngs(nnx.Module):
        def __init__(self, rngs):
            self.lin = nnx.Linear(2, 2, rngs=rngs)
            self.drop = nnx.Dropout(0.1, rngs=rngs)

    with pytest.raises(ValueError, match="RngKey"):
        from_nnx(WithRngs, jax.random.key(0))


def test_flax_family_checks_its_inputs():
    with pytest.raises(TypeError, match="config_cls"):
        flax_family("x", dict, linen_init, regression_batch, mse_loss)
    with pytest.raises(TypeError, match="loss_fn must be callable"):
        flax_family("x", RegressionConfig, linen_init, regression_batch, "mse")
    with pytest.raises(TypeError, match="name"):
        flax_family("", RegressionConfig, linen_init, regression_batch, mse_loss)
    bad = flax_family("x", RegressionConfig, lambda c, h, k: LinenMLP(4, 1), regression_batch, mse_loss)
    with pytest.raises(TypeError, match="from_linen"):
        toylab.make_train(bad, RegressionConfig())
    with pytest.raises(TypeError, match="FlaxModel or an nnx Module"):
        as_flax_model({"w": jnp.ones(2)})
    with pytest.raises(ValueError, match="'linen' or 'nnx'"):
        FlaxModel({"w": jnp.ones(2)}, None, "torch")
    assert "test-flax-linen" not in toylab.family_names()  # not registered unless asked


def test_flax_family_register(monkeypatch):
    from toylab.core import family as family_mod

    monkeypatch.setattr(family_mod, "_REGISTRY", dict(family_mod._REGISTRY))  # keep the real registry clean
    fam = flax_family("test-flax-registered", RegressionConfig, linen_init, regression_batch, mse_loss, register=True)
    assert toylab.get_family("test-flax-registered") is fam


def test_missing_flax_gives_install_hint(monkeypatch):
    for mod in ("flax", "flax.linen", "flax.nnx"):
        monkeypatch.setitem(sys.modules, mod, None)
    with pytest.raises(ImportError, match=r"pip install 'toylab\[flax\]'"):
        from_linen(object(), jax.random.key(0))
    with pytest.raises(ImportError, match=r"pip install 'toylab\[flax\]'"):
        from_nnx(object(), jax.random.key(0))
