"""The bilinear family: models (layer, residual block, classifier, the drop-in bilinear MLP of
the transformer and the embedding MLPs), config validation, training on images and on the toy
tasks, bad input."""

import importlib.util

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings, strategies as st

from toylab.core.config import ConfigError
from toylab.core.sweep import load_results, run_sweep
from toylab.core.train import make_key
from toylab.families import bilinear as fam
from toylab.families.bilinear import BilinearConfig
from toylab.families.grokking import GrokkingConfig
from toylab.families.groups import GroupsConfig
from toylab.models.bilinear import BilinearBlock, init_bilinear_classifier, init_bilinear_layer
from toylab.models.mlp import init_embed_mlp
from toylab.models.transformer import init_transformer

# The digits live in the optional images extra: only the tests that read them need it.
needs_images = pytest.mark.skipif(importlib.util.find_spec("sklearn") is None,
                                  reason="the digits need the images extra (scikit-learn)")


@pytest.mark.slow
@settings(max_examples=10, deadline=None)
@given(seed=st.integers(0, 2**16), d_in=st.integers(1, 6), hidden=st.integers(1, 6), bias=st.booleans())
def test_residual_block_and_classifier_compose_their_parts(seed, d_in, hidden, bias):
    k1, k2, k3 = jax.random.split(jax.random.key(seed), 3)
    layer = init_bilinear_layer(k1, d_in=d_in, d_hidden=hidden, d_out=d_in, bias=bias)
    layer = jax.tree.map(lambda w: w + 0.1, layer)  # nonzero bias columns
    x = jax.random.normal(k2, (5, d_in))
    xa = np.concatenate([np.asarray(x), np.ones((5, 1))], 1) if bias else np.asarray(x)
    by_hand = ((xa @ np.asarray(layer.W).T) * (xa @ np.asarray(layer.V).T)) @ np.asarray(layer.P).T
    np.testing.assert_allclose(np.asarray(layer(x)), by_hand, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(np.asarray(BilinearBlock(layer, residual=True)(x)), np.asarray(x) + by_hand,
                               rtol=1e-5, atol=1e-5)
    model = init_bilinear_classifier(k3, d_in=7, n_classes=3, d_hidden=hidden, d_model=d_in, bias=bias)
    z = jax.random.normal(k2, (4, 7))
    h = np.asarray(z) @ np.asarray(model.W_E).T
    np.testing.assert_allclose(np.asarray(model(z)), np.asarray(model.blocks[0].layer(h)) @ np.asarray(model.W_U).T,
                               rtol=1e-4, atol=1e-5)
    # Folding the embedding and head into one layer gives the same logits.
    np.testing.assert_allclose(np.asarray(model.as_layer()(z)), np.asarray(model(z)), rtol=1e-4, atol=1e-5)


@pytest.mark.slow
def test_as_layer_refuses_a_deeper_model():
    model = init_bilinear_classifier(make_key(0), d_in=5, n_classes=2, d_hidden=3, d_model=4, n_layers=2,
                                     residual=True)
    assert model(jnp.ones(5)).shape == (2,)
    with pytest.raises(ValueError, match="one non-residual"):
        model.as_layer()
    with pytest.raises(ValueError, match="d_hidden"):
        init_bilinear_layer(make_key(0), d_in=3, d_hidden=0, d_out=2)


@pytest.mark.slow
def test_transformer_bilinear_mlp_is_the_product_of_two_linear_maps():
    model = init_transformer(make_key(1), d_vocab=8, d_vocab_out=7, d_model=16, n_heads=2, d_mlp=12,
                             activation="bilinear")
    block = model.blocks[0]
    assert block.W_gate.shape == block.W_in.shape
    block = eqx.tree_at(lambda b: (b.b_in, b.b_gate), block, (jnp.full(12, 0.3), jnp.full(12, -0.2)))
    model = eqx.tree_at(lambda m: m.blocks, model, (block,))
    tokens = jnp.array([1, 2, 7])
    _, cache = model(tokens, return_activations=True)
    mid = np.asarray(cache[0]["resid_mid"])
    expected = (mid @ np.asarray(block.W_in).T + 0.3) * (mid @ np.asarray(block.W_gate).T - 0.2)
    np.testing.assert_allclose(np.asarray(cache[0]["mlp_post"]), expected, rtol=1e-5, atol=1e-6)
    # The ReLU model's initial weights do not depend on the bilinear option existing.
    relu = init_transformer(make_key(1), d_vocab=8, d_vocab_out=7, d_model=16, n_heads=2, d_mlp=12)
    assert relu.blocks[0].W_gate is None
    np.testing.assert_array_equal(np.asarray(relu.blocks[0].W_in), np.asarray(model.blocks[0].W_in))


@pytest.mark.slow
@pytest.mark.parametrize("embed", ["onehot", "sum", "concat"])
def test_embedding_mlp_bilinear_hidden_layer(embed):
    m = init_embed_mlp(make_key(2), n_in=5, n_out=5, d_hidden=6, d_embed=4, embed=embed, activation="bilinear")
    m = eqx.tree_at(lambda t: (t.b_in, t.b_gate), m, (jnp.full(6, 0.5), jnp.full(6, 0.25)))
    a, b = 3, 1
    if embed == "onehot":
        x = np.concatenate([np.eye(5)[a], np.eye(5)[b]])
    elif embed == "sum":
        x = np.asarray(m.W_E_left)[:, a] + np.asarray(m.W_E_right)[:, b]
    else:
        x = np.concatenate([np.asarray(m.W_E_left)[:, a], np.asarray(m.W_E_right)[:, b]])
    h = (np.asarray(m.W_in) @ x + 0.5) * (np.asarray(m.W_gate) @ x + 0.25)
    np.testing.assert_allclose(np.asarray(m(jnp.array([a, b]))), np.asarray(m.W_out) @ h + np.asarray(m.b_out),
                               rtol=1e-5, atol=1e-5)


@pytest.mark.slow
def test_bilinear_mlp_drops_into_the_grokking_and_groups_families():
    g = run_sweep("grokking", GrokkingConfig(p=7, model="mlp", embed="concat", d_embed=16, d_mlp=32,
                                             activation="bilinear", train_fraction=0.6, steps=200, log_every=100,
                                             weight_decay=0.1), quiet=True)[0]
    assert g.metrics["train_loss"][-1] < 0.5 * g.metrics["train_loss"][0]
    t = run_sweep("groups", GroupsConfig(group="S3", model="transformer", d_model=16, n_heads=2, d_mlp=32,
                                         activation="bilinear", train_fraction=0.7, steps=200, log_every=100,
                                         weight_decay=0.1), quiet=True)[0]
    assert t.metrics["train_loss"][-1] < 0.5 * t.metrics["train_loss"][0]
    with pytest.raises(ConfigError, match="activation"):
        GrokkingConfig(activation="gelu")


@pytest.mark.parametrize("field, value, needle", [
    ("dataset", "/no/such/file.npz", "/no/such/file.npz"),
    ("n_layers", 2, "residual"),
    ("input_noise", -0.1, ">= 0"),
    ("test_fraction", 1.0, "(0, 1)"),
    ("hidden", 0, "positive"),
])
def test_bad_config_is_one_clear_error(field, value, needle):
    with pytest.raises(ConfigError, match=field) as e:
        BilinearConfig(**{field: value})
    assert needle in str(e.value)
    with pytest.raises(ConfigError, match="residual"):
        BilinearConfig(residual=True, d_model=0)


@pytest.mark.slow
@needs_images
def test_digits_model_learns_and_noise_is_added_to_training_inputs_only():
    cfg = BilinearConfig(hidden=32, d_model=32, batch_size=256, steps=400, log_every=100, input_noise=0.0)
    hp = cfg.hparams()
    clean = fam._batch(cfg, hp, make_key(3))
    data = fam.task_data(cfg)
    rows = np.asarray(clean["x"])
    # every clean row is a training image
    assert np.isin(rows.view([("", rows.dtype)] * rows.shape[1]),
                   data.x_train.view([("", data.x_train.dtype)] * rows.shape[1])).all()
    noisy = fam._batch(cfg, {**hp, "input_noise": 0.5}, make_key(3))
    assert 0.45 < float(np.std(np.asarray(noisy["x"]) - rows)) < 0.55
    np.testing.assert_array_equal(np.asarray(noisy["labels"]), np.asarray(clean["labels"]))
    res = run_sweep("bilinear", cfg, grid={"input_noise": [0.0, 0.4]}, seeds=1, quiet=True)
    for r in res:
        assert r.metrics["test_accuracy"][-1] > 0.9, r.metrics["test_accuracy"]
        assert r.metrics["train_loss"][-1] < r.metrics["train_loss"][0]


@pytest.mark.slow
def test_toy_tasks_learn():
    modular = run_sweep("bilinear", BilinearConfig(dataset="modular", p=11, hidden=64, d_model=0, bias=True,
                                                   train_fraction=0.9, input_noise=0.0, weight_decay=0.0, lr=3e-3,
                                                   steps=600, log_every=100), quiet=True)[0]
    assert modular.metrics["train_accuracy"][-1] > 0.9, modular.metrics["train_accuracy"]
    assert modular.model.as_layer().W.shape == (64, 2 * 11 + 1)  # one-hot a, b and the bias input
    sparse = run_sweep("bilinear", BilinearConfig(dataset="sparse", n_features=8, d_model=4, hidden=16, residual=True,
                                                  input_noise=0.0, weight_decay=0.0, lr=1e-2, batch_size=256,
                                                  steps=600, log_every=100), quiet=True)[0]
    # Better than predicting zeros: that loss is mean(I_i E[x_i²]) = p/3 · mean(I_i).
    zero_loss = 0.1 / 3 * np.mean(0.9 ** np.arange(8))
    assert sparse.metrics["test_loss"][-1] < 0.5 * zero_loss, (sparse.metrics["test_loss"], zero_loss)


@pytest.mark.slow
def test_cli_bad_bilinear_input_is_one_line_and_exit_2(tmp_path):
    import subprocess
    import sys

    script = (
        "import sys\nfrom toylab.cli import main\n"
        "for args in [['--set','dataset=/no/such/dir/'], ['--set','n_layers=3'], ['--grid','input_noise=0.1,-1'],\n"
        "             ['--set','dataset='+sys.argv[2]]]:\n"
        "    code = main(['run','bilinear',*args,'--out',sys.argv[1]])\n"
        "    print('EXIT', code, flush=True)\n"
    )
    bad = tmp_path / "wrong_keys.npz"  # exists, but holds no images: refused before anything is written
    np.savez(bad, a=np.zeros(3))
    proc = subprocess.run([sys.executable, "-c", script, str(tmp_path / "o"), str(bad)], capture_output=True,
                          text=True, timeout=300)
    assert proc.stdout.count("EXIT 2") == 4, proc.stdout + proc.stderr
    err = proc.stderr.strip().splitlines()
    assert len(err) == 4 and "Traceback" not in proc.stderr
    for needle, line in zip(["/no/such/dir/", "n_layers", "input_noise", "wrong_keys.npz"], err):
        assert needle in line, line
    assert not (tmp_path / "o").exists()


@pytest.mark.end_to_end
@needs_images
def test_reproduction_runs_every_section_on_a_tiny_sweep(tmp_path, monkeypatch):
    """The reproduction's analysis, figures and claims, end to end on a tiny sweep (the quick
    reproduction itself runs under `toylab reproduce`, not pytest)."""
    from toylab.experiments.reproductions import bilinear as repro

    monkeypatch.setattr(repro, "setup", lambda quick: ({"dataset": "digits", "hidden": 16, "d_model": 16,
                                                       "batch_size": 128, "steps": 200, "log_every": 100}, 2))
    claims = repro.reproduce(tmp_path, quick=True, quiet=True, work=tmp_path / "work")
    assert [c.reproduction for c in claims] == ["bilinear (a)", "bilinear (b)", "bilinear (c)", "bilinear (d)",
                                                "bilinear (d)", "bilinear (e)", "bilinear (f)"]
    for name in ("a_eigenvectors", "b_spectra", "c_truncation", "d_regularisation", "e_consistency", "f_adversarial"):
        assert (tmp_path / f"bilinear_{name}.png").stat().st_size > 10_000
    # Keeping every eigenvector is the model itself: the truncation curve ends at the accuracy
    # the training loop measured.
    a = repro.analyse(load_results(tmp_path / "work" / "bilinear"))
    for s in a["settings"].values():
        np.testing.assert_allclose(s["truncated"][:, -1], s["accuracy"], atol=1.5 / a["data"].n_test)


def test_bench_bilinear_bad_input_exits_2(capsys):
    from toylab.experiments.benchmarks.bilinear import main

    assert main(["--dataset", "/no/such/file.npz"]) == 2
    assert "/no/such/file.npz" in capsys.readouterr().err
    with pytest.raises(SystemExit) as e:
        main(["--hidden", "0"])
    assert e.value.code == 2


def test_reproduction_without_the_images_extra_reports_it_as_a_failed_claim(tmp_path, monkeypatch):
    import importlib.util
    import sys

    from toylab.experiments.reproductions import bilinear as repro
    from toylab.tasks import images

    real_find_spec = importlib.util.find_spec
    monkeypatch.setitem(sys.modules, "sklearn", None)
    monkeypatch.setattr(importlib.util, "find_spec",
                        lambda name, *a: None if name.split(".")[0] == "sklearn" else real_find_spec(name, *a))
    images.clear_cache()
    try:
        claims = repro.reproduce(tmp_path, quick=True, quiet=True)
    finally:
        images.clear_cache()
    assert len(claims) == 1 and not claims[0].passed
    assert "toylab[images]" in claims[0].measured
    assert not tmp_path.exists() or not any(tmp_path.iterdir())  # nothing trained, nothing written


def test_reproductions_refuse_unknown_figure_letters(tmp_path):
    from toylab.experiments.benchmarks._common import devices_line
    from toylab.experiments.reproductions import bilinear, groups, superposition

    for mod in (bilinear, groups, superposition):
        with pytest.raises(ConfigError, match="only='z'"):
            mod.reproduce(tmp_path / "o", quick=True, quiet=True, only="z")
    assert not (tmp_path / "o").exists()
    n = len(jax.devices())
    assert devices_line().startswith(f"devices: {n} × {jax.devices()[0].device_kind} ({jax.default_backend()})")


def test_run_figures_maps_letters_to_the_function_that_makes_them(tmp_path):
    from toylab.experiments.reproductions._common import run_figures

    made, prepared = [], []
    figures = {"a": lambda *a: made.append(("a", a[-1])) or [], "d": lambda *a: made.append(("d", a[-1])) or []}
    run_figures(figures, tmp_path, True, True, "c")  # c is made by the "a" function
    run_figures(figures, tmp_path, True, True, None)
    assert made == [("a", None), ("a", None), ("d", None)]
    with pytest.raises(ConfigError, match="abcd"):
        run_figures(figures, tmp_path, True, True, "e")
    # A shared sweep is prepared once, before the figures that read it.
    made.clear()
    run_figures(figures, tmp_path, True, True, None, None, prepare=lambda *a: prepared.append(a) or "shared")
    assert len(prepared) == 1 and made == [("a", "shared"), ("d", "shared")]
