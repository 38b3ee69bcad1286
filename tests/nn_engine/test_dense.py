from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F

from lotan.nn_engine.dense import DenseOp, DenseProgram
from lotan.nn_engine.loss import masked_cross_entropy

PROGRAM = DenseProgram(
    (
        DenseOp("bias", param="b0"),
        DenseOp("act", act="leaky_relu", negative_slope=0.2),
        DenseOp("dropout", p=0.3),
        DenseOp("linear", param="w1"),
        DenseOp("act", act="elu"),
    )
)


def _params() -> dict[str, torch.Tensor]:
    torch.manual_seed(0)
    return {"b0": torch.randn(5, dtype=torch.float64), "w1": torch.randn(3, 5, dtype=torch.float64)}


def test_backward_matches_autograd_with_the_forward_dropout_mask() -> None:
    params = _params()
    x = torch.randn(8, 5, dtype=torch.float64)
    out = PROGRAM.forward(params, x, train=True, seed=11)
    # The same seed gives the same mask; another seed a different one.
    assert torch.equal(out, PROGRAM.forward(params, x, train=True, seed=11))
    assert not torch.equal(out, PROGRAM.forward(params, x, train=True, seed=12))
    grad_out = torch.randn_like(out)
    gx, grads = PROGRAM.backward(params, x, grad_out, train=True, seed=11)

    leaves = {k: v.clone().requires_grad_(True) for k, v in params.items()}
    xin = x.clone().requires_grad_(True)
    ref = PROGRAM._apply(leaves, xin, True, 11)
    torch.testing.assert_close(ref, out)
    ref.backward(grad_out)
    torch.testing.assert_close(gx, xin.grad)
    for k in params:
        torch.testing.assert_close(grads[k], leaves[k].grad)


def test_eval_mode_has_no_dropout() -> None:
    params = _params()
    x = torch.randn(4, 5, dtype=torch.float64)
    a = PROGRAM.forward(params, x, train=False, seed=1)
    b = PROGRAM.forward(params, x, train=False, seed=2)
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
