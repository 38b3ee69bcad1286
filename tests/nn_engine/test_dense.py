from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lotan.ir.nodes import Node
from lotan.nn_engine.dense import DenseGraph, MaskSeed
from lotan.nn_engine.loss import masked_cross_entropy
from lotan.nn_engine.masks import dropout_scale

# Inputs: value 0 (5 wide) and value 1 (5 wide).
GRAPH = DenseGraph(
    (
        Node(2, "bias", (0,), 5, param="b0"),
        Node(3, "act", (2,), 5, act="leaky_relu", negative_slope=0.2),
        Node(4, "dropout", (3,), 5, p=0.3),
        Node(5, "scale_eps", (1,), 5, param="eps"),
        Node(6, "add", (4, 5), 5),
        Node(7, "linear", (6,), 3, param="w1"),
        Node(8, "act", (7,), 3, act="elu"),
        Node(9, "concat", (8, 3), 8),
    )
)


def _params() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {
        "b0": torch.randn(5, dtype=torch.float64),
        "w1": torch.randn(3, 5, dtype=torch.float64),
        "eps": torch.tensor([0.3], dtype=torch.float64),
    }


def test_backward_matches_autograd_with_the_forward_dropout_mask() -> None:
    params = _params()
    x = {0: torch.randn(8, 5, dtype=torch.float64), 1: torch.randn(8, 5, dtype=torch.float64)}
    out = GRAPH.forward(params, x, train=True, seed=11)
    assert torch.equal(out[9], GRAPH.forward(params, x, train=True, seed=11)[9])
    assert not torch.equal(out[9], GRAPH.forward(params, x, train=True, seed=12)[9])
    g9, g3 = torch.randn_like(out[9]), torch.randn_like(out[3])
    gi, gp = GRAPH.backward(params, x, {9: g9, 3: g3}, train=True, seed=11, input_grads=[0, 1])

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xs = {k: v.clone().requires_grad_(True) for k, v in x.items()}
    ref = GRAPH._run(leaves, dict(xs), True, MaskSeed(11), None)
    torch.testing.assert_close(ref[9], out[9])
    torch.autograd.backward([ref[9], ref[3]], [g9, g3])
    for k in (0, 1):
        torch.testing.assert_close(gi[k], xs[k].grad)
    for k in params:
        torch.testing.assert_close(gp[k], leaves[k].grad)


def test_dropout_masks_follow_the_vertex_not_the_row() -> None:
    """A vertex gets the same mask in any partition (rows in any order, any subset), so runs
    with different partition counts train alike."""
    ids = np.array([5, 900_000_001, 17, 42, 3, 8, 1 << 40, 77], dtype=np.int64)
    whole = dropout_scale(ids, 64, 0.5, key=123)
    order = np.array([6, 2, 0, 5])
    torch.testing.assert_close(dropout_scale(ids[order], 64, 0.5, key=123), whole[order])
    assert set(torch.unique(whole).tolist()) == {0.0, 2.0}
    assert not torch.equal(dropout_scale(ids, 64, 0.5, key=124), whole)
    many = dropout_scale(np.arange(20_000), 64, 0.3, key=7)
    assert abs(float((many > 0).float().mean()) - 0.7) < 0.005  # keep rate 1 - p
    # rows and columns are not correlated
    kept = (many > 0).float().numpy()
    assert abs(np.corrcoef(kept[:, 0], kept[:, 1])[0, 1]) < 0.03
    assert abs(np.corrcoef(kept[:-1, 0], kept[1:, 0])[0, 1]) < 0.03


def test_eval_mode_has_no_dropout() -> None:
    params = _params()
    x = {0: torch.randn(4, 5, dtype=torch.float64), 1: torch.randn(4, 5, dtype=torch.float64)}
    a = GRAPH.forward(params, x, train=False, seed=1)[9]
    b = GRAPH.forward(params, x, train=False, seed=2)[9]
    torch.testing.assert_close(a, b)


def test_masked_cross_entropy_partials_sum_to_pyg_loss() -> None:
    torch.manual_seed(0)
    logits = torch.randn(10, 4)
    y = torch.randint(0, 4, (10,))
    mask = torch.tensor([True, False] * 5)
    total = int(mask.sum())
    ref_leaf = logits.clone().requires_grad_(True)
    ref = F.cross_entropy(ref_leaf[mask], y[mask])
    ref.backward()
    l1, g1 = masked_cross_entropy(logits[:6], y[:6], mask[:6], total)
    l2, g2 = masked_cross_entropy(logits[6:], y[6:], mask[6:], total)
    assert l1 + l2 == pytest.approx(float(ref), rel=1e-6)
    torch.testing.assert_close(torch.cat([g1, g2]), ref_leaf.grad)


def test_every_dense_op_of_the_vocabulary_has_an_evaluator() -> None:
    from lotan.ir.ops import DENSE_OPS
    from lotan.nn_engine.dense import EVALUATORS

    assert set(EVALUATORS) == set(DENSE_OPS)
    with pytest.raises(ValueError, match=r"node 3 \(aggregate\) is not a dense op"):
        DenseGraph((Node(3, "aggregate", (0,), 5),))
