"""The programs a sweep calls once per chunk (the initial state, the final parameters and
summary) compile without LLVM's optimisation on a CPU when XLA counts little work in them,
and as jax.jit compiles them otherwise; they give what the jitted function gives."""

import jax
import numpy as np
import pytest

from toylab.core import train
from toylab.core.family import get_family
from toylab.core.train import Trainer, stack_hparams

pytestmark = pytest.mark.skipif(jax.default_backend() != "cpu", reason="the level-0 compile is for CPUs")


def _trainer_and_inputs(seeds=3):
    family = get_family("superposition")
    trainer = Trainer(family, family.config(n_features=6, n_hidden=2, steps=20, log_every=10))
    hp = stack_hparams([trainer.config] * seeds)
    return trainer, hp, np.arange(seeds, dtype=np.uint32)


@pytest.fixture
def compile_options(monkeypatch):
    """The compiler options of every Lowered.compile call, in order."""
    seen = []
    compile_ = jax.stages.Lowered.compile

    def spy(self, compiler_options=None, *args, **kwargs):
        seen.append(compiler_options)
        return compile_(self, compiler_options, *args, **kwargs)

    monkeypatch.setattr(jax.stages.Lowered, "compile", spy)
    return seen


@pytest.mark.slow
def test_small_once_programs_compile_at_level_zero_and_agree_with_jit(compile_options):
    trainer, hp, seeds = _trainer_and_inputs()
    state = trainer.init_ensemble(hp, seeds)
    assert compile_options == [train._ONCE_OPTIONS]
    expected = trainer._program("init").jitted(hp, seeds)
    for got, want in zip(jax.tree.leaves(state), jax.tree.leaves(expected)):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-6, atol=1e-7)
    state, _ = trainer.run(hp, seeds, state=state)
    params, _, summary = trainer.final_ensemble(state, hp)
    assert compile_options[-1] == train._ONCE_OPTIONS
    want_params, _, want_summary = trainer._program("final").jitted(state, hp)
    for got, want in zip(jax.tree.leaves((params, summary)), jax.tree.leaves((want_params, want_summary))):
        np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-6)
    # a second chunk of the same shapes reuses the executable
    n = len(compile_options)
    trainer.init_ensemble(hp, seeds)
    assert len(compile_options) == n


def test_once_program_with_more_work_than_the_bound_keeps_the_default(compile_options, monkeypatch):
    monkeypatch.setattr(train, "_ONCE_MAX_FLOPS", 0.0)
    trainer, hp, seeds = _trainer_and_inputs()
    trainer.init_ensemble(hp, seeds)
    assert compile_options == [None]


def test_traced_once_program_is_the_jitted_function(compile_options):
    trainer, hp, seeds = _trainer_and_inputs()
    shapes = jax.eval_shape(trainer.init_ensemble, hp, seeds)
    assert jax.tree.leaves(shapes)[0].shape[0] == 3
    assert compile_options == []  # nothing compiled for a trace


def test_a_program_without_a_cost_analysis_keeps_the_default(compile_options, monkeypatch):
    def no_analysis(self):
        raise NotImplementedError("no cost analysis here")

    monkeypatch.setattr(jax.stages.Lowered, "cost_analysis", no_analysis)
    trainer, hp, seeds = _trainer_and_inputs()
    trainer.init_ensemble(hp, seeds)
    assert compile_options == [None]
