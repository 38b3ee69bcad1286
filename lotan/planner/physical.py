"""The physical plan: per-partition stages between exchanges, run by both engines.

Every node of the (optimized) logical plan gets a forward stage. Fused (the default), an
aggregation starts a new stage and dense ops join the stage of their latest input, so all
local work between two exchanges runs in one stage; unfused, every op is a stage. A value
used in a later stage travels as a message: the rows other partitions need (exchange) when
an aggregation consumes it, its own rows (to itself) when dense work does. ``X`` and cached
aggregations are read from the partition layout wherever they are needed.

Backward, stage ``j`` of ``S`` runs at index ``2S - j`` (the last forward stage also runs its
own backward): it sums the gradients of the values it produced (partials from the
transposed aggregations of later stages, gradients of carried values), recomputes its dense
graph from the inputs it saved (same dropout masks) and back-propagates: parameter gradients
go to the driver, gradients of aggregation outputs go through ``Âᵀ`` back to the stage that
produced the aggregated value, gradients of carried values go to their producer.

With dropout, the forward pass also carries an evaluation stream (dropout off) for the
values that dropout touched, so accuracies need no extra pass.
"""

from __future__ import annotations

import warnings
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch

from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
    forward_messages,
    reduce_partials,
)
from lotan.graph_engine.kernels import spmm
from lotan.graph_engine.layout import SPLIT_CODES, PartitionLayout
from lotan.graph_engine.runner import DRIVER, OUTPUT, Message, StageFn, by_source, phase
from lotan.nn_engine.dense import DenseGraph, mix_seed
from lotan.nn_engine.loss import masked_cross_entropy
from lotan.planner.logical import LogicalPlan

__all__ = ["METRIC_FIELDS", "EpochValue", "PhysicalPlan"]

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


@dataclass(frozen=True)
class EpochValue:
    """What the driver broadcasts to every task of one run."""

    params: dict[str, np.ndarray]
    epoch: int

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.params.items()}


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(np.asarray(a))


@dataclass(frozen=True)
class PhysicalPlan:
    """Stages of a logical plan; build with :meth:`build`.

    Attributes
    ----------
    stage_of : forward stage of every computed node.
    layout_values : nodes read from the layout (``X`` and cached aggregations).
    requires_grad : nodes whose gradient is propagated.
    """

    logical: LogicalPlan
    stage_of: Mapping[int, int]
    num_stages: int
    layout_values: frozenset[int]
    requires_grad: frozenset[int]
    outputs: tuple[int, ...]
    norm_index: Mapping[Any, int] = field(default_factory=dict)

    @classmethod
    def build(
        cls,
        logical: LogicalPlan,
        *,
        outputs: tuple[int, ...] | None = None,
        use_cache: bool = True,
    ) -> PhysicalPlan:
        """Stage assignment for ``logical``; ``outputs`` defaults to the plan's output.

        ``use_cache=False`` computes cached aggregations like any other (used to compute
        them once, and when the rule is off).
        """
        outs = outputs if outputs is not None else (logical.output,)
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
            if n.op == "aggregate" or not logical.fused:
                stage_of[n.id] = latest + 1
            else:
                stage_of[n.id] = latest
        num_stages = max(stage_of.values(), default=0) + 1
        if logical.prune_constant_grads:
            grad = {i for i in stage_of if i not in logical.constant}
        else:
            grad = set(stage_of)
        norms = {norm: k for k, norm in enumerate(logical.norms)}
        return cls(
            logical,
            stage_of,
            num_stages,
            frozenset(layout_values),
            frozenset(grad),
            tuple(outs),
            norms,
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
                if self.logical.node(i).op != "aggregate"
            )
        )

    def stage_inputs(self, j: int) -> list[int]:
        """Values a stage's dense graph reads that it does not compute."""
        here = set(self.nodes_at(j))
        out: dict[int, None] = {}
        for i in self.nodes_at(j):
            node = self.logical.node(i)
            if node.op == "aggregate":
                continue
            for k in node.inputs:
                if k not in here or self.logical.node(k).op == "aggregate":
                    out.setdefault(k, None)
        return list(out)

    @property
    def stochastic(self) -> frozenset[int]:
        s: set[int] = set()
        for n in self.logical.nodes:
            if (n.op == "dropout" and n.p > 0) or any(i in s for i in n.inputs):
                s.add(n.id)
        return frozenset(s)

    def exchanged(self) -> list[tuple[int, int]]:
        """(aggregation, stage) of every aggregation computed per run."""
        return [(i, j) for i, j in self.stage_of.items() if self.logical.node(i).op == "aggregate"]

    # ------------------------------------------------------------------ stages
    def training_stages(self, *, seed: int, num_train: int) -> list[StageFn]:
        evals = self.logical.has_dropout
        fwd: list[StageFn] = [
            _Forward(self, j, train=True, evals=evals, seed=seed, num_train=num_train)
            for j in range(self.num_stages)
        ]
        back: list[StageFn] = [_Backward(self, j, seed=seed) for j in range(self.last - 1, -1, -1)]
        return fwd + back

    def inference_stages(self, *, emit_outputs: bool) -> list[StageFn]:
        return [
            _Forward(
                self, j, train=False, evals=False, seed=0, num_train=1, emit_outputs=emit_outputs
            )
            for j in range(self.num_stages)
        ]


def _layout_value(layout: PartitionLayout, node: int) -> np.ndarray:
    return layout.x if node == 0 else layout.constants[str(node)]


def _aggregate(
    plan: PhysicalPlan, layout: PartitionLayout, a: int, full: np.ndarray
) -> torch.Tensor:
    norm = plan.logical.node(a).norm
    w = layout.weights[plan.norm_index[norm]]
    return spmm(layout.indptr, layout.indices, w, _t(full))


def _metrics(layout: PartitionLayout, logits: torch.Tensor, loss: float) -> Message:
    pred = logits.argmax(dim=1).numpy()
    correct = pred == layout.y
    vec = [loss]
    for name in ("train", "val", "test"):
        mask = layout.split == SPLIT_CODES[name]
        vec += [float(correct[mask].sum()), float(mask.sum())]
    return Message(DRIVER, -1, layout.part, "metrics", {"metrics": np.array(vec)})


@dataclass(frozen=True)
class _Forward:
    plan: PhysicalPlan
    j: int
    train: bool
    evals: bool
    seed: int
    num_train: int
    emit_outputs: bool = False

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        logical = plan.logical
        params = value.tensors()
        seed = mix_seed(self.seed, value.epoch, part)
        stoch = plan.stochastic if self.evals else frozenset()
        streams = ("", EVAL) if self.evals else ("",)
        vals: dict[str, dict[int, torch.Tensor]] = {s: {} for s in streams}
        out: list[Message] = []
        save: dict[str, np.ndarray] = {}

        # Inputs: aggregations (from exchanged rows), carried values, layout values.
        for i in plan.nodes_at(j):
            node = logical.node(i)
            if node.op != "aggregate":
                continue
            (u,) = node.inputs
            for s in streams:
                if s and u not in stoch:
                    continue  # its evaluation value is its training value
                with phase("exchange"):
                    full = assemble(layout, by_source(inbox, f"f{u}{s}"))
                with phase("spmm"):
                    vals[s][i] = _aggregate(plan, layout, i, full)
            if self.train:
                save[f"s{i}"] = vals[""][i].numpy()
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
        with phase("dense"):
            vals[""] = dense.forward(params, vals[""], train=self.train, seed=seed)
        if self.evals:
            # Only values downstream of a dropout differ with dropout off; share the rest.
            merged = {**vals[""], **vals[EVAL]}
            with phase("dense"):
                vals[EVAL] = dense.forward(params, merged, train=False, seed=seed, only=stoch)

        # Values for later stages.
        for i in plan.nodes_at(j):
            for s in streams:
                if s and i not in stoch:
                    continue
                rows = None
                for c in plan.consumers(i):
                    cj = plan.stage_of[c]
                    if cj == j:
                        continue
                    if rows is None:
                        rows = vals[s][i].numpy()
                    if logical.node(c).op == "aggregate":
                        with phase("exchange"):
                            sends = forward_messages(layout, rows)
                        out += [Message(cj, q, part, f"f{i}{s}", {"rows": r}) for q, r in sends]
                    else:
                        out.append(Message(cj, part, part, f"v{i}{s}", {"rows": rows}))
        # Layout values that aggregations of a later stage read: exchange from here.
        for lv in plan.layout_values:
            for c in plan.consumers(lv):
                if logical.node(c).op == "aggregate" and plan.stage_of[c] == j + 1:
                    with phase("exchange"):
                        sends = forward_messages(layout, _layout_value(layout, lv))
                    out += [Message(j + 1, q, part, f"f{lv}", {"rows": r}) for q, r in sends]

        o = logical.output
        if j == plan.last and o in plan.outputs:
            loss = 0.0
            if self.train:
                loss, msgs = self._head_backward(part, layout, params, seed, vals, save)
                out += msgs
            eval_logits = vals[EVAL].get(o, vals[""][o]) if self.evals else vals[""][o]
            out.append(_metrics(layout, eval_logits, loss))
        elif self.train and save:
            out.append(Message(plan.backward_index(j), part, part, "saved", save))
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

    def _head_backward(
        self,
        part: int,
        layout: PartitionLayout,
        params: dict[str, torch.Tensor],
        seed: int,
        vals: dict[str, dict[int, torch.Tensor]],
        save: dict[str, np.ndarray],
    ) -> tuple[float, list[Message]]:
        """The loss of this partition, and the backward pass of the last stage."""
        plan = self.plan
        o = plan.logical.output
        mask = _t(layout.split == SPLIT_CODES["train"])
        loss, grad = masked_cross_entropy(vals[""][o], _t(layout.y), mask, self.num_train)
        inputs = {k: _t(v) for k, v in _saved_inputs(plan, self.j, layout, save).items()}
        return loss, _backprop(plan, self.j, part, layout, params, seed, inputs, {o: grad})


def _saved_inputs(
    plan: PhysicalPlan, j: int, layout: PartitionLayout, saved: Mapping[str, np.ndarray]
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for k in plan.stage_inputs(j):
        out[k] = _layout_value(layout, k) if k in plan.layout_values else saved[f"s{k}"]
    for i in plan.nodes_at(j):
        if plan.logical.node(i).op == "aggregate":
            out[i] = saved[f"s{i}"]
    return out


def _backprop(
    plan: PhysicalPlan,
    j: int,
    part: int,
    layout: PartitionLayout,
    params: dict[str, torch.Tensor],
    seed: int,
    inputs: dict[int, torch.Tensor],
    grad_out: dict[int, torch.Tensor],
) -> list[Message]:
    """Back-propagate stage ``j`` and route the gradients of its inputs."""
    logical = plan.logical
    want = [
        k
        for k in inputs
        if k in plan.requires_grad
        or (logical.node(k).op == "aggregate" and logical.node(k).inputs[0] in plan.requires_grad)
    ]
    dense = plan.dense_graph(j)
    with phase("dense"):
        grads, pgrads = dense.backward(
            params, inputs, grad_out, train=True, seed=seed, input_grads=want
        )
    out: list[Message] = []
    if pgrads:
        out.append(Message(DRIVER, -1, part, "grad", {k: v.numpy() for k, v in pgrads.items()}))
    for k, g in grads.items():
        node = logical.node(k)
        if node.op == "aggregate" and plan.stage_of.get(k) == j:
            (u,) = node.inputs
            if u not in plan.requires_grad:
                continue
            w = layout.t_weights[plan.norm_index[node.norm]]
            with phase("spmm"):
                partial = spmm(layout.t_indptr, layout.t_indices, w, g.contiguous())
            target = plan.backward_index(plan.stage_of[u])
            with phase("exchange"):
                sends = backward_messages(layout, partial.numpy())
            out += [Message(target, q, part, f"g{u}", {"rows": r}) for q, r in sends]
        elif k in plan.requires_grad and k in plan.stage_of:
            target = plan.backward_index(plan.stage_of[k])
            out.append(Message(target, part, part, f"d{k}", {"rows": g.numpy()}))
    return out


@dataclass(frozen=True)
class _Backward:
    plan: PhysicalPlan
    j: int
    seed: int

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        params = value.tensors()
        seed = mix_seed(self.seed, value.epoch, part)
        saved: dict[str, np.ndarray] = {}
        for m in inbox:
            if m.tag == "saved":
                saved.update(m.payload)
        grad_out: dict[int, torch.Tensor] = {}
        for i in plan.nodes_at(j):
            if i not in plan.requires_grad:
                continue
            total: np.ndarray | None = None
            partials = by_source(inbox, f"g{i}")
            if partials:
                with phase("exchange"):
                    total = reduce_partials(layout, partials)
            direct = by_source(inbox, f"d{i}")
            for rows in direct.values():
                total = np.array(rows, copy=True) if total is None else total + rows
            if total is not None:
                grad_out[i] = _t(total)
        if not grad_out:
            return []
        inputs = {k: _t(v) for k, v in _saved_inputs(plan, j, layout, saved).items()}
        return _backprop(plan, j, part, layout, params, seed, inputs, grad_out)
