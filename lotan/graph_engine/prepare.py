"""Preparation: from vertices and edges to one :class:`PartitionLayout` per partition.

Done once per (graph, number of partitions, normalization) and cached by the caller. The
global work is relational — give each vertex an owner (``pmod(xxhash64(id), P)``) and a local
row (its rank by id within the owner), and annotate each edge with the owner and local row of
both ends; everything else runs per partition in the kernels of
:mod:`lotan.graph_engine.layout`, as a small plan of stages on the same runners as training.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lotan.graph_engine.exchange import assemble, forward_messages
from lotan.graph_engine.hashing import owner_of
from lotan.graph_engine.layout import (
    PartitionLayout,
    attach_send_lists,
    build_in_structure,
    inverse_sqrt_degree,
    normalize_weights,
)
from lotan.graph_engine.runner import OUTPUT, LocalRunner, Message, by_source
from lotan.ir.norm import NormSpec
from lotan.ir.splits import SPLIT_CODES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["prepare_local", "prepare_spark"]


def _step1_messages(
    layout: PartitionLayout, deg: np.ndarray, requests: dict[int, np.ndarray]
) -> list[Message]:
    p = layout.part
    out = [
        Message(0, p, p, "layout", layout.to_arrays()),
        Message(0, p, p, "deg", {"rows": deg}),
    ]
    out += [Message(0, q, p, "request", {"rows": rows}) for q, rows in requests.items()]
    return out


def _send_lists_stage(
    part: int, _layout: PartitionLayout | None, inbox: list[Message], norms: tuple[NormSpec, ...]
) -> list[Message]:
    """At each owner: record who needs which rows, then send ``deg^-1/2`` of those rows."""
    layout = PartitionLayout.from_arrays(next(m.payload for m in inbox if m.tag == "layout"))
    layout = attach_send_lists(layout, by_source(inbox, "request"))
    deg = by_source(inbox, "deg")[part]
    dis = inverse_sqrt_degree(deg)
    out = [Message(1, part, part, "layout", layout.to_arrays())]
    out += [Message(1, q, part, "dis", {"rows": rows}) for q, rows in forward_messages(layout, dis)]
    return out


def _normalize_stage(
    part: int, _layout: PartitionLayout | None, inbox: list[Message], norms: tuple[NormSpec, ...]
) -> list[Message]:
    """At each owner: the final edge weights from ``deg^-1/2`` of own and halo rows."""
    layout = PartitionLayout.from_arrays(next(m.payload for m in inbox if m.tag == "layout"))
    dis_full = assemble(layout, by_source(inbox, "dis"))
    layout = normalize_weights(layout, dis_full, norms)
    return [Message(OUTPUT, part, part, "layout", layout.to_arrays())]


PREPARE_STAGES = (_send_lists_stage, _normalize_stage)


def split_codes(split: Any) -> np.ndarray:
    """Map split names (``train``/``val``/``test``/None) to int8 codes."""
    names = np.asarray(split, dtype=object)
    codes = np.zeros(names.shape[0], dtype=np.int8)
    for name, code in SPLIT_CODES.items():
        codes[names == name] = code
    return codes


def prepare_local(
    ids: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    split: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray | None,
    num_partitions: int,
    norms: tuple[NormSpec, ...],
    owner: np.ndarray | None = None,
    edge_attr: np.ndarray | None = None,
) -> dict[int, PartitionLayout]:
    """Prepare in-process. ``split`` holds int8 codes; ``src``/``dst`` name vertex ids that
    exist in ``ids`` (validated by the caller); ``owner`` is each vertex's partition (default:
    the hash partitioner); ``edge_attr`` ``(E, D)`` the edge features, if any."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.shape[0]
    part = (owner_of(ids, num_partitions) if owner is None else np.asarray(owner)).astype(np.int64)
    order = np.lexsort((ids, part))  # by owner, then by id
    counts = np.bincount(part, minlength=num_partitions)
    starts = np.zeros(num_partitions + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    local = np.empty(n, dtype=np.int64)
    local[order] = np.arange(n) - starts[part[order]]

    by_id = np.argsort(ids, kind="stable")
    src_idx = by_id[np.searchsorted(ids[by_id], np.asarray(src, dtype=np.int64))]
    dst_idx = by_id[np.searchsorted(ids[by_id], np.asarray(dst, dtype=np.int64))]
    w = np.ones(src_idx.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    sp, sl, dp, dl = part[src_idx], local[src_idx], part[dst_idx], local[dst_idx]
    edge_order = np.argsort(dp, kind="stable")
    edge_starts = np.searchsorted(dp[edge_order], np.arange(num_partitions + 1))

    msgs: list[Message] = []
    for p in range(num_partitions):
        if counts[p] == 0:
            continue
        vsel = order[starts[p] : starts[p + 1]]
        esel = edge_order[edge_starts[p] : edge_starts[p + 1]]
        layout, deg, requests = build_in_structure(
            p,
            ids[vsel],
            x[vsel],
            y[vsel],
            split[vsel],
            sp[esel],
            sl[esel],
            dl[esel],
            w[esel],
            norms,
            ids[src_idx[esel]],
            edge_attr[esel] if edge_attr is not None else None,
        )
        msgs += _step1_messages(layout, deg, requests)
    _, out = LocalRunner().run(PREPARE_STAGES, norms, initial=msgs)
    return {m.src: PartitionLayout.from_arrays(m.payload) for m in out}


def _features_matrix(column: pa.ChunkedArray | pa.Array, rows: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(rows, values.shape[0] // rows)


def _step1_spark(norms: tuple[NormSpec, ...], part_of: dict[int, int], attr_width: int) -> Any:
    from lotan.graph_engine.arrow_messages import messages_to_table
    from lotan.graph_engine.worker import task_setup

    def run(key: Any, edges: pa.Table, vertices: pa.Table) -> pa.Table:
        task_setup()
        p = part_of[int(key[0].as_py())]
        if vertices.num_rows == 0:
            return messages_to_table([])
        vertices = vertices.sort_by("local")
        y = vertices.column("label").to_numpy(zero_copy_only=False)
        layout, deg, requests = build_in_structure(
            p,
            vertices.column("id").to_numpy(),
            _features_matrix(vertices.column("features"), vertices.num_rows),
            np.nan_to_num(y.astype(np.float64), nan=-1).astype(np.int64),
            split_codes(vertices.column("split").to_pylist()),
            edges.column("sp").to_numpy(),
            edges.column("sl").to_numpy(),
            edges.column("dl").to_numpy(),
            edges.column("weight").to_numpy(zero_copy_only=False),
            norms,
            edges.column("src").to_numpy(),
            (
                _features_matrix(edges.column("attr"), edges.num_rows).reshape(-1, attr_width)
                if attr_width
                else None
            ),
        )
        return messages_to_table(_step1_messages(layout, deg, requests))

    return run


def prepare_spark(
    spark: SparkSession,
    vertices: DataFrame,
    edges: DataFrame,
    num_partitions: int,
    norms: tuple[NormSpec, ...],
    directory: str,
    owner: DataFrame | None = None,
    edge_features: int = 0,
) -> list[tuple[int, int, int, int]]:
    """Prepare in Spark and write each partition's layout to ``directory`` (a
    :class:`~lotan.graph_engine.store.LayoutStore` base); returns (partition, own vertices,
    halo rows, edges) of every partition with vertices.

    ``vertices`` has ``id``, ``features``, ``label``, ``split``; ``edges`` has ``src``,
    ``dst``, ``weight`` and optionally ``attr`` (validated by the caller); ``owner`` has
    ``id``, ``part`` for every vertex (default: the hash partitioner); ``edge_features`` is
    the width of ``attr`` (0: no edge features).
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lotan.graph_engine.arrow_messages import MESSAGE_SCHEMA
    from lotan.graph_engine.spark_runner import Router, SparkRunner, write_layouts

    P = num_partitions
    router = Router(P)
    v = vertices.select(
        F.col("id").cast("long").alias("id"),
        F.col("features"),
        F.col("label").cast("long").alias("label"),
        F.col("split").cast("string").alias("split"),
    )
    if owner is None:
        v = v.withColumn("part", F.pmod(F.xxhash64("id"), F.lit(P)).cast("int"))
    else:
        owner = owner.select(F.col("id").cast("long"), F.col("part").cast("int"))
        v = v.join(owner.hint("merge"), "id")
    v = (
        router.route(v, "part")
        .withColumn("local", (F.row_number().over(Window.partitionBy("route").orderBy("id")) - 1))
        .persist(StorageLevel.MEMORY_AND_DISK)
    )
    # Vertex tables are never small enough to broadcast safely (Spark's size estimate of a
    # generated or persisted table can be far too low): sort-merge joins, which spill.
    vmap = v.select("id", "part", "local").hint("merge")
    e = edges.select(
        F.col("src").cast("long").alias("src"),
        F.col("dst").cast("long").alias("dst"),
        F.col("weight").cast("double").alias("weight"),
        *([F.col("attr").cast("array<float>")] if edge_features else []),
    )
    e = e.join(
        vmap.select(
            F.col("id").alias("src"), F.col("part").alias("sp"), F.col("local").alias("sl")
        ),
        "src",
    ).join(
        vmap.select(
            F.col("id").alias("dst"), F.col("part").alias("dp"), F.col("local").alias("dl")
        ),
        "dst",
    )
    attr = ["attr"] if edge_features else []
    e = router.route(e.select("dp", "sp", "sl", "dl", "weight", "src", *attr), "dp")
    step1 = (
        e.groupBy("route")
        .cogroup(v.groupBy("route"))
        .applyInArrow(_step1_spark(norms, router.part_of, edge_features), MESSAGE_SCHEMA)
    )
    runner = SparkRunner(spark, P)
    result = runner.run(
        PREPARE_STAGES, norms, initial=step1, description="lotan prepare", adaptive=True
    )
    try:
        sizes: list[tuple[int, int, int, int]] = result.execute(
            lambda: write_layouts(result.output(), directory, router)
        )
        return sizes
    finally:
        result.close()
        v.unpersist(blocking=False)
