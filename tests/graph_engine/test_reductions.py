"""Reductions across partitions: partial column statistics, their combination in partition
order, and the affine gradient they give back."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lotan.graph_engine.reductions import (
    affine_partial,
    combine_moments,
    partial_moments,
    sum_partials,
)


def _split(x: np.ndarray, sizes: list[int]) -> dict[int, dict[str, np.ndarray]]:
    bounds = np.cumsum([0, *sizes])
    return {p: partial_moments(x[bounds[p] : bounds[p + 1]]) for p in range(len(sizes))}


@pytest.mark.parametrize("sizes", [[50], [20, 0, 30], [1, 1, 48], [0, 50, 0]])
def test_combined_statistics_are_those_of_all_rows(sizes: list[int]) -> None:
    rng = np.random.default_rng(0)
    x = (rng.standard_normal((50, 7)) * 3 + 100).astype(np.float32)  # large mean
    n, mean, m2 = combine_moments(_split(x, sizes))
    ref = x.astype(np.float64)
    assert n == 50
    np.testing.assert_allclose(mean, ref.mean(0), rtol=1e-13)
    np.testing.assert_allclose(m2 / n, ref.var(0), rtol=1e-10)


def test_the_same_bits_whatever_order_partials_arrive_in_and_per_column() -> None:
    """Every partition combines in partition order; a column's bits do not depend on the
    columns next to it (the sums are sequential per column)."""
    rng = np.random.default_rng(1)
    x = rng.standard_normal((300, 9)).astype(np.float32)
    parts = _split(x, [100, 120, 80])
    shuffled = {p: parts[p] for p in (2, 0, 1)}
    a, b = combine_moments(parts), combine_moments(shuffled)
    assert a[0] == b[0] and np.array_equal(a[1], b[1]) and np.array_equal(a[2], b[2])
    narrow = combine_moments(_split(np.ascontiguousarray(x[:, 3:5]), [100, 120, 80]))
    assert np.array_equal(narrow[1], a[1][3:5]) and np.array_equal(narrow[2], a[2][3:5])


def test_no_vertex_at_all_is_an_error() -> None:
    with pytest.raises(ValueError, match="over no vertex"):
        combine_moments({0: partial_moments(np.zeros((0, 3), np.float32))})


def test_the_affine_gradient_is_the_gradient_of_mean_and_variance() -> None:
    """``Σ_p (a_p + b_p x)`` equals autograd's gradient of ``<dmean, mean> + <dvar, var>``
    (biased variance) over all rows, with each partition's share of ``dmean, dvar``."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((40, 5))
    shares = {p: (rng.standard_normal(5), rng.standard_normal(5)) for p in range(3)}
    xt = torch.tensor(x, requires_grad=True)
    dmean = sum(torch.tensor(s[0]) for s in shares.values())
    dvar = sum(torch.tensor(s[1]) for s in shares.values())
    (xt.mean(0) @ dmean + xt.var(0, unbiased=False) @ dvar).backward()
    mean = x.mean(0)
    a, b = sum_partials({p: affine_partial(dm, dv, mean, 40) for p, (dm, dv) in shares.items()})
    np.testing.assert_allclose(a + b * x, xt.grad.numpy(), rtol=1e-5, atol=1e-6)
