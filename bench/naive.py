"""The naive in-Spark GCN: the baseline of the Lotan paper's ladder (its 76× claim).

A GCN built the way one builds it inside a graph system: every aggregation of every layer,
forward and backward, is one Spark job over the edges — the edge table joined with a vertex
table of one column per feature, then a ``groupBy`` sum — which is what GraphFrames'
``aggregateMessages`` compiles to (:class:`SqlAggregator`), or ``aggregateMessages`` itself
when GraphFrames and its jar are there (:class:`GraphFramesAggregator`). Dense work (the
linear layers, ReLU, dropout, the loss, Adam) runs in torch on the driver; the graph's
normalization ``D^-1/2 (A + I) D^-1/2`` is computed once, in Spark, as PyG's ``gcn_norm``
does (one self loop per vertex, other duplicate edges counted, degrees at the target).

The model is PyG's own ``GCN``: :func:`naive_forward` uses its parameters and modules layer
by layer, aggregating where ``GCNConv.propagate`` would, so the same weights give the same
loss and gradients (``tests/bench/test_naive.py`` checks it against PyG). Nothing here is
tuned — no reordering, no cached ``ÂX``, no pruning: the planner's rules are exactly what
it lacks.
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np
import pyarrow as pa
import torch

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "GRAPHFRAMES_JAR_ENV",
    "GRAPHFRAMES_MISSING",
    "GraphFramesAggregator",
    "SqlAggregator",
    "graphframes_missing",
    "naive_forward",
]


class Aggregator(Protocol):
    def __call__(self, h: torch.Tensor, reverse: bool) -> torch.Tensor:
        """``Σ_e w_e · h[src_e]`` at each ``dst`` (``reverse``: at each ``src`` of
        ``h[dst_e]``, the transpose — the backward pass)."""
        ...


class SqlAggregator:
    """Weighted sums over the edges as Spark SQL: ``edges ⋈ vertices`` on the sending end,
    ``groupBy`` the receiving end, ``sum(w · f_i)`` for every feature column ``f_i``."""

    def __init__(self, spark: SparkSession, src: np.ndarray, dst: np.ndarray, n: int) -> None:
        self.spark = spark
        self.n = n
        self.edges = gcn_edges(spark, src, dst, n)

    def vertices(self, h: torch.Tensor) -> DataFrame:
        """``h`` as a vertex table ``id, f0 … f{k-1}`` (float32 columns)."""
        values = h.detach().to(torch.float32).numpy()
        columns = {"id": pa.array(np.arange(self.n, dtype=np.int64))}
        columns.update({f"f{i}": pa.array(values[:, i]) for i in range(values.shape[1])})
        return self.spark.createDataFrame(pa.table(columns))

    def __call__(self, h: torch.Tensor, reverse: bool) -> torch.Tensor:
        from pyspark.sql import functions as F

        send, receive = ("dst", "src") if reverse else ("src", "dst")
        v = self.vertices(h)
        joined = self.edges.join(v, self.edges[send] == v["id"])
        sums = [F.sum(F.col("w") * F.col(f"f{i}")).alias(f"f{i}") for i in range(h.shape[1])]
        out = joined.groupBy(F.col(receive).alias("id")).agg(*sums)
        return _dense(out.toArrow(), self.n, h.shape[1])


class GraphFramesAggregator(SqlAggregator):
    """The same sums through ``GraphFrame.aggregateMessages``: a struct message of every
    feature times the edge weight, one ``sum`` per feature."""

    def __call__(self, h: torch.Tensor, reverse: bool) -> torch.Tensor:
        from graphframes import GraphFrame
        from graphframes.lib import AggregateMessages as AM
        from pyspark.sql import functions as F

        k = h.shape[1]
        sender = AM.dst if reverse else AM.src
        message = F.struct(*[(sender[f"f{i}"] * AM.edge["w"]).alias(f"f{i}") for i in range(k)])
        g = GraphFrame(self.vertices(h), self.edges)
        sums = [F.sum(AM.msg[f"f{i}"]).alias(f"f{i}") for i in range(k)]
        if reverse:
            out = g.aggregateMessages(sums, sendToSrc=[message])
        else:
            out = g.aggregateMessages(sums, sendToDst=[message])
        try:
            # GraphFrames 0.11 repeats the first aggregate's column (id, f0, f0, f1, ...):
            # the sums are the last k columns, in order.
            width = len(out.columns)
            named = out.toDF("id", *[f"c{j}" for j in range(1, width)])
            sums = [F.col(f"c{j}").alias(f"f{i}") for i, j in enumerate(range(width - k, width))]
            return _dense(named.select("id", *sums).toArrow(), self.n, k)
        finally:
            out.unpersist()  # aggregateMessages returns a persisted DataFrame


#: The GraphFrames jar the naive GraphFrames baseline's session loads (``spark.jars``), as the
#: tests find it: a path (users get the jar from Maven, ``--packages``).
GRAPHFRAMES_JAR_ENV = "LOTAN_GRAPHFRAMES_JAR"
#: How a ``naive-graphframes`` worker starts its exit message when GraphFrames is missing.
GRAPHFRAMES_MISSING = "cannot run GraphFrames:"


def graphframes_missing(spark: SparkSession) -> str | None:
    """None when GraphFrames can run on ``spark``, else why not."""
    try:
        from graphframes import GraphFrame
    except ImportError:
        return "graphframes-py is not installed (pip install graphframes-py)"
    one = spark.range(1)
    try:  # building one reaches the jar's Python API at once
        GraphFrame(one, one.select(one["id"].alias("src"), one["id"].alias("dst")))
    except Exception as exc:  # py4j's "JavaPackage is not callable" and the like
        return (
            "the GraphFrames jar is not on the classpath (spark.jars / --packages "
            f"io.graphframes:graphframes-spark4_2.13): {type(exc).__name__}: {exc}"
        )
    return None


def gcn_edges(spark: SparkSession, src: np.ndarray, dst: np.ndarray, n: int) -> DataFrame:
    """The edges of ``D^-1/2 (A + I) D^-1/2`` as ``src, dst, w``, as PyG's ``gcn_norm``
    builds them (``add_remaining_self_loops``: exactly one self loop per vertex, however
    many the input had; other duplicates kept; degree = in-degree), computed in Spark and
    cached."""
    from pyspark.sql import functions as F

    edges = spark.createDataFrame(
        pa.table({"src": pa.array(src, pa.int64()), "dst": pa.array(dst, pa.int64())})
    )
    loops = spark.range(n).select(F.col("id").alias("src"), F.col("id").alias("dst"))
    full = edges.where(F.col("src") != F.col("dst")).unionByName(loops)
    dinv = full.groupBy("dst").agg(F.pow(F.count(F.lit(1)).cast("double"), -0.5).alias("d"))
    weighted = (
        full.join(dinv.withColumnRenamed("dst", "src").withColumnRenamed("d", "ds"), "src")
        .join(dinv.withColumnRenamed("d", "dd"), "dst")
        .select("src", "dst", (F.col("ds") * F.col("dd")).alias("w"))
    )
    weighted = weighted.cache()
    weighted.count()
    return weighted


def _dense(table: pa.Table, n: int, k: int) -> torch.Tensor:
    """Rows ``id, f0 … f{k-1}`` as an ``n × k`` float32 tensor (vertices no edge reaches
    are zero)."""
    out = np.zeros((n, k), np.float32)
    ids = table.column("id").to_numpy()
    for i in range(k):
        out[ids, i] = table.column(f"f{i}").to_numpy()
    return torch.from_numpy(out)


class _Aggregate(torch.autograd.Function):
    """``Â h`` forward, ``Âᵀ g`` backward, both in Spark."""

    @staticmethod
    def forward(ctx: Any, h: torch.Tensor, agg: Aggregator) -> torch.Tensor:
        ctx.agg = agg
        return agg(h, reverse=False)

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return ctx.agg(grad, reverse=True), None


def naive_forward(model: torch.nn.Module, x: torch.Tensor, agg: Aggregator) -> torch.Tensor:
    """PyG ``GCN`` ``model``'s forward with every ``propagate`` done by ``agg``: per layer
    ``Â (h Wᵀ) + b``, then (except after the last) its activation and dropout."""
    convs = model.convs  # type: ignore[union-attr]
    h = x
    for i, conv in enumerate(convs):
        h = _Aggregate.apply(conv.lin(h), agg) + conv.bias
        if i < len(convs) - 1:
            h = model.dropout(model.act(h))  # type: ignore[operator]
    return h


def run(spec: dict[str, Any], g: dict[str, Any], seed: int) -> dict[str, Any]:
    """Train ``spec``'s GCN naively for ``spec["epochs"]`` epochs (``bench.systems`` systems
    ``naive-spark`` and ``naive-graphframes``); per-epoch times and the last loss."""
    import torch.nn.functional as F
    from torch_geometric.nn.models import GCN

    from lotan.engines.spark.session import get_spark

    if spec["model"] != "gcn":
        raise SystemExit("the naive baseline is a GCN")
    jar = os.environ.get(GRAPHFRAMES_JAR_ENV)
    spark = get_spark(conf={"spark.jars": jar} if jar else None)
    spark.conf.set("spark.sql.shuffle.partitions", str(spec.get("partitions", 2)))
    n = g["x"].shape[0]
    cls = SqlAggregator
    if spec["system"] == "naive-graphframes":
        why = graphframes_missing(spark)
        if why:
            raise SystemExit(f"{GRAPHFRAMES_MISSING} {why}")
        cls = GraphFramesAggregator
    start = time.perf_counter()
    agg = cls(spark, g["src"], g["dst"], n)
    x, y = torch.from_numpy(g["x"]), torch.from_numpy(g["y"])
    train = torch.from_numpy(g["train"])
    torch.manual_seed(seed)
    model = GCN(
        x.shape[1], spec["hidden"], spec["layers"], int(y.max()) + 1, dropout=spec["dropout"]
    )
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    times = []
    for _ in range(spec["epochs"]):
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(naive_forward(model, x, agg)[train], y[train])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        start = time.perf_counter()
    return {"times": times, "loss": float(loss), "curve": []}
