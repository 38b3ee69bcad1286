"""The dense backward piece of a stage and the back-propagation of a stage's dense graph:
parameter gradients to the driver, aggregation gradients to the ``transpose`` piece,
carried values' gradients to their producer, statistics' gradients to every partition."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lotan.graph_engine.exchange import (
    reduce_partials,
)
from lotan.graph_engine.layout import PartitionLayout
from lotan.graph_engine.reductions import (
    affine_partial,
    sum_partials,
)
from lotan.ir.ops import EDGE_REDUCES
from lotan.nn_engine.dense import DenseGraph, MaskSeed
from lotan.planner.physical import PhysicalPlan
from lotan.runtime.message import DRIVER, Message, by_source, payloads
from lotan.runtime.pieces import Piece, dense_device, layout_value
from lotan.runtime.tags import (
    AGGREGATION_GRADS,
    CARRIED_GRADS,
    PARAM_GRADS,
    PARTIAL_GRADS,
    SAVED,
    STATISTICS_GRADS,
    count_key,
    input_key,
    node_key,
    saved_key,
)
from lotan.runtime.task import phase
from lotan.runtime.value import as_tensor


def saved_inputs(
    plan: PhysicalPlan, j: int, layout: PartitionLayout, saved: Mapping[str, np.ndarray]
) -> dict[int, np.ndarray]:
    out: dict[int, np.ndarray] = {}
    for k in plan.stage_inputs(j):
        out[k] = layout_value(layout, k) if k in plan.layout_values else saved[saved_key(k)]
    for x in plan.exchanges_into(j):
        for a in x.aggs:
            out[a] = saved[saved_key(a)]
    return out


def backprop(
    piece: Piece,
    part: int,
    layout: PartitionLayout,
    params: dict[str, torch.Tensor],
    seed: MaskSeed,
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
    the statistics it combined to every partition (:func:`statistics_grads`). ``affine``:
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
    dense = DenseGraph(plan.dense_nodes(j))
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
        grads_out = {k: v.numpy() for k, v in pgrads.items()}
        out.append(Message(DRIVER, -1, part, PARAM_GRADS.of(), grads_out))
    for x in plan.exchanges_into(j):
        if not x.backward:
            continue
        sums: dict[str, np.ndarray] = {}
        if x.reduce in EDGE_REDUCES:  # one gradient per node: it may have several inputs
            sums = {node_key(a): grads[a].contiguous().numpy() for a in x.aggs if a in grads}
        else:  # one per input: the nodes that aggregate it add up
            for u in x.grad_inputs:
                g: torch.Tensor | None = None
                for a in x.aggs:
                    if x.agg_inputs[a] == (u,):
                        g = grads[a] if g is None else g + grads[a]
                assert g is not None
                sums[input_key(u)] = g.contiguous().numpy()
        out.append(
            Message(sched.of("transpose", j), part, part, AGGREGATION_GRADS.of(x.index), sums)
        )
    # Values carried from earlier stages: their gradients go straight to their producer.
    for k, g in grads.items():
        if k in here or k not in plan.requires_grad or k not in plan.stage_of:
            continue
        if plan.stage_of[k] == j:  # statistics this stage combined
            out += statistics_grads(piece, part, k, g, saved, parts)
            continue
        target = sched.of("backward", plan.stage_of[k])
        out.append(Message(target, part, part, CARRIED_GRADS.of(k), {"rows": g.numpy()}))
    return out


def statistics_grads(
    piece: Piece,
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
    mean, n = saved[saved_key(m)][0], int(saved[count_key(m)][0])
    d = g.numpy()
    partial = affine_partial(d[0], d[1], mean, n)
    to = piece.sched.of("backward", plan.moments_source(m))
    return [Message(to, q, part, STATISTICS_GRADS.of(m), partial) for q in parts]


@dataclass(frozen=True)
class Backward(Piece):
    """Dense work of stage ``j``'s backward pass: add up the gradients of the values it
    produced (partial sums from the ``transpose`` pieces of later stages, gradients of
    carried values), recompute its dense graph from the saved inputs (same dropout masks)
    and back-propagate."""

    name: ClassVar[str] = "backward"
    seed: int = 0

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan, j = self.plan, self.j
        params = value.tensors()
        seed = MaskSeed(self.seed, value.epoch)
        saved: dict[str, np.ndarray] = {}
        for m in inbox:
            if m.tag == SAVED.of():
                saved.update(m.payload)
        totals: dict[int, np.ndarray] = {}
        for x in plan.exchanges_from(j):
            for u in x.sent_by(j, x.grad_inputs):
                partials = by_source(inbox, PARTIAL_GRADS.of(x.index), key=input_key(u))
                if not partials:
                    continue
                with phase("exchange"):
                    total = reduce_partials(layout, partials)
                totals[u] = total if u not in totals else totals[u] + total
        for m in inbox:
            i = CARRIED_GRADS.index_of(m.tag)
            if i is not None:
                totals[i] = (
                    np.array(m.payload["rows"], copy=True)
                    if i not in totals
                    else totals[i] + m.payload["rows"]
                )
        grad_out = {
            i: as_tensor(totals[i])
            for i in plan.nodes_at(j)
            if i in plan.requires_grad and i in totals
        }
        out: list[Message] = []
        for k in plan.moments_at(j):  # carried to a later stage's dense work (unfused)
            if k in grad_out:
                out += statistics_grads(self, part, k, grad_out.pop(k), saved, value.parts)
        # Statistics of values this stage computed: their gradients' affine terms, summed.
        affine: dict[int, tuple[torch.Tensor, torch.Tensor]] = {}
        for k in plan.moments_sent_by(j):
            got = payloads(inbox, STATISTICS_GRADS.of(k))
            if not got:
                continue
            a, b = (torch.from_numpy(v) for v in sum_partials(got))
            u = plan.logical.node(k).inputs[0]
            affine[u] = (a, b) if u not in affine else (affine[u][0] + a, affine[u][1] + b)
        if not grad_out and not affine:
            return out
        inputs = {k: as_tensor(v) for k, v in saved_inputs(plan, j, layout, saved).items()}
        return out + backprop(
            self,
            part,
            layout,
            params,
            seed,
            inputs,
            grad_out,
            dense_device(),
            saved,
            value.parts,
            affine,
        )
