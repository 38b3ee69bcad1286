"""A registry of small named graphs that exercise the corner cases of preparation.

Every case has non-dense, shuffled vertex ids (Spark does not keep row order, and ids in the
wild are not 0..N-1), labels, and a train/val/test split.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

import lotan

CASES: dict[str, Callable[[], lotan.Graph]] = {}


def case(fn: Callable[[], lotan.Graph]) -> Callable[[], lotan.Graph]:
    CASES[fn.__name__] = fn
    return fn


def _graph(
    n: int,
    src: np.ndarray,
    dst: np.ndarray,
    *,
    seed: int,
    features: int = 6,
    classes: int = 3,
    weight: np.ndarray | None = None,
    edge_attr: np.ndarray | None = None,
) -> lotan.Graph:
    rng = np.random.default_rng(seed)
    ids = (rng.permutation(n) * 37 + 1_000_003).astype(np.int64)  # sparse, shuffled
    x = rng.standard_normal((n, features)).astype(np.float32)
    y = rng.integers(0, classes, n)
    split = rng.choice(
        np.array(["train", "val", "test", None], dtype=object), n, p=[0.4, 0.2, 0.3, 0.1]
    )
    split[0] = "train"
    return lotan.Graph.from_arrays(
        x=x,
        ids=ids,
        y=y,
        split=split,
        src=ids[src],
        dst=ids[dst],
        weight=weight,
        edge_attr=edge_attr,
    )


@case
def directed_multi() -> lotan.Graph:
    """Directed random edges with duplicates, pre-existing self loops and isolated vertices."""
    rng = np.random.default_rng(1)
    n = 40
    src = rng.integers(0, 34, 160)  # vertices 34..39 have no out-edges
    dst = rng.integers(0, 34, 160)  # ... and no in-edges: isolated
    src = np.concatenate([src, [3, 3, 7, 5, 5]])  # duplicate edges, self loops (one doubled)
    dst = np.concatenate([dst, [9, 9, 7, 5, 5]])
    return _graph(n, src, dst, seed=1)


@case
def edge_features() -> lotan.Graph:
    """``directed_multi`` with 3 features per edge: duplicate edges with different features,
    self loops (replaced by GAT's added ones, whose features are the in-edge mean), isolated
    vertices and vertices without in-edges (an added loop with zero features)."""
    rng = np.random.default_rng(5)
    n = 40
    src = np.concatenate([rng.integers(0, 34, 160), [3, 3, 7, 5, 5, 36]])
    dst = np.concatenate([rng.integers(0, 34, 160), [9, 9, 7, 5, 5, 37]])
    attr = rng.standard_normal((src.shape[0], 3)).astype(np.float32)
    return _graph(n, src, dst, seed=5, edge_attr=attr)


@case
def weighted() -> lotan.Graph:
    """Positive edge weights, including a weighted self loop (PyG keeps its weight)."""
    rng = np.random.default_rng(2)
    n = 30
    src = np.concatenate([rng.integers(0, n, 90), [4]])
    dst = np.concatenate([rng.integers(0, n, 90), [4]])
    w = rng.uniform(0.1, 3.0, src.shape[0]).astype(np.float32)
    return _graph(n, src, dst, seed=2, weight=w)


@case
def star_zero_in_degree() -> lotan.Graph:
    """A directed star: the hub has zero in-degree, leaves have one in-edge each."""
    n = 12
    src = np.zeros(n - 1, dtype=np.int64)
    dst = np.arange(1, n)
    return _graph(n, src, dst, seed=3)


@case
def disconnected() -> lotan.Graph:
    """Two components (cycles in both directions) and no edges between them."""
    a = np.arange(10)
    src = np.concatenate([a, (a + 1) % 10, 10 + a, 10 + (a + 1) % 10])
    dst = np.concatenate([(a + 1) % 10, a, 10 + (a + 1) % 10, 10 + a])
    return _graph(20, src, dst, seed=4)
