"""The logical plan: a model as a DAG of graph and dense operations.

Its nodes (:class:`~lotan.ir.nodes.Node`) are ops of :mod:`lotan.ir.ops`: ``input`` (the
vertex features ``X``), ``aggregate`` (a reduction over each vertex's in-edges:
``reduce="sum"`` is ``Â ·`` with the weights of a :class:`~lotan.ir.norm.NormSpec`;
``"max"`` / ``"min"`` take the column-wise extreme over the edges the NormSpec weighs
non-zero; the :data:`~lotan.ir.ops.EDGE_REDUCES` compute a value per edge first), the dense
ops, and ``moments`` — a **reduction across partitions**: the column means and biased
variances of its input over every vertex, a ``(2, C)`` value that the graph-wide
normalizations read (in evaluation, BatchNorm's running statistics instead, see
:attr:`Node.buffers`). Like an aggregation, a ``moments`` node starts a stage. The loss
(masked cross-entropy) applies to each of ``outputs``: one for a model, one per model for a
batch of models (:mod:`lotan.planner.batching`). Nodes are kept in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from lotan.errors import UnsupportedModelError
from lotan.ir.nodes import Node
from lotan.ir.norm import NormSpec
from lotan.ir.ops import OPS

__all__ = ["LogicalPlan"]


@dataclass(frozen=True)
class LogicalPlan:
    """A DAG of :class:`Node` in topological order; ``outputs`` are the logits of each model
    (one for a single model)."""

    nodes: tuple[Node, ...]
    outputs: tuple[int, ...]
    fused: bool = False
    prune_constant_grads: bool = False
    #: The per-partition memory budget of one layer's per-edge tensors
    #: (:attr:`~lotan.planner.flags.PlannerFlags.edge_block_mb`).
    edge_block_bytes: int = 512 << 20

    @cached_property
    def by_id(self) -> dict[int, Node]:
        return {n.id: n for n in self.nodes}

    def node(self, i: int) -> Node:
        return self.by_id[i]

    @cached_property
    def consumers(self) -> dict[int, list[int]]:
        out: dict[int, list[int]] = {n.id: [] for n in self.nodes}
        for n in self.nodes:
            for i in n.inputs:
                out[i].append(n.id)
        return out

    @cached_property
    def constant(self) -> frozenset[int]:
        """Nodes whose value depends on no parameter and no dropout: the same every epoch
        (pure ops, :attr:`lotan.ir.ops.Op.pure`, of constants; ``X`` is one)."""
        const: set[int] = set()
        for n in self.nodes:
            if OPS[n.op].pure(n) and all(i in const for i in n.inputs):
                const.add(n.id)
        return frozenset(const)

    @cached_property
    def stochastic(self) -> frozenset[int]:
        """Nodes downstream of a dropout or of running statistics: they differ in evaluation
        mode (computed again in the evaluation stream)."""
        s: set[int] = set()
        for n in self.nodes:
            if n.evaluates_apart or any(i in s for i in n.inputs):
                s.add(n.id)
        return frozenset(s)

    @property
    def output(self) -> int:
        """The output of a single-model plan."""
        if len(self.outputs) != 1:
            raise ValueError(f"a plan of {len(self.outputs)} models has no single output")
        return self.outputs[0]

    @property
    def out_width(self) -> int:
        return self.node(self.output).width

    @property
    def norms(self) -> tuple[NormSpec, ...]:
        """The distinct normalizations the plan's aggregations use, in first-use order."""
        seen: dict[NormSpec, None] = {}
        for n in self.nodes:
            if n.op == "aggregate" and n.norm is not None:
                seen.setdefault(n.norm, None)
        return tuple(seen)

    @property
    def param_names(self) -> tuple[str, ...]:
        """Every parameter the plan reads: dense ops' and edge functions'."""
        names: dict[str, None] = {}
        for n in self.nodes:
            for p in ((n.param,) if n.param else ()) + n.params:
                names.setdefault(p, None)
        return tuple(names)

    @property
    def buffer_names(self) -> tuple[str, ...]:
        """Every buffer the plan reads and updates (BatchNorm's running statistics)."""
        return tuple(b for n in self.nodes for b in n.buffers)

    @property
    def has_eval_stream(self) -> bool:
        """Evaluation mode computes something else than training (dropout, or running
        statistics): the forward pass carries an evaluation stream."""
        return any(n.evaluates_apart for n in self.nodes)

    def with_nodes(self, nodes: list[Node]) -> LogicalPlan:
        """A new plan from ``nodes`` (re-sorted topologically, unused nodes dropped)."""
        by_id = {n.id: n for n in nodes}
        order: list[Node] = []
        seen: set[int] = set()

        def visit(i: int) -> None:
            if i in seen:
                return
            seen.add(i)
            for j in by_id[i].inputs:
                visit(j)
            order.append(by_id[i])

        for out in self.outputs:
            visit(out)
        inputs = [n for n in nodes if n.op == "input" and n.id not in seen]
        return replace(self, nodes=tuple(inputs + order))

    def check_same_output(self, before: LogicalPlan, rule: str) -> None:
        """Rewrites must not change what the model computes: same output width."""
        if self.out_width != before.out_width:
            raise UnsupportedModelError(
                f"planner rule {rule} changed the output width from {before.out_width} to "
                f"{self.out_width}; turn it off with PlannerFlags({rule}=False) and report this"
            )

    def describe(self) -> str:
        outs = ", ".join(f"%{o}" for o in self.outputs)
        return "\n".join(n.describe() for n in self.nodes) + f"\nreturn {outs}"
