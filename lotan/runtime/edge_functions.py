"""Message passing with edge values that depend on the data: one aggregation node's forward
and backward pass over a partition's in-edges.

A fixed-weight sum (``reduce="sum"``) and the column-wise extremes run straight on the CSR
(:mod:`lotan.graph_engine.kernels`); the reductions here compute a value per edge first, in
the partition that owns the edge's destination, from the source row (own or halo), the
destination row and the edge's own features (``layout.edge_attr``):

- ``"attention"`` (``GATConv``): inputs ``(h, a_src, a_dst)``; with edge features, per-edge
  scores ``a_edge = (edge_attr W_edge)·att_edge`` (``params = (lin_edge.weight,
  att_edge)``);
- ``"attention_v2"`` (``GATv2Conv``): inputs ``(x_l, x_r)``, ``params = (att,)`` plus
  ``lin_edge.weight`` with edge features;
- ``"relu_sum"`` (``GINEConv``): input ``(x,)``, message ``relu(x_j + e_ji)`` with ``e``
  the raw edge features or ``edge_attr W + b`` (``params = (lin.weight, lin.bias)``).

Parameters of the edge functions are read from the epoch's broadcast like dense ones; their
gradients are summed per partition here and added up by the driver with the others. Edge
tensors live for one node at a time: ``(E, heads)`` coefficients, score gradients and
dropout multipliers, plus the ``(E, width)`` edge projection and its gradient when the node
has one (:func:`edge_bytes`). When they would pass the plan's budget
(:attr:`~lotan.planner.flags.PlannerFlags.edge_block_mb`), a node runs over blocks of
destination rows whose edges fit (:func:`~lotan.graph_engine.kernels.row_blocks`): dropout
multipliers and edge projections are made per block, the kernels keep each source's sums in
the transposed index's order across blocks, so the vertex-level results are the same bit for
bit; only the parameters' per-block gradient sums add up in block order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from lotan.graph_engine.attention import (
    attention,
    attention_grad,
    attention_v2,
    attention_v2_grad,
)
from lotan.graph_engine.kernels import relu_sum, relu_sum_grad, row_blocks
from lotan.graph_engine.layout import PartitionLayout
from lotan.nn_engine.dense import MaskSeed
from lotan.nn_engine.masks import dropout_scale
from lotan.planner.estimates import edge_bytes

__all__ = ["backward", "blocks_of", "edge_dropout", "forward"]


def edge_dropout(
    node: Any, layout: PartitionLayout, seed: int, epoch: int
) -> Callable[[int, int], torch.Tensor] | None:
    """The attention dropout multipliers of ``node`` in this epoch, as a function of a block
    of CSR edges ``(e0, e1)`` giving ``(e1 - e0, heads)`` (``None`` without dropout): keyed
    by the edges' keys (:attr:`PartitionLayout.edge_keys`), so every partitioning and every
    blocking drops the same coefficients, and backward draws them again identically."""
    if node.p <= 0 or node.reduce == "relu_sum":
        return None
    key = MaskSeed(seed, epoch).key(node)
    keys = layout.edge_keys
    return lambda e0, e1: dropout_scale(keys[e0:e1], node.heads, node.p, key)


class _EdgeTerm:
    """The per-edge term of ``node`` (``None`` without edge features): its rows for a block
    of edges (:meth:`rows`), and its parameters' gradients from those rows' gradients
    (:meth:`backward`, summed over the blocks in order)."""

    def __init__(self, node: Any, layout: PartitionLayout, params: Mapping[str, torch.Tensor]):
        self.node = node
        self.attr = torch.from_numpy(layout.edge_attr)
        self.names = node.params[1:] if node.reduce == "attention_v2" else node.params
        self.params = [params[n].detach() for n in self.names]
        self.grads: dict[str, torch.Tensor] = {}

    def _project(self, attr: torch.Tensor, ps: Sequence[torch.Tensor]) -> torch.Tensor:
        node = self.node
        if node.reduce == "attention":
            weight, att = ps
            proj = F.linear(attr, weight).view(attr.shape[0], node.heads, -1)
            return (proj * att).sum(dim=-1)
        if node.reduce == "attention_v2":
            return F.linear(attr, ps[0])
        if ps:  # relu_sum with GINEConv's lin
            return F.linear(attr, ps[0], ps[1] if len(ps) > 1 else None)
        return attr

    def rows(self, e0: int, e1: int) -> torch.Tensor:
        with torch.no_grad():
            return self._project(self.attr[e0:e1], self.params)

    def backward(self, e0: int, e1: int, grad: torch.Tensor) -> None:
        leaves = [p.clone().requires_grad_(True) for p in self.params]
        with torch.enable_grad():
            out = self._project(self.attr[e0:e1], leaves)
            got = torch.autograd.grad(out, leaves, grad.to(out.dtype))
        for n, g in zip(self.names, got, strict=True):
            self.grads[n] = g if n not in self.grads else self.grads[n] + g

    @property
    def trains(self) -> bool:
        return bool(self.params)


def blocks_of(node: Any, layout: PartitionLayout, budget: int) -> list[tuple[int, int]]:
    """The destination row blocks ``node`` runs over on ``layout`` within ``budget`` bytes."""
    per_edge = max(1, edge_bytes(node, 1))
    return row_blocks(layout.indptr, max(1, budget // per_edge))


def forward(
    node: Any,
    layout: PartitionLayout,
    mask: np.ndarray,
    inputs: Sequence[np.ndarray],
    params: Mapping[str, torch.Tensor],
    drop: Callable[[int, int], torch.Tensor] | None,
    budget: int,
) -> torch.Tensor:
    """``node``'s aggregation over this partition's in-edges with a non-zero ``mask``;
    ``inputs`` are its input values' ``[own | halo]`` rows."""
    edge = _EdgeTerm(node, layout, params).rows if node.edge_features else None
    blocks = blocks_of(node, layout, budget)
    ptr, idx, slope = layout.indptr, layout.indices, node.negative_slope
    if node.reduce == "attention":
        h, a_src, a_dst = inputs
        return attention(ptr, idx, mask, h, a_src, a_dst, slope, drop, edge, blocks)
    if node.reduce == "attention_v2":
        x_l, x_r = inputs
        att = params[node.params[0]]
        return attention_v2(ptr, idx, mask, x_l, x_r, att, slope, drop, edge, blocks)
    assert edge is not None  # relu_sum always reads edge features
    return relu_sum(ptr, idx, mask, inputs[0], edge, blocks)


def backward(
    node: Any,
    layout: PartitionLayout,
    mask: np.ndarray,
    t_mask: np.ndarray,
    inputs: Sequence[np.ndarray],
    params: Mapping[str, torch.Tensor],
    grad: np.ndarray,
    drop: Callable[[int, int], torch.Tensor] | None,
    budget: int,
) -> tuple[list[torch.Tensor], dict[str, np.ndarray]]:
    """The gradients of ``node``'s inputs (``[own | halo]`` rows, one per input) and of its
    parameters (this partition's share), from the gradient of its output."""
    term = _EdgeTerm(node, layout, params) if node.edge_features else None
    edge = term.rows if term is not None else None
    sink = term.backward if term is not None and term.trains else None
    blocks = blocks_of(node, layout, budget)
    ptr, idx, slope = layout.indptr, layout.indices, node.negative_slope
    t = (layout.t_indptr, layout.t_indices, layout.t_perm, t_mask)
    pgrads: dict[str, np.ndarray] = {}
    if node.reduce == "attention":
        h, a_src, a_dst = inputs
        d_h, d_src, d_dst, _ = attention_grad(
            ptr, idx, mask, *t, h, a_src, a_dst, slope, grad, drop, edge, blocks, sink
        )
        d_inputs = [d_h, d_src, d_dst]
    elif node.reduce == "attention_v2":
        att = params[node.params[0]]
        x_l, x_r = inputs
        d_l, d_r, d_att, _ = attention_v2_grad(
            ptr, idx, mask, *t, x_l, x_r, att, slope, grad, drop, edge, sink or False, blocks
        )
        d_inputs = [d_l, d_r]
        pgrads[node.params[0]] = d_att.numpy()
    else:
        assert edge is not None
        d_x, _ = relu_sum_grad(ptr, *t, inputs[0], edge, grad, sink or False, blocks)
        d_inputs = [d_x]
    if term is not None:
        pgrads.update({n: g.numpy() for n, g in term.grads.items()})
    return d_inputs, pgrads
