"""The physical plan: per-partition stages between exchanges (data only; the runtime,
:mod:`lotan.runtime`, makes it run on either engine).

Every node of the (optimized) logical plan gets a forward stage. Fused (the default), an
aggregation starts a new stage and dense ops join the stage of their latest input, so all
local work between two exchanges runs in one stage; unfused, every op is a stage. A value
used in a later stage travels as a message: the rows other partitions need (exchange) when
an aggregation consumes it, its own rows (to itself) when dense work does. ``X`` and cached
aggregations are read from the partition layout wherever they are needed.

Aggregations of one stage with the same weighting whose inputs come from the same stage form
one :class:`Exchange`: their inputs travel side by side, as the arrays of one tile per pair
of partitions (forward, and their gradients backward). This is how a batch of models
(:mod:`lotan.planner.batching`) shares one exchange per layer.

Backward, stage ``j`` of ``S`` runs at index ``2S - j`` (the last forward stage also runs its
own backward). A ``moments`` node (column statistics over every vertex, for BatchNorm, graph
LayerNorm and PairNorm) starts a stage like an aggregation. Each stage's work is written as
*pieces* (:mod:`lotan.planner.placement`): ``aggregate``, ``forward``, ``backward`` and
``transpose``; a :class:`Schedule` gives every piece the index of the Spark stage it runs in —
fused, the pieces between two exchanges share one; split, each has its own.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from lotan.ir.nodes import Node
from lotan.ir.norm import NormSpec
from lotan.ir.ops import STAGE_STARTS
from lotan.ir.plan import LogicalPlan
from lotan.planner.placement import DEFAULT_PLACEMENT, FUSED, GRAPH, PIECES, Placement


@dataclass(frozen=True)
class Exchange:
    """Aggregations of stage ``stage`` with weighting ``norm`` whose inputs are sent by stage
    ``source``: the inputs travel side by side, as the arrays of one tile per (source,
    destination) pair; backward, their gradients do the same. Each input keeps its own
    contiguous array (no copies into one wide matrix and out again), and is aggregated by
    its own sparse product (:func:`lotan.graph_engine.kernels.spmm`).

    A ``max`` / ``min`` exchange (``reduce``) takes the extreme over the edges ``norm``
    weighs non-zero; the reductions of :mod:`lotan.runtime.edge_functions` (attention, GINE's
    messages) compute a value per edge first (their inputs travel side by side, and so do
    destination-side inputs such as GAT's ``a_dst``, of which only the own rows are read).
    Their backward needs the aggregated rows, so when training the ``aggregate`` piece keeps
    them for the ``transpose`` piece (they ride in Spark's shuffle like other saved values),
    which recomputes the forward pass from them. The output of a node with a per-edge value
    travels under its own id (``n<id>``), a single-input one's under its input's (two
    aggregations of one value are computed once).

    Attributes
    ----------
    index : number of the exchange in the plan (names its messages).
    source : the latest stage that sends an input; ``sources[u]``, the stage that sends
        input ``u`` (one stage for all, except an edge function whose inputs come from
        different stages, as under ``PlannerFlags(fuse=False)``). Backward, each input's
        gradient goes back to the stage that sent it.
    reduce : ``"sum"`` (weighted by ``norm``), ``"max"``, ``"min"`` or one of
        :data:`~lotan.ir.ops.EDGE_REDUCES`.
    inputs : the distinct values aggregated, in column order, with their ``widths``.
    aggs : the aggregation nodes; ``agg_inputs[a]`` are the values ``a`` aggregates (one;
        several for some edge functions, e.g. ``(h, a_src, a_dst)`` for ``attention``).
    stochastic : inputs that differ with dropout off (also sent in the evaluation stream).
    grad_inputs : inputs whose gradient flows back.
    trains : some node has parameters of its own (its edge function's), so the ``transpose``
        piece runs even when no input's gradient flows back.
    """

    index: int
    stage: int
    source: int
    norm: NormSpec
    reduce: str
    inputs: tuple[int, ...]
    widths: tuple[int, ...]
    aggs: tuple[int, ...]
    agg_inputs: Mapping[int, tuple[int, ...]]
    stochastic: tuple[int, ...]
    grad_inputs: tuple[int, ...]
    trains: bool = False
    sources: Mapping[int, int] = field(default_factory=dict)

    def sent_by(self, j: int, of: tuple[int, ...] | None = None) -> tuple[int, ...]:
        """The inputs (of ``of``, default all) that stage ``j`` sends."""
        return tuple(u for u in (self.inputs if of is None else of) if self.sources[u] == j)

    @property
    def backward(self) -> bool:
        """Whether the exchange has a backward pass (a ``transpose`` piece)."""
        return bool(self.grad_inputs) or self.trains

    def width(self, of: tuple[int, ...]) -> int:
        width = dict(zip(self.inputs, self.widths, strict=True))
        return sum(width[u] for u in of)


@dataclass(frozen=True)
class PhysicalPlan:
    """Stages of a logical plan; build with :meth:`build`.

    Attributes
    ----------
    stage_of : forward stage of every computed node.
    layout_values : nodes read from the layout (``X`` and cached aggregations).
    requires_grad : nodes whose gradient is propagated.
    outputs : values the plan computes (the logits by default; emitted by inference stages
        with ``emit_outputs``).
    heads : outputs that are logits of a model (the loss applies to them), in the last stage.
    exchanges : the exchanges, by consumer stage.
    """

    logical: LogicalPlan
    stage_of: Mapping[int, int]
    num_stages: int
    layout_values: frozenset[int]
    requires_grad: frozenset[int]
    outputs: tuple[int, ...]
    heads: tuple[int, ...] = ()
    exchanges: tuple[Exchange, ...] = ()
    norm_index: Mapping[Any, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        logical: LogicalPlan,
        *,
        outputs: tuple[int, ...] | None = None,
        use_cache: bool = True,
        norms: tuple[NormSpec, ...] | None = None,
    ) -> PhysicalPlan:
        """Stage assignment for ``logical``; ``outputs`` defaults to the plan's outputs.

        ``use_cache=False`` computes cached aggregations like any other (used to compute
        them once, and when the rule is off). ``norms`` are the weightings in the order the
        graph was prepared with (default: the plan's own).
        """
        outs = outputs if outputs is not None else logical.outputs
        needed: set[int] = set()

        def need(i: int) -> None:
            if i in needed:
                return
            needed.add(i)
            n = logical.node(i)
            if not (use_cache and n.cached):
                for j in n.inputs:
                    need(j)

        for o in outs:
            need(o)
        layout_values = {
            n.id
            for n in logical.nodes
            if n.id in needed and (n.op == "input" or (use_cache and n.cached))
        }
        stage_of: dict[int, int] = {}
        for n in logical.nodes:
            if n.id not in needed or n.id in layout_values:
                continue
            before = [stage_of[i] for i in n.inputs if i in stage_of]
            latest = max(before, default=0)
            if n.op in STAGE_STARTS or not logical.fused:
                stage_of[n.id] = latest + 1
            else:
                stage_of[n.id] = latest
        num_stages = max(stage_of.values(), default=0) + 1
        if logical.prune_constant_grads:
            grad = {i for i in stage_of if i not in logical.constant}
        else:
            grad = set(stage_of)
        # Statistics of a value whose gradient does not flow (``X``) need none either.
        grad -= {
            i
            for i in stage_of
            if logical.node(i).op == "moments" and logical.node(i).inputs[0] not in grad
        }
        norm_index = {norm: k for k, norm in enumerate(norms or logical.norms)}
        heads = tuple(o for o in logical.outputs if o in outs)
        if any(stage_of.get(h, 0) != num_stages - 1 for h in heads):
            raise ValueError("every model's output must be computed in the last stage")
        exchanges = _exchanges(logical, stage_of, layout_values, grad)
        return cls(
            logical,
            stage_of,
            num_stages,
            frozenset(layout_values),
            frozenset(grad),
            tuple(outs),
            heads,
            exchanges,
            norm_index,
        )

    # ------------------------------------------------------------------ structure
    @property
    def last(self) -> int:
        return self.num_stages - 1

    def backward_index(self, j: int) -> int:
        return 2 * self.last - j

    def nodes_at(self, j: int) -> list[int]:
        return [n.id for n in self.logical.nodes if self.stage_of.get(n.id) == j]

    def consumers(self, i: int) -> list[int]:
        return [c for c in self.logical.consumers[i] if c in self.stage_of]

    def dense_nodes(self, j: int) -> tuple[Node, ...]:
        """Stage ``j``'s dense ops in order: its dense graph."""
        nodes = (self.logical.node(i) for i in self.nodes_at(j))
        return tuple(n for n in nodes if n.op not in STAGE_STARTS)

    def stage_inputs(self, j: int) -> list[int]:
        """Values a stage's dense graph reads that it does not compute."""
        here = set(self.nodes_at(j))
        out: dict[int, None] = {}
        for i in self.nodes_at(j):
            node = self.logical.node(i)
            if node.op in STAGE_STARTS:
                continue
            for k in node.inputs:
                if k not in here or self.logical.node(k).op in STAGE_STARTS:
                    out.setdefault(k, None)
        return list(out)

    def moments_at(self, j: int) -> list[int]:
        """The ``moments`` nodes (reductions across partitions) stage ``j`` combines."""
        return [i for i in self.nodes_at(j) if self.logical.node(i).op == "moments"]

    def moments_sent_by(self, j: int) -> list[int]:
        """The ``moments`` nodes whose input stage ``j`` sends its partials of."""
        return [
            i
            for i in self.stage_of
            if self.logical.node(i).op == "moments" and self.moments_source(i) == j
        ]

    def moments_source(self, m: int) -> int:
        """The stage that sends the partials of ``moments`` node ``m``'s input."""
        u = self.logical.node(m).inputs[0]
        return _sender(u, self.stage_of[m], self.stage_of, self.layout_values)

    @property
    def stochastic(self) -> frozenset[int]:
        return self.logical.stochastic

    def exchanges_into(self, j: int) -> list[Exchange]:
        return [x for x in self.exchanges if x.stage == j]

    def exchanges_from(self, j: int) -> list[Exchange]:
        return [x for x in self.exchanges if j in x.sources.values()]

    # ------------------------------------------------------------------ stages
    def schedule(self, *, train: bool, placement: Placement = DEFAULT_PLACEMENT) -> Schedule:
        """The pieces of a run in order and the Spark stage each runs in (see
        :mod:`lotan.planner.placement`)."""
        pieces: list[tuple[str, int]] = []
        for j in range(self.num_stages):
            if self.exchanges_into(j):
                pieces.append(("aggregate", j))
            pieces.append(("forward", j))
        if train:
            for j in range(self.last, -1, -1):
                if j != self.last:
                    pieces.append(("backward", j))
                if any(x.backward for x in self.exchanges_into(j)):
                    pieces.append(("transpose", j))
        groups: dict[Any, int] = {}
        index: dict[tuple[str, int], int] = {}
        for piece, j in pieces:
            if placement.split:
                key: Any = (piece, j)
            elif piece in ("aggregate", "forward") or j == self.last:
                key = ("forward", j)
            else:
                key = ("backward", j)
            index[(piece, j)] = groups.setdefault(key, len(groups))
        return Schedule(tuple(pieces), index, placement, train, self.last)


@dataclass(frozen=True)
class Schedule:
    """The pieces of one run (``(piece, stage)`` in order: ``aggregate``, ``forward``,
    ``backward``, ``transpose``) and the index of the Spark stage each runs in. Fused, the
    pieces between two exchanges share an index; split, each has its own."""

    pieces: tuple[tuple[str, int], ...]
    index: Mapping[tuple[str, int], int]
    placement: Placement
    train: bool = True
    last: int = 0

    def of(self, piece: str, j: int) -> int:
        return self.index[(piece, j)]

    def label(self, piece: str, j: int) -> str:
        """How a piece is named (``stage 1 · forward + loss``)."""
        loss = piece == "forward" and self.train and j == self.last
        return f"stage {j} · {piece}" + (" + loss" if loss else "")

    @property
    def spark_stages(self) -> list[tuple[tuple[str, int], ...]]:
        """The pieces of each Spark stage, in the order the stages run."""
        grouped: dict[int, list[tuple[str, int]]] = {}
        for piece, j in self.pieces:
            grouped.setdefault(self.of(piece, j), []).append((piece, j))
        return [tuple(grouped[k]) for k in sorted(grouped)]

    def stage_kind(self, pieces: Sequence[tuple[str, int]]) -> str:
        """:data:`~lotan.planner.placement.GRAPH`, ``DENSE`` or ``FUSED`` (both): what a Spark
        stage of ``pieces`` does."""
        kinds = {PIECES[piece] for piece, _ in pieces}
        return kinds.pop() if len(kinds) == 1 else FUSED

    def stage_label(self, pieces: Sequence[tuple[str, int]]) -> str:
        """How the Spark UI names a stage of ``pieces`` (fused: by its dense pieces)."""
        fused = self.stage_kind(pieces) == FUSED
        names = [self.label(p, j) for p, j in pieces if not (fused and PIECES[p] == GRAPH)]
        return " + ".join(names or [self.label(p, j) for p, j in pieces])


def _exchanges(
    logical: LogicalPlan,
    stage_of: Mapping[int, int],
    layout_values: set[int],
    requires_grad: set[int],
) -> tuple[Exchange, ...]:
    """Group the aggregations computed per run by (stage, source stage, weighting).

    A layout value is sent by the stage before its consumer (it is available everywhere);
    a computed value by the stage that computes it. An aggregation with several inputs
    from different stages (an edge function under ``fuse=False``) is grouped by its latest.
    """
    stochastic = logical.stochastic
    groups: dict[tuple[int, int, NormSpec, str], list[int]] = {}
    for n in logical.nodes:
        if n.op != "aggregate" or n.id not in stage_of or n.norm is None:
            continue
        j = stage_of[n.id]
        source = max(_sender(u, j, stage_of, layout_values) for u in n.inputs)
        groups.setdefault((j, source, n.norm, n.reduce), []).append(n.id)
    out = []
    ordered = sorted(groups.items(), key=_group_order)
    for index, ((j, source, norm, reduce), aggs) in enumerate(ordered):
        inputs = tuple(dict.fromkeys(u for a in aggs for u in logical.node(a).inputs))
        out.append(
            Exchange(
                index=index,
                stage=j,
                source=source,
                norm=norm,
                reduce=reduce,
                inputs=inputs,
                widths=tuple(logical.node(u).width for u in inputs),
                aggs=tuple(aggs),
                agg_inputs={a: logical.node(a).inputs for a in aggs},
                stochastic=tuple(u for u in inputs if u in stochastic),
                grad_inputs=tuple(u for u in inputs if u in requires_grad),
                trains=any(logical.node(a).params for a in aggs),
                sources={u: _sender(u, j, stage_of, layout_values) for u in inputs},
            )
        )
    return tuple(out)


def _sender(
    u: int, j: int, stage_of: Mapping[int, int], layout_values: set[int] | frozenset[int]
) -> int:
    """The stage that sends value ``u`` to an aggregation of stage ``j``."""
    return j - 1 if u in layout_values else stage_of[u]


def _group_order(
    item: tuple[tuple[int, int, NormSpec, str], list[int]],
) -> tuple[int, int, int]:
    (j, source, _, _), aggs = item
    return (j, source, aggs[0])
