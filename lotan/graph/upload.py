"""Sending a graph held in the driver to Spark: the vertex and edge tables as DataFrames.

``spark.createDataFrame`` of an Arrow table keeps the whole table on the driver's JVM heap
for as long as the DataFrame lives (a parallelized collection that Spark's memory manager does
not see), and in local mode that heap is the executors' too: a 2M-vertex graph (~2 GB of
Arrow) left a 4 GB driver without room to prepare. A table larger than :data:`CHUNK_BYTES`
therefore goes in chunks, each computed onto the executors' disks
(``localCheckpoint`` at ``DISK_ONLY``) before the next is sent, so the driver heap holds one
chunk at a time; the DataFrame is the union of the chunks, rows in the table's order. A table
of one chunk goes as it is (nothing to free before the next).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.graph.checks import list_array
from lotan.graph.schema import SPLIT_NAMES, GraphArrays

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["CHUNK_BYTES", "chunk_rows", "row_bytes", "to_dataframes"]

#: The most Arrow bytes of one table the driver sends to Spark at a time.
CHUNK_BYTES = 128 << 20


def chunk_rows(num_rows: int, row_bytes: int, chunk_bytes: int) -> int:
    """Rows per chunk so that a chunk holds at most ``chunk_bytes`` (at least one row)."""
    return max(1, min(num_rows, chunk_bytes // max(1, row_bytes)))


def row_bytes(a: GraphArrays) -> tuple[int, int]:
    """Roughly the Arrow bytes of one vertex row (id, features, label, split) and of one
    edge row (src, dst, weight, edge features) of ``a``."""
    d = 0 if a.edge_attr is None else a.edge_attr.shape[1]
    return 8 + 4 * a.x.shape[1] + 8 + 8, 8 + 8 + 8 + 4 * d


def to_dataframes(
    spark: SparkSession, a: GraphArrays, chunk_bytes: int | None = None
) -> tuple[DataFrame, DataFrame]:
    """The arrays ``a`` as (vertices, edges) DataFrames with GraphFrames' columns and
    ``weight`` always present (1.0 where the graph has none)."""
    limit = CHUNK_BYTES if chunk_bytes is None else chunk_bytes
    n, e = a.x.shape[0], a.src.shape[0]
    vertex_bytes, edge_bytes = row_bytes(a)
    vertices = _send(
        spark, n, chunk_rows(n, vertex_bytes, limit), lambda lo, hi: _vertex_table(a, lo, hi)
    )
    edges = _send(spark, e, chunk_rows(e, edge_bytes, limit), lambda lo, hi: _edge_table(a, lo, hi))
    return vertices, edges


def _send(spark: SparkSession, rows: int, step: int, table: Any) -> DataFrame:
    """The table ``table(lo, hi)`` of rows ``[0, rows)`` as one DataFrame, ``step`` rows at a
    time when it has more than ``step``."""
    if rows <= step:
        return spark.createDataFrame(table(0, rows))
    from pyspark import StorageLevel

    from lotan.engines.spark.session import local_checkpoint

    parts = []
    for lo in range(0, rows, step):
        chunk = spark.createDataFrame(table(lo, min(rows, lo + step)))
        parts.append(local_checkpoint(chunk, StorageLevel.DISK_ONLY))
        del chunk  # the chunk's rows now live on the executors' disks only
    out = parts[0]
    for part in parts[1:]:
        out = out.unionAll(part)
    return out


def _split_names() -> Any:
    """The split names as an Arrow string array indexed by split code (null at 0)."""
    import pyarrow as pa

    names: list[str | None] = [None] * (max(SPLIT_NAMES) + 1)
    for code, name in SPLIT_NAMES.items():
        names[code] = name
    return pa.array(names, pa.string())


def _vertex_table(a: GraphArrays, lo: int, hi: int) -> Any:
    import pyarrow as pa

    y = a.y[lo:hi]
    codes = pa.array(a.split[lo:hi].astype(np.int64))
    split = _split_names().take(codes)  # code 0 (no split) takes the null
    return pa.table(
        {
            "id": pa.array(a.ids[lo:hi]),
            "features": list_array(np.ascontiguousarray(a.x[lo:hi])),
            "label": pa.array(np.where(y >= 0, y, 0), mask=y < 0),
            "split": split,
        }
    )


def _edge_table(a: GraphArrays, lo: int, hi: int) -> Any:
    import pyarrow as pa

    weight = a.weight[lo:hi] if a.weight is not None else np.ones(hi - lo, np.float32)
    columns: dict[str, Any] = {
        "src": pa.array(a.src[lo:hi]),
        "dst": pa.array(a.dst[lo:hi]),
        "weight": pa.array(weight.astype(np.float64)),
    }
    if a.edge_attr is not None:
        columns["attr"] = list_array(np.ascontiguousarray(a.edge_attr[lo:hi]))
    return pa.table(columns)
