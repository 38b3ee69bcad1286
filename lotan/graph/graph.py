"""``lotan.Graph``: the graph a model trains on, from PyG, Spark DataFrames or Parquet.

Column names follow GraphFrames: vertices have ``id`` (any integer ids, not necessarily
dense), ``features`` (``array<float>``), ``label`` (integer, null when unknown) and ``split``
(``"train"``/``"val"``/``"test"``/null); edges have ``src``, ``dst`` and an optional
``weight`` and optional edge features ``attr`` (``array<float>``, the same length on every
edge: PyG's ``edge_attr``). Edges are directed, ``src -> dst``, as PyG's ``edge_index``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.engines.base import Preparations
from lotan.errors import GraphInputError
from lotan.graph.checks import (
    check_edge_attr_row,
    check_edge_ends,
    check_edges,
    check_train_labels,
    check_vertex_row,
    edge_attr_checks,
    edge_attr_column,
    edge_features,
    features_matrix,
    is_real,
    require_columns,
    split_codes,
)
from lotan.graph.schema import (
    EDGE_COLUMNS,
    VERTEX_COLUMNS,
    GraphArrays,
    GraphStats,
)
from lotan.ir.splits import SPLIT_CODES

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["Graph"]


class Graph:
    """A vertex- and edge-attributed graph with labels and a train/val/test split.

    Build one with :meth:`from_pyg`, :meth:`from_dataframes`, :meth:`from_parquet` or
    :meth:`from_arrays`; every constructor validates its input and raises
    :class:`~lotan.errors.GraphInputError` saying what to fix. Preparation for an engine is
    cached on the graph, so a second ``fit`` on it does not redo it.
    """

    def __init__(
        self,
        *,
        arrays: GraphArrays | None = None,
        vertices: DataFrame | None = None,
        edges: DataFrame | None = None,
        stats: GraphStats,
        name: str = "graph",
    ) -> None:
        self._arrays = arrays
        self._vertices = vertices
        self._edges = edges
        self._stats = stats
        self.name = name
        #: This graph prepared for runs, by engine, partitions and weightings: made once,
        #: reused by every later run, released by :meth:`unpersist`.
        self.preparations = Preparations()
        self._fingerprint: str | None = None

    # ---------------------------------------------------------------- constructors
    @classmethod
    def from_arrays(
        cls,
        *,
        x: np.ndarray,
        src: np.ndarray,
        dst: np.ndarray,
        y: np.ndarray | None = None,
        split: np.ndarray | None = None,
        ids: np.ndarray | None = None,
        weight: np.ndarray | None = None,
        edge_attr: np.ndarray | None = None,
        name: str = "graph",
    ) -> Graph:
        """From NumPy arrays: ``x`` ``(N, F)`` real; ``src``, ``dst`` ``(E,)`` integer vertex
        ids; ``y`` ``(N,)`` or ``(N, 1)`` integer class ids, ``-1`` unknown; ``split``
        ``(N,)`` names (``"train"``, ...) or int8 codes; ``ids`` ``(N,)`` unique integers
        (default ``0..N-1``); ``weight`` ``(E,)`` real and finite; ``edge_attr`` ``(E, D)``
        (or ``(E,)``: one feature per edge) real and finite, edge features."""
        x = np.asarray(x)
        if x.ndim != 2:
            raise GraphInputError(
                f"features must be a 2-D array (vertices x features), found shape {x.shape}"
            )
        n = x.shape[0]
        ids = np.arange(n, dtype=np.int64) if ids is None else np.asarray(ids)
        if ids.shape != (n,) or not np.issubdtype(ids.dtype, np.integer):
            raise GraphInputError(
                f"vertex ids must be {n} integers (one per feature row), found dtype "
                f"{ids.dtype} and shape {ids.shape}"
            )
        ids = ids.astype(np.int64)
        uniq, counts = np.unique(ids, return_counts=True)
        if uniq.shape[0] != n:
            dup = uniq[counts > 1][:5].tolist()
            raise GraphInputError(
                f"vertex ids must be unique; {int((counts > 1).sum())} ids occur more than "
                f"once, e.g. {dup}; deduplicate the vertices table"
            )
        if not (is_real(x) or x.dtype == np.bool_):
            raise GraphInputError(f"features must be real numbers, found dtype {x.dtype}")
        x = x.astype(np.float32)
        bad = ~np.isfinite(x).all(axis=1)
        if bad.any():
            raise GraphInputError(
                f"features must be finite; {int(bad.sum())} vertices have NaN or inf features, "
                f"e.g. ids {ids[bad][:5].tolist()}; impute or drop them"
            )
        y = np.full(n, -1, dtype=np.int64) if y is None else np.asarray(y)
        if y.shape == (n, 1):  # one column of class ids, as OGB stores them
            y = y[:, 0]
        if y.shape != (n,):
            raise GraphInputError(
                f"labels must be one integer class per vertex (shape ({n},)), found shape {y.shape}"
            )
        if not np.issubdtype(y.dtype, np.integer):
            raise GraphInputError(
                f"labels must be integer class ids (-1 for unknown), found dtype {y.dtype}; "
                "convert them with .astype(int) once they hold whole numbers"
            )
        y = y.astype(np.int64)
        if (y < -1).any():
            raise GraphInputError(
                f"labels must be >= 0 (or -1/null for unknown), found {int(y.min())}"
            )
        codes = split_codes(split, n)
        src = np.asarray(src)
        dst = np.asarray(dst)
        if src.shape != dst.shape or src.ndim != 1:
            raise GraphInputError(
                f"src and dst must be 1-D arrays of equal length, found {src.shape} and {dst.shape}"
            )
        for col, ends in (("src", src), ("dst", dst)):
            if ends.size and not np.issubdtype(ends.dtype, np.integer):
                raise GraphInputError(
                    f"{col} must hold integer vertex ids, found dtype {ends.dtype}; a float id "
                    "would be truncated to another vertex — pass integer arrays"
                )
        src = src.astype(np.int64)
        dst = dst.astype(np.int64)
        for col, ends in (("src", src), ("dst", dst)):
            unknown = ~np.isin(ends, ids)
            if unknown.any():
                raise GraphInputError(
                    f"{int(unknown.sum())} edges have a {col} that is not a vertex id, e.g. "
                    f"{np.unique(ends[unknown])[:5].tolist()}; add those vertices or drop the "
                    "edges"
                )
        if weight is not None:
            weight = np.asarray(weight)
            if not is_real(weight):
                raise GraphInputError(
                    f"edge weights must be real numbers, found dtype {weight.dtype}"
                )
            weight = weight.astype(np.float32)
            if weight.shape != src.shape:
                raise GraphInputError(
                    f"edge weights must be one per edge ({src.shape[0]}), found shape "
                    f"{weight.shape}"
                )
            if not np.isfinite(weight).all():
                raise GraphInputError(
                    f"edge weights must be finite; {int((~np.isfinite(weight)).sum())} are "
                    "NaN or inf"
                )
        edge_attr = edge_features(edge_attr, int(src.shape[0]))
        arrays = GraphArrays(ids, x, y, codes, src, dst, weight, edge_attr)
        stats = GraphStats(
            num_vertices=n,
            num_edges=int(src.shape[0]),
            num_features=int(x.shape[1]),
            num_classes=int(y.max(initial=-1)) + 1,
            num_train=int((codes == SPLIT_CODES["train"]).sum()),
            has_weight=weight is not None,
            num_val=int((codes == SPLIT_CODES["val"]).sum()),
            num_test=int((codes == SPLIT_CODES["test"]).sum()),
            min_weight=float(weight.min()) if weight is not None and weight.size else 1.0,
            num_edge_features=int(edge_attr.shape[1]) if edge_attr is not None else 0,
        )
        check_edges(stats, "src/dst")
        check_train_labels(stats, int(((codes == SPLIT_CODES["train"]) & (y < 0)).sum()))
        return cls(arrays=arrays, stats=stats, name=name)

    @classmethod
    def from_pyg(cls, data: Any, *, name: str = "graph") -> Graph:
        """From a ``torch_geometric.data.Data`` with ``x``, ``edge_index``, optional
        ``edge_weight``, ``y`` and ``train_mask``/``val_mask``/``test_mask``, each checked
        for the dtype and shape PyG requires (see :mod:`lotan.graph.pyg`)."""
        from lotan.graph.pyg import pyg_arrays

        return cls.from_arrays(**pyg_arrays(data), name=name)

    @classmethod
    def from_graphframe(cls, g: Any, *, name: str = "graph", **columns: Any) -> Graph:
        """From a ``GraphFrame`` (or anything with ``vertices`` / ``edges`` DataFrames), with
        the feature, label, split and weight columns named in ``columns``
        (:func:`lotan.graph.graphframes.graphframe_tables`), without collecting it."""
        from lotan.graph.graphframes import graphframe_tables

        return cls.from_dataframes(*graphframe_tables(g, **columns), name=name)

    @classmethod
    def from_dataframes(
        cls, vertices: DataFrame, edges: DataFrame, *, name: str = "graph"
    ) -> Graph:
        """From Spark DataFrames with GraphFrames' column names (see the module docstring).

        Validation runs as Spark aggregations; no vertex data is collected to the driver.
        """
        from pyspark.sql import functions as F

        require_columns("vertices", vertices.columns, VERTEX_COLUMNS)
        require_columns("edges", edges.columns, EDGE_COLUMNS)
        types = dict(vertices.dtypes)
        if not types["features"].startswith("array<"):
            raise GraphInputError(
                f"vertices.features must be array<float>, found {types['features']}; "
                "collect feature columns with F.array(...) first"
            )
        for col, where in (("id", types["id"]), ("label", types["label"])):
            if where not in ("tinyint", "smallint", "int", "bigint"):
                raise GraphInputError(f"vertices.{col} must be an integer column, found {where}")
        etypes = dict(edges.dtypes)
        for col in EDGE_COLUMNS:
            if etypes[col] not in ("tinyint", "smallint", "int", "bigint"):
                raise GraphInputError(f"edges.{col} must be an integer column, found {etypes[col]}")
        attr_width = edge_attr_column(edges, etypes)
        has_weight = "weight" in edges.columns
        if not has_weight:
            edges = edges.withColumn("weight", F.lit(1.0))

        bad_feature = F.exists("features", lambda v: F.isnan(v) | (F.abs(v) == float("inf")))
        row = vertices.agg(
            F.count(F.lit(1)).alias("n"),
            F.count_distinct("id").alias("distinct"),
            F.min(F.size("features")).alias("fmin"),
            F.max(F.size("features")).alias("fmax"),
            F.sum((F.col("features").isNull() | bad_feature).cast("long")).alias("nonfinite"),
            F.min("label").alias("ymin"),
            F.max("label").alias("ymax"),
            F.sum((F.col("split") == "train").cast("long")).alias("train"),
            F.sum((F.col("split") == "val").cast("long")).alias("val"),
            F.sum((F.col("split") == "test").cast("long")).alias("test"),
            F.sum(((F.col("split") == "train") & F.col("label").isNull()).cast("long")).alias(
                "train_unlabeled"
            ),
            F.sum(
                (F.col("split").isNotNull() & ~F.col("split").isin(*SPLIT_CODES)).cast("long")
            ).alias("bad_split"),
        ).first()
        assert row is not None
        check_vertex_row(row, vertices)
        check_edge_ends(edges, vertices)
        erow = edges.agg(
            F.count(F.lit(1)).alias("m"),
            F.sum(
                (
                    F.isnan("weight") | (F.abs("weight") == float("inf")) | F.col("weight").isNull()
                ).cast("long")
            ).alias("badw"),
            F.min("weight").alias("minw"),
            *edge_attr_checks(attr_width),
        ).first()
        assert erow is not None
        if erow["badw"]:
            raise GraphInputError(
                f"edge weights must be finite; {erow['badw']} are null, NaN or inf"
            )
        attr_width = check_edge_attr_row(erow, attr_width)
        stats = GraphStats(
            num_vertices=int(row["n"]),
            num_edges=int(erow["m"]),
            num_features=int(row["fmin"]),
            num_classes=int(row["ymax"]) + 1 if row["ymax"] is not None else 0,
            num_train=int(row["train"] or 0),
            has_weight=has_weight,
            num_val=int(row["val"] or 0),
            num_test=int(row["test"] or 0),
            min_weight=float(erow["minw"]) if erow["minw"] is not None else 1.0,
            num_edge_features=attr_width,
        )
        check_edges(stats, "the edges DataFrame")
        check_train_labels(stats, int(row["train_unlabeled"] or 0))
        return cls(vertices=vertices, edges=edges, stats=stats, name=name)

    @classmethod
    def from_parquet(
        cls,
        vertices_path: str,
        edges_path: str,
        *,
        spark: SparkSession | None = None,
        name: str = "graph",
    ) -> Graph:
        """From Parquet folders with the schema of :meth:`from_dataframes`."""
        from lotan.engines.spark.session import get_spark

        session = get_spark(spark)
        try:
            vertices = session.read.parquet(vertices_path)
            edges = session.read.parquet(edges_path)
        except Exception as exc:
            raise GraphInputError(
                f"could not read Parquet from {vertices_path!r} / {edges_path!r}: {exc}"
            ) from exc
        return cls.from_dataframes(vertices, edges, name=name)

    # ---------------------------------------------------------------- properties
    @property
    def num_vertices(self) -> int:
        return self._stats.num_vertices

    @property
    def num_edges(self) -> int:
        return self._stats.num_edges

    @property
    def num_features(self) -> int:
        return self._stats.num_features

    @property
    def num_classes(self) -> int:
        return self._stats.num_classes

    @property
    def num_train(self) -> int:
        return self._stats.num_train

    def split_counts(self) -> dict[str, int]:
        """Vertices in each split: ``{"train": ..., "val": ..., "test": ...}``."""
        st = self._stats
        return {"train": st.num_train, "val": st.num_val, "test": st.num_test}

    @property
    def has_edge_weight(self) -> bool:
        return self._stats.has_weight

    @property
    def num_edge_features(self) -> int:
        """Features per edge (``edge_attr``); 0 when the graph has none."""
        return self._stats.num_edge_features

    @property
    def min_edge_weight(self) -> float:
        """The smallest edge weight (1.0 for an unweighted graph)."""
        return self._stats.min_weight

    @property
    def in_memory(self) -> bool:
        """Held as NumPy arrays in this process (else as Spark DataFrames, not collected)."""
        return self._arrays is not None

    def __repr__(self) -> str:
        where = "in memory" if self.in_memory else "Spark DataFrames"
        return (
            f"Graph({self.name!r}, vertices={self.num_vertices}, edges={self.num_edges}, "
            f"features={self.num_features}, classes={self.num_classes}, {where})"
        )

    def unpersist(self) -> None:
        """Release every cached preparation of this graph (Spark layouts included)."""
        self.preparations.release()

    def fingerprint(self) -> str:
        """A hash of the graph's content (ids, features, labels, splits, edges, weights), the
        same whatever order the rows come in; computed once. In-memory graphs hash their
        arrays; DataFrame-backed graphs sum a 64-bit hash of every row in one Spark job."""
        if self._fingerprint is None:
            import hashlib

            h = hashlib.sha256()
            h.update(repr(self._stats).encode())
            if self._arrays is not None:
                a = self._arrays
                order = np.argsort(a.ids, kind="stable")
                for arr in (a.ids[order], a.x[order], a.y[order], a.split[order]):
                    h.update(np.ascontiguousarray(arr).tobytes())
                w = a.weight if a.weight is not None else np.ones(len(a.src), np.float32)
                edges = np.stack([a.src, a.dst, w.astype(np.float64).view(np.int64)], axis=1)
                if a.edge_attr is not None:
                    attr = np.ascontiguousarray(a.edge_attr.view(np.int32))
                    edges = np.concatenate([edges, attr.astype(np.int64)], axis=1)
                edges = edges[np.lexsort(edges.T[::-1])]
                h.update(np.ascontiguousarray(edges).tobytes())
            else:
                from pyspark.sql import functions as F

                assert self._vertices is not None and self._edges is not None
                sums = []
                tables = (
                    (self._vertices, VERTEX_COLUMNS),
                    (self._edges, (*EDGE_COLUMNS, "weight", *self._attr_column)),
                )
                for df, cols in tables:
                    row = df.agg(F.sum(F.xxhash64(*cols).cast("decimal(38,0)")).alias("h")).first()
                    sums.append(str(row["h"] if row is not None else None))
                h.update("|".join(sums).encode())
            self._fingerprint = h.hexdigest()[:16]
        return str(self._fingerprint)

    # ---------------------------------------------------------------- conversions
    def arrays(self) -> GraphArrays:
        """The graph as NumPy arrays (collects DataFrame-backed graphs to the driver)."""
        if self._arrays is None:
            assert self._vertices is not None and self._edges is not None
            vt = self._vertices.select(*VERTEX_COLUMNS).toArrow()
            et = self._edges.select("src", "dst", "weight", *self._attr_column).toArrow()
            n = vt.num_rows
            feats = vt.column("features").combine_chunks()
            x = feats.flatten().to_numpy(zero_copy_only=False).astype(np.float32).reshape(n, -1)
            label = vt.column("label").to_numpy(zero_copy_only=False).astype(np.float64)
            split = [s if s is not None else None for s in vt.column("split").to_pylist()]
            self._arrays = GraphArrays(
                ids=vt.column("id").to_numpy().astype(np.int64),
                x=x,
                y=np.nan_to_num(label, nan=-1).astype(np.int64),
                split=split_codes(split, n),
                src=et.column("src").to_numpy().astype(np.int64),
                dst=et.column("dst").to_numpy().astype(np.int64),
                weight=(
                    et.column("weight").to_numpy(zero_copy_only=False).astype(np.float32)
                    if self._stats.has_weight
                    else None
                ),
                edge_attr=(
                    features_matrix(et.column("attr"), et.num_rows, self.num_edge_features)
                    if self._attr_column
                    else None
                ),
            )
        return self._arrays

    def dataframes(self, spark: SparkSession) -> tuple[DataFrame, DataFrame]:
        """The graph as (vertices, edges) Spark DataFrames with ``weight`` always present."""
        if self._vertices is not None and self._edges is not None:
            return self._vertices, self._edges
        from lotan.graph.upload import to_dataframes

        return to_dataframes(spark, self.arrays())

    @property
    def _attr_column(self) -> tuple[str, ...]:
        """``("attr",)`` when the graph has edge features."""
        return ("attr",) if self.num_edge_features else ()

    def to_pyg(self) -> Any:
        """The graph as a ``torch_geometric.data.Data`` (vertices in ``ids`` order)."""
        from lotan.graph.pyg import pyg_data

        return pyg_data(self.arrays())
