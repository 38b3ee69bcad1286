"""The physical plan: per-partition stages between exchanges, run by both engines.

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
own backward): it sums the gradients of the values it produced (partials from the
transposed aggregations of later stages, gradients of carried values), recomputes its dense
graph from the inputs it saved (same dropout masks) and back-propagates: parameter gradients
go to the driver, gradients of aggregation outputs go through ``Âᵀ`` back to the stage that
produced the aggregated value, gradients of carried values go to their producer.

With dropout (or BatchNorm's running statistics), the forward pass also carries an
evaluation stream (dropout off, running statistics) for the values that differ in evaluation
mode, so accuracies need no extra pass.

A ``moments`` node (column statistics over every vertex, for BatchNorm, graph LayerNorm and
PairNorm; :mod:`lotan.graph_engine.reductions`) starts a stage like an aggregation: the stage
that computes its input sends this partition's partial to **every** partition (and, in
training, to the driver, which updates the running statistics), and the consuming stage
combines them in partition order before its dense work. Backward, the consumer's share of
the statistics' gradient goes to the producer's ``backward`` piece on every partition as the
coefficients of an affine term ``a + b · x``, summed there in partition order and added to
the gradient of the input ``x`` while its dense graph is recomputed.

Each stage's work is written as *pieces* (:mod:`lotan.planner.placement`): ``aggregate``
(graph: ``Â`` of the exchanged rows), ``forward`` (dense), ``backward`` (dense), ``transpose``
(graph: ``Âᵀ`` of the aggregations' gradients, sent to the owners). A :class:`Schedule` gives
every piece the index of the Spark stage it runs in — fused, the pieces between two
exchanges share one (a :class:`StageRun` passes their messages on in memory); split, each has
its own, and dense ones ask Spark for GPUs. The pieces address their messages through the
schedule, so the same code runs either way and gives the same numbers.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar

import numpy as np
import torch

from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
    forward_messages,
    reduce_partials,
)
from lotan.graph_engine.kernels import (
    segment_extreme,
    segment_extreme_grad,
    spmm,
)
from lotan.graph_engine.layout import SPLIT_CODES, NormSpec, PartitionLayout
from lotan.graph_engine.reductions import (
    affine_partial,
    combine_moments,
    partial_moments,
    sum_partials,
)
from lotan.graph_engine.runner import (
    DRIVER,
    OUTPUT,
    Message,
    by_source,
    phase,
    record_device,
)
from lotan.nn_engine.dense import DenseGraph, mix_seed
from lotan.nn_engine.device import task_resources
from lotan.nn_engine.loss import masked_cross_entropy
from lotan.planner import messages
from lotan.planner.logical import LogicalPlan
from lotan.planner.messages import EDGE_REDUCES
from lotan.planner.placement import DEFAULT_PLACEMENT, DENSE, FUSED, GRAPH, Placement

__all__ = ["METRIC_FIELDS", "EpochValue", "Exchange", "PhysicalPlan", "Schedule", "StageRun"]

# Tiles decode to read-only views of Arrow buffers; the stages never write into them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

#: Layout of the per-partition ``metrics`` vector sent to the driver.
METRIC_FIELDS = (
    "loss",
    "train_correct",
    "train_count",
    "val_correct",
    "val_count",
    "test_correct",
    "test_count",
)
EVAL = ":e"
#: Ops that start a stage: their value needs rows (an aggregation) or partials (statistics
#: across partitions) from every other partition.
STAGE_STARTS = frozenset({"aggregate", "moments"})


@dataclass(frozen=True)
class EpochValue:
    """What the driver broadcasts to every task of one run: the parameters, the buffers
    (BatchNorm's running statistics), the epoch, and the partitions that own vertices (the
    engine fills them in: a reduction across partitions sends its partial to each)."""

    params: dict[str, np.ndarray]
    epoch: int
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    parts: tuple[int, ...] = ()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: _t(v) for k, v in self.params.items()}


#: Byte alignment of every array that enters dense work (torch's own allocations have it).
TENSOR_ALIGN = 64


def _t(a: np.ndarray) -> torch.Tensor:
    """``a`` as a tensor, without a copy when it starts on a :data:`TENSOR_ALIGN` boundary.

    A tile decoded from Spark is a view at whatever address its Arrow buffer has, while the
    same value handed over in memory (fused placement, the local engine) is a fresh
    allocation. MKL documents that its results may depend on the alignment of the inputs,
    so every input is given the same alignment: then split and fused placement, and two
    runs of one seed, compute the same sums on every CPU, not only where MKL happens to
    ignore alignment. The copy costs one pass over a misaligned input."""
    t = torch.from_numpy(np.asarray(a))
    if t.data_ptr() % TENSOR_ALIGN:
        t = t.clone(memory_format=torch.contiguous_format)
    return t


@dataclass(frozen=True)
class Exchange:
    """Aggregations of stage ``stage`` with weighting ``norm`` whose inputs are sent by stage
    ``source``: the inputs travel side by side, as the arrays of one tile per (source,
    destination) pair; backward, their gradients do the same. Each input keeps its own
    contiguous array (no copies into one wide matrix and out again), and is aggregated by
    its own sparse product (:func:`lotan.graph_engine.kernels.spmm`).

    A ``max`` / ``min`` exchange (``reduce``) takes the extreme over the edges ``norm``
    weighs non-zero; the reductions of :mod:`lotan.planner.messages` (attention, GINE's
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
        :data:`~lotan.planner.messages.EDGE_REDUCES`.
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

    def dense_graph(self, j: int) -> DenseGraph:
        return DenseGraph(
            tuple(
                self.logical.node(i).dense()
                for i in self.nodes_at(j)
                if self.logical.node(i).op not in STAGE_STARTS
            )
        )

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
        return Schedule(tuple(pieces), index, placement)

    def training_stages(
        self,
        *,
        seed: int,
        num_train: int,
        placement: Placement = DEFAULT_PLACEMENT,
        exchange_dtype: str = "float32",
        measure: bool = True,
    ) -> list[StageRun]:
        """One training epoch's stages; ``exchange_dtype`` is how forward exchanges carry
        rows (:mod:`lotan.graph_engine.exchange`). With ``measure``, the forward pass also
        measures the accuracies with dropout off (the evaluation stream, where the model has
        dropout); without it, they are not measured and no evaluation stream runs."""
        sched = self.schedule(train=True, placement=placement)
        evals = self.logical.has_eval_stream and measure
        return sched.runs(
            self,
            train=True,
            evals=evals,
            seed=seed,
            num_train=num_train,
            exchange_dtype=exchange_dtype,
            measure=measure,
        )

    def inference_stages(
        self,
        *,
        emit_outputs: bool,
        placement: Placement = DEFAULT_PLACEMENT,
        exchange_dtype: str = "float32",
    ) -> list[StageRun]:
        sched = self.schedule(train=False, placement=placement)
        return sched.runs(
            self,
            train=False,
            evals=False,
            seed=0,
            num_train=1,
            emit_outputs=emit_outputs,
            exchange_dtype=exchange_dtype,
        )


@dataclass(frozen=True)
class Schedule:
    """The pieces of one run (``(piece, stage)`` in order: ``aggregate``, ``forward``,
    ``backward``, ``transpose``) and the index of the Spark stage each runs in. Fused, the
    pieces between two exchanges share an index; split, each has its own."""

    pieces: tuple[tuple[str, int], ...]
    index: Mapping[tuple[str, int], int]
    placement: Placement

    def of(self, piece: str, j: int) -> int:
        return self.index[(piece, j)]

    def runs(self, plan: PhysicalPlan, **options: Any) -> list[StageRun]:
        """One stage function per Spark stage, running its pieces in order."""
        grouped: dict[int, list[_Piece]] = {}
        for piece, j in self.pieces:
            fn = _PIECES[piece](plan, j, self, **_options_of(piece, options))
            grouped.setdefault(self.of(piece, j), []).append(fn)
        return [StageRun(k, tuple(grouped[k]), self.placement) for k in sorted(grouped)]


def _options_of(piece: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if piece == "forward":
        return dict(options)
    if piece == "aggregate":
        return {"train": options["train"], "evals": options["evals"], "seed": options["seed"]}
    return {"seed": options["seed"]} if piece in ("backward", "transpose") else {}


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


def _layout_value(layout: PartitionLayout, node: int) -> np.ndarray:
    return layout.x if node == 0 else layout.constants[str(node)]


def _metrics(
    layout: PartitionLayout, logits: list[torch.Tensor], losses: list[float], measure: bool = True
) -> Message:
    """One row of :data:`METRIC_FIELDS` per model; without ``measure`` the accuracies' counts
    are 0 (the driver reads NaN: not measured this run)."""
    rows = []
    for out, loss in zip(logits, losses, strict=True):
        correct = out.argmax(dim=1).numpy() == layout.y
        vec = [loss]
        for name in ("train", "val", "test"):
            mask = layout.split == SPLIT_CODES[name]
            vec += [float(correct[mask].sum()), float(mask.sum())] if measure else [0.0, 0.0]
        rows.append(vec)
    metrics = np.array(rows, dtype=np.float64).reshape(len(rows), len(METRIC_FIELDS))
    return Message(DRIVER, -1, layout.part, "metrics", {"metrics": metrics})


def _dense_device() -> torch.device:
    """The device of this task's dense work (recorded for the driver's device report)."""
    gpus, device = task_resources()
    record_device(len(gpus), device.type == "cuda")
    return device


@dataclass(frozen=True)
class StageRun:
    """One Spark stage: its pieces in order; messages a piece sends to this stage at this
    partition go to the next pieces in memory."""

    index: int
    pieces: tuple[_Piece, ...]
    placement: Placement

    @property
    def kind(self) -> str:
        """:data:`GRAPH`, :data:`DENSE` or :data:`FUSED` (both)."""
        kinds = {p.kind for p in self.pieces}
        return kinds.pop() if len(kinds) == 1 else FUSED

    @property
    def resources(self) -> dict[str, float]:
        """What each task asks Spark for beyond the defaults (``{}``: the default profile)."""
        return self.placement.task_request(self.kind)

    @property
    def label(self) -> str:
        """How the Spark UI names this stage (the function of its grouped map)."""
        names = [p.label for p in self.pieces if not (self.kind == FUSED and p.kind == GRAPH)]
        return " + ".join(names or [p.label for p in self.pieces])

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        out: list[Message] = []
        inbox = list(inbox)
        for piece in self.pieces:
            for m in piece(part, layout, inbox, value):
                if m.stage == self.index and m.dest == part:
                    inbox.append(m)
                else:
                    out.append(m)
        return out


@dataclass(frozen=True)
class _Piece:
    plan: PhysicalPlan
    j: int
    sched: Schedule
    kind: ClassVar[str] = DENSE

    @property
    def label(self) -> str:
        return f"stage {self.j} · {type(self).__name__.strip('_').lower()}"

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        raise NotImplementedError


@dataclass(frozen=True)
class _Aggregate(_Piece):
    """Graph work: ``Â`` of each input of the exchanges into stage ``j`` (both streams),
    to this partition's ``forward`` piece."""

    train: bool = False
    evals: bool = False
    seed: int = 0
    kind: ClassVar[str] = GRAPH

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        out: list[Message] = []
        for x in self.plan.exchanges_into(self.j):
            w = layout.weights[self.plan.norm_index[x.norm]]
            keep: dict[str, np.ndarray] = {}
            if x.reduce in EDGE_REDUCES:
                out += self._edge_values(part, layout, inbox, x, w, keep, value)
            else:
                out += self._single_input(part, layout, inbox, x, w, keep)
            if keep:
                back = self.sched.of("transpose", self.j)
                out.append(Message(back, part, part, f"h{x.index}", keep))
        return out

    def _single_input(
        self,
        part: int,
        layout: PartitionLayout,
        inbox: list[Message],
        x: Exchange,
        w: np.ndarray,
        keep: dict[str, np.ndarray],
    ) -> list[Message]:
        """Sums (the CSR product) and extremes of exchange ``x``'s inputs, in both streams;
        a max/min input whose gradient flows back is kept for backward."""
        to = self.sched.of("forward", self.j)
        out = []
        for s, of in (("", x.inputs), (EVAL, x.stochastic)):
            if (s and not self.evals) or not of:
                continue
            rows = {}
            for u in of:
                with phase("exchange"):
                    full = assemble(layout, by_source(inbox, f"x{x.index}{s}", key=str(u)))
                with phase("spmm"):
                    if x.reduce == "sum":
                        z = spmm(layout.indptr, layout.indices, w, _t(full))
                    else:
                        z = segment_extreme(x.reduce, layout.indptr, layout.indices, w, full)
                        if self.train and not s and u in x.grad_inputs:
                            keep[str(u)] = full  # for the transpose piece
                rows[str(u)] = z.numpy()
            out.append(Message(to, part, part, f"z{x.index}{s}", rows))
        return out

    def _edge_values(
        self,
        part: int,
        layout: PartitionLayout,
        inbox: list[Message],
        x: Exchange,
        mask: np.ndarray,
        keep: dict[str, np.ndarray],
        value: Any,
    ) -> list[Message]:
        """The nodes of exchange ``x`` that compute per-edge values, in both streams (a node
        is in the evaluation stream when one of its inputs is, or it drops coefficients);
        their inputs are kept for backward."""
        to = self.sched.of("forward", self.j)
        stoch = self.plan.stochastic
        params = value.tensors()
        full: dict[str, dict[int, np.ndarray]] = {"": {}, EVAL: {}}
        with phase("exchange"):
            for u in x.inputs:
                full[""][u] = assemble(layout, by_source(inbox, f"x{x.index}", key=str(u)))
            if self.evals:
                for u in x.stochastic:
                    got = by_source(inbox, f"x{x.index}{EVAL}", key=str(u))
                    full[EVAL][u] = assemble(layout, got)
        out = []
        for s in ("", EVAL) if self.evals else ("",):
            rows = {}
            for a in x.aggs:
                if s and a not in stoch:
                    continue
                node = self.plan.logical.node(a)
                inputs = [full[s].get(u, full[""][u]) for u in node.inputs]
                train_stream = self.train and not s  # evaluation runs without dropout
                drop = (
                    messages.edge_dropout(node, layout, self.seed, value.epoch)
                    if train_stream
                    else None
                )
                with phase("spmm"):
                    budget = self.plan.logical.edge_block_bytes
                    z = messages.forward(node, layout, mask, inputs, params, drop, budget)
                rows[f"n{a}"] = z.numpy()
            if rows:
                out.append(Message(to, part, part, f"z{x.index}{s}", rows))
        if self.train:
            keep.update({str(u): full[""][u] for u in x.inputs})
        return out


@dataclass(frozen=True)
class _Forward(_Piece):
    """Dense work of stage ``j``: its dense graph on the aggregations (from the ``aggregate``
    piece), carried values and layout values; sends on what later stages read; at the last
    stage, the loss and the backward pass of the dense graph."""

    train: bool = False
    evals: bool = False
    seed: int = 0
    num_train: int = 1
    emit_outputs: bool = False
    exchange_dtype: str = "float32"
    measure: bool = True

    @property
    def label(self) -> str:
        last = self.train and self.j == self.plan.last
        return f"stage {self.j} · forward" + (" + loss" if last else "")

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        logical = plan.logical
        params = value.tensors()
        seed = mix_seed(self.seed, value.epoch)
        stoch = plan.stochastic if self.evals else frozenset()
        streams = ("", EVAL) if self.evals else ("",)
        vals: dict[str, dict[int, torch.Tensor]] = {s: {} for s in streams}
        out: list[Message] = []
        save: dict[str, np.ndarray] = {}

        # Inputs: statistics across partitions, aggregations (from the aggregate piece),
        # carried values, layout values.
        for m in plan.moments_at(j):
            for s in streams:
                if s and m not in stoch:
                    continue
                vals[s][m] = self._statistics(m, s, inbox, value, save)
        for x in plan.exchanges_into(j):
            for s in streams:
                for a in x.aggs:
                    if s and a not in stoch:
                        continue
                    key = f"n{a}" if x.reduce in EDGE_REDUCES else str(x.agg_inputs[a][0])
                    z = _t(by_source(inbox, f"z{x.index}{s}", key=key)[part])
                    vals[s][a] = z
                    if self.train and not s:
                        save[f"s{a}"] = z.numpy()
        for k in plan.stage_inputs(j):
            if k in vals[""]:
                continue
            if k in plan.layout_values:
                vals[""][k] = _t(_layout_value(layout, k))
                continue
            vals[""][k] = _t(by_source(inbox, f"v{k}")[part])
            if self.train:
                save[f"s{k}"] = vals[""][k].numpy()
            if self.evals and k in stoch:
                vals[EVAL][k] = _t(by_source(inbox, f"v{k}{EVAL}")[part])

        dense = plan.dense_graph(j)
        device = _dense_device()
        with phase("dense"):
            vals[""] = dense.forward(
                params, vals[""], train=self.train, seed=seed, rows=layout.ids, device=device
            )
        if self.evals:
            # Only values downstream of a dropout differ with dropout off; share the rest.
            merged = {**vals[""], **vals[EVAL]}
            with phase("dense"):
                vals[EVAL] = dense.forward(
                    params, merged, train=False, seed=seed, only=stoch, device=device
                )

        # Values that dense work of later stages reads: its own rows, to itself.
        for i in plan.nodes_at(j):
            for s in streams:
                if s and i not in stoch:
                    continue
                later = {
                    plan.stage_of[c]
                    for c in plan.consumers(i)
                    if plan.stage_of[c] != j and logical.node(c).op != "aggregate"
                }
                for cj in sorted(later):
                    to = self.sched.of("forward", cj)
                    out.append(Message(to, part, part, f"v{i}{s}", {"rows": vals[s][i].numpy()}))
        # Values that aggregations of later stages read: side by side, to who needs them.
        for x in plan.exchanges_from(j):
            for s, of in (("", x.sent_by(j)), (EVAL, x.sent_by(j, x.stochastic))):
                if (s and not self.evals) or not of:
                    continue
                sends: dict[int, dict[str, np.ndarray]] = {}
                with phase("exchange"):
                    for u in of:
                        rows = (
                            _layout_value(layout, u)
                            if u in plan.layout_values
                            else vals[s][u].numpy()
                        )
                        for q, r in forward_messages(layout, rows, self.exchange_dtype):
                            sends.setdefault(q, {})[str(u)] = r
                to = self.sched.of("aggregate", x.stage)
                out += [Message(to, q, part, f"x{x.index}{s}", p) for q, p in sends.items()]
        # Partials of the statistics that later stages combine: to every partition.
        for m in plan.moments_sent_by(j):
            out += self._partials(m, part, layout, vals, value, stoch)

        if j == plan.last and plan.heads:
            losses = [0.0] * len(plan.heads)
            if self.train:
                losses, msgs = self._head_backward(
                    part, layout, params, seed, vals, save, device, value.parts
                )
                out += msgs
            final = vals[EVAL] if self.evals else vals[""]
            logits = [final.get(h, vals[""][h]) for h in plan.heads]
            out.append(_metrics(layout, logits, losses, self.measure))
        elif self.train and save:
            out.append(Message(self.sched.of("backward", j), part, part, "saved", save))
        if self.emit_outputs:
            for o in plan.outputs:
                if plan.stage_of.get(o) == j:
                    out.append(
                        Message(
                            OUTPUT,
                            part,
                            part,
                            f"o{o}",
                            {"ids": layout.ids, "rows": vals[""][o].numpy()},
                        )
                    )
        return out

    def _statistics(
        self,
        m: int,
        s: str,
        inbox: list[Message],
        value: Any,
        save: dict[str, np.ndarray],
    ) -> torch.Tensor:
        """The ``(2, C)`` statistics of ``moments`` node ``m`` in stream ``s``: the running
        statistics in evaluation (a BatchNorm that tracks them), else the partials of every
        partition combined in partition order (kept for backward)."""
        node = self.plan.logical.node(m)
        if node.buffers and (s or not self.train):
            mean, var = value.buffers[node.buffers[0]], value.buffers[node.buffers[1]]
            return torch.from_numpy(np.stack([mean, var]).astype(np.float32))
        n, mean, m2 = combine_moments(_payloads(inbox, f"m{m}{s}"))
        stats = torch.from_numpy(np.stack([mean, m2 / n]).astype(np.float32))
        if self.train and not s:
            save[f"s{m}"] = stats.numpy()
            save[f"N{m}"] = np.array([n], dtype=np.float64)
        return stats

    def _partials(
        self,
        m: int,
        part: int,
        layout: PartitionLayout,
        vals: dict[str, dict[int, torch.Tensor]],
        value: Any,
        stoch: frozenset[int],
    ) -> list[Message]:
        """This partition's partials of ``moments`` node ``m``'s input, in the streams that
        combine them, to every partition (and to the driver, which updates the running
        statistics from the training stream's)."""
        plan = self.plan
        node = plan.logical.node(m)
        u = node.inputs[0]
        to = self.sched.of("forward", plan.stage_of[m])
        out: list[Message] = []
        for s in ("", EVAL):
            if s:
                wanted = self.evals and not node.buffers and u in stoch
            else:
                wanted = self.train or not node.buffers
            if not wanted:
                continue
            rows = _layout_value(layout, u) if u in plan.layout_values else vals[s][u].numpy()
            with phase("exchange"):
                partial = partial_moments(rows)
            if not value.parts:
                raise ValueError("statistics across partitions need EpochValue.parts")
            out += [Message(to, q, part, f"m{m}{s}", partial) for q in value.parts]
            if not s and self.train and node.buffers:
                out.append(Message(DRIVER, -1, part, f"m{m}", partial))
        return out

    def _head_backward(
        self,
        part: int,
        layout: PartitionLayout,
        params: dict[str, torch.Tensor],
        seed: int,
        vals: dict[str, dict[int, torch.Tensor]],
        save: dict[str, np.ndarray],
        device: torch.device,
        parts: tuple[int, ...],
    ) -> tuple[list[float], list[Message]]:
        """The loss of each model on this partition, and the backward pass of the last
        stage's dense graph."""
        plan = self.plan
        mask = _t(layout.split == SPLIT_CODES["train"])
        y = _t(layout.y)
        losses: list[float] = []
        grad_out: dict[int, torch.Tensor] = {}
        for h in plan.heads:
            loss, grad = masked_cross_entropy(vals[""][h], y, mask, self.num_train)
            losses.append(loss)
            grad_out[h] = grad
        inputs = {k: _t(v) for k, v in _saved_inputs(plan, self.j, layout, save).items()}
        msgs = _backprop(self, part, layout, params, seed, inputs, grad_out, device, save, parts)
        return losses, msgs


def _saved_inputs(
    plan: PhysicalPlan, j: int, layout: PartitionLayout, saved: Mapping[str, np.ndarray]
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for k in plan.stage_inputs(j):
        out[k] = _layout_value(layout, k) if k in plan.layout_values else saved[f"s{k}"]
    for x in plan.exchanges_into(j):
        for a in x.aggs:
            out[a] = saved[f"s{a}"]
    return out


def _backprop(
    piece: _Piece,
    part: int,
    layout: PartitionLayout,
    params: dict[str, torch.Tensor],
    seed: int,
    inputs: dict[int, torch.Tensor],
    grad_out: dict[int, torch.Tensor],
    device: torch.device,
    saved: Mapping[str, np.ndarray],
    parts: tuple[int, ...],
    affine: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
) -> list[Message]:
    """Back-propagate the dense graph of stage ``piece.j``: parameter gradients to the
    driver, the gradients of its aggregations (summed per aggregated value) to the
    ``transpose`` piece, those of carried values to the stage that produced them, those of
    the statistics it combined to every partition (:func:`_statistics_grads`). ``affine``:
    the gradients the statistics of its own values give back (``a + b · x``)."""
    plan, sched, j = piece.plan, piece.sched, piece.j
    here = {a: x for x in plan.exchanges_into(j) for a in x.aggs}
    want = [
        k
        for k in inputs
        if k in plan.requires_grad
        or (
            k in here
            and (
                any(u in plan.requires_grad for u in here[k].agg_inputs[k])
                or plan.logical.node(k).params
            )
        )
    ]
    dense = plan.dense_graph(j)
    with phase("dense"):
        grads, pgrads = dense.backward(
            params,
            inputs,
            grad_out,
            train=True,
            seed=seed,
            rows=layout.ids,
            input_grads=want,
            affine_grads=affine,
            device=device,
        )
    out: list[Message] = []
    if pgrads:
        out.append(Message(DRIVER, -1, part, "grad", {k: v.numpy() for k, v in pgrads.items()}))
    for x in plan.exchanges_into(j):
        if not x.backward:
            continue
        sums: dict[str, np.ndarray] = {}
        if x.reduce in EDGE_REDUCES:  # one gradient per node: it may have several inputs
            sums = {f"n{a}": grads[a].contiguous().numpy() for a in x.aggs if a in grads}
        else:  # one per input: the nodes that aggregate it add up
            for u in x.grad_inputs:
                g: torch.Tensor | None = None
                for a in x.aggs:
                    if x.agg_inputs[a] == (u,):
                        g = grads[a] if g is None else g + grads[a]
                assert g is not None
                sums[str(u)] = g.contiguous().numpy()
        out.append(Message(sched.of("transpose", j), part, part, f"a{x.index}", sums))
    # Values carried from earlier stages: their gradients go straight to their producer.
    for k, g in grads.items():
        if k in here or k not in plan.requires_grad or k not in plan.stage_of:
            continue
        if plan.stage_of[k] == j:  # statistics this stage combined
            out += _statistics_grads(piece, part, k, g, saved, parts)
            continue
        target = sched.of("backward", plan.stage_of[k])
        out.append(Message(target, part, part, f"d{k}", {"rows": g.numpy()}))
    return out


def _statistics_grads(
    piece: _Piece,
    part: int,
    m: int,
    g: torch.Tensor,
    saved: Mapping[str, np.ndarray],
    parts: tuple[int, ...],
) -> list[Message]:
    """This partition's share ``g`` of the gradient of ``moments`` node ``m`` (``∂mean``,
    ``∂var``), as the affine term it gives its input, to that input's producer on every
    partition (which sums the shares in partition order)."""
    plan = piece.plan
    mean, n = saved[f"s{m}"][0], int(saved[f"N{m}"][0])
    d = g.numpy()
    partial = affine_partial(d[0], d[1], mean, n)
    to = piece.sched.of("backward", plan.moments_source(m))
    return [Message(to, q, part, f"r{m}", partial) for q in parts]


def _payloads(inbox: list[Message], tag: str) -> dict[int, Mapping[str, np.ndarray]]:
    """``{source partition: payload}`` of the messages with ``tag``."""
    return {m.src: m.payload for m in inbox if m.tag == tag}


@dataclass(frozen=True)
class _Transpose(_Piece):
    """Graph work: ``Âᵀ`` of the gradients of stage ``j``'s aggregations, side by side, back
    to the partitions that own the rows (the forward exchange, the other way)."""

    seed: int = 0
    kind: ClassVar[str] = GRAPH

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan = self.plan
        out: list[Message] = []
        for x in plan.exchanges_into(self.j):
            grads = [m.payload for m in inbox if m.tag == f"a{x.index}"]
            if not grads:
                continue  # nothing flowed back into this stage on this partition
            (g,) = grads
            k = plan.norm_index[x.norm]
            kept: Mapping[str, np.ndarray] = {}  # a max/min or edge function's inputs
            if x.reduce != "sum":
                (kept,) = [m.payload for m in inbox if m.tag == f"h{x.index}"]
            with phase("spmm"):
                if x.reduce in EDGE_REDUCES:
                    partials, pgrads = self._edge_grads(layout, x, kept, g, value)
                    if pgrads:
                        out.append(Message(DRIVER, -1, part, "grad", pgrads))
                else:
                    partials = {
                        u: self._single_grad(layout, x, k, kept, g, u) for u in x.grad_inputs
                    }
            sends: dict[tuple[int, int], dict[str, np.ndarray]] = {}
            with phase("exchange"):
                for u in x.grad_inputs:
                    target = self.sched.of("backward", x.sources[u])
                    for q, r in backward_messages(layout, partials[u]):
                        sends.setdefault((target, q), {})[str(u)] = r
            out += [Message(t, q, part, f"g{x.index}", p) for (t, q), p in sends.items()]
        return out

    def _single_grad(
        self,
        layout: PartitionLayout,
        x: Exchange,
        k: int,
        kept: Mapping[str, np.ndarray],
        g: Mapping[str, np.ndarray],
        u: int,
    ) -> np.ndarray:
        """``[own | halo]`` partial gradient of input ``u`` of a sum or max/min exchange."""
        if x.reduce == "sum":
            return spmm(
                layout.t_indptr, layout.t_indices, layout.t_weights[k], _t(g[str(u)])
            ).numpy()
        return segment_extreme_grad(
            x.reduce,
            layout.indptr,
            layout.indices,
            layout.weights[k],
            layout.t_indptr,
            layout.t_indices,
            layout.t_weights[k],
            kept[str(u)],
            g[str(u)],
        ).numpy()

    def _edge_grads(
        self,
        layout: PartitionLayout,
        x: Exchange,
        kept: Mapping[str, np.ndarray],
        g: Mapping[str, np.ndarray],
        value: Any,
    ) -> tuple[dict[int, np.ndarray], dict[str, np.ndarray]]:
        """``[own | halo]`` partial gradients of the inputs of exchange ``x``'s nodes with
        per-edge values, summed over the nodes that read each input, and this partition's
        share of their parameters' gradients."""
        k = self.plan.norm_index[x.norm]
        params = value.tensors()
        totals: dict[int, np.ndarray] = {}
        pgrads: dict[str, np.ndarray] = {}
        for a in x.aggs:
            if f"n{a}" not in g:
                continue
            node = self.plan.logical.node(a)
            grads, own = messages.backward(
                node,
                layout,
                layout.weights[k],
                layout.t_weights[k],
                [kept[str(u)] for u in node.inputs],
                params,
                g[f"n{a}"],
                messages.edge_dropout(node, layout, self.seed, value.epoch),
                self.plan.logical.edge_block_bytes,
            )
            pgrads.update(own)
            for u, d in zip(node.inputs, grads, strict=True):
                if u in x.grad_inputs:
                    totals[u] = d.numpy() if u not in totals else totals[u] + d.numpy()
        return totals, pgrads


@dataclass(frozen=True)
class _Backward(_Piece):
    """Dense work of stage ``j``'s backward pass: add up the gradients of the values it
    produced (partial sums from the ``transpose`` pieces of later stages, gradients of
    carried values), recompute its dense graph from the saved inputs (same dropout masks)
    and back-propagate."""

    seed: int = 0

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        params = value.tensors()
        seed = mix_seed(self.seed, value.epoch)
        saved: dict[str, np.ndarray] = {}
        for m in inbox:
            if m.tag == "saved":
                saved.update(m.payload)
        totals: dict[int, np.ndarray] = {}
        for x in plan.exchanges_from(j):
            for u in x.sent_by(j, x.grad_inputs):
                partials = by_source(inbox, f"g{x.index}", key=str(u))
                if not partials:
                    continue
                with phase("exchange"):
                    total = reduce_partials(layout, partials)
                totals[u] = total if u not in totals else totals[u] + total
        for m in inbox:
            if m.tag[0] == "d" and m.tag[1:].isdigit():
                i = int(m.tag[1:])
                totals[i] = (
                    np.array(m.payload["rows"], copy=True)
                    if i not in totals
                    else totals[i] + m.payload["rows"]
                )
        grad_out = {
            i: _t(totals[i]) for i in plan.nodes_at(j) if i in plan.requires_grad and i in totals
        }
        out: list[Message] = []
        for k in plan.moments_at(j):  # carried to a later stage's dense work (unfused)
            if k in grad_out:
                out += _statistics_grads(self, part, k, grad_out.pop(k), saved, value.parts)
        # Statistics of values this stage computed: their gradients' affine terms, summed.
        affine: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for k in plan.moments_sent_by(j):
            got = _payloads(inbox, f"r{k}")
            if not got:
                continue
            a, b = (torch.from_numpy(v) for v in sum_partials(got))
            u = plan.logical.node(k).inputs[0]
            affine[u] = (a, b) if u not in affine else (affine[u][0] + a, affine[u][1] + b)
        if not grad_out and not affine:
            return out
        inputs = {k: _t(v) for k, v in _saved_inputs(plan, j, layout, saved).items()}
        return out + _backprop(
            self,
            part,
            layout,
            params,
            seed,
            inputs,
            grad_out,
            _dense_device(),
            saved,
            value.parts,
            affine,
        )


_PIECES: dict[str, type[_Piece]] = {
    "aggregate": _Aggregate,
    "forward": _Forward,
    "backward": _Backward,
    "transpose": _Transpose,
}
