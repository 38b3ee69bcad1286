"""Reductions across partitions: column statistics of a vertex value over the whole graph.

A normalization whose statistics span every vertex (BatchNorm, PyG's ``LayerNorm(mode=
"graph")``, ``PairNorm``) needs, per column, the mean and the (biased) variance over all
vertices. Each partition computes a **partial** of its own rows — count ``n``, mean and
``M2 = Σ (x - mean)²`` — and every partition combines all partials **in partition order**
(Chan et al.'s pairwise update), so each gets the same bits, whatever order Spark delivers
them in and on every CPU: the sums are our own sequential float64 loops (Numba, no
fast-math), not a library reduction's.

Backward, a statistic's gradient is a sum over partitions too: with ``∂mean``, ``∂var`` the
gradients of the loss w.r.t. the column statistics (each partition's dense backward gives
its share), ``∂x_i += a + b · x_i`` with ``b = 2 ∂var / N`` and ``a = ∂mean / N - b · mean``
— an affine term per column whose coefficients are summed over partitions
(:func:`affine_partial`, :func:`sum_partials`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numba
import numpy as np

__all__ = ["affine_partial", "combine_moments", "partial_moments", "sum_partials"]


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _column_moments(x: np.ndarray, mean: np.ndarray, m2: np.ndarray) -> None:
    n, c = x.shape
    for i in range(n):
        for j in range(c):
            mean[j] += np.float64(x[i, j])
    if n > 0:
        for j in range(c):
            mean[j] /= n
    for i in range(n):
        for j in range(c):
            d = np.float64(x[i, j]) - mean[j]
            m2[j] += d * d


def partial_moments(x: np.ndarray) -> dict[str, np.ndarray]:
    """This partition's partial of the ``(n, C)`` value ``x``: ``n`` (shape ``(1,)``), the
    column ``mean`` and ``m2`` (float64, two passes in row order)."""
    x = np.ascontiguousarray(x, dtype=np.float32)
    c = x.shape[1]
    mean = np.zeros(c, dtype=np.float64)
    m2 = np.zeros(c, dtype=np.float64)
    _column_moments(x, mean, m2)
    return {"n": np.array([x.shape[0]], dtype=np.float64), "mean": mean, "m2": m2}


def combine_moments(
    partials: Mapping[int, Mapping[str, np.ndarray]],
) -> tuple[int, np.ndarray, np.ndarray]:
    """``(N, mean, M2)`` over all vertices from ``{partition: partial}``, combined in
    ascending partition order (partitions without vertices add nothing)."""
    n = 0.0
    mean: np.ndarray | None = None
    m2: np.ndarray | None = None
    for p in sorted(partials):
        part = partials[p]
        nb = float(part["n"][0])
        if nb == 0:
            continue
        if mean is None or m2 is None:
            n, mean, m2 = nb, np.array(part["mean"], copy=True), np.array(part["m2"], copy=True)
            continue
        total = n + nb
        delta = part["mean"] - mean
        mean = mean + delta * (nb / total)
        m2 = m2 + part["m2"] + delta * delta * (n * nb / total)
        n = total
    if mean is None or m2 is None:
        raise ValueError("column statistics over no vertex")
    return int(n), mean, m2


def affine_partial(
    dmean: np.ndarray, dvar: np.ndarray, mean: np.ndarray, n: int
) -> dict[str, np.ndarray]:
    """This partition's share of the affine gradient ``a + b · x`` of the statistics' input,
    from its share of ``∂mean`` and ``∂var`` (the biased variance)."""
    b = 2.0 * np.asarray(dvar, dtype=np.float64) / n
    a = np.asarray(dmean, dtype=np.float64) / n - b * np.asarray(mean, dtype=np.float64)
    return {"a": a, "b": b}


def sum_partials(
    partials: Mapping[int, Mapping[str, np.ndarray]],
) -> tuple[np.ndarray, np.ndarray]:
    """``(a, b)`` summed over partitions in ascending order, as float32."""
    a: np.ndarray | None = None
    b: np.ndarray | None = None
    for p in sorted(partials):
        pa, pb = partials[p]["a"], partials[p]["b"]
        a = np.array(pa, copy=True) if a is None else a + pa
        b = np.array(pb, copy=True) if b is None else b + pb
    assert a is not None and b is not None
    return a.astype(np.float32), b.astype(np.float32)
