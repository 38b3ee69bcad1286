"""Every estimate the planner makes, in one place: bytes a plan exchanges per epoch, the
per-edge memory of a layer with per-edge values, the working set of a batch of models per
partition, and the local engine's working set for ``engine="auto"``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lotan.ir.ops import EDGE_REDUCES
from lotan.ir.plan import LogicalPlan

__all__ = ["FLOAT_BYTES", "GraphSize", "edge_bytes", "local_working_set"]

#: Bytes of one float32 value (edge tensors, exchanged columns).
FLOAT_BYTES = 4


class GraphSize(Protocol):
    """The sizes of a graph an estimate reads (:class:`lotan.Graph` has them)."""

    @property
    def num_vertices(self) -> int: ...

    @property
    def num_edges(self) -> int: ...

    @property
    def num_features(self) -> int: ...

    @property
    def num_edge_features(self) -> int: ...


def edge_bytes(node: Any, num_edges: int, train: bool = True) -> int:
    """Bytes of the per-edge tensors ``node`` holds at once for ``num_edges`` in-edges
    (forward and, with ``train``, backward): coefficients, score gradients and dropout
    multipliers ``(E, heads)`` for attention; the edge projection ``(E, width)`` and its
    gradient when the node has edge features. The edge features themselves are part of the
    layout."""
    heads = node.heads if node.reduce != "relu_sum" else 0
    per_edge = heads * (3 if train else 2)
    if node.edge_features:
        per_edge += node.width * (2 if train and node.params else 1)
    return int(num_edges * per_edge * FLOAT_BYTES)


def local_working_set(graph: GraphSize, plans: Sequence[LogicalPlan]) -> int:
    """Estimated peak bytes of the local engine training ``plans`` on ``graph`` in this
    process: the graph's arrays, their partition layouts (features again, edges in both
    directions per normalization), and for every vertex and plan node its value, its
    gradient and its recomputation in the backward pass (two streams for stochastic nodes
    when accuracies are measured with dropout off); attention adds per-edge values."""
    n, e = graph.num_vertices, graph.num_edges
    f, ef = graph.num_features, graph.num_edge_features
    arrays = n * (8 + 8 + 1 + 4 * f) + e * (8 + 8 + 4 + 4 * ef)
    norms = {norm for p in plans for norm in p.norms}
    layout = n * (8 + 4 * f) + e * (4 * ef + 16 * max(1, len(norms)))
    values = 0
    for p in plans:
        stochastic = p.stochastic if p.has_eval_stream else frozenset()
        for node in p.nodes:
            streams = 2 if node.id in stochastic else 1
            per_vertex = node.width * streams
            values += 3 * 4 * n * per_vertex
            if node.op == "aggregate" and node.reduce in EDGE_REDUCES:  # per-edge values
                values += 3 * 4 * e * max(node.heads, node.width) * streams
    return arrays + layout + values
