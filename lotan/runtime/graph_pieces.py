"""The graph pieces: ``aggregate`` (``Â`` of the rows an exchange brought, sums,
extremes and per-edge functions such as attention) and ``transpose`` (``Âᵀ`` of the
aggregations' gradients, back to the partitions that own the rows)."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np

from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
)
from lotan.graph_engine.kernels import (
    segment_extreme,
    segment_extreme_grad,
    spmm,
)
from lotan.graph_engine.layout import PartitionLayout
from lotan.ir.ops import EDGE_REDUCES
from lotan.planner.physical import Exchange
from lotan.runtime import edge_functions
from lotan.runtime.message import DRIVER, Message, by_source
from lotan.runtime.pieces import Piece
from lotan.runtime.tags import (
    AGGREGATED,
    AGGREGATION_GRADS,
    EVAL,
    EXCHANGED,
    KEPT,
    PARAM_GRADS,
    PARTIAL_GRADS,
    input_key,
    node_key,
)
from lotan.runtime.task import phase
from lotan.runtime.value import as_tensor


@dataclass(frozen=True)
class Aggregate(Piece):
    """Graph work: ``Â`` of each input of the exchanges into stage ``j`` (both streams),
    to this partition's ``forward`` piece."""

    train: bool = False
    evals: bool = False
    seed: int = 0
    name: ClassVar[str] = "aggregate"

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
                out.append(Message(back, part, part, KEPT.of(x.index), keep))
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
                    full = assemble(
                        layout, by_source(inbox, EXCHANGED.of(x.index, s), key=input_key(u))
                    )
                with phase("spmm"):
                    if x.reduce == "sum":
                        z = spmm(layout.indptr, layout.indices, w, as_tensor(full))
                    else:
                        z = segment_extreme(x.reduce, layout.indptr, layout.indices, w, full)
                        if self.train and not s and u in x.grad_inputs:
                            keep[input_key(u)] = full  # for the transpose piece
                rows[input_key(u)] = z.numpy()
            out.append(Message(to, part, part, AGGREGATED.of(x.index, s), rows))
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
                full[""][u] = assemble(
                    layout, by_source(inbox, EXCHANGED.of(x.index), key=input_key(u))
                )
            if self.evals:
                for u in x.stochastic:
                    got = by_source(inbox, EXCHANGED.of(x.index, EVAL), key=input_key(u))
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
                    edge_functions.edge_dropout(node, layout, self.seed, value.epoch)
                    if train_stream
                    else None
                )
                with phase("spmm"):
                    budget = self.plan.logical.edge_block_bytes
                    z = edge_functions.forward(node, layout, mask, inputs, params, drop, budget)
                rows[node_key(a)] = z.numpy()
            if rows:
                out.append(Message(to, part, part, AGGREGATED.of(x.index, s), rows))
        if self.train:
            keep.update({input_key(u): full[""][u] for u in x.inputs})
        return out


@dataclass(frozen=True)
class Transpose(Piece):
    """Graph work: ``Âᵀ`` of the gradients of stage ``j``'s aggregations, side by side, back
    to the partitions that own the rows (the forward exchange, the other way)."""

    seed: int = 0
    name: ClassVar[str] = "transpose"

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        plan = self.plan
        out: list[Message] = []
        for x in plan.exchanges_into(self.j):
            grads = [m.payload for m in inbox if m.tag == AGGREGATION_GRADS.of(x.index)]
            if not grads:
                continue  # nothing flowed back into this stage on this partition
            (g,) = grads
            k = plan.norm_index[x.norm]
            kept: Mapping[str, np.ndarray] = {}  # a max/min or edge function's inputs
            if x.reduce != "sum":
                (kept,) = [m.payload for m in inbox if m.tag == KEPT.of(x.index)]
            with phase("spmm"):
                if x.reduce in EDGE_REDUCES:
                    partials, pgrads = self._edge_grads(layout, x, kept, g, value)
                    if pgrads:
                        out.append(Message(DRIVER, -1, part, PARAM_GRADS.of(), pgrads))
                else:
                    partials = {
                        u: self._single_grad(layout, x, k, kept, g, u) for u in x.grad_inputs
                    }
            sends: dict[tuple[int, int], dict[str, np.ndarray]] = {}
            with phase("exchange"):
                for u in x.grad_inputs:
                    target = self.sched.of("backward", x.sources[u])
                    for q, r in backward_messages(layout, partials[u]):
                        sends.setdefault((target, q), {})[input_key(u)] = r
            out += [
                Message(t, q, part, PARTIAL_GRADS.of(x.index), p) for (t, q), p in sends.items()
            ]
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
                layout.t_indptr, layout.t_indices, layout.t_weights[k], as_tensor(g[input_key(u)])
            ).numpy()
        return segment_extreme_grad(
            x.reduce,
            layout.indptr,
            layout.indices,
            layout.weights[k],
            layout.t_indptr,
            layout.t_indices,
            layout.t_weights[k],
            kept[input_key(u)],
            g[input_key(u)],
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
            if node_key(a) not in g:
                continue
            node = self.plan.logical.node(a)
            grads, own = edge_functions.backward(
                node,
                layout,
                layout.weights[k],
                layout.t_weights[k],
                [kept[input_key(u)] for u in node.inputs],
                params,
                g[node_key(a)],
                edge_functions.edge_dropout(node, layout, self.seed, value.epoch),
                self.plan.logical.edge_block_bytes,
            )
            pgrads.update(own)
            for u, d in zip(node.inputs, grads, strict=True):
                if u in x.grad_inputs:
                    totals[u] = d.numpy() if u not in totals else totals[u] + d.numpy()
        return totals, pgrads
