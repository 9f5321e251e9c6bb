"""The interaction reproduction's own pieces: the block task, the block-diagonal MLP, the
feature-to-block assignment and the counts of (a), on tiny sizes (the full figure sets run
under ``toylab reproduce interaction``)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from toylab.experiments.reproductions import interaction as repro
from toylab.analysis import fourier as fa
from toylab.analysis import interaction as ia
from toylab.models.mlp import init_embed_mlp


def test_block_task_is_a_product_grid_with_independent_blocks():
    x, labels, in_block, out_block = repro.block_task((3, 2))
    assert x.shape == (9 * 4, 2 * 3 + 2 * 2) and labels.shape == (36, 2)
    assert in_block.tolist() == [0] * 6 + [1] * 4 and out_block.tolist() == [0] * 3 + [1] * 2
    xn = np.asarray(x, np.float64)
    cov = np.cov(xn.T, bias=True)
    # every pair of (block-0 input, block-1 input) appears once: the cross-covariance is 0
    assert np.abs(cov[:6, 6:]).max() < 1e-12 and np.abs(cov[:6, :6]).max() > 0.1
    assert np.all(labels[:, 0] == (xn[:, :3].argmax(1) + xn[:, 3:6].argmax(1)) % 3)


@pytest.mark.end_to_end
def test_block_mlp_graph_has_no_cross_block_edges():
    model, x, acc, coord_blocks = repro.train_block_mlp(jax.random.key(1), (3, 2), (6, 4), steps=300)
    assert acc[0] == 1.0  # (a+b) mod 3 in 300 Adam steps (no cross-block structure depends on accuracy)
    sections = repro.block_sections()
    basis = ia.interaction_basis(sections, model, x)
    edges = ia.interaction_graph(sections, model, x, basis, n_alpha=2)
    blocks, leak = repro.feature_blocks(basis, coord_blocks)
    assert leak < 1e-6
    assert [sorted(set(b[b >= 0].tolist())) for b in blocks] == [[0, 1]] * 3
    cross = sum(float(np.asarray(e, np.float64)[(blocks[l + 1][:, None] != blocks[l][None, :])
                                                 & (blocks[l + 1][:, None] >= 0) & (blocks[l][None, :] >= 0)].sum())
                for l, e in enumerate(edges))
    total = sum(float(np.asarray(e).sum()) for e in edges)
    assert total > 0 and cross / total < 1e-9
    # the masks hold: the trained weights between blocks are zero in the forward pass
    W = np.asarray(model.W_in * model.mask_in)
    assert np.all(W[:6, 6:] == 0) and np.all(W[6:, :6] == 0)


@pytest.mark.end_to_end
def test_counts_of_a_follow_the_ablations():
    p = 5
    model = init_embed_mlp(jax.random.key(0), n_in=p, n_out=p, d_hidden=12)
    tokens = jnp.asarray(fa.grid_tokens(p))
    labels = jnp.asarray(fa.sum_labels(p).ravel())
    sections = ia.cut(model)
    basis = ia.interaction_basis(sections, model, tokens)
    edges = ia.interaction_graph(sections, model, tokens, basis, n_alpha=2)
    full_acc = float(ia.output_scores(jax.vmap(model)(tokens), labels)[0])
    nodes, mass, needed = repro._counts(sections, model, tokens, labels, basis, edges, full_acc)
    kept = [int(np.asarray(k).sum()) for k in basis.kept]
    assert len(nodes) == len(sections) and len(mass) == len(needed) == len(edges)
    for l, n in enumerate(nodes):  # the count found keeps the accuracy, one fewer does not
        assert 0 <= n <= kept[l]
        acc, _ = ia.feature_ablation(sections, model, tokens, labels, basis, l, [n] + ([n - 1] if n else []))
        assert float(acc[0]) >= repro.ACCURACY_SHARE * full_acc
        if n:
            assert float(acc[1]) < repro.ACCURACY_SHARE * full_acc
    for l, (m, e) in enumerate(zip(mass, edges)):
        top = np.sort(np.asarray(e, np.float64).ravel())[::-1]
        assert top[:m].sum() >= 0.9 * top.sum() * (1 - 1e-6) > top[:m - 1].sum()
        acc, _ = ia.edge_ablation(sections, model, tokens, labels, basis, e, l, [needed[l]])
        assert float(acc[0]) >= full_acc - repro.EDGE_SLACK


@pytest.mark.parametrize("quick", [True, False])
def test_setup_sizes(quick):
    setup = repro.interaction_setup(quick)
    assert setup["sweep"]["p"] == (31 if quick else 113) and setup["seeds"] == (1 if quick else 3)
