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

__all__ = ["Aggregate", "index_dtype", "spmm", "transpose_csr"]

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


def _as_array(a: np.ndarray | torch.Tensor, dtype: Any = None) -> np.ndarray:
    arr = a.detach().cpu().numpy() if isinstance(a, torch.Tensor) else np.asarray(a)
    return np.ascontiguousarray(arr, dtype=dtype)


def _run_rows(
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
    ptr = _as_array(indptr)
    idx = _as_array(indices)
    h = _as_array(dense)
    vector = h.ndim == 1
    if vector:
        h = h.reshape(-1, 1)
    w = _as_array(weights, h.dtype)
    result = torch.empty((ptr.shape[0] - 1, h.shape[1]), dtype=torch.from_numpy(h[:0]).dtype)
    # a torch allocation: aligned like every input of dense work
    _run_rows(_csr_rows, ptr, (ptr, idx, w, h, result.numpy()), h.shape[1])
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
    _run_rows(_csr_max_rows, indptr, (indptr, indices, mask, h, best, ties), h.shape[1])
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
    ptr, idx, m, h = _as_array(indptr), _as_array(indices), _as_array(mask), _as_array(dense)
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
    ptr, idx, m, h = _as_array(indptr), _as_array(indices), _as_array(mask), _as_array(dense)
    g = _as_array(grad, h.dtype)
    best, ties = _extreme(ptr, idx, m, h, sign)
    t_ptr, t_idx, t_m = _as_array(t_indptr), _as_array(t_indices), _as_array(t_mask)
    signed = h if sign > 0 else -h
    result = torch.empty(h.shape, dtype=torch.from_numpy(h[:0]).dtype)
    args = (t_ptr, t_idx, t_m, signed, best, ties, g, result.numpy())
    _run_rows(_csr_max_grad_rows, t_ptr, args, h.shape[1])
    return result


def _sign(reduce: str) -> float:
    if reduce not in ("max", "min"):
        raise ValueError(f"reduce must be 'max' or 'min', found {reduce!r}")
    return 1.0 if reduce == "max" else -1.0


# ---------------------------------------------------------------------------- attention
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _attention_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    a_src: np.ndarray,
    a_dst: np.ndarray,
    slope: float,
    drop: np.ndarray,
    out: np.ndarray,
    alpha: np.ndarray,
    lo: int,
    hi: int,
) -> None:  # pragma: no cover - compiled
    """Rows ``lo..hi-1`` of GAT's aggregation, head by head: edge scores
    ``leaky_relu(a_src[j] + a_dst[i])``, their softmax over the row's masked edges (shifted
    by the row's maximum, as PyG's ``softmax``), and ``Σ_j (α_ij drop_ij) h_j`` (``drop``:
    the attention dropout multiplier per edge and head). The coefficients before dropout
    go to ``alpha`` (``(E, heads)``, 0 on masked-out edges)."""
    heads = a_src.shape[1]
    width = h.shape[1] // heads
    zero = out.dtype.type(0)
    for r in range(lo, hi):
        acc = out[r]
        for j in range(acc.shape[0]):
            acc[j] = zero
        start, end = indptr[r], indptr[r + 1]
        for k in range(heads):
            top = zero - np.inf  # (the input's float type)
            for e in range(start, end):
                alpha[e, k] = zero
                if mask[e] == 0:
                    continue
                v = a_src[indices[e], k] + a_dst[r, k]
                v = v if v > 0 else v * slope
                alpha[e, k] = v
                if v > top:
                    top = v
            if top == zero - np.inf:
                continue  # no edge: an empty softmax, a zero row
            total = zero
            for e in range(start, end):
                if mask[e] != 0:
                    alpha[e, k] = np.exp(alpha[e, k] - top)
                    total += alpha[e, k]
            base = k * width
            for e in range(start, end):
                if mask[e] == 0:
                    continue
                a = alpha[e, k] / total
                alpha[e, k] = a
                a = a * drop[e, k]
                src = h[indices[e]]
                for c in range(width):
                    acc[base + c] += a * src[base + c]


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _attention_grad_rows(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray,
    a_src: np.ndarray,
    a_dst: np.ndarray,
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
    backward) and of ``a_dst`` (the sum over the row's edges)."""
    heads = a_src.shape[1]
    width = h.shape[1] // heads
    zero = grad.dtype.type(0)
    for r in range(lo, hi):
        start, end = indptr[r], indptr[r + 1]
        g = grad[r]
        for k in range(heads):
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
            total = zero
            for e in range(start, end):
                if mask[e] == 0:
                    continue
                d = alpha[e, k] * (d_score[e, k] - weighted)
                if not (a_src[indices[e], k] + a_dst[r, k] > 0):
                    d = d * slope
                d_score[e, k] = d
                total += d
            d_dst[r, k] = total


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _attention_source_rows(
    t_indptr: np.ndarray,
    t_indices: np.ndarray,
    t_perm: np.ndarray,
    t_mask: np.ndarray,
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
    transposed index in its fixed order: ``∂h_j = Σ_i α_ij ∂out_i`` and
    ``∂a_src_j = Σ_i ∂score_ij`` (``α`` times its dropout multiplier)."""
    heads = alpha.shape[1]
    width = d_h.shape[1] // heads
    zero = d_h.dtype.type(0)
    for s in range(lo, hi):
        acc = d_h[s]
        for j in range(acc.shape[0]):
            acc[j] = zero
        for k in range(heads):
            d_src[s, k] = zero
        for t in range(t_indptr[s], t_indptr[s + 1]):
            if t_mask[t] == 0:
                continue
            e = t_perm[t]
            g = grad[t_indices[t]]
            for k in range(heads):
                d_src[s, k] += d_score[e, k]
                a = alpha[e, k] * drop[e, k]
                base = k * width
                for c in range(width):
                    acc[base + c] += a * g[base + c]


def _attention_args(
    indptr: Any, indices: Any, mask: Any, h: Any, a_src: Any, a_dst: Any
) -> tuple[np.ndarray, ...]:
    hh = _as_array(h)
    return (
        _as_array(indptr),
        _as_array(indices),
        _as_array(mask),
        hh,
        _as_array(a_src, hh.dtype),
        _as_array(a_dst, hh.dtype),
    )


def _drop(drop: Any, args: tuple[np.ndarray, ...]) -> np.ndarray:
    """The dropout multipliers, ``(E, heads)``; ones without dropout (``x * 1`` is exact)."""
    h, a_s, idx = args[3], args[4], args[1]
    if drop is None:
        return np.ones((idx.shape[0], a_s.shape[1]), h.dtype)
    return _as_array(drop, h.dtype)


def _attention_alpha(
    args: tuple[np.ndarray, ...], slope: float, drop: np.ndarray
) -> tuple[torch.Tensor, np.ndarray]:
    ptr, idx, h, a_s = args[0], args[1], args[3], args[4]
    out = torch.empty((ptr.shape[0] - 1, h.shape[1]), dtype=torch.from_numpy(h[:0]).dtype)
    alpha = np.empty((idx.shape[0], a_s.shape[1]), h.dtype)
    step = (*args, h.dtype.type(slope), drop, out.numpy(), alpha)
    _run_rows(_attention_rows, ptr, step, h.shape[1])
    return out, alpha


def attention(
    indptr: np.ndarray,
    indices: np.ndarray,
    mask: np.ndarray,
    h: np.ndarray | torch.Tensor,
    a_src: np.ndarray | torch.Tensor,
    a_dst: np.ndarray | torch.Tensor,
    negative_slope: float,
    drop: np.ndarray | torch.Tensor | None = None,
) -> torch.Tensor:
    """GAT's aggregation over each row's edges with a non-zero ``mask``:
    ``out_i = Σ_j α_ij h_j`` per head, ``α_i· = softmax_j(leaky_relu(a_src_j + a_dst_i))``
    (PyG's ``GATConv`` between its linear map and its bias; an empty row gets 0). ``drop``
    multiplies each coefficient after the softmax (attention dropout: 0 or ``1/(1-p)``).

    Shapes: ``h`` ``(num_cols, heads·C)``, ``a_src`` ``(num_cols, heads)``, ``a_dst``
    ``(num_rows, heads)`` or longer (rows past ``num_rows`` are not read) →
    ``(num_rows, heads·C)``.
    """
    args = _attention_args(indptr, indices, mask, h, a_src, a_dst)
    out, _ = _attention_alpha(args, negative_slope, _drop(drop, args))
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
    drop: np.ndarray | torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Gradients of :func:`attention` with respect to ``h``, ``a_src`` and ``a_dst`` (each
    of its input's shape; ``a_dst`` rows past ``num_rows`` get 0). The coefficients are
    recomputed; sums over a source's edges run over the transposed index (``t_perm[t]`` is
    the CSR edge of transposed edge ``t``), in a fixed order."""
    args = _attention_args(indptr, indices, mask, h, a_src, a_dst)
    ptr, hh, a_s, a_d = args[0], args[3], args[4], args[5]
    mult = _drop(drop, args)
    _, alpha = _attention_alpha(args, negative_slope, mult)
    g = _as_array(grad, hh.dtype)
    rows = ptr.shape[0] - 1
    d_score = np.empty_like(alpha)
    d_dst = torch.zeros(a_d.shape, dtype=torch.from_numpy(hh[:0]).dtype)
    slope = hh.dtype.type(negative_slope)
    step = (*args, slope, mult, alpha, g, d_score, d_dst.numpy()[:rows])
    _run_rows(_attention_grad_rows, ptr, step, hh.shape[1])
    t_ptr = _as_array(t_indptr)
    d_h = torch.empty(hh.shape, dtype=d_dst.dtype)
    d_src = torch.empty(a_s.shape, dtype=d_dst.dtype)
    back = (t_ptr, _as_array(t_indices), _as_array(t_perm), _as_array(t_mask), alpha, mult, d_score)
    _run_rows(_attention_source_rows, t_ptr, (*back, g, d_h.numpy(), d_src.numpy()), hh.shape[1])
    return d_h, d_src, d_dst
