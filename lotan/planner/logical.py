"""The logical plan: a model as a DAG of graph and dense operations.

Ops: ``input`` (the vertex features ``X``), ``aggregate`` (a reduction over each vertex's
in-edges: ``reduce="sum"`` is ``Â ·`` with the weights of a :class:`NormSpec` — gcn / mean /
sum / weighted_sum; ``"max"`` / ``"min"`` take the column-wise extreme over the edges the
NormSpec weighs non-zero; ``"attention"`` (GAT), ``"attention_v2"`` (GATv2) and
``"relu_sum"`` (GINE) compute a value per edge first, see :mod:`lotan.planner.messages`),
and the dense ops of :class:`~lotan.nn_engine.dense.DenseNode`
(``linear``, ``bias``, ``act``, ``dropout``, ``add``, ``concat``, ``scale_eps``,
``batch_norm``, ...), and ``moments`` — a **reduction across partitions**: the column means
and biased variances of its input over every vertex, a ``(2, C)`` value that the graph-wide
normalizations read (in evaluation, BatchNorm's running statistics instead, see
:attr:`Node.buffers`). Like an aggregation, a ``moments`` node starts a stage. The loss
(masked cross-entropy) applies to each of ``outputs``: one for a model, one per model for a
batch of models (:mod:`lotan.planner.batching`). Nodes are kept in topological order.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from functools import cached_property

from lotan.errors import UnsupportedModelError
from lotan.graph_engine.layout import NormSpec
from lotan.nn_engine.dense import DENSE_OPS, DenseNode

__all__ = ["DENSE_OPS", "LogicalPlan", "Node"]


@dataclass(frozen=True)
class Node:
    """One operation; ``width`` is the number of features of its value."""

    id: int
    op: str
    inputs: tuple[int, ...]
    width: int
    param: str | None = None
    act: str | None = None
    negative_slope: float = 0.01
    p: float = 0.0
    eps: float = 0.0
    norm: NormSpec | None = None
    #: For ``aggregate``: ``"sum"`` (weighted by ``norm``; linear), ``"max"``, ``"min"``, or
    #: one of :data:`lotan.planner.messages.EDGE_REDUCES` (``heads``, ``negative_slope``).
    reduce: str = "sum"
    heads: int = 1
    #: For ``aggregate``: parameters of its edge function (roles per ``reduce``: see
    #: :mod:`lotan.planner.messages`).
    params: tuple[str, ...] = ()
    #: For ``aggregate``: it reads the graph's edge features.
    edge_features: bool = False
    #: For ``scale``, ``pair_norm``: the constant factor.
    factor: float = 1.0
    #: For ``moments`` of a BatchNorm that tracks running statistics: the buffers
    #: ``(running_mean, running_var, num_batches_tracked)``, updated by each training
    #: epoch with ``momentum`` (``None``: the cumulative average), and read instead of the
    #: batch statistics in evaluation.
    buffers: tuple[str, ...] = ()
    momentum: float | None = 0.1
    cached: bool = False  # an aggregation of a constant, computed once per run
    origin: str = ""  # the module it was lowered from
    #: Seeds the dropout mask (default: the id). A batch of models renumbers its nodes and
    #: keeps each model's own ids here, so every model draws the masks it draws alone.
    key: int | None = None
    #: The run seed of its masks when it is not the run's: a ``fit_many`` model with a seed
    #: of its own (:class:`lotan.nn_engine.dense.MaskSeed`).
    seed: int | None = None

    @property
    def random(self) -> bool:
        """A dropout (of features, or of attention coefficients) that drops something."""
        return self.p > 0 and (self.op == "dropout" or self.reduce == "attention")

    @property
    def evaluates_apart(self) -> bool:
        """Its value differs in evaluation mode (``model.eval()``): a dropout, or the
        statistics of a BatchNorm that tracks running statistics."""
        return self.random or (self.op == "moments" and bool(self.buffers))

    def dense(self) -> DenseNode:
        if self.op not in DENSE_OPS:
            raise ValueError(f"node {self.id} ({self.op}) is not a dense op")
        return DenseNode(
            id=self.id,
            op=self.op,  # type: ignore[arg-type]
            inputs=self.inputs,
            param=self.param,
            act=self.act,
            negative_slope=self.negative_slope,
            p=self.p,
            eps=self.eps,
            heads=self.heads,
            factor=self.factor,
            key=self.id if self.key is None else self.key,
            seed=self.seed,
        )

    def describe(self) -> str:
        args = ", ".join(f"%{i}" for i in self.inputs)
        extra = ""
        if self.op == "aggregate" and self.norm is not None:
            how = self.norm.describe() if self.reduce == "sum" else self.reduce
            if self.reduce.startswith("attention"):
                how = f"{self.reduce} {self.heads} heads, {self.norm.describe()}"
                how += f", dropout {self.p:g}" if self.p > 0 else ""
            if self.edge_features:
                how += ", edge features"
            if self.params:
                how += f"; {', '.join(self.params)}"
            extra = f"[{how}{', cached' if self.cached else ''}]"
        elif self.op in ("linear", "matmul", "bias", "head_dot") or (
            self.op == "scale_eps" and self.param
        ):
            extra = f"[{self.param}]"
        elif self.op == "scale_eps":
            extra = f"[eps={self.eps:g}]"
        elif self.op == "act":
            extra = f"[{self.act}]"
        elif self.op == "dropout":
            extra = f"[p={self.p:g}]"
        elif self.op == "scale":
            extra = f"[{self.factor:g}]"
        elif self.op in ("layer_norm", "batch_norm", "graph_norm"):
            extra = f"[{self.param}, eps={self.eps:g}]" if self.param else f"[eps={self.eps:g}]"
        elif self.op in ("pair_norm", "pair_norm_rows"):
            extra = f"[scale={self.factor:g}, eps={self.eps:g}]"
        elif self.op == "moments":
            mom = "cumulative" if self.momentum is None else f"momentum {self.momentum:g}"
            extra = (
                f"[running stats {self.buffers[0].rsplit('.', 1)[0]}, {mom}]"
                if (self.buffers)
                else "[batch statistics]"
            )
            return f"%{self.id} = {self.op}{extra}({args}) -> 2x{self.width}"
        return f"%{self.id} = {self.op}{extra}({args}) -> {self.width}"


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
        """Nodes whose value depends on no parameter and no dropout: the same every epoch."""
        const: set[int] = set()
        for n in self.nodes:
            if n.op == "input" or (self._deterministic(n) and all(i in const for i in n.inputs)):
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

    @staticmethod
    def _deterministic(n: Node) -> bool:
        """Parameter-free and not random (statistics are not: running ones change)."""
        if n.op == "moments":
            return False
        if n.op == "aggregate":
            return not n.params
        return n.op in ("act", "add", "concat", "scale", "head_mean", "maximum") or (
            n.op == "scale_eps" and n.param is None
        )

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
