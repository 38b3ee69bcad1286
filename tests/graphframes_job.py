"""The docs' GraphFrames example (docs/graphs.md) as a script (``python -m
tests.graphframes_job``): a real ``GraphFrame`` on a local session that has the GraphFrames
jar (``$LOTAN_GRAPHFRAMES_JAR``), GraphFrames algorithms as input features, ``lotan.fit``,
and the predictions back as a ``GraphFrame`` that GraphFrames algorithms run on. Exits
non-zero on any mismatch."""

from __future__ import annotations

import os
import sys

import torch
from graphframes import GraphFrame
from pyspark import StorageLevel
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from torch_geometric.nn.models import GCN

import lotan
from lotan.graphframes import to_graphframe


def main(jar: str, checkpoints: str) -> None:
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)  # the workers' Python is this one
    spark = (
        SparkSession.builder.master("local[2]")
        .config("spark.jars", jar)
        .config("spark.driver.memory", "2g")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .getOrCreate()
    )
    spark.sparkContext.setCheckpointDir(checkpoints)
    g = lotan.datasets.sbm(600, num_classes=3, num_features=4, avg_degree=6, seed=2)
    v, e = g.dataframes(spark)
    gf = GraphFrame(v.select("id", "label", "split"), e.select("src", "dst"))

    # GraphFrames algorithms as features: degrees, PageRank, label propagation's community
    pr = gf.pageRank(resetProbability=0.15, maxIter=5).vertices.select("id", "pagerank")
    bare = GraphFrame(v.select("id"), gf.edges)  # LPA writes a column named `label`
    lpa = bare.labelPropagation(maxIter=3).select("id", F.col("label").alias("community"))
    feats = (
        gf.vertices.join(gf.inDegrees, "id", "left")
        .join(gf.outDegrees, "id", "left")
        .join(pr, "id")
        .join(lpa, "id")
        .fillna(0, ["inDegree", "outDegree"])
        .withColumn("community", (F.col("community") % 7).cast("double"))
    )
    rich = GraphFrame(feats, gf.edges)
    cols = ["inDegree", "outDegree", "pagerank", "community"]
    graph = lotan.Graph.from_graphframe(rich, features=cols, label="label", split="split")
    assert graph.num_vertices == g.num_vertices and graph.num_features == len(cols)

    torch.manual_seed(0)
    result = lotan.fit(GCN(len(cols), 16, 2, 3), graph, epochs=20, lr=0.02, spark=spark,
                       engine="spark", num_partitions=2, progress=False)  # fmt: skip
    preds = lotan.predict(result.model, graph, engine="spark", num_partitions=2, spark=spark)
    out = to_graphframe(rich, preds.select("id", "prediction"), prefix="gcn_")
    assert isinstance(out, GraphFrame), type(out)
    assert out.vertices.count() == g.num_vertices
    # a GraphFrames algorithm on the result: triangles among vertices predicted alike
    same = out.filterEdges("src < dst")
    assert same.triangleCount(StorageLevel.MEMORY_AND_DISK).count() == g.num_vertices
    print("graphframes example ok:", result.history[-1].val_acc)
    spark.stop()


if __name__ == "__main__":
    main(os.environ["LOTAN_GRAPHFRAMES_JAR"], sys.argv[1])
