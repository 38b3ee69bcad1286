"""Spark ML: ``GNNEstimator`` in a ``Pipeline`` (after a ``VectorAssembler``) trains what
``lotan.fit`` trains and its model's ``transform`` adds what ``lotan.predict`` computes."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from pyspark.ml import Pipeline
from pyspark.ml.evaluation import MulticlassClassificationEvaluator
from pyspark.ml.feature import VectorAssembler
from pyspark.sql import functions as F
from torch_geometric.nn.models import GCN

import lotan

F_IN, CLASSES = 6, 3


@pytest.fixture(scope="module")
def frames(spark: Any) -> tuple[Any, Any, lotan.Graph]:
    graph = lotan.datasets.sbm(500, num_classes=CLASSES, num_features=F_IN, avg_degree=6, seed=3)
    vertices, edges = graph.dataframes(spark)
    # raw feature columns, as a table would have them before a VectorAssembler
    raw = vertices.select(
        "id", "label", "split", *[F.col("features")[i].alias(f"f{i}") for i in range(F_IN)]
    )
    return raw, edges.select("src", "dst"), graph


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(F_IN, 8, 2, CLASSES, dropout=0.5)


def test_estimator_in_a_pipeline(spark: Any, frames: tuple[Any, Any, lotan.Graph]) -> None:
    raw, edges, graph = frames
    est = lotan.GNNEstimator(model=_model(), edges=edges, epochs=15, lr=0.05, num_partitions=2)
    assembler = VectorAssembler(inputCols=[f"f{i}" for i in range(F_IN)], outputCol="features")
    fitted = Pipeline(stages=[assembler, est]).fit(raw)
    out = fitted.transform(raw)
    assert {"prediction", "probability"} <= set(out.columns) and out.count() == 500

    # the same training through the Python API
    expected = lotan.fit(
        _model(), graph, epochs=15, lr=0.05, engine="spark", num_partitions=2, spark=spark,
        progress=False,
    )  # fmt: skip
    gnn = fitted.stages[-1]
    for (name, p), q in zip(gnn.model.named_parameters(), expected.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
    want = (
        lotan.predict(expected.model, graph, engine="spark", spark=spark)
        .toPandas()
        .sort_values("id")
    )
    got = out.select("id", "prediction", "probability").toPandas().sort_values("id")
    assert (got["prediction"].to_numpy() == want["prediction"].to_numpy()).all()
    probs = np.stack([v.toArray() for v in got["probability"]])
    np.testing.assert_allclose(probs, np.stack(want["probability"]), rtol=1e-4, atol=1e-6)

    acc = MulticlassClassificationEvaluator(metricName="accuracy").evaluate(
        out.filter("split = 'test'")
    )
    assert abs(acc - expected.final.test_acc) < 1e-9
    assert est.model is not gnn.model  # the estimator's model is not trained in place


def test_embeddings_and_graph_input(spark: Any, frames: tuple[Any, Any, lotan.Graph]) -> None:
    graph = frames[2]
    est = lotan.GNNEstimator(
        model=_model(), epochs=3, output="embedding", num_partitions=2, placement="split"
    )
    fitted = est.fit(graph)
    assert fitted.placement.split and fitted.result.devices["dense_pieces"] > 0
    vertices, _ = graph.dataframes(spark)
    out = fitted.transform(vertices.select("id"))
    row = out.orderBy("id").first()
    assert out.columns == ["id", "embedding"] and len(row["embedding"]) == CLASSES


def test_bad_estimator_settings(frames: tuple[Any, Any, lotan.Graph]) -> None:
    raw, edges, _ = frames
    with pytest.raises(lotan.LotanError, match=r"needs model=a torch\.nn\.Module"):
        lotan.GNNEstimator(edges=edges)
    with pytest.raises(lotan.LotanError, match="lr must be > 0"):
        lotan.GNNEstimator(model=_model(), lr=-1.0)
    with pytest.raises(lotan.LotanError, match="placement='gpu' is not one of"):
        lotan.GNNEstimator(model=_model(), placement="gpu")
    with pytest.raises(lotan.LotanError, match="output='logits' is not one of"):
        lotan.GNNEstimator(model=_model(), output="logits")
    with pytest.raises(lotan.GraphInputError, match="needs the graph's edges"):
        lotan.GNNEstimator(model=_model()).fit(raw)
    with pytest.raises(lotan.GraphInputError, match=r"no column\(s\) \['features'\]"):
        lotan.GNNEstimator(model=_model(), edges=edges).fit(raw)
