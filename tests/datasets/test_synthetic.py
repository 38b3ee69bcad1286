from __future__ import annotations

from typing import Any

import numpy as np
import pytest

import lotan
from lotan.errors import GraphInputError

POWER_LAW: dict[str, Any] = {
    "degrees": "power_law",
    "degree_exponent": 2.5,
    "max_degree": 200,
    "undirected": True,
}


@pytest.mark.parametrize("degrees", [{}, POWER_LAW], ids=["poisson", "power_law"])
def test_spark_generator_builds_the_same_graph(spark, degrees: dict[str, Any]) -> None:
    kw = dict(num_classes=4, num_features=5, avg_degree=4, seed=3, chunk_size=300, **degrees)
    local = lotan.datasets.sbm(1000, **kw)
    remote = lotan.datasets.sbm(1000, spark=spark, **kw)
    a, b = local.arrays(), remote.arrays()
    order = np.argsort(b.ids)
    np.testing.assert_array_equal(b.ids[order], a.ids)
    np.testing.assert_array_equal(b.x[order], a.x)
    np.testing.assert_array_equal(b.y[order], a.y)
    np.testing.assert_array_equal(b.split[order], a.split)
    assert sorted(zip(b.src, b.dst, strict=True)) == sorted(zip(a.src, a.dst, strict=True))
    assert remote.num_edges == local.num_edges


def test_sbm_is_homophilous_and_learnable() -> None:
    g = lotan.datasets.sbm(2000, num_classes=4, num_features=8, homophily=0.9, seed=0)
    a = g.arrays()
    same = (a.y[a.src] == a.y[a.dst]).mean()
    assert same > 0.85
    assert 0.15 < (a.split == 1).mean() < 0.25


def test_power_law_degrees_have_the_stated_mean_and_a_heavy_tail() -> None:
    n, avg = 20_000, 20.0
    g = lotan.datasets.sbm(n, num_classes=5, num_features=4, avg_degree=avg, seed=1, **POWER_LAW)
    a = g.arrays()
    deg = np.bincount(a.dst, minlength=n)
    assert abs(deg.mean() - avg) < 0.05 * avg  # undirected: mean number of neighbours
    assert np.median(deg) < 0.75 * avg  # most vertices below the mean ...
    assert deg.max() > 5 * avg  # ... a few hubs far above it
    assert deg.max() < 2 * POWER_LAW["max_degree"]  # the truncation holds
    poisson = np.bincount(
        lotan.datasets.sbm(n, num_features=4, avg_degree=avg, seed=1).arrays().src
    )
    assert deg.max() > 3 * poisson.max()
    # Undirected: every edge both ways, no self loops; the homophily still holds.
    assert np.array_equal(np.sort(a.src * n + a.dst), np.sort(a.dst * n + a.src))
    assert not (a.src == a.dst).any()
    assert (a.y[a.src] == a.y[a.dst]).mean() > 0.75


def test_undirected_poisson_graph_is_symmetric_with_the_stated_mean() -> None:
    n = 5_000
    g = lotan.datasets.sbm(n, num_features=4, avg_degree=10, undirected=True, seed=2)
    a = g.arrays()
    assert np.array_equal(np.sort(a.src * n + a.dst), np.sort(a.dst * n + a.src))
    assert abs(a.src.shape[0] / n - 10) < 0.5


@pytest.mark.parametrize(
    ("kw", "match"),
    [
        ({"degrees": "zipf"}, "degrees must be 'poisson' or 'power_law'"),
        ({"degrees": "power_law", "degree_exponent": 1.0}, "degree_exponent > 1"),
        ({"degrees": "power_law", "max_degree": 5}, "avg_degree < max_degree"),
    ],
)
def test_bad_degree_model_is_rejected(kw: dict[str, Any], match: str) -> None:
    with pytest.raises(GraphInputError, match=match):
        lotan.datasets.sbm(100, avg_degree=10, **kw)
