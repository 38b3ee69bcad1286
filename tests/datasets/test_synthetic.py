from __future__ import annotations

import numpy as np

import lotan


def test_spark_generator_builds_the_same_graph(spark) -> None:
    kw = dict(num_classes=4, num_features=5, avg_degree=4, seed=3, chunk_size=300)  # 4 chunks
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
