"""The attention kernels against PyG's own ops (``softmax``, ``leaky_relu``, ``index_add``)
under autograd: GAT with and without edge scores, GATv2 with and without edge features —
outputs and every gradient, masked edges, an empty row, dropout multipliers, float32 and
float64 — and ``gradcheck`` in float64."""

from __future__ import annotations

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from lotan.graph_engine.attention import (
    attention,
    attention_grad,
    attention_v2,
    attention_v2_grad,
)
from lotan.graph_engine.kernels import transpose_csr
from tests.graph_engine.test_kernels import _random_csr

HEADS, WIDTH, N_OWN, N_FULL, NNZ = 3, 4, 25, 40, 150


def _graph(dtype: torch.dtype, dropout: float):
    indptr, cols, _, _ = _random_csr(N_OWN, N_FULL, NNZ, 8)
    rng = np.random.default_rng(9)
    mask = (rng.random(NNZ) > 0.15).astype(np.float32)
    mask[indptr[2] : indptr[3]] = 0  # row 2: no real edge, an empty softmax
    keep = torch.from_numpy(mask > 0)
    rows = torch.repeat_interleave(torch.arange(N_OWN), torch.diff(indptr))
    drop = (torch.rand(NNZ, HEADS, dtype=dtype) >= dropout).to(dtype) / (1 - dropout)
    t_indptr, t_cols, perm = transpose_csr(indptr.numpy(), cols.numpy(), N_FULL)
    transposed = (t_indptr, t_cols, perm, mask[perm])
    return indptr, cols, mask, keep, rows, drop, transposed


def _aggregate(alpha, h, rows, cols, keep):
    """``Σ_j α_ij h_j`` per head over the kept edges (PyG's message and ``add``)."""
    msg = alpha.unsqueeze(-1) * h.view(h.shape[0], HEADS, -1)[cols[keep]]
    out = msg.new_zeros((N_OWN, HEADS, msg.shape[-1])).index_add(0, rows[keep], msg)
    return out.reshape(N_OWN, -1)


def _pyg_gat(h, a_src, a_dst, a_edge, slope, drop, rows, cols, keep):
    from torch_geometric.utils import softmax

    score = a_src[cols[keep]] + a_dst[rows[keep]]
    if a_edge is not None:
        score = score + a_edge[keep]
    alpha = softmax(F.leaky_relu(score, slope), rows[keep], num_nodes=N_OWN) * drop[keep]
    return _aggregate(alpha, h, rows, cols, keep)


def _pyg_gatv2(x_l, x_r, att, edge, slope, drop, rows, cols, keep):
    from torch_geometric.utils import softmax

    pre = x_r[rows[keep]] + x_l[cols[keep]]
    if edge is not None:
        pre = pre + edge[keep]
    score = (F.leaky_relu(pre, slope).view(-1, HEADS, WIDTH) * att).sum(-1)
    alpha = softmax(score, rows[keep], num_nodes=N_OWN) * drop[keep]
    return _aggregate(alpha, x_l, rows, cols, keep)


@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gat_and_its_gradients_match_pyg(dtype: torch.dtype, dropout: float, edges: bool) -> None:
    indptr, cols, mask, keep, rows, drop, transposed = _graph(dtype, dropout)
    h = torch.randn(N_FULL, HEADS * WIDTH, dtype=dtype, requires_grad=True)
    a_src = torch.randn(N_FULL, HEADS, dtype=dtype, requires_grad=True)
    a_dst = torch.randn(N_FULL, HEADS, dtype=dtype, requires_grad=True)
    a_edge = torch.randn(NNZ, HEADS, dtype=dtype, requires_grad=True) if edges else None
    g = torch.randn(N_OWN, HEADS * WIDTH, dtype=dtype)
    expected = _pyg_gat(h, a_src, a_dst, a_edge, 0.2, drop, rows, cols, keep)
    wrt = (h, a_src, a_dst) + ((a_edge,) if a_edge is not None else ())
    grads = torch.autograd.grad(expected, wrt, g)
    detached = (h.detach(), a_src.detach(), a_dst.detach())
    e = a_edge.detach() if a_edge is not None else None
    got = attention(indptr, cols, mask, *detached, 0.2, drop, e)
    assert got.dtype == dtype
    torch.testing.assert_close(got, expected.detach())
    assert torch.equal(got[2], torch.zeros(HEADS * WIDTH, dtype=dtype))
    mine = attention_grad(indptr, cols, mask, *transposed, *detached, 0.2, g, drop, e)
    assert (mine[3] is None) == (not edges)
    for name, a, b in zip(("h", "a_src", "a_dst", "a_edge"), mine, grads, strict=False):
        if name == "a_edge":  # masked-out edges get 0
            a = a[keep]
            b = b[keep]
        torch.testing.assert_close(a, b, msg=name)
    assert torch.equal(mine[2][N_OWN:], torch.zeros(N_FULL - N_OWN, HEADS, dtype=dtype))


@pytest.mark.parametrize("edges", [False, True])
@pytest.mark.parametrize("dropout", [0.0, 0.5])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_gatv2_and_its_gradients_match_pyg(dtype: torch.dtype, dropout: float, edges: bool) -> None:
    indptr, cols, mask, keep, rows, drop, transposed = _graph(dtype, dropout)
    x_l = torch.randn(N_FULL, HEADS * WIDTH, dtype=dtype, requires_grad=True)
    x_r = torch.randn(N_FULL, HEADS * WIDTH, dtype=dtype, requires_grad=True)
    att = torch.randn(1, HEADS, WIDTH, dtype=dtype, requires_grad=True)
    edge = torch.randn(NNZ, HEADS * WIDTH, dtype=dtype, requires_grad=True) if edges else None
    g = torch.randn(N_OWN, HEADS * WIDTH, dtype=dtype)
    expected = _pyg_gatv2(x_l, x_r, att, edge, 0.2, drop, rows, cols, keep)
    wrt = (x_l, x_r, att) + ((edge,) if edge is not None else ())
    grads = torch.autograd.grad(expected, wrt, g)
    detached = (x_l.detach(), x_r.detach(), att.detach())
    e = edge.detach() if edge is not None else None
    got = attention_v2(indptr, cols, mask, *detached, 0.2, drop, e)
    torch.testing.assert_close(got, expected.detach())
    assert torch.equal(got[2], torch.zeros(HEADS * WIDTH, dtype=dtype))
    mine = attention_v2_grad(
        indptr, cols, mask, *transposed, *detached, 0.2, g, drop, e, edge_grad=True
    )
    assert (mine[3] is None) == (not edges)
    for name, a, b in zip(("x_l", "x_r", "att", "edge"), mine, grads, strict=False):
        if name == "edge":
            a = a[keep]
            b = b[keep]
        torch.testing.assert_close(a, b, msg=name)
    assert torch.equal(mine[1][N_OWN:], torch.zeros(N_FULL - N_OWN, HEADS * WIDTH, dtype=dtype))


def test_attention_gradchecks() -> None:
    indptr, cols, _, _ = _random_csr(6, 9, 25, 10)
    mask = np.ones(25)
    t = transpose_csr(indptr.numpy(), cols.numpy(), 9)
    transposed = (*t, mask[t[2]])

    class Gat(torch.autograd.Function):
        @staticmethod
        def forward(ctx, h, a_s, a_d, a_e):  # type: ignore[override]
            ctx.save_for_backward(h, a_s, a_d, a_e)
            return attention(indptr, cols, mask, h, a_s, a_d, 0.2, None, a_e)

        @staticmethod
        def backward(ctx, g):  # type: ignore[override]
            h, a_s, a_d, a_e = ctx.saved_tensors
            return attention_grad(indptr, cols, mask, *transposed, h, a_s, a_d, 0.2, g, None, a_e)

    class GatV2(torch.autograd.Function):
        @staticmethod
        def forward(ctx, x_l, x_r, att, e):  # type: ignore[override]
            ctx.save_for_backward(x_l, x_r, att, e)
            return attention_v2(indptr, cols, mask, x_l, x_r, att, 0.2, None, e)

        @staticmethod
        def backward(ctx, g):  # type: ignore[override]
            x_l, x_r, att, e = ctx.saved_tensors
            return attention_v2_grad(
                indptr, cols, mask, *transposed, x_l, x_r, att, 0.2, g, None, e, True
            )

    def rand(*shape: int) -> torch.Tensor:
        return torch.randn(*shape, dtype=torch.float64, requires_grad=True)

    assert torch.autograd.gradcheck(Gat.apply, (rand(9, 4), rand(9, 2), rand(9, 2), rand(25, 2)))
    assert torch.autograd.gradcheck(
        GatV2.apply, (rand(9, 4), rand(9, 4), rand(1, 2, 2), rand(25, 4))
    )


@pytest.mark.parametrize("kind", ["gat", "gatv2", "relu_sum"])
def test_edge_blocks_give_the_same_bits(kind: str) -> None:
    """Rows in blocks of at most 7 edges (a hub row over the limit gets a block of its own),
    per-edge arrays handed out per block: forward and every gradient equal the single block
    bit for bit — a source's sums keep the transposed index's order across blocks."""
    from lotan.graph_engine.kernels import relu_sum, relu_sum_grad, row_blocks

    indptr, cols, _, _ = _random_csr(N_OWN, N_FULL, NNZ, 3, hub=True)
    mask = (np.random.default_rng(1).random(NNZ) > 0.1).astype(np.float32)
    t = transpose_csr(indptr.numpy(), cols.numpy(), N_FULL)
    transposed = (*t, mask[t[2]])
    blocks = row_blocks(indptr.numpy(), 7)
    assert len(blocks) > 5 and any(indptr[hi] - indptr[lo] > 7 for lo, hi in blocks)
    assert blocks[0][0] == 0 and blocks[-1][1] == N_OWN
    g = torch.randn(N_OWN, HEADS * WIDTH)
    drop = (torch.rand(NNZ, HEADS) >= 0.3).float() / 0.7
    pieces: list[tuple[int, int]] = []

    def by_block(a: torch.Tensor):
        def rows(e0: int, e1: int) -> torch.Tensor:
            pieces.append((e0, e1))
            return a[e0:e1]

        return rows

    def collect(into: list[torch.Tensor]):
        return lambda e0, e1, grad: into.append(grad.clone())

    got: list[torch.Tensor] = []
    if kind == "gat":
        h, a_s, a_d = torch.randn(N_FULL, 12), torch.randn(N_FULL, 3), torch.randn(N_FULL, 3)
        a_e = torch.randn(NNZ, 3)
        one = attention(indptr, cols, mask, h, a_s, a_d, 0.2, drop, a_e)
        many = attention(
            indptr, cols, mask, h, a_s, a_d, 0.2, by_block(drop), by_block(a_e), blocks
        )
        args = (indptr, cols, mask, *transposed, h, a_s, a_d, 0.2, g)
        ref = attention_grad(*args, drop, a_e)
        out = attention_grad(*args, by_block(drop), by_block(a_e), blocks, collect(got))
    elif kind == "gatv2":
        x_l, x_r = torch.randn(N_FULL, 12), torch.randn(N_FULL, 12)
        att, e = torch.randn(1, 3, 4), torch.randn(NNZ, 12)
        one = attention_v2(indptr, cols, mask, x_l, x_r, att, 0.2, drop, e)
        many = attention_v2(
            indptr, cols, mask, x_l, x_r, att, 0.2, by_block(drop), by_block(e), blocks
        )
        args = (indptr, cols, mask, *transposed, x_l, x_r, att, 0.2, g)
        ref = attention_v2_grad(*args, drop, e, True)
        out = attention_v2_grad(*args, by_block(drop), by_block(e), collect(got), blocks)
    else:
        h, e = torch.randn(N_FULL, 12), torch.randn(NNZ, 12)
        one = relu_sum(indptr, cols, mask, h, e)
        many = relu_sum(indptr, cols, mask, h, by_block(e), blocks)
        ref = relu_sum_grad(indptr, *transposed, h, e, g, True)
        out = relu_sum_grad(indptr, *transposed, h, by_block(e), g, collect(got), blocks)
    assert torch.equal(one, many)
    assert pieces and max(e1 - e0 for e0, e1 in pieces) < NNZ
    assert out[-1] is None
    for a, b in zip(ref[:-1], out[:-1], strict=True):
        assert torch.equal(a, b)
    assert torch.equal(torch.cat(got), ref[-1])


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_relu_sum_and_its_gradients_match_pyg(dtype: torch.dtype) -> None:
    """GINEConv's message ``relu(x_j + e_ji)`` summed at the destination."""
    from lotan.graph_engine.kernels import relu_sum, relu_sum_grad

    indptr, cols, mask, keep, rows, _, transposed = _graph(dtype, 0.0)
    h = torch.randn(N_FULL, 5, dtype=dtype, requires_grad=True)
    edge = torch.randn(NNZ, 5, dtype=dtype, requires_grad=True)
    msg = (h[cols[keep]] + edge[keep]).relu()
    expected = msg.new_zeros((N_OWN, 5)).index_add(0, rows[keep], msg)
    g = torch.randn(N_OWN, 5, dtype=dtype)
    grads = torch.autograd.grad(expected, (h, edge), g)
    got = relu_sum(indptr, cols, mask, h.detach(), edge.detach())
    torch.testing.assert_close(got, expected.detach())
    d_h, d_edge = relu_sum_grad(indptr, *transposed, h.detach(), edge.detach(), g, edge_grad=True)
    torch.testing.assert_close(d_h, grads[0])
    assert d_edge is not None
    torch.testing.assert_close(d_edge, grads[1])
