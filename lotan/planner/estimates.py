"""Every estimate the planner makes, in one place: bytes a plan exchanges per epoch, the
per-edge memory of a layer with per-edge values, the working set of a batch of models per
partition, and the local engine's working set for ``engine="auto"``."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Protocol

from lotan.ir.nodes import Node
from lotan.ir.ops import EDGE_REDUCES
from lotan.ir.plan import LogicalPlan
from lotan.planner.physical import Exchange, PhysicalPlan

__all__ = [
    "FLOAT_BYTES",
    "GraphSize",
    "edge_bytes",
    "exchange_bytes",
    "local_working_set",
    "statistics_bytes",
    "working_set_bytes",
]

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


def working_set_bytes(physical: PhysicalPlan, max_own: int, max_rows: int) -> int:
    """Estimated peak bytes of one training task on the largest partition.

    Per stage: the assembled exchange tiles (``max_rows`` = own + halo rows, both streams
    when there is dropout) and their aggregations, plus the stage's dense values; the
    backward pass recomputes the dense values with their gradients, so they count three
    times. The largest stage is the estimate. (Messages in flight are Spark's, on disk.)
    """
    logical = physical.logical
    evals = logical.has_eval_stream
    worst = 0
    for j in range(physical.num_stages):
        cols_full = 0
        for x in physical.exchanges_into(j):
            cols_full += x.width(x.inputs) + (x.width(x.stochastic) if evals else 0)
        dense = 0
        for i in physical.nodes_at(j):
            width = logical.node(i).width
            dense += width * (2 if evals and i in logical.stochastic else 1)
        for k in physical.stage_inputs(j):
            if k not in physical.stage_of or physical.stage_of[k] != j:
                dense += logical.node(k).width
        total = cols_full * max_rows + (cols_full + 3 * dense) * max_own
        worst = max(worst, total * FLOAT_BYTES)
    return worst


def exchange_bytes(x: Exchange, halo: int, evals: bool) -> tuple[int, int]:
    """Bytes exchange ``x`` moves per epoch, forward and backward, for ``halo`` halo rows
    over all partitions (forward in both streams when the plan has an evaluation stream)."""
    width = x.width(x.inputs) + (x.width(x.stochastic) if evals else 0)
    return halo * width * FLOAT_BYTES, halo * x.width(x.grad_inputs) * FLOAT_BYTES


def statistics_bytes(node: Node, parts: int, streams: int, backward: bool) -> tuple[int, int]:
    """Bytes the statistics of ``moments`` node ``node`` move per epoch, forward and
    backward: every partition sends its partial (n, mean, M2 in float64) to every partition,
    in ``streams`` streams; backward, the two gradient sums."""
    fwd = parts * parts * (1 + 2 * node.width) * 8 * streams
    bwd = parts * parts * 2 * node.width * 8 if backward else 0
    return fwd, bwd
