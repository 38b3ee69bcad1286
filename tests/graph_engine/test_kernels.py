from __future__ import annotations

import numpy as np
import pytest
import torch

from lotan.graph_engine.kernels import COLUMN_BLOCK, Aggregate, spmm, transpose_csr


def _random_csr(n_own: int, n_full: int, nnz: int, seed: int) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    rows = np.sort(rng.integers(0, n_own, nnz))
    cols = rng.integers(0, n_full, nnz)
    indptr = np.zeros(n_own + 1, dtype=np.int64)
    np.cumsum(np.bincount(rows, minlength=n_own), out=indptr[1:])
    w = rng.standard_normal(nnz)
    dense = np.zeros((n_own, n_full))
    np.add.at(dense, (rows, cols), w)
    return (
        torch.from_numpy(indptr),
        torch.from_numpy(cols),
        torch.from_numpy(w),
        torch.from_numpy(dense),
    )


def test_spmm_and_transpose_match_dense() -> None:
    indptr, cols, w, dense = _random_csr(7, 11, 30, 0)
    h = torch.randn(11, 4, dtype=torch.float64)
    g = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(spmm(indptr, cols, w, h), dense @ h)
    t_indptr, t_cols, perm = transpose_csr(indptr.numpy(), cols.numpy(), 11)
    torch.testing.assert_close(spmm(t_indptr, t_cols, w[perm], g), dense.T @ g)


@pytest.mark.parametrize("width", [1, COLUMN_BLOCK, COLUMN_BLOCK + 1, 3 * COLUMN_BLOCK + 5])
def test_wide_products_run_in_blocks_with_the_same_sums(width: int) -> None:
    indptr, cols, w, dense = _random_csr(50, 80, 600, 2)
    h = torch.randn(80, width)
    out = spmm(indptr, cols, w.float(), h)
    whole = torch.sparse_csr_tensor(indptr, cols, w.float(), size=(50, 80)) @ h
    assert torch.equal(out, whole)  # bit for bit: each output element is the same sum
    torch.testing.assert_close(out, dense.float() @ h, rtol=1e-5, atol=1e-5)
    # A column slice of a wider batch gives what the slice alone gives.
    assert torch.equal(spmm(indptr, cols, w.float(), h[:, :1].contiguous()), out[:, :1])


def test_aggregate_gradcheck() -> None:
    indptr, cols, w, _ = _random_csr(6, 9, 25, 1)
    h = torch.randn(9, 3, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: Aggregate.apply(x, indptr, cols, w), (h,))


def test_aggregate_gradcheck_with_empty_rows() -> None:
    # Rows without in-edges (zero in-degree) and columns nobody reads.
    indptr = torch.tensor([0, 0, 2, 2, 3])
    cols = torch.tensor([1, 4, 1])
    w = torch.tensor([0.5, -2.0, 1.5], dtype=torch.float64)
    h = torch.randn(6, 2, dtype=torch.float64, requires_grad=True)
    assert torch.autograd.gradcheck(lambda x: Aggregate.apply(x, indptr, cols, w), (h,))
