"""GraphFrames in and out, on GraphFrame-shaped pairs of plain DataFrames (the GraphFrames
jar cannot be fetched here): columns named as users keep them, features as arrays, ML
vectors or numeric columns, and results joined back as vertex columns."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import functions as F

import lotan
from lotan.graphframes import VertexEdgeFrames, to_graphframe


def _frames(spark: Any) -> tuple[lotan.Graph, Any, Any]:
    g = lotan.datasets.sbm(120, num_classes=3, num_features=3, avg_degree=4, seed=1)
    v, e = g.dataframes(spark)
    v = v.select(
        "id",
        *(F.col("features")[i].alias(f"f{i}") for i in range(3)),
        F.col("label").alias("community"),
        F.col("split").alias("role"),
    )
    return g, v, e.select("src", "dst", F.col("weight").alias("w"))


def _same(a: lotan.Graph, b: lotan.Graph) -> None:
    x, y = a.arrays(), b.arrays()
    ox, oy = np.argsort(x.ids), np.argsort(y.ids)
    for name in ("ids", "x", "y", "split"):
        np.testing.assert_array_equal(getattr(x, name)[ox], getattr(y, name)[oy], err_msg=name)
    assert sorted(zip(x.src, x.dst, strict=True)) == sorted(zip(y.src, y.dst, strict=True))


def test_numeric_vector_and_array_features_give_the_same_graph(spark: Any) -> None:
    g, v, e = _frames(spark)
    cols = {"label": "community", "split": "role"}
    from_numeric = lotan.Graph.from_graphframe(
        VertexEdgeFrames(v, e), features=["f0", "f1", "f2"], **cols
    )
    vec = VectorAssembler(inputCols=["f0", "f1", "f2"], outputCol="vec").transform(v)
    from_vector = lotan.Graph.from_graphframe(VertexEdgeFrames(vec, e), features="vec", **cols)
    arr = v.withColumn("arr", F.array("f0", "f1", "f2"))
    from_array = lotan.Graph.from_graphframe(VertexEdgeFrames(arr, e), features="arr", **cols)
    for graph in (from_numeric, from_vector, from_array):
        assert not graph.in_memory and not graph.has_edge_weight
        _same(graph, g)
    weighted = lotan.Graph.from_graphframe(
        VertexEdgeFrames(v, e), features=["f0", "f1", "f2"], weight="w", **cols
    )
    assert weighted.has_edge_weight and weighted.min_edge_weight == 1.0


def test_bad_graphframes_say_what_to_pass(spark: Any) -> None:
    _, v, e = _frames(spark)
    pair = VertexEdgeFrames(v, e)
    with pytest.raises(lotan.GraphInputError, match="expected a GraphFrame"):
        lotan.Graph.from_graphframe((v, e))
    with pytest.raises(lotan.GraphInputError, match=r"no column\(s\) \['features'\]"):
        lotan.Graph.from_graphframe(pair, label="community", split="role")
    with pytest.raises(lotan.GraphInputError, match="no label column 'label'"):
        lotan.Graph.from_graphframe(pair, features=["f0"], split="role")
    text = v.withColumn("t", F.lit("x"))
    with pytest.raises(lotan.GraphInputError, match=r"must be numeric.*\['t'\]"):
        lotan.Graph.from_graphframe(
            VertexEdgeFrames(text, e), features=["f0", "t"], label="community", split="role"
        )


def test_predictions_come_back_as_vertex_columns(spark: Any) -> None:
    import torch
    from torch_geometric.nn.models import GCN

    g, v, e = _frames(spark)
    pair = VertexEdgeFrames(v, e)
    graph = lotan.Graph.from_graphframe(
        pair, features=["f0", "f1", "f2"], label="community", split="role"
    )
    torch.manual_seed(0)
    model = GCN(3, 8, 2, 3)
    preds = lotan.predict(model, graph, num_partitions=2, spark=spark)
    out = to_graphframe(pair, preds.select("id", "prediction"))
    assert isinstance(out, VertexEdgeFrames) and out.edges is e
    assert out.vertices.columns == [*v.columns, "prediction"]
    got = {r["id"]: r["prediction"] for r in out.vertices.collect()}
    want = {r["id"]: r["prediction"] for r in preds.collect()}
    assert got == want and len(got) == g.num_vertices
    with pytest.raises(lotan.GraphInputError, match=r"already have column\(s\) \['prediction'\]"):
        to_graphframe(out, preds.select("id", "prediction"))
    again = to_graphframe(out, preds.select("id", "prediction"), prefix="gcn_")
    assert "gcn_prediction" in again.vertices.columns
    with pytest.raises(lotan.GraphInputError, match="with an id column"):
        to_graphframe(pair, preds.select("prediction"))


def test_a_real_graphframe_end_to_end(tmp_path: Any) -> None:
    """The README example on a real GraphFrame: runs where the GraphFrames jar is at hand."""
    import os
    import subprocess
    import sys
    from pathlib import Path

    jar = os.environ.get("LOTAN_GRAPHFRAMES_JAR")
    if not jar:
        pytest.skip(
            "LOTAN_GRAPHFRAMES_JAR is unset: the GraphFrames jar comes from Maven "
            "(io.graphframes:graphframes-spark4_2.13), which this machine cannot reach"
        )
    pytest.importorskip("graphframes", reason="pip install graphframes-py")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.graphframes_job", str(tmp_path / "ckpt")],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
