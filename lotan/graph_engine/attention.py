"""Attention kernels: GAT's and GATv2's softmax-weighted sums over a partition's in-edges,
and their exact backward passes.

Both layers score each edge, take a softmax of the scores over each destination's edges
(shifted by the row's maximum, as PyG's ``softmax``; a row without edges gets an empty
softmax and a zero output) and sum the sources' rows weighted by the coefficients, head by
head. They differ in the score:

- ``GATConv``: ``leaky_relu(a_src[j] + a_dst[i] + a_edge[e])`` from per-vertex scores the
  dense stages compute (``a_src = (x W)·att_src``, ...) and, with edge features, per-edge
  scores ``a_edge`` (:func:`attention`);
- ``GATv2Conv``: ``Σ_c att[c] · leaky_relu(x_l[j] + x_r[i] + e[e])_c``, the activation
  *inside* the dot product, so the kernel reads the full rows of both ends and the
  parameter ``att`` (:func:`attention_v2`).

Edge values are computed where the edge lives (the partition that owns its destination),
from the source row (own or halo), the destination row and the edge's features. Every sum
runs in an order this module fixes: a destination's sums over its edges in CSR order, a
source's over the transposed index (``t_perm[t]`` is the CSR edge of transposed edge ``t``).
Rows are split between threads whole (:func:`lotan.graph_engine.kernels.run_rows`), so the
bits do not depend on the thread count. Per-edge arrays are ``(E, heads)`` (coefficients,
score gradients); GATv2's ``(E, heads·C)`` pre-activations are recomputed in each pass
instead of stored, except the gradient of the edge features' projection, which is
materialized only when that projection has parameters.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch

from lotan.graph_engine.kernels import as_array, edge_rows, row_blocks, run_rows

__all__ = ["attention", "attention_grad", "attention_v2", "attention_v2_grad", "row_blocks"]


# ---------------------------------------------------------------------------- shared steps
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _softmax(
    mask: np.ndarray, alpha: np.ndarray, start: int, end: int, k: int, top: float
) -> bool:  # pragma: no cover - compiled
    """Scores ``alpha[start:end, k]`` to coefficients in place (masked-out edges stay 0);
    ``False`` for an empty softmax."""
    zero = alpha.dtype.type(0)
    if top == zero - np.inf:
        return False
    total = zero
    for e in range(start, end):
        if mask[e] != 0:
            alpha[e, k] = np.exp(alpha[e, k] - top)
            total += alpha[e, k]
    for e in range(start, end):
        if mask[e] != 0:
            alpha[e, k] = alpha[e, k] / total
    return True


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _weighted_sum(
    acc: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    alpha: np.ndarray,
    drop: np.ndarray,
    start: int,
    end: int,
    k: int,
    width: int,
) -> None:  # pragma: no cover - compiled
    """``acc[head k] = Σ_e (α_ek drop_ek) h[src_e, head k]`` in CSR order."""
    base = k * width
    for e in range(start, end):
        if mask[e] == 0:
            continue
        a = alpha[e, k] * drop[e, k]
        src = h[indices[e]]
        for c in range(width):
            acc[base + c] += a * src[base + c]


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _softmax_grad(
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    alpha: np.ndarray,
    drop: np.ndarray,
    g: np.ndarray,
    d_score: np.ndarray,
    start: int,
    end: int,
    k: int,
    width: int,
) -> None:  # pragma: no cover - compiled
    """``d_score[e, k]`` = the gradient of edge ``e``'s score through the softmax:
    ``α_e (∂α_e - Σ_e' α_e' ∂α_e')`` with ``∂α_e = drop_e (g · h[src_e])`` (head ``k``)."""
    zero = alpha.dtype.type(0)
    base = k * width
    weighted = zero
    for e in range(start, end):
        d_score[e, k] = zero
        if mask[e] == 0:
            continue
        src = h[indices[e]]
        dot = zero
        for c in range(width):
            dot += g[base + c] * src[base + c]
        dot = dot * drop[e, k]
        d_score[e, k] = dot  # ∂L/∂α for now
        weighted += alpha[e, k] * dot
    for e in range(start, end):
        if mask[e] != 0:
            d_score[e, k] = alpha[e, k] * (d_score[e, k] - weighted)


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
            if _softmax(mask, alpha, start, end, k, top) and sums:
                _weighted_sum(out[r], indices, mask, h, alpha, drop, start, end, k, width)


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
            _softmax_grad(indices, mask, h, alpha, drop, g, d_score, start, end, k, width)
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


# ---------------------------------------------------------------------------- GATv2
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _v2_score(
    src: np.ndarray,
    dst: np.ndarray,
    att: np.ndarray,
    edge: np.ndarray,
    has_edge: bool,
    e: int,
    slope: float,
    base: int,
    width: int,
) -> float:  # pragma: no cover - compiled
    """``Σ_c att_c leaky_relu(dst_c + src_c (+ edge_ec))`` over head columns ``base..``."""
    s = src.dtype.type(0)
    for c in range(width):
        v = dst[base + c] + src[base + c]
        if has_edge:
            v = v + edge[e, base + c]
        v = v if v > 0 else v * slope
        s += v * att[base + c]
    return s


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _v2_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    x_l: np.ndarray,
    x_r: np.ndarray,
    att: np.ndarray,
    edge: np.ndarray,
    has_edge: bool,
    slope: float,
    drop: np.ndarray,
    sums: bool,
    out: np.ndarray,
    alpha: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of GATv2's aggregation (coefficients before dropout to ``alpha``;
    without ``sums`` only those)."""
    heads = alpha.shape[1]
    width = x_l.shape[1] // heads
    zero = out.dtype.type(0)
    for r in range(lo, hi):
        if sums:
            for j in range(out.shape[1]):
                out[r, j] = zero
        start, end = indptr[r], indptr[r + 1]
        dst = x_r[r]
        for k in range(heads):
            top = zero - np.inf
            for e in range(start, end):
                alpha[e, k] = zero
                if mask[e] == 0:
                    continue
                v = _v2_score(x_l[indices[e]], dst, att, edge, has_edge, e, slope, k * width, width)
                alpha[e, k] = v
                if v > top:
                    top = v
            if _softmax(mask, alpha, start, end, k, top) and sums:
                _weighted_sum(out[r], indices, mask, x_l, alpha, drop, start, end, k, width)


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _v2_grad_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    x_l: np.ndarray,
    x_r: np.ndarray,
    att: np.ndarray,
    edge: np.ndarray,
    has_edge: bool,
    slope: float,
    drop: np.ndarray,
    alpha: np.ndarray,
    grad: np.ndarray,
    d_score: np.ndarray,
    d_dst: np.ndarray,
    d_att: np.ndarray,
    want_edge: bool,
    d_edge: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Destination side of GATv2's backward for rows ``lo..hi-1``: ``d_score`` (the score
    gradients, ``(E, heads)``), ``∂x_r`` of the row, the row's share of ``∂att`` (``d_att``,
    one row per destination, summed by the caller) and, with ``want_edge``, ``∂e``."""
    heads = alpha.shape[1]
    width = x_l.shape[1] // heads
    zero = grad.dtype.type(0)
    for r in range(lo, hi):
        start, end = indptr[r], indptr[r + 1]
        g = grad[r]
        dst = x_r[r]
        acc = d_dst[r]
        share = d_att[r]
        for j in range(acc.shape[0]):
            acc[j] = zero
            share[j] = zero
        for k in range(heads):
            base = k * width
            _softmax_grad(indices, mask, x_l, alpha, drop, g, d_score, start, end, k, width)
            for e in range(start, end):
                if mask[e] == 0:
                    continue
                src = x_l[indices[e]]
                d = d_score[e, k]
                for c in range(width):
                    v = dst[base + c] + src[base + c]
                    if has_edge:
                        v = v + edge[e, base + c]
                    p = d * att[base + c]
                    if v > 0:
                        share[base + c] += d * v
                    else:
                        share[base + c] += d * (v * slope)
                        p = p * slope
                    acc[base + c] += p
                    if want_edge:
                        d_edge[e, base + c] = p


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _v2_source_rows(
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    cursor: np.ndarray,
    row_end: int,
    e0: int,
    first: bool,
    x_l: np.ndarray,
    x_r: np.ndarray,
    att: np.ndarray,
    edge: np.ndarray,
    has_edge: bool,
    slope: float,
    alpha: np.ndarray,
    drop: np.ndarray,
    d_score: np.ndarray,
    grad: np.ndarray,
    d_src: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Source side of GATv2's backward for rows ``lo..hi-1`` of ``[own | halo]``:
    ``∂x_l_j = Σ_i (α_ij ∂out_i + ∂pre_ij)``, the pre-activation gradient recomputed (one
    block of destination rows, as :func:`_gat_source_rows`)."""
    heads = alpha.shape[1]
    width = x_l.shape[1] // heads
    zero = d_src.dtype.type(0)
    for s in range(lo, hi):
        acc = d_src[s]
        if first:
            for j in range(acc.shape[0]):
                acc[j] = zero
        src = x_l[s]
        t = cursor[s]
        end = t_indptr[s + 1]
        while t < end and t_indices[t] < row_end:
            if t_mask[t] == 0:
                t += 1
                continue
            e = t_perm[t] - e0
            i = t_indices[t]
            g = grad[i]
            dst = x_r[i]
            for k in range(heads):
                a = alpha[e, k] * drop[e, k]
                d = d_score[e, k]
                base = k * width
                for c in range(width):
                    v = dst[base + c] + src[base + c]
                    if has_edge:
                        v = v + edge[e, base + c]
                    p = d * att[base + c]
                    if not (v > 0):
                        p = p * slope
                    acc[base + c] += a * g[base + c] + p
            t += 1
        cursor[s] = t


# ---------------------------------------------------------------------------- wrappers
#: Destination rows ``[lo, hi)`` processed together (see
#: :func:`~lotan.graph_engine.kernels.row_blocks`).
Block = tuple[int, int]
#: A per-edge array, or a function of a block's CSR edge range ``(e0, e1)`` giving its rows.
EdgeArray = np.ndarray | torch.Tensor | Callable[[int, int], Any] | None


def _slice(a: EdgeArray, e0: int, e1: int, dtype: Any) -> np.ndarray | None:
    return None if a is None else edge_rows(a, e0, e1, dtype)


class _Blocks:
    """The CSR of one partition cut into blocks of destination rows; per block, the sliced
    CSR (``indptr`` rebased to the block's first edge)."""

    def __init__(self, indptr: Any, indices: Any, mask: Any, blocks: list[Block] | None) -> None:
        self.indptr = as_array(indptr)
        self.indices = as_array(indices)
        self.mask = as_array(mask)
        self.rows = self.indptr.shape[0] - 1
        self.blocks = blocks if blocks is not None else [(0, self.rows)]

    def __iter__(self) -> Any:
        for lo, hi in self.blocks:
            e0, e1 = int(self.indptr[lo]), int(self.indptr[hi])
            ptr = self.indptr[lo : hi + 1] - self.indptr[lo]
            yield lo, hi, e0, e1, ptr, self.indices[e0:e1], self.mask[e0:e1]


def _drop(drop: EdgeArray, e0: int, e1: int, heads: int, dtype: Any) -> np.ndarray:
    """The dropout multipliers of edges ``e0..e1``, ``(e1 - e0, heads)``; ones without
    dropout (``x * 1`` is exact)."""
    got = _slice(drop, e0, e1, dtype)
    return np.ones((e1 - e0, heads), dtype) if got is None else got


def _edge(edge: EdgeArray, e0: int, e1: int, dtype: Any) -> tuple[np.ndarray, bool]:
    got = _slice(edge, e0, e1, dtype)
    return (np.zeros((0, 0), dtype), False) if got is None else (got, True)


def _tensor(shape: tuple[int, ...], dtype: Any, zero: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.empty(0, dtype)).dtype
    return torch.zeros(shape, dtype=t) if zero else torch.empty(shape, dtype=t)


class _EdgeGrads:
    """Where a block's per-edge gradient goes: to ``sink(e0, e1, grad)``, or into one full
    ``(E, width)`` array returned to the caller (``want`` without a sink)."""

    def __init__(self, sink: Callable[[int, int, torch.Tensor], None] | None, want: bool) -> None:
        self.sink = sink
        self.want = want or sink is not None
        self.full: list[torch.Tensor] = []

    def put(self, e0: int, e1: int, grad: np.ndarray) -> None:
        if self.sink is not None:
            self.sink(e0, e1, torch.from_numpy(grad))
        elif self.want:
            self.full.append(torch.from_numpy(grad))

    def result(self) -> torch.Tensor | None:
        if self.sink is not None or not self.want:
            return None
        return torch.cat(self.full) if len(self.full) != 1 else self.full[0]


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
    cut = _Blocks(indptr, indices, mask, blocks)
    out = _tensor((cut.rows, hh.shape[1]), dt)
    o = out.numpy()
    for lo, hi, e0, e1, ptr, idx, m in cut:
        edge, has_edge = _edge(a_edge, e0, e1, dt)
        mult = _drop(drop, e0, e1, heads, dt)
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
    cut = _Blocks(indptr, indices, mask, blocks)
    slope = dt.type(negative_slope)
    d_dst = _tensor(a_d.shape, dt, zero=True)
    d_h = _tensor(hh.shape, dt)
    d_src = _tensor(a_s.shape, dt)
    t_ptr = as_array(t_indptr)
    index = (t_ptr, as_array(t_indices), as_array(t_perm), as_array(t_mask))
    cursor = t_ptr[:-1].astype(np.int64)
    sink = _EdgeGrads(edge_grad, a_edge is not None)
    for b, (lo, hi, e0, e1, ptr, idx, m) in enumerate(cut):
        edge, has_edge = _edge(a_edge, e0, e1, dt)
        mult = _drop(drop, e0, e1, heads, dt)
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


def attention_v2(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    x_l: np.ndarray | torch.Tensor,
    x_r: np.ndarray | torch.Tensor,
    att: np.ndarray | torch.Tensor,
    negative_slope: float,
    drop: EdgeArray = None,
    edge: EdgeArray = None,
    blocks: list[Block] | None = None,
) -> torch.Tensor:
    """GATv2's aggregation: ``out_i = Σ_j α_ij x_l_j`` per head with
    ``α_i· = softmax_j(att · leaky_relu(x_l_j + x_r_i + e_ij))`` (PyG's ``GATv2Conv``
    between its linear maps and its bias). ``drop`` and ``blocks`` as for :func:`attention`;
    ``edge`` the projected edge features (``lin_edge(edge_attr)``).

    Shapes: ``x_l`` ``(num_cols, heads·C)``, ``x_r`` ``(num_rows, heads·C)`` or longer,
    ``att`` ``(1, heads, C)`` or ``(heads, C)``, ``edge`` ``(E, heads·C)`` →
    ``(num_rows, heads·C)``.
    """
    xl = as_array(x_l)
    dt = xl.dtype
    xr, a, heads = as_array(x_r, dt), _att(att, xl, dt), int(np.shape(att)[-2])
    cut = _Blocks(indptr, indices, mask, blocks)
    out = _tensor((cut.rows, xl.shape[1]), dt)
    o = out.numpy()
    for lo, hi, e0, e1, ptr, idx, m in cut:
        ed, has_edge = _edge(edge, e0, e1, dt)
        mult = _drop(drop, e0, e1, heads, dt)
        alpha = np.empty((e1 - e0, heads), dt)
        args = (ptr, idx, m, xl, xr[lo:hi], a, ed, has_edge, dt.type(negative_slope), mult)
        run_rows(_v2_rows, ptr, (*args, True, o[lo:hi], alpha), xl.shape[1])
    return out


def _att(att: Any, xl: np.ndarray, dt: Any) -> np.ndarray:
    a = as_array(att, dt).reshape(-1)
    if a.shape[0] != xl.shape[1]:
        raise ValueError(f"att has {a.shape[0]} values for rows of width {xl.shape[1]}")
    return a


def attention_v2_grad(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    x_l: np.ndarray | torch.Tensor,
    x_r: np.ndarray | torch.Tensor,
    att: np.ndarray | torch.Tensor,
    negative_slope: float,
    grad: np.ndarray | torch.Tensor,
    drop: EdgeArray = None,
    edge: EdgeArray = None,
    edge_grad: bool | Callable[[int, int, torch.Tensor], None] = False,
    blocks: list[Block] | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`attention_v2` with respect to ``x_l``, ``x_r`` (its shape; rows
    past ``num_rows`` get 0), ``att`` (its shape) and, with ``edge_grad``, ``edge`` (``True``:
    returned; a function: each block's ``(e0, e1, grad)`` goes to it instead)."""
    xl = as_array(x_l)
    dt = xl.dtype
    xr, a, heads = as_array(x_r, dt), _att(att, xl, dt), int(np.shape(att)[-2])
    g = as_array(grad, dt)
    cut = _Blocks(indptr, indices, mask, blocks)
    slope = dt.type(negative_slope)
    d_dst = _tensor(xr.shape, dt, zero=True)
    d_src = _tensor(xl.shape, dt)
    shares = np.empty((cut.rows, xl.shape[1]), dt)
    t_ptr = as_array(t_indptr)
    index = (t_ptr, as_array(t_indices), as_array(t_perm), as_array(t_mask))
    cursor = t_ptr[:-1].astype(np.int64)
    sink = _EdgeGrads(edge_grad if callable(edge_grad) else None, bool(edge_grad))
    for b, (lo, hi, e0, e1, ptr, idx, m) in enumerate(cut):
        ed, has_edge = _edge(edge, e0, e1, dt)
        mult = _drop(drop, e0, e1, heads, dt)
        alpha = np.empty((e1 - e0, heads), dt)
        args = (ptr, idx, m, xl, xr[lo:hi], a, ed, has_edge, slope, mult)
        run_rows(_v2_rows, ptr, (*args, False, np.empty((0, 0), dt), alpha), xl.shape[1])
        d_score = np.empty_like(alpha)
        want = bool(sink.want and has_edge)
        d_edge = np.zeros(ed.shape if want else (0, 0), dt)
        step = (*args, alpha, g[lo:hi], d_score, d_dst.numpy()[lo:hi], shares[lo:hi], want, d_edge)
        run_rows(_v2_grad_rows, ptr, step, xl.shape[1])
        back = (*index, cursor, hi, e0, b == 0, xl, xr, a, ed, has_edge, slope, alpha, mult)
        run_rows(_v2_source_rows, t_ptr, (*back, d_score, g, d_src.numpy()), xl.shape[1])
        if want:
            sink.put(e0, e1, d_edge)
    d_att = torch.from_numpy(shares.sum(axis=0, dtype=dt)).reshape(np.shape(att))
    return d_src, d_dst, d_att, sink.result() if edge is not None else None
