"""Aggregation kernels: ``Z = Â H`` over a partition's in-edges, and its transpose.

A partition stores its in-edges once, as a CSR over ``[own | halo]`` columns, plus a
*transposed index* of the same edges (CSR of ``Âᵀ``, built once at preparation): reading CSR
row-wise is what makes the sparse product fast in both directions.

**The order of every sum is fixed by this module, not by a library.** :func:`spmm` is our own
kernel (compiled by Numba): output element ``(r, j)`` is

    ((w_0 h_0j + w_1 h_1j) + w_2 h_2j) + ...

over row ``r``'s edges in CSR order, each product and each sum rounded once (IEEE 754, no
fused multiply-add, no fast-math reassociation). Columns are independent, and rows are split
between threads whole, so the bits of a column depend only on that column's inputs — not on
how many columns are computed alongside it, the CPU's vector width (AVX2, AVX-512), the
memory alignment of the inputs or the number of threads. A library's sparse product gives no
such promise: MKL's CSR × dense product (what ``torch.sparse`` calls on x86) sums in an order
that depends on the CPU and on the number of columns, so a column slice of a product could
differ from the product of the slice. ``tests/graph_engine/test_kernels.py`` checks the
kernel bit for bit against a sequential float32 reference and reads the compiled code for
fused multiply-adds.

Speed, ``python -m bench.kernels`` (100k rows, 2M edges, uniform in-degrees, one thread, on
a 2-core Intel Xeon with AVX-512): 11.9 ms against MKL's 6.5 ms at 16 columns, 24.9 against
38.5 at 64, 48.9 against 98.5 at 128 (MKL in blocks of 16 columns, as Lotan ran it): slower
on narrow products, faster on wide ones. In an epoch it does not show: GCN 128→128→16 on a
100k-vertex SBM graph, median epoch 0.343 s local / 1.33 s Spark against 0.361–0.410 /
1.22–1.41 s with MKL (``python -m bench.epoch_time``, same machine).
"""

from __future__ import annotations

import os
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import numba
import numpy as np
import torch

__all__ = [
    "Aggregate",
    "as_array",
    "edge_rows",
    "index_dtype",
    "relu_sum",
    "relu_sum_grad",
    "row_blocks",
    "run_rows",
    "spmm",
    "transpose_csr",
]

#: Below this many multiply-adds a product runs on the calling thread (a thread hand-off
#: costs more than the work).
PARALLEL_MIN_WORK = 1 << 18


def index_dtype(nnz: int, num_cols: int) -> type:
    """int32 indices when they fit (half the bytes to store and ship), else int64."""
    return np.int32 if max(nnz, num_cols) < 2**31 - 1 else np.int64


def transpose_csr(
    indptr: np.ndarray, indices: np.ndarray, num_cols: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """CSR of the transpose: ``(t_indptr, t_indices, perm)``; edge ``perm[e]`` of the
    original is edge ``e`` of the transpose (so ``t_weights = weights[..., perm]``)."""
    indptr = np.asarray(indptr)
    indices = np.asarray(indices)
    num_rows = indptr.shape[0] - 1
    dtype = index_dtype(indices.shape[0], max(num_rows, num_cols))
    rows = np.repeat(np.arange(num_rows, dtype=dtype), np.diff(indptr))
    perm = np.argsort(indices, kind="stable")
    t_indptr: np.ndarray = np.zeros(num_cols + 1, dtype=dtype)
    np.cumsum(np.bincount(indices, minlength=num_cols), out=t_indptr[1:])
    return t_indptr, rows[perm], perm


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _csr_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    weights: np.ndarray,
    dense: np.ndarray,
    out: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of ``out = A @ dense``: each row's edges in CSR order, one rounding
    per product and per sum (the order the module docstring states). Four edges share one
    pass over the row — ``(((acc + p0) + p1) + p2) + p3`` is the same order as four passes,
    with a quarter of the loads and stores of ``acc``."""
    width = dense.shape[1]
    for r in range(lo, hi):
        acc = out[r]
        for j in range(width):
            acc[j] = 0.0
        e = indptr[r]
        end = indptr[r + 1]
        while e + 4 <= end:
            w0, w1, w2, w3 = weights[e], weights[e + 1], weights[e + 2], weights[e + 3]
            h0, h1 = dense[indices[e]], dense[indices[e + 1]]
            h2, h3 = dense[indices[e + 2]], dense[indices[e + 3]]
            for j in range(width):
                acc[j] = (((acc[j] + w0 * h0[j]) + w1 * h1[j]) + w2 * h2[j]) + w3 * h3[j]
            e += 4
        while e < end:
            w0 = weights[e]
            h0 = dense[indices[e]]
            for j in range(width):
                acc[j] += w0 * h0[j]
            e += 1


_POOL: tuple[int, int, ThreadPoolExecutor] | None = None


def _pool(threads: int) -> ThreadPoolExecutor:
    """A pool of ``threads`` workers for this process (a forked Spark worker makes its own)."""
    global _POOL
    if _POOL is None or _POOL[0] != os.getpid() or _POOL[1] != threads:
        _POOL = (os.getpid(), threads, ThreadPoolExecutor(threads, thread_name_prefix="spmm"))
    return _POOL[2]


def as_array(a: np.ndarray | torch.Tensor, dtype: Any = None) -> np.ndarray:
    """``a`` (an array or a tensor) as a C-contiguous NumPy array of ``dtype``."""
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return np.ascontiguousarray(arr, dtype=dtype)


def run_rows(
    kernel: Callable[..., None], indptr: np.ndarray, args: tuple[Any, ...], width: int
) -> None:
    """``kernel(*args, lo, hi)`` over the rows of CSR ``indptr``, on as many threads as
    :func:`spmm` uses (whole rows each, so the result does not depend on the split)."""
    rows = indptr.shape[0] - 1
    nnz = int(indptr[-1]) if rows else 0
    threads = min(torch.get_num_threads(), rows, max(1, nnz * width // PARALLEL_MIN_WORK))
    if threads <= 1:
        kernel(*args, 0, rows)
        return
    cuts = np.searchsorted(indptr, np.linspace(0, nnz, threads + 1)[1:-1]).tolist()
    bounds = [0, *cuts, rows]
    jobs = [
        _pool(threads).submit(kernel, *(*args, lo, hi))
        for lo, hi in zip(bounds[:-1], bounds[1:], strict=True)
        if hi > lo
    ]
    for job in jobs:
        job.result()


def spmm(
    indptr: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    dense: np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """``A @ dense`` for the CSR ``A`` of shape ``(len(indptr) - 1, dense.shape[0])``, summed
    in the fixed order of the module docstring.

    With a partition's in-edge CSR this is the forward aggregation (``dense`` holds the
    ``[own | halo]`` rows); with its transposed index, the backward one. It runs on
    ``torch.get_num_threads()`` threads, each a block of whole rows with about the same
    number of edges.

    Shapes: ``dense`` ``(num_cols,)`` or ``(num_cols, d)`` → ``(num_rows,)`` or
    ``(num_rows, d)``, float32 or float64 like ``dense``.
    """
    ptr = as_array(indptr)
    idx = as_array(indices)
    h = as_array(dense)
    vector = h.ndim == 1
    if vector:
        h = h.reshape(-1, 1)
    w = as_array(weights, h.dtype)
    result = torch.empty((ptr.shape[0] - 1, h.shape[1]), dtype=torch.from_numpy(h[:0]).dtype)
    # a torch allocation: aligned like every input of dense work
    run_rows(_csr_rows, ptr, (ptr, idx, w, h, result.numpy()), h.shape[1])
    return result.reshape(-1) if vector else result


class Aggregate(torch.autograd.Function):
    """``Z = Â H`` with ``∂L/∂H = Âᵀ ∂L/∂Z`` — the pair the engines run as two stages
    (there with the transposed index stored in the layout; here built on the fly).

    Shapes: ``full`` ``(n_own + n_halo, d)`` → ``(n_own, d)``.
    """

    @staticmethod
    def forward(
        ctx: Any,
        full: torch.Tensor,
        indptr: torch.Tensor,
        indices: torch.Tensor,
        weights: torch.Tensor,
    ) -> torch.Tensor:
        t_indptr, t_indices, perm = transpose_csr(
            indptr.numpy(), indices.numpy(), int(full.shape[0])
        )
        ctx.transposed = (t_indptr, t_indices, weights[torch.from_numpy(perm)])
        return spmm(indptr, indices, weights, full)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        t_indptr, t_indices, t_weights = ctx.transposed
        return (spmm(t_indptr, t_indices, t_weights, grads[0]), None, None, None)


# ---------------------------------------------------------------------------- max and min
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _csr_max_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    dense: np.ndarray,
    out: np.ndarray,
    ties: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of the column-wise maximum over each row's edges with a non-zero
    ``mask``, and how many ways the gradient splits (``ties``): the edges that attain it,
    plus one where the maximum is exactly 0 — PyG's ``scatter_reduce`` starts from zeros
    and its backward counts that zero as a tie too. 0 and 0 for a row without edges."""
    width = dense.shape[1]
    for r in range(lo, hi):
        best = out[r]
        count = ties[r]
        for j in range(width):
            count[j] = 0.0
        for e in range(indptr[r], indptr[r + 1]):
            if mask[e] == 0:
                continue
            src = dense[indices[e]]
            for j in range(width):
                v = src[j]
                if count[j] == 0.0 or v > best[j]:
                    best[j] = v
                    count[j] = 1.0
                elif v == best[j]:
                    count[j] += 1.0
        for j in range(width):
            if count[j] == 0.0:
                best[j] = 0.0
            elif best[j] == 0.0:
                count[j] += 1.0


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _csr_max_grad_rows(
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_mask: np.ndarray,
    dense: np.ndarray,
    best: np.ndarray,
    ties: np.ndarray,
    grad: np.ndarray,
    out: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` (sources) of the gradient of the maximum: each source gets
    ``grad / ties`` of every destination column it attains, in transposed-CSR order."""
    width = dense.shape[1]
    for s in range(lo, hi):
        acc = out[s]
        for j in range(width):
            acc[j] = 0.0
        src = dense[s]
        for e in range(t_indptr[s], t_indptr[s + 1]):
            if t_mask[e] == 0:
                continue
            r = t_indices[e]
            b = best[r]
            for j in range(width):
                if src[j] == b[j]:
                    acc[j] += grad[r, j] / ties[r, j]


def _extreme(
    indptr: np.ndarray, indices: np.ndarray, mask: np.ndarray, dense: np.ndarray, sign: float
) -> tuple[np.ndarray, np.ndarray]:
    """``sign * max(sign * dense)`` per row over its masked edges, and the tie counts."""
    h = dense if sign > 0 else -dense
    rows = indptr.shape[0] - 1
    best = np.empty((rows, h.shape[1]), h.dtype)
    ties = np.empty((rows, h.shape[1]), h.dtype)
    run_rows(_csr_max_rows, indptr, (indptr, indices, mask, h, best, ties), h.shape[1])
    return best, ties


def segment_extreme(
    reduce: str,
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    dense: np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """``reduce`` (``"max"`` or ``"min"``) of ``dense`` rows over each CSR row's edges whose
    ``mask`` is non-zero, column by column — PyG's ``aggr="max"|"min"`` (a row without edges
    gets 0). ``min`` is ``-max(-x)``, exactly.

    Shapes: ``dense`` ``(num_cols, d)`` → ``(num_rows, d)``.
    """
    sign = _sign(reduce)
    ptr, idx, m, h = as_array(indptr), as_array(indices), as_array(mask), as_array(dense)
    best, _ = _extreme(ptr, idx, m, h, sign)
    result = torch.empty(best.shape, dtype=torch.from_numpy(h[:0]).dtype)
    result.numpy()[:] = best if sign > 0 else -best
    return result


def segment_extreme_grad(
    reduce: str,
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_mask: np.ndarray,
    dense: np.ndarray | torch.Tensor,
    grad: np.ndarray | torch.Tensor,
) -> torch.Tensor:
    """The gradient of :func:`segment_extreme` with respect to ``dense``: every edge that
    attains its destination's extreme in a column gets an equal share of that column's
    gradient — what PyG's ``scatter_reduce("amax"/"amin")`` backward gives, including its
    one quirk: an extreme of exactly 0 also counts the zero the reduction starts from, so
    ``k`` tied edges get ``1/(k+1)`` each. (With ``torch_scatter`` installed PyG routes the
    gradient to one of the tied edges instead.) The
    extreme is recomputed from ``dense``; ``t_*`` is the transposed index of the same edges
    (sources by destinations), so each source's sum runs in a fixed order.

    Shapes: ``dense`` ``(num_cols, d)``, ``grad`` ``(num_rows, d)`` → ``(num_cols, d)``.
    """
    sign = _sign(reduce)
    ptr, idx, m, h = as_array(indptr), as_array(indices), as_array(mask), as_array(dense)
    g = as_array(grad, h.dtype)
    best, ties = _extreme(ptr, idx, m, h, sign)
    t_ptr, t_idx, t_m = as_array(t_indptr), as_array(t_indices), as_array(t_mask)
    signed = h if sign > 0 else -h
    result = torch.empty(h.shape, dtype=torch.from_numpy(h[:0]).dtype)
    args = (t_ptr, t_idx, t_m, signed, best, ties, g, result.numpy())
    run_rows(_csr_max_grad_rows, t_ptr, args, h.shape[1])
    return result


def _sign(reduce: str) -> float:
    if reduce not in ("max", "min"):
        raise ValueError(f"reduce must be 'max' or 'min', found {reduce!r}")
    return 1.0 if reduce == "max" else -1.0


# ---------------------------------------------------------------------------- edge messages
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _relu_sum_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    edge: np.ndarray,
    out: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of ``Σ_e relu(h[src_e] + edge_e)`` over the masked edges, CSR order."""
    width = h.shape[1]
    zero = out.dtype.type(0)
    for r in range(lo, hi):
        acc = out[r]
        for j in range(width):
            acc[j] = zero
        for e in range(indptr[r], indptr[r + 1]):
            if mask[e] == 0:
                continue
            src = h[indices[e]]
            for j in range(width):
                v = src[j] + edge[e, j]
                if v > 0:
                    acc[j] += v


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _relu_sum_grad_rows(
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    cursor: np.ndarray,
    row_end: int,
    e0: int,
    first: bool,
    h: np.ndarray,
    edge: np.ndarray,
    grad: np.ndarray,
    d_h: np.ndarray,
    want_edge: bool,
    d_edge: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Sources ``lo..hi-1``: ``∂h_s = Σ_t [h_s + edge > 0] ∂out_dst`` over the transposed
    index, for the transposed edges from ``cursor[s]`` whose destination is below
    ``row_end`` (one block of destination rows; ``edge`` and ``d_edge`` hold that block's
    edges, from CSR edge ``e0``); with ``want_edge`` each edge's gradient too (it equals its
    summand's)."""
    width = h.shape[1]
    zero = d_h.dtype.type(0)
    for s in range(lo, hi):
        acc = d_h[s]
        if first:
            for j in range(width):
                acc[j] = zero
        src = h[s]
        t = cursor[s]
        end = t_indptr[s + 1]
        while t < end and t_indices[t] < row_end:
            if t_mask[t] != 0:
                e = t_perm[t] - e0
                g = grad[t_indices[t]]
                for j in range(width):
                    if src[j] + edge[e, j] > 0:
                        acc[j] += g[j]
                        if want_edge:
                            d_edge[e, j] = g[j]
            t += 1
        cursor[s] = t


def row_blocks(indptr: np.ndarray, edges_per_block: int) -> list[tuple[int, int]]:
    """Consecutive destination row ranges of at most ``edges_per_block`` in-edges each (a row
    with more gets a block of its own): the per-edge tensors of one block are what a layer
    holds at a time."""
    ptr = np.asarray(indptr, dtype=np.int64)
    rows = ptr.shape[0] - 1
    if rows <= 0 or ptr[-1] <= edges_per_block:
        return [(0, max(rows, 0))]
    blocks = []
    lo = 0
    while lo < rows:
        hi = int(np.searchsorted(ptr, ptr[lo] + edges_per_block, side="right")) - 1
        hi = min(max(hi, lo + 1), rows)
        blocks.append((lo, hi))
        lo = hi
    return blocks


def edge_rows(edge: Any, e0: int, e1: int, dtype: Any) -> np.ndarray:
    """Rows ``e0..e1`` of a per-edge array, or of ``edge(e0, e1)`` when it is a function."""
    return as_array(edge(e0, e1) if callable(edge) else edge[e0:e1], dtype)


def relu_sum(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray | torch.Tensor,
    edge: Any,
    blocks: list[tuple[int, int]] | None = None,
) -> torch.Tensor:
    """``out_i = Σ_j relu(h_j + e_ji)`` over each row's edges with a non-zero ``mask`` — the
    message and sum of PyG's ``GINEConv`` (``e`` its edge features, projected when it has
    ``edge_dim``). ``edge``: an ``(E, d)`` array or a function of a block's CSR edge range;
    ``blocks``: destination row ranges computed one after the other (:func:`row_blocks`),
    holding one block's edge rows at a time.

    Shapes: ``h`` ``(num_cols, d)``, ``edge`` ``(E, d)`` → ``(num_rows, d)``.
    """
    hh = as_array(h)
    ptr, idx, m = as_array(indptr), as_array(indices), as_array(mask)
    rows = ptr.shape[0] - 1
    out = torch.empty((rows, hh.shape[1]), dtype=torch.from_numpy(hh[:0]).dtype)
    o = out.numpy()
    for lo, hi in blocks if blocks is not None else [(0, rows)]:
        e0, e1 = int(ptr[lo]), int(ptr[hi])
        sub = ptr[lo : hi + 1] - ptr[lo]
        args = (sub, idx[e0:e1], m[e0:e1], hh, edge_rows(edge, e0, e1, hh.dtype), o[lo:hi])
        run_rows(_relu_sum_rows, sub, args, hh.shape[1])
    return out


def relu_sum_grad(
    indptr: np.ndarray,
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
    h: np.ndarray | torch.Tensor,
    edge: Any,
    grad: np.ndarray | torch.Tensor,
    edge_grad: bool | Callable[[int, int, torch.Tensor], None] = False,
    blocks: list[tuple[int, int]] | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Gradients of :func:`relu_sum` with respect to ``h`` and, with ``edge_grad``, ``edge``
    (0 on masked-out edges; ``True``: returned, a function: each block's ``(e0, e1, grad)``
    goes to it), over the transposed index (``t_perm[t]``: the CSR edge of transposed edge
    ``t``) in its order, whatever the blocks."""
    hh = as_array(h)
    g = as_array(grad, hh.dtype)
    ptr = as_array(indptr)
    rows = ptr.shape[0] - 1
    t_ptr = as_array(t_indptr)
    index = (t_ptr, as_array(t_indices), as_array(t_perm), as_array(t_mask))
    cursor = t_ptr[:-1].astype(np.int64)
    d_h = torch.empty(hh.shape, dtype=torch.from_numpy(hh[:0]).dtype)
    parts = []
    for b, (lo, hi) in enumerate(blocks if blocks is not None else [(0, rows)]):
        e0, e1 = int(ptr[lo]), int(ptr[hi])
        e = edge_rows(edge, e0, e1, hh.dtype)
        d_edge = np.zeros(e.shape if edge_grad else (0, 0), hh.dtype)
        args = (*index, cursor, hi, e0, b == 0, hh, e, g, d_h.numpy(), bool(edge_grad), d_edge)
        run_rows(_relu_sum_grad_rows, t_ptr, args, hh.shape[1])
        if callable(edge_grad):
            edge_grad(e0, e1, torch.from_numpy(d_edge))
        elif edge_grad:
            parts.append(torch.from_numpy(d_edge))
    if edge_grad is True:
        return d_h, torch.cat(parts) if len(parts) != 1 else parts[0]
    return d_h, None
