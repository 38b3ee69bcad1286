"""The checks every graph constructor shares, each raising
:class:`~lotan.errors.GraphInputError` with what was found and what to do, and the Arrow
helpers they read and write features with."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.errors import GraphInputError
from lotan.graph.schema import EDGE_COLUMNS, GraphStats
from lotan.ir.splits import SPLIT_CODES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = [
    "check_edge_attr_row",
    "check_edge_ends",
    "check_edges",
    "check_train_labels",
    "check_vertex_row",
    "edge_attr_checks",
    "edge_attr_column",
    "edge_features",
    "features_matrix",
    "is_real",
    "list_array",
    "require_columns",
    "split_codes",
]


def is_real(a: np.ndarray) -> bool:
    """Integer or floating point (not bool, complex, strings or objects)."""
    return bool(np.issubdtype(a.dtype, np.integer) or np.issubdtype(a.dtype, np.floating))


def split_codes(split: Any, n: int) -> np.ndarray:
    if split is None:
        return np.zeros(n, dtype=np.int8)
    arr = np.asarray(split)
    if arr.shape != (n,):
        raise GraphInputError(f"split must have one entry per vertex ({n}), found {arr.shape}")
    if np.issubdtype(arr.dtype, np.integer):
        if not np.isin(arr, [0, *SPLIT_CODES.values()]).all():
            raise GraphInputError(f"split codes must be in {[0, *SPLIT_CODES.values()]}")
        return arr.astype(np.int8)
    codes = np.zeros(n, dtype=np.int8)
    obj = arr.astype(object)
    known = np.zeros(n, dtype=bool)
    for name, code in SPLIT_CODES.items():
        hit = obj == name
        codes[hit] = code
        known |= hit
    unknown = ~known & np.array([v is not None for v in obj])
    if unknown.any():
        raise GraphInputError(
            f"split must be 'train', 'val', 'test' or None, found {sorted(set(obj[unknown]))[:5]}"
        )
    return codes


def require_columns(what: str, found: list[str], required: tuple[str, ...]) -> None:
    missing = [c for c in required if c not in found]
    if missing:
        raise GraphInputError(
            f"the {what} DataFrame needs columns {list(required)}; missing {missing}, found "
            f"{found}; rename your columns (GraphFrames names: vertices id, edges src/dst)"
        )


def check_edges(stats: GraphStats, where: str) -> None:
    if stats.num_edges == 0:
        raise GraphInputError(
            f"the graph has no edges ({where} is empty); a GNN without edges is an MLP — check "
            "that the edges were loaded (path, filter, join)"
        )


def check_train_labels(stats: GraphStats, unlabeled_train: int) -> None:
    if unlabeled_train:
        raise GraphInputError(
            f"{unlabeled_train} train vertices have no label; give them a label or take them "
            "out of the train split"
        )


def list_array(rows: np.ndarray) -> Any:
    """``(n, f)`` float32 rows as an Arrow ``list<float>`` array."""
    import pyarrow as pa

    n, f = rows.shape
    offsets = pa.array(
        np.arange(0, (n + 1) * f, f, dtype=np.int32) if f else np.zeros(n + 1, np.int32)
    )
    return pa.ListArray.from_arrays(offsets, pa.array(rows.reshape(-1)))


def features_matrix(column: Any, rows: int, width: int) -> np.ndarray:
    """An Arrow ``list<float>`` column of equal-length lists as ``(rows, width)`` float32."""
    arr = column.combine_chunks() if hasattr(column, "combine_chunks") else column
    values = arr.flatten().to_numpy(zero_copy_only=False).astype(np.float32)
    return values.reshape(rows, width)


def edge_features(edge_attr: Any, num_edges: int) -> np.ndarray | None:
    """``edge_attr`` checked (real, finite, one row per edge) as ``(E, D)`` float32."""
    if edge_attr is None:
        return None
    a = np.asarray(edge_attr)
    if a.ndim == 1:
        a = a.reshape(-1, 1)  # one feature per edge, as PyG's layers read a 1-D edge_attr
    if a.ndim != 2 or a.shape[0] != num_edges:
        raise GraphInputError(
            f"edge features must be one row per edge, shape ({num_edges}, D), found shape "
            f"{np.shape(edge_attr)}"
        )
    if not (is_real(a) or a.dtype == np.bool_):
        raise GraphInputError(f"edge features must be real numbers, found dtype {a.dtype}")
    a = a.astype(np.float32)
    if a.shape[1] == 0:
        raise GraphInputError(
            "edge features have 0 columns; drop them (edge_attr=None) or give each edge a value"
        )
    bad = ~np.isfinite(a).all(axis=1)
    if bad.any():
        raise GraphInputError(
            f"edge features must be finite; {int(bad.sum())} edges have NaN or inf features, "
            f"e.g. edges {np.flatnonzero(bad)[:5].tolist()}; impute or drop them"
        )
    return a


def edge_attr_column(edges: DataFrame, types: dict[str, str]) -> int:
    """-1 when the edges table has an ``attr`` column (its width is checked by Spark), else
    0."""
    if "attr" not in edges.columns:
        return 0
    if not types["attr"].startswith("array<") or types["attr"] == "array<string>":
        raise GraphInputError(
            f"edges.attr (edge features) must be array<float>, found {types['attr']}; collect "
            "the feature columns with F.array(...) first"
        )
    return -1


def edge_attr_checks(attr_width: int) -> list[Any]:
    """Aggregations that check the ``attr`` column: lengths and finiteness."""
    if not attr_width:
        return []
    from pyspark.sql import functions as F

    bad = F.exists("attr", lambda v: v.isNull() | F.isnan(v) | (F.abs(v) == float("inf")))
    return [
        F.min(F.size("attr")).alias("amin"),
        F.max(F.size("attr")).alias("amax"),
        F.sum((F.col("attr").isNull() | bad).cast("long")).alias("abad"),
    ]


def check_edge_attr_row(erow: Any, attr_width: int) -> int:
    """The edge feature width from the checks of :func:`edge_attr_checks`."""
    if not attr_width or erow["amin"] is None:
        return 0
    if erow["abad"]:
        raise GraphInputError(
            f"edge features must be finite; {erow['abad']} edges have a null, NaN or inf attr; "
            "impute or drop them"
        )
    if erow["amin"] != erow["amax"]:
        raise GraphInputError(
            f"every edge needs the same number of features; edges.attr has lengths from "
            f"{erow['amin']} to {erow['amax']}; pad or fix edges.attr"
        )
    if erow["amin"] == 0:
        raise GraphInputError(
            "edges.attr is empty on every edge; drop the column or give each edge features"
        )
    return int(erow["amin"])


def check_vertex_row(row: Any, vertices: DataFrame) -> None:
    """The checks of :meth:`~lotan.Graph.from_dataframes`' vertex aggregation ``row``
    (``n``, ``distinct``, ``fmin``/``fmax``, ``nonfinite``, ``ymin``, ``bad_split``)."""
    if row["n"] != row["distinct"]:
        dups = [
            r["id"] for r in vertices.groupBy("id").count().filter("count > 1").limit(5).collect()
        ]
        raise GraphInputError(
            f"vertex ids must be unique; found {row['n'] - row['distinct']} duplicate rows, "
            f"e.g. ids {dups}; deduplicate the vertices DataFrame"
        )
    if row["n"] == 0:
        raise GraphInputError("the vertices DataFrame is empty")
    if row["fmin"] != row["fmax"]:
        raise GraphInputError(
            f"every vertex needs the same number of features; found lengths from "
            f"{row['fmin']} to {row['fmax']}; pad or fix vertices.features"
        )
    if row["nonfinite"]:
        raise GraphInputError(
            f"features must be finite; {row['nonfinite']} vertices have null, NaN or inf "
            "features; impute or drop them"
        )
    if row["ymin"] is not None and row["ymin"] < 0:
        raise GraphInputError(f"labels must be >= 0 (null for unknown), found {row['ymin']}")
    if row["bad_split"]:
        raise GraphInputError(
            f"vertices.split must be 'train', 'val', 'test' or null; {row['bad_split']} "
            "rows have another value"
        )


def check_edge_ends(edges: DataFrame, vertices: DataFrame) -> None:
    """Every edge's ``src`` and ``dst`` is a vertex id (two anti-joins in Spark)."""
    ids = vertices.select("id")
    for col in EDGE_COLUMNS:
        unknown = edges.join(ids.withColumnRenamed("id", col).hint("merge"), col, "left_anti")
        examples = [r[col] for r in unknown.select(col).distinct().limit(5).collect()]
        if examples:
            raise GraphInputError(
                f"edges have a {col} that is not a vertex id, e.g. {examples}; add those "
                "vertices or drop the edges"
            )
