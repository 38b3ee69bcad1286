"""The aggregation kernel: the right product, and a summation order fixed by our own code —
checked bit for bit against a sequential float32 reference, whatever the width, the index
dtype, the thread count or the CPU."""

from __future__ import annotations

import re

import numba
import numpy as np
import pytest
import torch

from lotan.graph_engine import kernels
from lotan.graph_engine.kernels import Aggregate, spmm, transpose_csr


def _random_csr(
    n_own: int, n_full: int, nnz: int, seed: int, hub: bool = False
) -> tuple[torch.Tensor, ...]:
    rng = np.random.default_rng(seed)
    rows = rng.integers(0, n_own, nnz)
    if hub:  # a third of the edges into row 0: power-law-like skew for the thread split
        rows[: nnz // 3] = 0
    rows = np.sort(rows)
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


def _sequential(indptr: np.ndarray, cols: np.ndarray, w: np.ndarray, h: np.ndarray) -> np.ndarray:
    """The documented order, written independently: edge ``k`` of every row is added to the
    running sums of the rows that have one, one rounded product and one rounded sum at a
    time (NumPy's elementwise float32 ops are IEEE 754)."""
    deg = np.diff(indptr)
    out = np.zeros((deg.shape[0], h.shape[1]), h.dtype)
    for k in range(int(deg.max(initial=0))):
        rows = np.nonzero(deg > k)[0]
        e = indptr[rows] + k
        out[rows] = out[rows] + w[e].astype(h.dtype)[:, None] * h[cols[e]]
    return out


def test_spmm_and_transpose_match_dense() -> None:
    indptr, cols, w, dense = _random_csr(7, 11, 30, 0)
    h = torch.randn(11, 4, dtype=torch.float64)
    g = torch.randn(7, 4, dtype=torch.float64)
    torch.testing.assert_close(spmm(indptr, cols, w, h), dense @ h)
    t_indptr, t_cols, perm = transpose_csr(indptr.numpy(), cols.numpy(), 11)
    torch.testing.assert_close(spmm(t_indptr, t_cols, w[perm], g), dense.T @ g)
    torch.testing.assert_close(spmm(indptr, cols, w, h[:, 0]), dense @ h[:, 0])


@pytest.mark.parametrize("width", [1, 3, 4, 8, 16, 17, 53, 128])
@pytest.mark.parametrize("index", [np.int32, np.int64])
def test_every_column_is_the_sequential_sum_bit_for_bit(width: int, index: type) -> None:
    indptr, cols, w, dense = _random_csr(300, 400, 6000, 2, hub=True)
    ptr, idx = indptr.numpy().astype(index), cols.numpy().astype(index)
    h = torch.randn(400, width)
    out = spmm(ptr, idx, w.float(), h)
    assert out.dtype == torch.float32
    assert np.array_equal(out.numpy(), _sequential(ptr, idx, w.float().numpy(), h.numpy()))
    torch.testing.assert_close(out, dense.float() @ h, rtol=1e-4, atol=1e-4)
    # A column slice of a wider product is the product of the slice, bit for bit.
    for lo, hi in ((0, 1), (width // 2, width), (width - 1, width)):
        part = spmm(ptr, idx, w.float(), h[:, lo:hi].contiguous())
        assert torch.equal(part, out[:, lo:hi]), (lo, hi)


@pytest.mark.parametrize("threads", [1, 2, 3, 7])
def test_the_thread_count_does_not_change_a_bit(threads: int, monkeypatch) -> None:
    indptr, cols, w, _ = _random_csr(500, 500, 20000, 4, hub=True)
    h = torch.randn(500, 24)
    monkeypatch.setattr(kernels, "PARALLEL_MIN_WORK", 1)  # split even this small product
    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        one = spmm(indptr, cols, w.float(), h)
        torch.set_num_threads(threads)
        many = spmm(indptr, cols, w.float(), h)
    finally:
        torch.set_num_threads(before)
    assert torch.equal(one, many)


def test_the_compiled_kernel_has_no_fused_multiply_add() -> None:
    """The order above holds because every product is rounded before it is added: the
    compiled code must not contract ``w * h + acc`` into an FMA, nor reassociate. (Compiled
    here with the kernel's own options but no cache: Numba cannot show cached code.)"""
    options = {
        k: v for k, v in kernels._csr_rows.targetoptions.items() if k not in ("cache", "nopython")
    }
    fresh = numba.njit(**options)(kernels._csr_rows.py_func)
    indptr, cols, w, _ = _random_csr(20, 20, 60, 5)
    for dtype in (np.float32, np.float64):
        h = np.random.default_rng(0).standard_normal((20, 16)).astype(dtype)
        out = np.empty_like(h)
        fresh(indptr.numpy(), cols.numpy(), w.numpy().astype(dtype), h, out, 0, 20)
        assert np.array_equal(out, spmm(indptr, cols, w, h).numpy())
    for sig, ir in fresh.inspect_llvm().items():
        assert re.search(r"\bfmul (float|double)", ir), sig  # the products are there
        assert "llvm.fma" not in ir and "fmuladd" not in ir, sig
        assert not re.search(r"\bf(add|mul) (fast|contract|reassoc)", ir), sig
    for sig, asm in fresh.inspect_asm().items():
        assert re.search(r"\bv?mul[sp][sd]", asm), sig
        assert not re.search(r"\bv?fn?m(add|sub)\d", asm), sig


def test_empty_rows_columns_and_graphs() -> None:
    indptr = np.array([0, 0, 2, 2, 3])
    cols = np.array([1, 4, 1])
    w = np.array([0.5, -2.0, 1.5], np.float32)
    h = torch.randn(6, 5)
    out = spmm(indptr, cols, w, h)
    assert torch.equal(out[0], torch.zeros(5)) and torch.equal(out[2], torch.zeros(5))
    assert spmm(np.array([0]), np.array([], np.int64), np.array([], np.float32), h).shape == (
        0,
        5,
    )
    empty = spmm(np.array([0, 0, 0]), np.array([], np.int64), np.array([], np.float32), h)
    assert torch.equal(empty, torch.zeros(2, 5))


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


# ---------------------------------------------------------------------------- max and min
def _torch_extreme(reduce: str, rows: torch.Tensor, cols: torch.Tensor, h: torch.Tensor, n: int):
    """PyG's aggregation: ``scatter_reduce`` on zeros with ``include_self=False``."""
    out = h.new_zeros((n, h.shape[1]))
    index = rows.view(-1, 1).expand(-1, h.shape[1])
    reduce_ = "amax" if reduce == "max" else "amin"
    return out.scatter_reduce(0, index, h[cols], reduce_, include_self=False)


@pytest.mark.parametrize("reduce", ["max", "min"])
@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_segment_extreme_and_its_gradient_match_torch(reduce: str, dtype: torch.dtype) -> None:
    """With many ties (small integers, as after a ReLU), masked-out edges and empty rows."""
    indptr, cols, _, _ = _random_csr(30, 45, 200, 6)
    rng = np.random.default_rng(7)
    mask = (rng.random(200) > 0.2).astype(np.float32)
    mask[indptr[3] : indptr[4]] = 0  # row 3 has edges, none of them real
    h = torch.from_numpy(rng.integers(-2, 3, (45, 5))).to(dtype).requires_grad_(True)
    g = torch.from_numpy(rng.standard_normal((30, 5))).to(dtype)
    keep = torch.from_numpy(mask > 0)
    rows = torch.repeat_interleave(torch.arange(30), torch.diff(indptr))
    expected = _torch_extreme(reduce, rows[keep], cols[keep], h, 30)
    (expected_grad,) = torch.autograd.grad(expected, h, g)
    got = kernels.segment_extreme(reduce, indptr, cols, mask, h.detach())
    assert got.dtype == dtype and torch.equal(got, expected.detach())
    t_indptr, t_cols, perm = transpose_csr(indptr.numpy(), cols.numpy(), 45)
    grad = kernels.segment_extreme_grad(
        reduce, indptr, cols, mask, t_indptr, t_cols, mask[perm], h.detach(), g
    )
    torch.testing.assert_close(grad, expected_grad)
    assert expected_grad.abs().sum() > 0 and (expected_grad == 0).any()


def test_segment_extreme_gradient_splits_ties_evenly() -> None:
    # Row 0 reads sources 1, 1 (a duplicate edge) and 2, all equal: a third each.
    indptr, cols = np.array([0, 3]), np.array([1, 1, 2])
    mask = np.ones(3, np.float32)
    h = torch.tensor([[5.0], [1.0], [1.0]])
    t_indptr, t_cols, perm = transpose_csr(indptr, cols, 3)
    grad = kernels.segment_extreme_grad(
        "max", indptr, cols, mask, t_indptr, t_cols, mask[perm], h, torch.tensor([[3.0]])
    )
    assert grad.view(-1).tolist() == [0.0, 2.0, 1.0]


def test_an_extreme_of_zero_shares_its_gradient_with_the_starting_zero_as_pyg_does() -> None:
    indptr, cols = np.array([0, 2]), np.array([0, 1])
    mask = np.ones(2, np.float32)
    h = torch.tensor([[0.0], [0.0]])
    t_indptr, t_cols, perm = transpose_csr(indptr, cols, 2)
    grad = kernels.segment_extreme_grad(
        "max", indptr, cols, mask, t_indptr, t_cols, mask[perm], h, torch.tensor([[3.0]])
    )
    assert grad.view(-1).tolist() == [1.0, 1.0]  # 3 / (2 ties + the zero)
