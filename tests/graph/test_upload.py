"""A graph held in the driver reaches Spark in checkpointed chunks when it is large, with
every row, column and value as it was."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import GAT

from lotan.graph import upload
from lotan.graph.upload import chunk_rows, row_bytes, to_dataframes
from tests.graph_cases import CASES
from tests.reference import assert_one_epoch_matches


@pytest.mark.parametrize(
    ("rows", "row_bytes", "limit", "expected"),
    [
        (10, 8, 80, 10),  # exactly one chunk
        (10, 8, 79, 9),
        (10, 8, 16, 2),
        (10, 100, 16, 1),  # a row larger than a chunk still goes, one row at a time
        (0, 8, 16, 1),
        (3, 8, 1 << 30, 3),
    ],
)
def test_chunk_rows(rows: int, row_bytes: int, limit: int, expected: int) -> None:
    assert chunk_rows(rows, row_bytes, limit) == expected


def _explain(df) -> str:
    return df._jdf.queryExecution().executedPlan().toString()


def _rows(df, order: str) -> list[tuple]:
    return [tuple(r) for r in df.orderBy(order).collect()]


@pytest.mark.parametrize("chunk_bytes", [1 << 30, 400])
def test_chunked_tables_hold_every_row(spark, chunk_bytes: int) -> None:
    """Null labels, missing splits, weights, edge features and the edges' order survive the
    chunks; a small table is one local relation, a large one the union of checkpoints."""
    graph = CASES["edge_features"]()
    a = graph.arrays()
    vertices, edges = to_dataframes(spark, a, chunk_bytes)
    assert vertices.columns == ["id", "features", "label", "split"]
    assert edges.columns == ["src", "dst", "weight", "attr"]

    got = _rows(vertices, "id")
    order = np.argsort(a.ids)
    names = {0: None, 1: "train", 2: "val", 3: "test"}
    assert [r[0] for r in got] == a.ids[order].tolist()
    np.testing.assert_array_equal(np.array([r[1] for r in got], np.float32), a.x[order])
    assert [r[2] for r in got] == [None if y < 0 else int(y) for y in a.y[order]]
    assert [r[3] for r in got] == [names[int(c)] for c in a.split[order]]

    e = edges.collect()  # union of chunks in order, each chunk in order
    assert [r[0] for r in e] == a.src.tolist() and [r[1] for r in e] == a.dst.tolist()
    assert all(r[2] == 1.0 for r in e)
    np.testing.assert_array_equal(np.array([r[3] for r in e], np.float32), a.edge_attr)

    n = a.ids.shape[0]
    vertex_chunks = -(-n // chunk_rows(n, row_bytes(a)[0], chunk_bytes))
    plan = _explain(vertices)
    if vertex_chunks == 1:
        assert "Scan ExistingRDD" not in plan
    else:
        assert vertex_chunks > 1
        assert plan.count("Scan ExistingRDD") == vertex_chunks, plan
        assert "LocalTableScan" not in plan


def test_edge_weights_survive_the_chunks(spark) -> None:
    graph = CASES["weighted"]()
    a = graph.arrays()
    _, edges = to_dataframes(spark, a, 64)
    np.testing.assert_allclose([r[2] for r in edges.collect()], a.weight, rtol=1e-7)


def test_chunked_graph_trains_as_pyg(spark, monkeypatch) -> None:
    """GAT reading edge features, on a graph sent in chunks of ~1 KB, against PyG."""
    monkeypatch.setattr(upload, "CHUNK_BYTES", 1024)
    graph = CASES["edge_features"]()
    torch.manual_seed(0)
    model = GAT(graph.num_features, 8, 2, 3, heads=2, edge_dim=3)
    assert_one_epoch_matches(model, graph, "spark", 3, spark)
    vertices, _ = graph.dataframes(spark)
    assert _explain(vertices).count("Scan ExistingRDD") > 1
