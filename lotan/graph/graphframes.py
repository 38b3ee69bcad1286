"""GraphFrames in: a ``GraphFrame`` (or anything with ``vertices`` and ``edges`` Spark
DataFrames) as the vertex and edge tables of a :class:`lotan.Graph`
(:meth:`lotan.Graph.from_graphframe`); the way back is :mod:`lotan.graphframes`.

GraphFrames keeps vertices with an ``id`` column and edges with ``src`` and ``dst``, the
names Lotan uses; what differs is where the features, labels and splits live, which the
``features``, ``label`` and ``split`` arguments name. Nothing here needs the GraphFrames jar:
a ``GraphFrame``'s ``vertices`` and ``edges`` are plain DataFrames.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from lotan.errors import GraphInputError

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

__all__ = ["graphframe_frames", "graphframe_tables"]


def graphframe_frames(g: Any) -> tuple[DataFrame, DataFrame]:
    """``g``'s vertices and edges DataFrames (a GraphFrame-shaped object is required)."""
    from pyspark.sql import DataFrame

    vertices, edges = getattr(g, "vertices", None), getattr(g, "edges", None)
    if not isinstance(vertices, DataFrame) or not isinstance(edges, DataFrame):
        raise GraphInputError(
            f"expected a GraphFrame (an object whose .vertices and .edges are Spark "
            f"DataFrames), found {type(g).__name__}; for two DataFrames use "
            "lotan.Graph.from_dataframes(vertices, edges)"
        )
    return vertices, edges


def _features(vertices: DataFrame, features: str | Sequence[str]) -> Any:
    """The ``features`` column: an array column, an ML vector column, or numeric columns."""
    from pyspark.sql import functions as F

    types = dict(vertices.dtypes)
    names = [features] if isinstance(features, str) else list(features)
    missing = [c for c in names if c not in types]
    if missing or not names:
        raise GraphInputError(
            f"the vertices have no column(s) {missing or names} for features; they have "
            f"{sorted(types)}: pass features='<array or vector column>' or a list of numeric "
            "columns"
        )
    if len(names) == 1 and types[names[0]].startswith("array<"):
        return F.col(names[0]).cast("array<float>")
    if len(names) == 1 and types[names[0]] == "vector":
        from pyspark.ml.functions import vector_to_array

        return vector_to_array(F.col(names[0]), "float32")
    bad = [c for c in names if types[c] not in _NUMERIC]
    if bad:
        raise GraphInputError(
            f"feature columns must be numeric, an array or an ML vector; {bad} are "
            f"{[types[c] for c in bad]}"
        )
    return F.array(*(F.col(c).cast("float") for c in names))


_NUMERIC = ("tinyint", "smallint", "int", "bigint", "float", "double")


def graphframe_tables(
    g: Any,
    *,
    features: str | Sequence[str] = "features",
    label: str | None = "label",
    split: str | None = "split",
    weight: str | None = None,
) -> tuple[DataFrame, DataFrame]:
    """``g`` (a ``GraphFrame`` or anything with ``vertices`` / ``edges`` DataFrames) as the
    vertex and edge tables :meth:`~lotan.Graph.from_dataframes` reads, without collecting
    anything: ``features`` names an array column, an
    ML vector column or a list of numeric columns (e.g. the ``inDegree`` and ``pagerank``
    columns GraphFrames algorithms add); ``label`` and ``split`` name those columns
    (``None``: no labels / no split); ``weight`` an edge column to use as edge weight."""
    from pyspark.sql import functions as F

    vertices, edges = graphframe_frames(g)
    cols = dict(vertices.dtypes)
    for what, col in (("label", label), ("split", split)):
        if col is not None and col not in cols:
            raise GraphInputError(
                f"the vertices have no {what} column {col!r}; they have {sorted(cols)} "
                f"(pass {what}=<column> or {what}=None)"
            )
    v = vertices.select(
        F.col("id"),
        _features(vertices, features).alias("features"),
        (F.col(label) if label is not None else F.lit(None).cast("bigint")).alias("label"),
        (F.col(split) if split is not None else F.lit(None).cast("string")).alias("split"),
    )
    keep = ["src", "dst"]
    if weight is not None:
        if weight not in edges.columns:
            raise GraphInputError(
                f"the edges have no weight column {weight!r}; they have {sorted(edges.columns)}"
            )
        e = edges.select("src", "dst", F.col(weight).cast("double").alias("weight"))
    else:
        e = edges.select(*[c for c in keep if c in edges.columns])
    return v, e
