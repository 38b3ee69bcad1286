"""GATv2's attention (``GATv2Conv``): the score ``Σ_c att[c] · leaky_relu(x_l[j] +
x_r[i] + e[e])_c``, the activation inside the dot product, so the kernels read both ends'
full rows and the parameter ``att``; forward and exact backward (:func:`attention_v2`,
:func:`attention_v2_grad`). Pre-activations are recomputed in each pass, not stored."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

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
            if softmax(mask, alpha, start, end, k, top) and sums:
                weighted_sum(out[r], indices, mask, x_l, alpha, drop, start, end, k, width)


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
            softmax_grad(indices, mask, x_l, alpha, drop, g, d_score, start, end, k, width)
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
    cut = Blocks(indptr, indices, mask, blocks)
    out = new_tensor((cut.rows, xl.shape[1]), dt)
    o = out.numpy()
    for lo, hi, e0, e1, ptr, idx, m in cut:
        ed, has_edge = edge_values(edge, e0, e1, dt)
        mult = drop_multipliers(drop, e0, e1, heads, dt)
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
    cut = Blocks(indptr, indices, mask, blocks)
    slope = dt.type(negative_slope)
    d_dst = new_tensor(xr.shape, dt, zero=True)
    d_src = new_tensor(xl.shape, dt)
    shares = np.empty((cut.rows, xl.shape[1]), dt)
    t_ptr = as_array(t_indptr)
    index = (t_ptr, as_array(t_indices), as_array(t_perm), as_array(t_mask))
    cursor = t_ptr[:-1].astype(np.int64)
    sink = EdgeGrads(edge_grad if callable(edge_grad) else None, bool(edge_grad))
    for b, (lo, hi, e0, e1, ptr, idx, m) in enumerate(cut):
        ed, has_edge = edge_values(edge, e0, e1, dt)
        mult = drop_multipliers(drop, e0, e1, heads, dt)
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
