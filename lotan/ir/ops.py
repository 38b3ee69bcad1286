"""The op vocabulary of a logical plan, declared once.

Every op has one :class:`Op` entry in :data:`OPS`: its family (the plan's input, a graph
aggregation, a statistics reduction across partitions, or dense per-vertex work), what it
computes, the node attributes it reads (a node may set no other; :class:`~lotan.ir.nodes.Node`
checks), whether its value is *pure* — a function of its inputs alone, so that the planner
may treat it as constant when they are — and how ``explain`` annotates it. The planner,
the runtime and ``explain`` read this table; the neural engine evaluates the dense ops (its
evaluators are keyed by :data:`DENSE_OPS`, tested to cover them all).

The reductions an ``aggregate`` node may use are declared here too (:data:`REDUCES`).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, get_args

__all__ = [
    "DENSE_OPS",
    "EDGE_REDUCES",
    "EXTREMES",
    "OPS",
    "REDUCES",
    "STAGE_STARTS",
    "Family",
    "Op",
    "OpName",
    "Reduce",
]

OpName = Literal[
    "input",
    "aggregate",
    "moments",
    "linear",
    "matmul",
    "bias",
    "act",
    "dropout",
    "add",
    "concat",
    "scale_eps",
    "head_dot",
    "head_mean",
    "scale",
    "layer_norm",
    "maximum",
    "batch_norm",
    "graph_norm",
    "pair_norm",
    "pair_norm_rows",
]
Family = Literal["input", "aggregate", "statistics", "dense"]

#: How an ``aggregate`` node reduces a vertex's in-edges: ``sum`` (weighted by its
#: :class:`~lotan.ir.norm.NormSpec`, linear), the column-wise extremes, or a value computed
#: per edge first (:data:`EDGE_REDUCES`).
Reduce = Literal["sum", "max", "min", "attention", "attention_v2", "relu_sum"]
REDUCES: tuple[str, ...] = get_args(Reduce)
#: Column-wise extremes over the edges the weighting keeps (not linear: never reordered).
EXTREMES = ("max", "min")
#: Reductions that compute a value per edge from both ends (and the edge's features):
#: GATConv's ``attention``, GATv2Conv's ``attention_v2``, GINEConv's ``relu_sum``. Their
#: outputs and gradients travel under the node's id, as they may have several inputs.
EDGE_REDUCES = ("attention", "attention_v2", "relu_sum")


def _param(n: Any) -> str:
    return f"[{n.param}]"


def _norm(n: Any) -> str:
    return f"[{n.param}, eps={n.eps:g}]" if n.param else f"[eps={n.eps:g}]"


def _aggregate(n: Any) -> str:
    if n.norm is None:
        return ""
    how = n.norm.describe() if n.reduce == "sum" else n.reduce
    if n.reduce.startswith("attention"):
        how = f"{n.reduce} {n.heads} heads, {n.norm.describe()}"
        how += f", dropout {n.p:g}" if n.p > 0 else ""
    if n.edge_features:
        how += ", edge features"
    if n.params:
        how += f"; {', '.join(n.params)}"
    return f"[{how}{', cached' if n.cached else ''}]"


def _moments(n: Any) -> str:
    if not n.buffers:
        return "[batch statistics]"
    mom = "cumulative" if n.momentum is None else f"momentum {n.momentum:g}"
    return f"[running stats {n.buffers[0].rsplit('.', 1)[0]}, {mom}]"


def _always(_: Any) -> bool:
    return True


def _never(_: Any) -> bool:
    return False


def _without_parameters(n: Any) -> bool:
    return n.param is None and not n.params


@dataclass(frozen=True)
class Op:
    """One op of the vocabulary.

    Attributes
    ----------
    name : the op (a node's ``op``).
    family : ``input`` (the vertex features ``X``), ``aggregate`` (a reduction over each
        vertex's in-edges: a graph stage), ``statistics`` (column statistics over every
        vertex, a reduction across partitions) or ``dense`` (per-vertex work).
    meaning : what it computes, in a line (``explain``'s vocabulary and the docs).
    attrs : the node attributes it reads besides ``id``, ``inputs`` and ``width``.
    pure : whether its value is a function of its inputs alone (no parameter, no randomness,
        no running state), given the node: the planner treats a pure op of constants as
        constant. Normalizations are conservatively not pure.
    annotate : the bracketed part of its ``explain`` line (``linear[convs.0.lin.weight]``).
    """

    name: OpName
    family: Family
    meaning: str
    attrs: tuple[str, ...] = ()
    pure: Callable[[Any], bool] = _never
    annotate: Callable[[Any], str] = lambda _: ""

    @property
    def starts_stage(self) -> bool:
        """Its value needs rows (an aggregation) or partials (statistics) from every other
        partition, so it starts a stage of the physical plan."""
        return self.family in ("aggregate", "statistics")


_AGGREGATE_ATTRS = ("norm", "reduce", "heads", "params", "edge_features", "p", "negative_slope")
_OPS = (
    Op("input", "input", "the vertex features X", (), _always),
    Op(
        "aggregate",
        "aggregate",
        "a reduction over each vertex's in-edges (Â ·, extremes, or per-edge values)",
        (*_AGGREGATE_ATTRS, "cached"),
        _without_parameters,
        _aggregate,
    ),
    Op(
        "moments",
        "statistics",
        "column means and biased variances over every vertex (a (2, C) value)",
        ("buffers", "momentum"),
        annotate=_moments,
    ),
    Op("linear", "dense", "x @ Wᵀ", ("param",), annotate=_param),
    Op(
        "matmul",
        "dense",
        "x @ W (a square weight used untransposed, GCN2Conv's)",
        ("param",),
        annotate=_param,
    ),
    Op("bias", "dense", "x + b", ("param",), annotate=_param),
    Op("act", "dense", "an activation", ("act", "negative_slope"), _always, lambda n: f"[{n.act}]"),
    Op(
        "dropout",
        "dense",
        "dropout with a mask keyed by vertex id",
        ("p",),
        annotate=lambda n: f"[p={n.p:g}]",
    ),
    Op("add", "dense", "the sum of the inputs", (), _always),
    Op("concat", "dense", "the inputs side by side (along features)", (), _always),
    Op(
        "scale_eps",
        "dense",
        "(1 + eps) · x, eps fixed or a parameter",
        ("param", "eps"),
        _without_parameters,
        lambda n: _param(n) if n.param else f"[eps={n.eps:g}]",
    ),
    Op(
        "head_dot",
        "dense",
        "per head, the dot product of x with the parameter (GAT's scores)",
        ("param", "heads"),
        annotate=_param,
    ),
    Op("head_mean", "dense", "the mean over heads", ("heads",), _always),
    Op("scale", "dense", "x · factor", ("factor",), _always, lambda n: f"[{n.factor:g}]"),
    Op(
        "layer_norm",
        "dense",
        "each row normalized over its features",
        ("param", "eps"),
        annotate=_norm,
    ),
    Op(
        "maximum",
        "dense",
        "the elementwise maximum of the inputs (jumping knowledge 'max')",
        (),
        _always,
    ),
    Op(
        "batch_norm",
        "dense",
        "(x - mean) / sqrt(var + eps) by the statistics input",
        ("param", "eps"),
        annotate=_norm,
    ),
    Op(
        "graph_norm",
        "dense",
        "x by the mean and deviation of all entries (graph LayerNorm)",
        ("param", "eps"),
        annotate=_norm,
    ),
    Op(
        "pair_norm",
        "dense",
        "PairNorm: centred, then scaled by the mean row norm",
        ("factor", "eps"),
        annotate=lambda n: f"[scale={n.factor:g}, eps={n.eps:g}]",
    ),
    Op(
        "pair_norm_rows",
        "dense",
        "PairNorm(scale_individually): each centred row by its norm",
        ("factor", "eps"),
        annotate=lambda n: f"[scale={n.factor:g}, eps={n.eps:g}]",
    ),
)
#: Every op, by name.
OPS: dict[str, Op] = {op.name: op for op in _OPS}
assert set(OPS) == set(get_args(OpName)), "every op name has one declaration"
#: The dense ops (what the neural engine evaluates).
DENSE_OPS: frozenset[str] = frozenset(n for n, op in OPS.items() if op.family == "dense")
#: Ops that start a stage (:attr:`Op.starts_stage`).
STAGE_STARTS: frozenset[str] = frozenset(n for n, op in OPS.items() if op.starts_stage)
