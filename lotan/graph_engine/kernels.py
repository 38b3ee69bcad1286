"""Aggregation kernels: ``Z = Â H`` over a partition's in-edges, and its transpose.

A partition stores its in-edges once, as a CSR over ``[own | halo]`` columns, plus a
*transposed index* of the same edges (CSR of ``Âᵀ``, built once at preparation): reading CSR
row-wise is what makes the sparse product fast in both directions (a CSC product computes
the transpose on every call — 16x slower for 16 columns on a 2M-edge partition).

Wide products run in blocks of :data:`COLUMN_BLOCK` columns: the product gathers one dense row
per edge, and a 16-float row is one cache line; with wider rows the gathered matrix stops
fitting in cache and the cost per column grows (1M edges over 100k rows, one thread: 4 ms
for 16 columns, 54 ms for 64, 128 ms for 128; in blocks of 16: 30 ms and 58 ms). Every
output element is the same sum in the same order either way.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["COLUMN_BLOCK", "Aggregate", "index_dtype", "spmm", "transpose_csr"]

#: Columns per sparse product (see the module docstring; 8 and 32 measured slower).
COLUMN_BLOCK = 16

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse invariant checks are implicitly disabled.*")


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


def _as_tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t if dtype is None or t.dtype == dtype else t.to(dtype)


def spmm(
    indptr: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    dense: torch.Tensor,
) -> torch.Tensor:
    """``A @ dense`` for the CSR ``A`` of shape ``(len(indptr) - 1, dense.shape[0])``.

    With a partition's in-edge CSR this is the forward aggregation (``dense`` holds the
    ``[own | halo]`` rows); with its transposed index, the backward one. Products wider than
    :data:`COLUMN_BLOCK` columns run block by block.
    """
    crow = _as_tensor(indptr)
    col = _as_tensor(indices, crow.dtype)
    a = torch.sparse_csr_tensor(
        crow,
        col,
        _as_tensor(weights, dense.dtype),
        size=(int(crow.shape[0]) - 1, dense.shape[0]),
        check_invariants=False,
    )
    width = dense.shape[1] if dense.dim() == 2 else 1
    if width <= COLUMN_BLOCK:
        return a @ dense
    blocks = [
        a @ dense[:, lo : lo + COLUMN_BLOCK].contiguous() for lo in range(0, width, COLUMN_BLOCK)
    ]
    return torch.cat(blocks, dim=1)


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
        return (spmm(t_indptr, t_indices, t_weights, grads[0].contiguous()), None, None, None)
