"""Lowering of the convolutions that aggregate vertex rows: ``GCNConv``, ``SAGEConv``,
``GINConv``, ``GraphConv``, ``SGConv``, ``APPNP`` and ``GCN2Conv`` (the convolutions with
per-edge values are in :mod:`lotan.planner.lowering.edge_convs`). Each registers itself
(:mod:`lotan.planner.lowering.registry`); :func:`lower_conv` finds a convolution's lowering
by its type."""

from __future__ import annotations

from typing import Any

import torch

from lotan.errors import UnsupportedModelError
from lotan.ir.norm import NormSpec
from lotan.planner.lowering.builder import Builder, Call, need_aggr
from lotan.planner.lowering.registry import find, lowering, supported


def lower_conv(
    b: Builder,
    x: int,
    conv: Any,
    prefix: str,
    where: str,
    weighted: bool,
    edges: bool = False,
    x0: int | None = None,
) -> int:
    """Lower ``conv`` applied to value ``x``; ``weighted``: the call passes the graph's edge
    weights; ``edges``: the call passes the edge features; ``x0``: GCN2Conv's initial
    representation."""
    entry = find(conv, "convolution")
    if entry is None:
        raise UnsupportedModelError(
            f"{where}: {type(conv).__name__} is not supported; supported: {supported()}"
        )
    aggr = conv.aggr if isinstance(conv.aggr, str) else type(conv.aggr).__name__
    if getattr(conv, "flow", "source_to_target") != "source_to_target":
        raise UnsupportedModelError(f"{where}: flow={conv.flow!r} is not supported")
    return entry.lower(b, x, conv, Call(prefix, where, aggr, weighted, edges, x0))


@lowering(
    "GCNConv",
    "convolution",
    "Â (x W) + b, Â = gcn_norm (self loops, edge weights)",
    "improved, add_self_loops, normalize, bias",
)
def gcn(b: Builder, x: int, conv: Any, c: Call) -> int:
    need_aggr(c.where, c.aggr, ("add", "sum"))
    h = b.linear(x, conv.lin, f"{c.prefix}lin.", f"{c.where}.lin")
    h = b.aggregate(h, b.gcn_norm(conv, c.weighted), c.where)
    if conv.bias is not None:
        h = b.add("bias", (h,), b.width(h), param=f"{c.prefix}bias", origin=c.where)
    return h


@lowering(
    "SAGEConv",
    "convolution",
    "aggr(x_j) W_l + b + x W_r",
    "aggr 'mean', 'sum', 'max', 'min'; root_weight; not normalize, project, bipartite",
)
def sage(b: Builder, x: int, conv: Any, c: Call) -> int:
    need_aggr(c.where, c.aggr, ("mean", "add", "sum", "max", "min"))
    if conv.normalize or conv.project or isinstance(conv.in_channels, tuple | list):
        raise UnsupportedModelError(
            f"{c.where}: SAGEConv(normalize=True / project=True / bipartite) is not "
            "supported; use the defaults"
        )
    agg = b.neighbours(x, c.aggr, c.where)
    h = b.linear(agg, conv.lin_l, f"{c.prefix}lin_l.", f"{c.where}.lin_l")
    if conv.root_weight:
        r = b.linear(x, conv.lin_r, f"{c.prefix}lin_r.", f"{c.where}.lin_r")
        h = b.add("add", (h, r), b.width(h), origin=c.where)
    return h


@lowering("GINConv", "convolution", "nn((1 + eps) x + Σ x_j)", "eps fixed or train_eps")
def gin(b: Builder, x: int, conv: Any, c: Call) -> int:
    need_aggr(c.where, c.aggr, ("add", "sum"))
    agg = b.aggregate(x, NormSpec(kind="sum"), c.where)
    if isinstance(conv.eps, torch.nn.Parameter):
        s = b.add("scale_eps", (x,), b.width(x), param=f"{c.prefix}eps", origin=c.where)
    else:
        s = b.add("scale_eps", (x,), b.width(x), eps=float(conv.eps), origin=c.where)
    h = b.add("add", (agg, s), b.width(x), origin=c.where)
    return b.mlp(h, conv.nn, f"{c.prefix}nn.", f"{c.where}.nn")


@lowering(
    "GraphConv",
    "convolution",
    "aggr(x_j) W_rel + b + x W_root",
    "aggr 'add', 'mean', 'max', 'min' (edge weights with 'add' only); not bipartite",
)
def graph_conv(b: Builder, x: int, conv: Any, c: Call) -> int:
    where, aggr = c.where, c.aggr
    need_aggr(where, aggr, ("add", "sum", "mean", "max", "min"))
    if isinstance(conv.in_channels, tuple | list):
        raise UnsupportedModelError(f"{where}: a bipartite GraphConv is not supported")
    if c.weighted and b.has_edge_weight:
        if aggr not in ("add", "sum"):
            raise UnsupportedModelError(
                f"{where}: GraphConv(aggr={aggr!r}) with edge weights is not "
                "supported (only aggr='add' weighs its messages); drop the weights or "
                "use aggr='add'"
            )
        norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=True)
        agg = b.aggregate(x, norm, where)
    else:
        agg = b.neighbours(x, aggr, where)
    h = b.linear(agg, conv.lin_rel, f"{c.prefix}lin_rel.", f"{where}.lin_rel")
    r = b.linear(x, conv.lin_root, f"{c.prefix}lin_root.", f"{where}.lin_root")
    return b.add("add", (h, r), b.width(h), origin=where)


@lowering("SGConv", "convolution", "(Â^K x) W + b (SGC; Â^K X is cached)", "K, add_self_loops")
def sg(b: Builder, x: int, conv: Any, c: Call) -> int:
    need_aggr(c.where, c.aggr, ("add", "sum"))
    norm = NormSpec(
        kind="gcn",
        add_self_loops=bool(conv.add_self_loops),
        weighted=c.weighted and b.has_edge_weight,
    )
    h = x
    for _ in range(int(conv.K)):
        h = b.aggregate(h, norm, c.where)
    return b.linear(h, conv.lin, f"{c.prefix}lin.", f"{c.where}.lin")


@lowering(
    "APPNP",
    "convolution",
    "K times x = (1 - α) Â x + α h, from h = x",
    "K, alpha, normalize, add_self_loops; dropout=0 only",
    alone=False,
)
def appnp(b: Builder, x: int, conv: Any, c: Call) -> int:
    """``K`` times ``x = (1 - α) Â x + α h`` from ``h = x`` — PyG's order of operations
    (``x * (1 - α)``, then ``+ α h``)."""
    where, weighted = c.where, c.weighted
    need_aggr(where, c.aggr, ("add", "sum"))
    if conv.dropout > 0:
        raise UnsupportedModelError(
            f"{where}: APPNP(dropout={conv.dropout:g}) is not supported (it drops edge "
            "weights); use dropout=0 and dropout modules on the features"
        )
    norm = _propagation(b, conv, weighted)
    alpha = float(conv.alpha)
    teleport = b.add("scale", (x,), b.width(x), factor=alpha, origin=where)
    h = x
    for _ in range(int(conv.K)):
        h = b.aggregate(h, norm, where)
        h = b.add("scale", (h,), b.width(h), factor=1 - alpha, origin=where)
        h = b.add("add", (h, teleport), b.width(h), origin=where)
    return h


@lowering(
    "GCN2Conv",
    "convolution",
    "h = (1 - α) Â x + α x_0, then (1 - β) h + β h W (GCNII), called as conv(x, x_0, edge_index)",
    "alpha, theta, layer, shared_weights, normalize, add_self_loops",
    alone=False,
)
def gcn2(b: Builder, x: int, conv: Any, c: Call) -> int:
    """GCNII (Chen et al.): ``h = (1 - α) Â x + α x_0``, then the identity mapping
    ``(1 - β) h + β h W`` — PyG's ``addmm`` — one weight for both terms, or
    ``weight2`` for the ``x_0`` term (``shared_weights=False``)."""
    where, prefix, weighted, x0 = c.where, c.prefix, c.weighted, c.x0
    if x0 is None:
        raise UnsupportedModelError(f"{where}: GCN2Conv needs (x, x_0, edge_index)")
    need_aggr(where, c.aggr, ("add", "sum"))
    for v in (x, x0):
        if b.width(v) != int(conv.channels):
            raise UnsupportedModelError(
                f"{where}: shape mismatch, GCN2Conv({conv.channels}) gets inputs of width "
                f"{b.width(x)} and {b.width(x0)}; x and x_0 must both be "
                f"{conv.channels} wide"
            )
    norm = _propagation(b, conv, weighted)
    alpha, beta = float(conv.alpha), float(conv.beta)
    w = b.width(x)
    h = b.aggregate(x, norm, where)
    h = b.add("scale", (h,), w, factor=1 - alpha, origin=where)
    t = b.add("scale", (x0,), w, factor=alpha, origin=where)

    def identity_map(v: int, weight: str) -> int:
        kept = b.add("scale", (v,), w, factor=1 - beta, origin=where)
        mapped = b.add("matmul", (v,), w, param=f"{prefix}{weight}", origin=where)
        mapped = b.add("scale", (mapped,), w, factor=beta, origin=where)
        return b.add("add", (kept, mapped), w, origin=where)

    if conv.weight2 is None:
        return identity_map(b.add("add", (h, t), w, origin=where), "weight1")
    return b.add("add", (identity_map(h, "weight1"), identity_map(t, "weight2")), w, origin=where)


def _propagation(b: Builder, conv: Any, weighted: bool) -> NormSpec:
    """The weighting of APPNP's and GCN2Conv's propagation: ``gcn_norm`` when ``normalize``
    (self loops as ``add_self_loops`` says), else the raw edge weights."""
    weighted = weighted and b.has_edge_weight
    if conv.normalize:
        return NormSpec(kind="gcn", add_self_loops=bool(conv.add_self_loops), weighted=weighted)
    return NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
