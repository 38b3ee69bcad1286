"""The dense forward piece of a stage: its dense graph on aggregations, carried values and
layout values, statistics across partitions, what later stages read, and at the last stage
the loss and the start of the backward pass."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lotan.graph_engine.exchange import (
    forward_messages,
)
from lotan.graph_engine.layout import PartitionLayout
from lotan.graph_engine.reductions import (
    combine_moments,
    partial_moments,
)
from lotan.ir.ops import EDGE_REDUCES
from lotan.ir.splits import SPLIT_CODES
from lotan.nn_engine.dense import DenseGraph, MaskSeed
from lotan.nn_engine.loss import masked_cross_entropy
from lotan.runtime.backward import backprop, saved_inputs
from lotan.runtime.message import DRIVER, OUTPUT, Message, by_source, payloads
from lotan.runtime.pieces import Piece, dense_device, layout_value, metrics_message
from lotan.runtime.tags import (
    AGGREGATED,
    CARRIED,
    EVAL,
    EXCHANGED,
    OUTPUT_ROWS,
    SAVED,
    STATISTICS,
    count_key,
    input_key,
    node_key,
    saved_key,
)
from lotan.runtime.task import phase
from lotan.runtime.value import as_tensor


@dataclass(frozen=True)
class Forward(Piece):
    """Dense work of stage ``j``: its dense graph on the aggregations (from the ``aggregate``
    piece), carried values and layout values; sends on what later stages read; at the last
    stage, the loss and the backward pass of the dense graph."""

    name: ClassVar[str] = "forward"
    train: bool = False
    evals: bool = False
    seed: int = 0
    num_train: int = 1
    emit_outputs: bool = False
    exchange_dtype: str = "float32"
    measure: bool = True

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        logical = plan.logical
        params = value.tensors()
        seed = MaskSeed(self.seed, value.epoch)
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
                    key = node_key(a) if x.reduce in EDGE_REDUCES else input_key(x.agg_inputs[a][0])
                    z = as_tensor(by_source(inbox, AGGREGATED.of(x.index, s), key=key)[part])
                    vals[s][a] = z
                    if self.train and not s:
                        save[saved_key(a)] = z.numpy()
        for k in plan.stage_inputs(j):
            if k in vals[""]:
                continue
            if k in plan.layout_values:
                vals[""][k] = as_tensor(layout_value(layout, k))
                continue
            vals[""][k] = as_tensor(by_source(inbox, CARRIED.of(k))[part])
            if self.train:
                save[saved_key(k)] = vals[""][k].numpy()
            if self.evals and k in stoch:
                vals[EVAL][k] = as_tensor(by_source(inbox, CARRIED.of(k, EVAL))[part])

        dense = DenseGraph(plan.dense_nodes(j))
        device = dense_device()
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
                    carried = {"rows": vals[s][i].numpy()}
                    out.append(Message(to, part, part, CARRIED.of(i, s), carried))
        # Values that aggregations of later stages read: side by side, to who needs them.
        for x in plan.exchanges_from(j):
            for s, of in (("", x.sent_by(j)), (EVAL, x.sent_by(j, x.stochastic))):
                if (s and not self.evals) or not of:
                    continue
                sends: dict[int, dict[str, np.ndarray]] = {}
                with phase("exchange"):
                    for u in of:
                        rows = (
                            layout_value(layout, u)
                            if u in plan.layout_values
                            else vals[s][u].numpy()
                        )
                        for q, r in forward_messages(layout, rows, self.exchange_dtype):
                            sends.setdefault(q, {})[input_key(u)] = r
                to = self.sched.of("aggregate", x.stage)
                out += [Message(to, q, part, EXCHANGED.of(x.index, s), p) for q, p in sends.items()]
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
            out.append(metrics_message(layout, logits, losses, self.measure))
        elif self.train and save:
            out.append(Message(self.sched.of("backward", j), part, part, SAVED.of(), save))
        if self.emit_outputs:
            for o in plan.outputs:
                if plan.stage_of.get(o) == j:
                    out.append(
                        Message(
                            OUTPUT,
                            part,
                            part,
                            OUTPUT_ROWS.of(o),
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
        n, mean, m2 = combine_moments(payloads(inbox, STATISTICS.of(m, s)))
        stats = torch.from_numpy(np.stack([mean, m2 / n]).astype(np.float32))
        if self.train and not s:
            save[saved_key(m)] = stats.numpy()
            save[count_key(m)] = np.array([n], dtype=np.float64)
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
            rows = layout_value(layout, u) if u in plan.layout_values else vals[s][u].numpy()
            with phase("exchange"):
                partial = partial_moments(rows)
            if not value.parts:
                raise ValueError("statistics across partitions need EpochValue.parts")
            out += [Message(to, q, part, STATISTICS.of(m, s), partial) for q in value.parts]
            if not s and self.train and node.buffers:
                out.append(Message(DRIVER, -1, part, STATISTICS.of(m), partial))
        return out

    def _head_backward(
        self,
        part: int,
        layout: PartitionLayout,
        params: dict[str, torch.Tensor],
        seed: MaskSeed,
        vals: dict[str, dict[int, torch.Tensor]],
        save: dict[str, np.ndarray],
        device: torch.device,
        parts: tuple[int, ...],
    ) -> tuple[list[float], list[Message]]:
        """The loss of each model on this partition, and the backward pass of the last
        stage's dense graph."""
        plan = self.plan
        mask = as_tensor(layout.split == SPLIT_CODES["train"])
        y = as_tensor(layout.y)
        losses: list[float] = []
        grad_out: dict[int, torch.Tensor] = {}
        for h in plan.heads:
            loss, grad = masked_cross_entropy(vals[""][h], y, mask, self.num_train)
            losses.append(loss)
            grad_out[h] = grad
        inputs = {k: as_tensor(v) for k, v in saved_inputs(plan, self.j, layout, save).items()}
        msgs = backprop(self, part, layout, params, seed, inputs, grad_out, device, save, parts)
        return losses, msgs
