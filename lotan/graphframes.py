"""GraphFrames out: Lotan's per-vertex results back as vertex columns of a new
``GraphFrame``, so that GraphFrames algorithms can run on them (the way in is
:meth:`lotan.Graph.from_graphframe`, :mod:`lotan.graph.graphframes`). Nothing here needs the
GraphFrames jar: a ``GraphFrame``'s ``vertices`` and ``edges`` are plain DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from lotan.errors import GraphInputError
from lotan.graph.graphframes import graphframe_frames

if TYPE_CHECKING:
    from pyspark.sql import DataFrame


__all__ = ["VertexEdgeFrames", "to_graphframe"]


@dataclass(frozen=True)
class VertexEdgeFrames:
    """A GraphFrame-shaped pair of DataFrames (``GraphFrame(vertices, edges)`` takes them)."""

    vertices: DataFrame
    edges: DataFrame


def to_graphframe(g: Any, results: DataFrame, *, prefix: str = "") -> Any:
    """A new graph of the same kind as ``g`` whose vertices carry ``results``' columns
    (``results`` keyed by ``id``: what ``lotan.predict`` returns, or embeddings), joined by
    id (vertices without a result get nulls); ``prefix`` goes before every added column.
    ``type(g)(vertices, edges)`` when ``g``'s type is built that way (``GraphFrame``), else
    a :class:`VertexEdgeFrames`."""
    from pyspark.sql import DataFrame

    vertices, edges = graphframe_frames(g)
    if not isinstance(results, DataFrame) or "id" not in results.columns:
        raise GraphInputError(
            "results must be a Spark DataFrame with an id column (lotan.predict(..., "
            "engine='spark') returns one)"
        )
    added = [c for c in results.columns if c != "id"]
    renamed = results.select("id", *(results[c].alias(prefix + c) for c in added))
    clash = sorted(set(vertices.columns) & {prefix + c for c in added})
    if clash:
        raise GraphInputError(
            f"the vertices already have column(s) {clash}; pass prefix='...' to rename the "
            "added ones"
        )
    joined = vertices.join(renamed, on="id", how="left")
    try:
        return type(g)(joined, edges)
    except Exception:  # a type not built from (vertices, edges)
        return VertexEdgeFrames(joined, edges)
