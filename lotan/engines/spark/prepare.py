"""Preparation on Spark: from vertices and edges (DataFrames) to one layout file per
partition (:class:`~lotan.engines.spark.store.LayoutStore`).

The relational part runs in Spark SQL (each vertex's owner and local row, each edge
annotated with both ends' owners and rows, routed to its target's owner); one grouped map per
partition builds its in-edge structure (:func:`~lotan.graph_engine.layout.build_in_structure`),
and the stages of :mod:`lotan.runtime.preparation` finish the layouts on the Spark runner.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa

from lotan.graph_engine.layout import build_in_structure
from lotan.ir.norm import NormSpec
from lotan.ir.splits import SPLIT_CODES
from lotan.runtime.preparation import PREPARE_STAGES, in_structure_messages

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["prepare_spark"]


def split_codes(split: Any) -> np.ndarray:
    """Map split names (``train``/``val``/``test``/None) to int8 codes."""
    names = np.asarray(split, dtype=object)
    codes = np.zeros(names.shape[0], dtype=np.int8)
    for name, code in SPLIT_CODES.items():
        codes[names == name] = code
    return codes


def _features_matrix(column: pa.ChunkedArray | pa.Array, rows: int) -> np.ndarray:
    arr = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if rows == 0:
        return np.zeros((0, 0), dtype=np.float32)
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32, copy=False)
    return values.reshape(rows, values.shape[0] // rows)


def _step1_spark(norms: tuple[NormSpec, ...], part_of: dict[int, int], attr_width: int) -> Any:
    from lotan.engines.spark.codec import messages_to_table
    from lotan.engines.spark.worker import task_setup

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
        return messages_to_table(in_structure_messages(layout, deg, requests))

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
    :class:`~lotan.engines.spark.store.LayoutStore` base); returns (partition, own vertices,
    halo rows, edges) of every partition with vertices.

    ``vertices`` has ``id``, ``features``, ``label``, ``split``; ``edges`` has ``src``,
    ``dst``, ``weight`` and optionally ``attr`` (validated by the caller); ``owner`` has
    ``id``, ``part`` for every vertex (default: the hash partitioner); ``edge_features`` is
    the width of ``attr`` (0: no edge features).
    """
    from pyspark import StorageLevel
    from pyspark.sql import Window
    from pyspark.sql import functions as F

    from lotan.engines.spark.codec import MESSAGE_SCHEMA
    from lotan.engines.spark.runner import Router, SparkRunner, write_layouts

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
