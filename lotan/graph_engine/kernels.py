"""Aggregation kernels: ``Z = Â H`` over a partition's in-edges, and its transpose.

Both use one copy of the edges: the partition's in-edge CSR read as CSR gives ``Â`` (own rows
by ``[own | halo]`` rows), read as CSC of the transposed shape it gives ``Âᵀ``.
"""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch

__all__ = ["Aggregate", "spmm", "spmm_t"]

warnings.filterwarnings("ignore", message=".*Sparse CSR tensor support is in beta.*")
warnings.filterwarnings("ignore", message=".*Sparse CSC tensor support is in beta.*")


def _as_tensor(a: np.ndarray | torch.Tensor, dtype: torch.dtype | None = None) -> torch.Tensor:
    t = a if isinstance(a, torch.Tensor) else torch.from_numpy(np.asarray(a))
    return t if dtype is None else t.to(dtype)


def spmm(
    indptr: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    full: torch.Tensor,
) -> torch.Tensor:
    """``Â @ full``: ``full`` is ``(n_own + n_halo, d)``, the result ``(n_own, d)``."""
    n_own = int(indptr.shape[0]) - 1
    a = torch.sparse_csr_tensor(
        _as_tensor(indptr, torch.int64),
        _as_tensor(indices, torch.int64),
        _as_tensor(weights, full.dtype),
        size=(n_own, full.shape[0]),
        check_invariants=False,
    )
    return a @ full


def spmm_t(
    indptr: np.ndarray | torch.Tensor,
    indices: np.ndarray | torch.Tensor,
    weights: np.ndarray | torch.Tensor,
    grad: torch.Tensor,
    num_full: int,
) -> torch.Tensor:
    """``Âᵀ @ grad``: ``grad`` is ``(n_own, d)``, the result ``(num_full, d)``."""
    n_own = int(indptr.shape[0]) - 1
    at = torch.sparse_csc_tensor(
        _as_tensor(indptr, torch.int64),
        _as_tensor(indices, torch.int64),
        _as_tensor(weights, grad.dtype),
        size=(num_full, n_own),
        check_invariants=False,
    )
    return at @ grad


class Aggregate(torch.autograd.Function):
    """``Z = Â H`` with ``∂L/∂H = Âᵀ ∂L/∂Z``, the pair the engines run as two stages.

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
        ctx.save_for_backward(indptr, indices, weights)
        ctx.num_full = full.shape[0]
        return spmm(indptr, indices, weights, full)

    @staticmethod
    def backward(ctx: Any, *grads: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        indptr, indices, weights = ctx.saved_tensors
        return (
            spmm_t(indptr, indices, weights, grads[0].contiguous(), ctx.num_full),
            None,
            None,
            None,
        )
