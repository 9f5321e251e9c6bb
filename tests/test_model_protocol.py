"""A model of the user's own, declaring its node layers, sections and dense layer, gets the
interaction basis, the layer degeneracies and can be a dictionary source — no lab change."""

import ast
import dataclasses
from pathlib import Path

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import toylab
from toylab.analysis import degeneracy as dg
from toylab.analysis import interaction as ia
from toylab.core.config import ConfigError, TrainConfig, positive_int, static
from toylab.core.family import Family, register_family
from toylab.families.dictionaries import DictionaryConfig, layer_activations, readable_layers
from toylab.models import DenseLayer, LayeredModel, LayerMaps, layer_maps


class TwoLayer(eqx.Module):
    """x → ReLU(W1 x + b1) → W2 h: nothing the lab knows by name."""

    W1: jax.Array  # (h, d)
    b1: jax.Array  # (h,)
    W2: jax.Array  # (o, h)

    def __call__(self, x):
        return self.W2 @ jax.nn.relu(self.W1 @ x + self.b1)

    def layer_maps(self):
        d = self.W1.shape[1]

        def check(x):
            return None if x.ndim == 2 and x.shape[1] == d else f"must be float vectors of shape (n, {d})"
        return LayerMaps(("input", "hidden", "out"), lambda m, x: x,
                         (lambda m, x: jax.nn.relu(m.W1 @ x + m.b1), lambda m, h: m.W2 @ h), check,
                         extras=(("pre", "input", lambda m, acts: acts @ m.W1.T + m.b1),))

    def dense_layer(self):
        return DenseLayer(lambda m, x: x, lambda m: m.W1, lambda m: m.b1, lambda m, z: m.W2 @ jax.nn.relu(z))


def _model(key=0, d=4, h=6, o=3):
    k1, k2, k3 = jax.random.split(jax.random.key(key), 3)
    return TwoLayer(jax.random.normal(k1, (h, d)) / 2, 0.1 * jax.random.normal(k2, (h,)),
                    jax.random.normal(k3, (o, h)) / 2)


def _inputs(n=64, d=4, key=1):
    return jax.random.normal(jax.random.key(key), (n, d))


def test_the_model_implements_the_protocol_and_names_its_layers():
    model = _model()
    assert isinstance(model, LayeredModel)
    assert ia.node_layers(model) == ("input", "hidden", "out")
    assert readable_layers(model) == ("input", "pre", "hidden", "out")


@pytest.mark.slow
def test_interaction_basis_and_graph_of_a_model_of_ones_own():
    model, x = _model(), _inputs()
    by_protocol = ia.cut(model)
    by_hand = ia.Sections.from_functions(("input", "hidden", "out"), lambda m, v: v,
                                         [lambda m, v: jax.nn.relu(m.W1 @ v + m.b1), lambda m, v: m.W2 @ v])
    a = ia.interaction_basis(by_protocol, model, x)
    b = ia.interaction_basis(by_hand, model, x)
    for la, lb in zip(a.importance, b.importance):
        np.testing.assert_allclose(np.asarray(la), np.asarray(lb), rtol=1e-6)
    assert float(a.importance[0][0]) > 0 and int(a.n_features()[1]) > 0
    edges = ia.interaction_graph(by_protocol, model, x, a)
    assert [e.shape for e in edges] == [(6, 4), (3, 6)] and all(np.all(np.isfinite(np.asarray(e))) for e in edges)
    assert float(edges[1].sum()) > 0
    with pytest.raises(ConfigError, match=r"^inputs.*\(n, 4\)"):
        ia.interaction_basis(by_protocol, model, jnp.zeros((8, 5)))


@pytest.mark.slow
def test_layer_degeneracy_of_a_model_of_ones_own():
    model, x = _model(), _inputs()
    model = eqx.tree_at(lambda m: m.b1, model, model.b1.at[0].set(-100.0))  # neuron 0 never fires
    out = dg.mlp_degeneracy(model, x)
    z = x @ model.W1.T + model.b1
    J = jax.vmap(jax.jacrev(lambda v: model.W2 @ jax.nn.relu(v)))(z)
    assert out == dg.layer_degeneracy(x, z, J, relu=True, fan_out=0)
    assert out["dead"] == 1 and out["freed_dead"] == 4 + 1 and out["parameters"] == 6 * 5
    # The dead neuron's column of every J is zero: at least one direction the outputs ignore.
    assert out["jacobian_nullity"] >= 1


def test_a_model_without_the_protocol_is_refused_by_name():
    for call in (lambda: ia.cut(object()), lambda: layer_maps({"W": 1}), lambda: dg.mlp_degeneracy(object(), _inputs())):
        with pytest.raises(ConfigError, match="^model"):
            call()


def test_bad_layer_maps_are_refused_by_name():
    f = lambda m, x: x  # noqa: E731
    for kwargs, name in ((dict(names=("a",), embed=f, steps=()), "names"),
                         (dict(names=("a", "b"), embed=f, steps=(f, f)), "steps"),
                         (dict(names=("a", "b"), embed=None, steps=(f,)), "embed"),
                         (dict(names=("a", "b"), embed=f, steps=(f,), extras=(("c", "z", f),)), "extras")):
        with pytest.raises(ConfigError) as err:
            LayerMaps(**kwargs)
        assert err.value.field == name


# ----------------------------------------------------------------------------- as a dictionary source


@dataclasses.dataclass(frozen=True)
class TwoLayerConfig(TrainConfig):
    d: int = static(4, check=positive_int, help="input width")
    h: int = static(6, check=positive_int, help="hidden width")
    batch_size: int = static(64, check=positive_int, help="examples per batch")
    steps: int = static(20, check=positive_int, help="optimizer steps")


def _init(cfg, hp, key):
    k1, k2, k3 = jax.random.split(key, 3)
    return TwoLayer(jax.random.normal(k1, (cfg.h, cfg.d)) / 2, jnp.zeros(cfg.h), jax.random.normal(k3, (3, cfg.h)) / 2)


def _batch(cfg, hp, key):
    return {"x": jax.random.normal(key, (cfg.batch_size, cfg.d))}


def _loss(model, batch, cfg, hp):
    y = jax.vmap(model)(batch["x"])
    return jnp.mean((y - batch["x"][:, :3]) ** 2), {}


TWO_LAYER = Family(name="test-two-layer", config=TwoLayerConfig, init=_init, batch=_batch, loss=_loss)


@pytest.fixture(scope="module")
def own_run(tmp_path_factory):
    # Registered while these tests run (loading a source looks its family up by name), then
    # taken out again so that other tests see the lab's families alone.
    from toylab.core import family as registry

    register_family(TWO_LAYER)
    try:
        out = tmp_path_factory.mktemp("own") / "run"
        toylab.run_sweep(TWO_LAYER, {"steps": 20, "log_every": 10}, seeds=1, out=out, quiet=True)
        yield out
    finally:
        registry._REGISTRY.pop(TWO_LAYER.name, None)


@pytest.mark.slow
def test_a_model_of_ones_own_is_a_dictionary_source(own_run):
    (run,) = list(toylab.load_results(own_run))
    x = _inputs(16)
    np.testing.assert_allclose(np.asarray(layer_activations(run.model, x, "pre")),
                               np.asarray(x @ run.model.W1.T + run.model.b1), rtol=1e-5, atol=1e-6)
    cfg = DictionaryConfig(source=str(own_run), node="hidden", n_latents=8, batch_size=64, steps=20, log_every=10,
                           eval_size=64)
    assert cfg.derived["d_in"] == 6 and cfg.derived["source_family"] == "test-two-layer"
    res = toylab.run_sweep("dictionaries", cfg, seeds=1, quiet=True)
    (dict_run,) = list(res)
    # No known features for this model: the scores are the reconstruction's.
    assert "mcc" not in dict_run.summary and np.isfinite(dict_run.summary["explained_variance"])
    transcoder = DictionaryConfig(source=str(own_run), node="pre", target_node="out", n_latents=8)
    assert (transcoder.derived["d_in"], transcoder.derived["d_out"]) == (6, 3)


# ----------------------------------------------------------------------------- no dispatch on model classes


_MODEL_MODULES = {"transformer", "mlp", "superposition", "bilinear", "flax_interop"}


@pytest.mark.parametrize("path", sorted(str(p) for p in (Path(toylab.__file__).parent / "analysis" / "interaction")
                                        .glob("*.py")) + [str(Path(toylab.__file__).parent / name) for name in
                                                          ("analysis/layer_degeneracy.py", "tasks/activations.py",
                                                           "families/dictionaries.py")])
def test_readers_of_models_import_no_model_class(path):
    tree = ast.parse(Path(path).read_text())
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module:
            parts = node.module.split(".")
            assert not (len(parts) >= 2 and parts[-2] == "models" and parts[-1] in _MODEL_MODULES), \
                f"{path} imports {node.module}"


def test_bad_arguments_of_the_protocol_helpers_are_refused_by_name():
    from toylab.models import merge_state
    from toylab.models.mlp import init_embed_mlp

    f = lambda m, x: x  # noqa: E731
    for kwargs, name in ((dict(read=None, weight=f, bias=f, head=f), "read"),
                         (dict(read=f, weight=f, bias=f, head=f, activation=3), "activation")):
        with pytest.raises(ConfigError) as err:
            DenseLayer(**kwargs)
        assert err.value.field == name
    with pytest.raises(ConfigError, match="^state"):
        merge_state(_model(), {"W1": jnp.zeros((6, 4))})  # a trained field, not state
    with pytest.raises(ConfigError, match="^state"):
        merge_state(_model(), [1])
    # Tokens out of range would be clamped by a gather: the model's own input check refuses them.
    mlp = init_embed_mlp(jax.random.key(0), n_in=5, n_out=5, d_hidden=8)
    with pytest.raises(ConfigError, match=r"^tokens.*0\.\.4"):
        dg.mlp_degeneracy(mlp, jnp.asarray([[0, 7, 5]]))
