"""GAT's attention (``GATConv``): the score ``leaky_relu(a_src[j] + a_dst[i] +
a_edge[e])`` from per-vertex scores the dense stages compute, the softmax-weighted sum of the
source rows, and the exact backward pass (:func:`attention`, :func:`attention_grad`)."""

from __future__ import annotations

from collections.abc import Callable

import numba
import numpy as np
import torch

from lotan.graph_engine.attention.steps import (
    Block,
    Blocks,
    EdgeArray,
    EdgeGrads,
    drop_multipliers,
    edge_values,
    new_tensor,
    softmax,
    softmax_grad,
    weighted_sum,
)
from lotan.graph_engine.kernels import as_array, run_rows


# ---------------------------------------------------------------------------- GAT
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _gat_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    a_src: np.ndarray,
    a_dst: np.ndarray,
    a_edge: np.ndarray,
    has_edge: bool,
    slope: float,
    drop: np.ndarray,
    sums: bool,
    out: np.ndarray,
    alpha: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of GAT's aggregation; the coefficients before dropout go to
    ``alpha`` (``(E, heads)``, 0 on masked-out edges). Without ``sums`` only the
    coefficients (the backward pass's recomputation; ``out`` is not touched)."""
    heads = a_src.shape[1]
    width = h.shape[1] // heads
    zero = out.dtype.type(0)
    for r in range(lo, hi):
        if sums:
            for j in range(out.shape[1]):
                out[r, j] = zero
        start, end = indptr[r], indptr[r + 1]
        for k in range(heads):
            top = zero - np.inf  # (the input's float type)
            for e in range(start, end):
                alpha[e, k] = zero
                if mask[e] == 0:
                    continue
                v = a_src[indices[e], k] + a_dst[r, k]
                if has_edge:
                    v = v + a_edge[e, k]
                v = v if v > 0 else v * slope
                alpha[e, k] = v
                if v > top:
                    top = v
            if softmax(mask, alpha, start, end, k, top) and sums:
                weighted_sum(out[r], indices, mask, h, alpha, drop, start, end, k, width)


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _gat_grad_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    a_src: np.ndarray,
    a_dst: np.ndarray,
    a_edge: np.ndarray,
    has_edge: bool,
    slope: float,
    drop: np.ndarray,
    alpha: np.ndarray,
    grad: np.ndarray,
    d_score: np.ndarray,
    d_dst: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Destination side of GAT's backward for rows ``lo..hi-1``: the gradient of each
    edge's pre-activation score (``d_score``, ``(E, heads)``: softmax and leaky-ReLU
    backward; it is also the gradient of ``a_edge``) and of ``a_dst`` (the row's sum)."""
    heads = a_src.shape[1]
    width = h.shape[1] // heads
    zero = grad.dtype.type(0)
    for r in range(lo, hi):
        start, end = indptr[r], indptr[r + 1]
        g = grad[r]
        for k in range(heads):
            softmax_grad(indices, mask, h, alpha, drop, g, d_score, start, end, k, width)
            total = zero
            for e in range(start, end):
                if mask[e] == 0:
                    continue
                v = a_src[indices[e], k] + a_dst[r, k]
                if has_edge:
                    v = v + a_edge[e, k]
                d = d_score[e, k]
                if not (v > 0):
                    d = d * slope
                d_score[e, k] = d
                total += d
            d_dst[r, k] = total


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _gat_source_rows(
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    cursor: np.ndarray,
    row_end: int,
    e0: int,
    first: bool,
    alpha: np.ndarray,
    drop: np.ndarray,
    d_score: np.ndarray,
    grad: np.ndarray,
    d_h: np.ndarray,
    d_src: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Source side of GAT's backward for rows ``lo..hi-1`` of ``[own | halo]``, over the
    transposed index: ``∂h_j = Σ_i α_ij ∂out_i`` and ``∂a_src_j = Σ_i ∂score_ij`` — for the
    transposed edges from ``cursor[s]`` whose destination is below ``row_end`` (one block of
    destination rows; per-edge arrays hold that block's edges, from CSR edge ``e0``)."""
    heads = alpha.shape[1]
    width = d_h.shape[1] // heads
    zero = d_h.dtype.type(0)
    for s in range(lo, hi):
        acc = d_h[s]
        if first:
            for j in range(acc.shape[0]):
                acc[j] = zero
            for k in range(heads):
                d_src[s, k] = zero
        t = cursor[s]
        end = t_indptr[s + 1]
        while t < end and t_indices[t] < row_end:
            if t_mask[t] == 0:
                t += 1
                continue
            e = t_perm[t] - e0
            g = grad[t_indices[t]]
            for k in range(heads):
                d_src[s, k] += d_score[e, k]
                a = alpha[e, k] * drop[e, k]
                base = k * width
                for c in range(width):
                    acc[base + c] += a * g[base + c]
            t += 1
        cursor[s] = t


def attention(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray | torch.Tensor,
    a_src: np.ndarray | torch.Tensor,
    a_dst: np.ndarray | torch.Tensor,
    negative_slope: float,
    drop: EdgeArray = None,
    a_edge: EdgeArray = None,
    blocks: list[Block] | None = None,
) -> torch.Tensor:
    """GAT's aggregation over each row's edges with a non-zero ``mask``:
    ``out_i = Σ_j α_ij h_j`` per head, ``α_i· = softmax_j(leaky_relu(a_src_j + a_dst_i +
    a_edge_ij))`` (PyG's ``GATConv`` between its linear map and its bias; an empty row gets
    0). ``drop`` multiplies each coefficient after the softmax (attention dropout: 0 or
    ``1/(1-p)``); ``a_edge`` are the edge features' scores (``edge_dim``). ``blocks``: row
    ranges processed one after the other (:func:`row_blocks`; default one block), with the
    per-edge arrays (``drop``, ``a_edge``: arrays, or functions of a block's edge range)
    and the coefficients of one block at a time — the result does not depend on them.

    Shapes: ``h`` ``(num_cols, heads·C)``, ``a_src`` ``(num_cols, heads)``, ``a_dst``
    ``(num_rows, heads)`` or longer (rows past ``num_rows`` are not read), ``a_edge`` and
    ``drop`` ``(E, heads)`` → ``(num_rows, heads·C)``.
    """
    hh = as_array(h)
    dt = hh.dtype
    a_s, a_d = as_array(a_src, dt), as_array(a_dst, dt)
    heads = a_s.shape[1]
    cut = Blocks(indptr, indices, mask, blocks)
    out = new_tensor((cut.rows, hh.shape[1]), dt)
    o = out.numpy()
    for lo, hi, e0, e1, ptr, idx, m in cut:
        edge, has_edge = edge_values(a_edge, e0, e1, dt)
        mult = drop_multipliers(drop, e0, e1, heads, dt)
        alpha = np.empty((e1 - e0, heads), dt)
        args = (ptr, idx, m, hh, a_s, a_d[lo:hi], edge, has_edge, dt.type(negative_slope), mult)
        run_rows(_gat_rows, ptr, (*args, True, o[lo:hi], alpha), hh.shape[1])
    return out


def attention_grad(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    h: np.ndarray | torch.Tensor,
    a_src: np.ndarray | torch.Tensor,
    a_dst: np.ndarray | torch.Tensor,
    negative_slope: float,
    grad: np.ndarray | torch.Tensor,
    drop: EdgeArray = None,
    a_edge: EdgeArray = None,
    blocks: list[Block] | None = None,
    edge_grad: Callable[[int, int, torch.Tensor], None] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`attention` with respect to ``h``, ``a_src``, ``a_dst`` (each of
    its input's shape; ``a_dst`` rows past ``num_rows`` get 0) and ``a_edge`` (``None``
    without it, or when each block's goes to ``edge_grad(e0, e1, grad)``). The coefficients
    are recomputed block by block; a source's sums run over the transposed index in its
    order, whatever the blocks, so the bits do not depend on them."""
    hh = as_array(h)
    dt = hh.dtype
    a_s, a_d = as_array(a_src, dt), as_array(a_dst, dt)
    heads = a_s.shape[1]
    g = as_array(grad, dt)
    cut = Blocks(indptr, indices, mask, blocks)
    slope = dt.type(negative_slope)
    d_dst = new_tensor(a_d.shape, dt, zero=True)
    d_h = new_tensor(hh.shape, dt)
    d_src = new_tensor(a_s.shape, dt)
    t_ptr = as_array(t_indptr)
    index = (t_ptr, as_array(t_indices), as_array(t_perm), as_array(t_mask))
    cursor = t_ptr[:-1].astype(np.int64)
    sink = EdgeGrads(edge_grad, a_edge is not None)
    for b, (lo, hi, e0, e1, ptr, idx, m) in enumerate(cut):
        edge, has_edge = edge_values(a_edge, e0, e1, dt)
        mult = drop_multipliers(drop, e0, e1, heads, dt)
        alpha = np.empty((e1 - e0, heads), dt)
        args = (ptr, idx, m, hh, a_s, a_d[lo:hi], edge, has_edge, slope, mult)
        run_rows(_gat_rows, ptr, (*args, False, np.empty((0, 0), dt), alpha), hh.shape[1])
        d_score = np.empty_like(alpha)
        run_rows(
            _gat_grad_rows,
            ptr,
            (*args, alpha, g[lo:hi], d_score, d_dst.numpy()[lo:hi]),
            hh.shape[1],
        )
        back = (*index, cursor, hi, e0, b == 0, alpha, mult, d_score, g, d_h.numpy(), d_src.numpy())
        run_rows(_gat_source_rows, t_ptr, back, hh.shape[1])
        if has_edge:
            sink.put(e0, e1, d_score)
    return d_h, d_src, d_dst, sink.result()
