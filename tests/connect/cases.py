"""The runs the Spark Connect tests compare: :func:`run_all` trains, predicts and explains on
whatever session it is given. The tests run it on the classic ``local[2]`` session in the test
process and, through ``python -m tests.connect.cases URL OUT``, on a Spark Connect session in
a process of its own (a Connect client switches PySpark's module-level functions into Connect
mode for the whole process, which the classic tests that follow must not inherit)."""

from __future__ import annotations

import sys
from typing import Any

import numpy as np
import torch
from torch_geometric.nn.models import GCN, GraphSAGE

import lotan
from lotan.graph import upload

F_IN, CLASSES = 6, 3


def graph() -> lotan.Graph:
    return lotan.datasets.sbm(400, num_classes=CLASSES, num_features=F_IN, avg_degree=6, seed=3)


def _gcn() -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(F_IN, 8, 2, CLASSES, dropout=0.5)


def _sage() -> torch.nn.Module:
    torch.manual_seed(1)
    return GraphSAGE(F_IN, 8, 2, CLASSES, dropout=0.5)


def _history(result: Any) -> list[tuple[float, float, float, float]]:
    return [(r.loss, r.train_acc, r.val_acc, r.test_acc) for r in result.history]


def _predictions(frame: Any) -> dict[str, np.ndarray]:
    pdf = frame.toPandas().sort_values("id")
    return {
        "id": pdf["id"].to_numpy(),
        "prediction": pdf["prediction"].to_numpy(),
        "probability": np.stack([np.asarray(p, dtype=np.float32) for p in pdf["probability"]]),
    }


def run_all(spark: Any) -> dict[str, Any]:
    """fit (hash and label propagation partitioning; the graph sent whole and in chunks),
    fit_many, predict, explain and GNNEstimator in a Pipeline, all on ``spark``."""
    from pyspark.ml import Pipeline
    from pyspark.ml.feature import VectorAssembler
    from pyspark.sql import functions as F

    g = graph()
    out: dict[str, Any] = {}
    common = {"engine": "spark", "spark": spark, "progress": False, "seed": 7}
    fit = lotan.fit(_gcn(), g, epochs=4, num_partitions=2, lr=0.05, **common)
    out["fit"] = (_history(fit), fit.model.state_dict())
    # The same fit with the graph sent in chunks of 8 KB (tests/graph/test_upload.py): on Connect
    # each chunk is a local relation the client sends, checkpointed through a temporary view.
    chunk_bytes, upload.CHUNK_BYTES = upload.CHUNK_BYTES, 8192
    try:
        chunked = lotan.fit(_gcn(), g, epochs=4, num_partitions=2, lr=0.05, **common)
    finally:
        upload.CHUNK_BYTES = chunk_bytes
    out["fit_chunked"] = (_history(chunked), chunked.model.state_dict())
    lp = lotan.fit(
        _sage(), g, epochs=3, num_partitions=3, partitioner="label_propagation", lr=0.05, **common
    )
    out["fit_lp"] = (_history(lp), lp.model.state_dict())
    many = lotan.fit_many(
        [_gcn(), _sage()],
        g,
        optimizers=[{"lr": 0.05}, {"lr": 0.01}],
        pairing="zip",
        epochs=3,
        num_partitions=2,
        **common,
    )
    out["fit_many"] = [(_history(r), r.model.state_dict()) for r in many]
    preds = lotan.predict(fit.model, g, engine="spark", num_partitions=2, spark=spark)
    out["predict"] = _predictions(preds)
    out["explain"] = lotan.explain(
        _gcn(), g, engine="spark", num_partitions=2, spark=spark, print_=False
    )

    vertices, edges = g.dataframes(spark)
    raw = vertices.select(
        "id", "label", "split", *[F.col("features")[i].alias(f"f{i}") for i in range(F_IN)]
    )
    assembler = VectorAssembler(inputCols=[f"f{i}" for i in range(F_IN)], outputCol="features")
    est = lotan.GNNEstimator(
        model=_gcn(), edges=edges.select("src", "dst"), epochs=4, lr=0.05, num_partitions=2
    )
    fitted = Pipeline(stages=[assembler, est]).fit(raw)
    gnn = fitted.stages[-1]
    out["estimator"] = (_history(gnn.result), gnn.model.state_dict())
    out["estimator_transform"] = _predictions(
        fitted.transform(raw).select("id", "prediction", "probability")
    )
    return out


def main(url: str, path: str) -> None:
    from pyspark.sql import SparkSession

    spark = SparkSession.builder.remote(url).getOrCreate()
    try:
        result = run_all(spark)
        result["connect"] = type(spark).__module__
        torch.save(result, path)
    finally:
        spark.stop()


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
