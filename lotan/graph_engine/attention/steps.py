"""The steps both attention layers share: the softmax of a row's scores, the
coefficient-weighted sum of the source rows and the softmax's backward (numba kernels over
one destination row), and the block-by-block walk over a partition's CSR with its per-edge
arrays (dropout multipliers, edge scores, edge gradients)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numba
import numpy as np
import torch

from lotan.graph_engine.kernels import as_array, edge_rows


# ---------------------------------------------------------------------------- shared steps
@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def softmax(
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
def weighted_sum(
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
def softmax_grad(
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


# ---------------------------------------------------------------------------- wrappers
#: Destination rows ``[lo, hi)`` processed together (see
#: :func:`~lotan.graph_engine.kernels.row_blocks`).
Block = tuple[int, int]
#: A per-edge array, or a function of a block's CSR edge range ``(e0, e1)`` giving its rows.
EdgeArray = np.ndarray | torch.Tensor | Callable[[int, int], Any] | None


def edge_slice(a: EdgeArray, e0: int, e1: int, dtype: Any) -> np.ndarray | None:
    return None if a is None else edge_rows(a, e0, e1, dtype)


class Blocks:
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


def drop_multipliers(drop: EdgeArray, e0: int, e1: int, heads: int, dtype: Any) -> np.ndarray:
    """The dropout multipliers of edges ``e0..e1``, ``(e1 - e0, heads)``; ones without
    dropout (``x * 1`` is exact)."""
    got = edge_slice(drop, e0, e1, dtype)
    return np.ones((e1 - e0, heads), dtype) if got is None else got


def edge_values(edge: EdgeArray, e0: int, e1: int, dtype: Any) -> tuple[np.ndarray, bool]:
    got = edge_slice(edge, e0, e1, dtype)
    return (np.zeros((0, 0), dtype), False) if got is None else (got, True)


def new_tensor(shape: tuple[int, ...], dtype: Any, zero: bool = False) -> torch.Tensor:
    t = torch.from_numpy(np.empty(0, dtype)).dtype
    return torch.zeros(shape, dtype=t) if zero else torch.empty(shape, dtype=t)


class EdgeGrads:
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
