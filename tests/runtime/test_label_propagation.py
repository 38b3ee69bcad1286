"""Partitioners: label propagation keeps neighbours together, stays balanced, and computes
the same assignment on both engines."""

from __future__ import annotations

import numpy as np
import pytest
from torch_geometric.nn.models import GCN

import lotan
from lotan.engines.local import LocalEngine
from lotan.engines.spark.engine import SparkEngine
from lotan.errors import LotanError
from lotan.graph_engine.hashing import owner_of
from lotan.ir.norm import NormSpec


def _sbm(n: int) -> lotan.Graph:
    return lotan.datasets.sbm(n, num_classes=8, num_features=4, avg_degree=10, seed=3)


def _replication(stats: dict[str, int]) -> float:
    return stats["halo"] / stats["own"]


def test_label_propagation_lowers_the_halo_and_stays_balanced() -> None:
    graph = _sbm(6000)
    eng = LocalEngine()
    hashed = eng.prepare(graph, 4, (NormSpec(),), "hash").stats()
    lp = eng.prepare(graph, 4, (NormSpec(),), "label_propagation").stats()
    assert lp["own"] == hashed["own"] == 6000 and lp["edges"] == hashed["edges"]
    assert _replication(lp) < 0.8 * _replication(hashed)
    assert lp["max_own"] <= np.ceil(1.05 * 6000 / 4)  # the capacity (1 + epsilon) N / P


def test_label_propagation_is_the_same_on_both_engines(spark) -> None:
    graph = _sbm(3000)
    a = graph.arrays()
    local = LocalEngine._label_propagation(graph, 3)
    vertices, edges = graph.dataframes(spark)
    owner = SparkEngine(spark)._label_propagation(vertices, edges, 3000, 3).toPandas()
    remote = owner.set_index("id").loc[a.ids, "part"].to_numpy()
    np.testing.assert_array_equal(local, remote)
    assert (local != owner_of(a.ids, 3)).mean() > 0.2  # it moved vertices
    assert sorted(np.unique(local)) == [0, 1, 2]


def test_spark_label_propagation_brings_a_driver_graph_to_spark_once(spark, monkeypatch) -> None:
    """A graph on the driver becomes local relations in the driver JVM's heap: preparing
    it for label propagation makes them once, for the partitioner and the layouts both."""
    graph = _sbm(500)
    made = []
    real = graph.dataframes

    def counted(session):
        made.append(session)
        return real(session)

    monkeypatch.setattr(graph, "dataframes", counted)
    SparkEngine(spark).prepare(graph, 2, (NormSpec(),), "label_propagation")
    assert made == [spark]


def test_unknown_partitioner_is_a_clear_error() -> None:
    graph = _sbm(100)
    with pytest.raises(LotanError, match=r"partitioner='metis' is not one of \['hash'"):
        lotan.fit(lotan_model(), graph, engine="local", partitioner="metis", progress=False)


def lotan_model():

    return GCN(4, 4, 2, 8)
