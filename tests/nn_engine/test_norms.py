"""The dense graph-wide normalizations: gradients (of the input, the weight and the
statistics) equal autograd's of the plain formulas, and BatchNorm's backward gives the same
bits with any number of threads."""

from __future__ import annotations

import pytest
import torch

from lotan.nn_engine.norms import normalize


def _reference(op: str, x, m, w, eps: float, factor: float) -> torch.Tensor:
    mean, var = m[0], m[1]
    if op == "batch_norm":
        out = (x - mean) / torch.sqrt(var + eps)
    elif op == "graph_norm":
        mu = mean.mean()
        out = (x - mu) / ((var + (mean - mu) ** 2).mean().sqrt() + eps)
    elif op == "pair_norm":
        out = factor * (x - mean) / (eps + var.sum()).sqrt()
    else:
        c = x - mean
        out = factor * c / (eps + c.norm(2, -1, keepdim=True))
    return out * w


@pytest.mark.parametrize("op", ["batch_norm", "graph_norm", "pair_norm", "pair_norm_rows"])
def test_gradients_equal_autograd_of_the_formula(op: str) -> None:
    torch.manual_seed(0)
    x = torch.randn(300, 6) * 2 + 1
    m = torch.stack([x.mean(0), x.var(0, unbiased=False)]) + 0.1 * torch.randn(2, 6).abs()
    w = torch.randn(6)
    g = torch.randn(300, 6)
    grads = []
    for fn, dtype in ((normalize, torch.float32), (_reference, torch.float64)):
        xs, ms, ws = (t.detach().to(dtype).clone().requires_grad_(True) for t in (x, m, w))
        fn(op, xs, ms, ws, 1e-5, 1.5).backward(g.to(dtype))
        grads.append([t.grad.double() for t in (xs, ms, ws)])
    for ours, ref, name in zip(*grads, ("x", "m", "w"), strict=True):
        torch.testing.assert_close(ours, ref, rtol=1e-4, atol=1e-4, msg=name)


def test_batch_norm_backward_bits_do_not_depend_on_threads() -> None:
    torch.manual_seed(1)
    x, g = torch.randn(100_000, 16), torch.randn(100_000, 16)
    m = torch.stack([x.mean(0), x.var(0, unbiased=False)])
    before = torch.get_num_threads()
    out = []
    try:
        for threads in (1, 2):
            torch.set_num_threads(threads)
            xs, ms = x.clone().requires_grad_(True), m.clone().requires_grad_(True)
            normalize("batch_norm", xs, ms, None, 1e-5).backward(g)
            out.append((xs.grad, ms.grad))
    finally:
        torch.set_num_threads(before)
    assert torch.equal(out[0][0], out[1][0]) and torch.equal(out[0][1], out[1][1])
