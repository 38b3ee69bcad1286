"""Lowering of the convolutions that aggregate vertex rows: ``GCNConv``, ``SAGEConv``,
``GINConv``, ``GraphConv``, ``SGConv``, ``APPNP`` and ``GCN2Conv`` (the convolutions with
per-edge values are in :mod:`lotan.planner.lowering.edge_convs`)."""

from __future__ import annotations

from typing import Any

import torch

from lotan.errors import UnsupportedModelError
from lotan.ir.norm import NormSpec
from lotan.planner.lowering.builder import SUPPORTED, Builder, need_aggr
from lotan.planner.lowering.edge_convs import gat, gatv2, gine


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
    """Lower ``conv`` applied to value ``x``; ``edges``: the call passes the edge
    features; ``x0``: GCN2Conv's initial representation."""
    from torch_geometric.nn import (
        APPNP,
        GATConv,
        GATv2Conv,
        GCN2Conv,
        GCNConv,
        GINConv,
        GINEConv,
        GraphConv,
        SAGEConv,
        SGConv,
    )

    kinds = (
        GCNConv
        | SAGEConv
        | GINConv
        | GINEConv
        | SGConv
        | GraphConv
        | GATConv
        | GATv2Conv
        | APPNP
        | GCN2Conv
    )
    if not isinstance(conv, kinds):
        raise UnsupportedModelError(
            f"{where}: {type(conv).__name__} is not supported; supported: {SUPPORTED}"
        )
    aggr = conv.aggr if isinstance(conv.aggr, str) else type(conv.aggr).__name__
    if getattr(conv, "flow", "source_to_target") != "source_to_target":
        raise UnsupportedModelError(f"{where}: flow={conv.flow!r} is not supported")
    if isinstance(conv, GCNConv):
        need_aggr(where, aggr, ("add", "sum"))
        h = b.linear(x, conv.lin, f"{prefix}lin.", f"{where}.lin")
        h = b.aggregate(h, b.gcn_norm(conv, weighted), where)
        if conv.bias is not None:
            h = b.add("bias", (h,), b.width(h), param=f"{prefix}bias", origin=where)
        return h
    if isinstance(conv, SAGEConv):
        need_aggr(where, aggr, ("mean", "add", "sum", "max", "min"))
        if conv.normalize or conv.project or isinstance(conv.in_channels, tuple | list):
            raise UnsupportedModelError(
                f"{where}: SAGEConv(normalize=True / project=True / bipartite) is not "
                "supported; use the defaults"
            )
        agg = b.neighbours(x, aggr, where)
        h = b.linear(agg, conv.lin_l, f"{prefix}lin_l.", f"{where}.lin_l")
        if conv.root_weight:
            r = b.linear(x, conv.lin_r, f"{prefix}lin_r.", f"{where}.lin_r")
            h = b.add("add", (h, r), b.width(h), origin=where)
        return h
    if isinstance(conv, GINConv):
        need_aggr(where, aggr, ("add", "sum"))
        agg = b.aggregate(x, NormSpec(kind="sum"), where)
        if isinstance(conv.eps, torch.nn.Parameter):
            s = b.add("scale_eps", (x,), b.width(x), param=f"{prefix}eps", origin=where)
        else:
            s = b.add("scale_eps", (x,), b.width(x), eps=float(conv.eps), origin=where)
        h = b.add("add", (agg, s), b.width(x), origin=where)
        return b.mlp(h, conv.nn, f"{prefix}nn.", f"{where}.nn")
    if isinstance(conv, GATConv):
        return gat(b, x, conv, prefix, where, aggr, edges)
    if isinstance(conv, GATv2Conv):
        return gatv2(b, x, conv, prefix, where, aggr, edges)
    if isinstance(conv, GINEConv):
        return gine(b, x, conv, prefix, where, aggr, edges)
    if isinstance(conv, GCN2Conv):
        if x0 is None:
            raise UnsupportedModelError(f"{where}: GCN2Conv needs (x, x_0, edge_index)")
        return gcn2(b, x, x0, conv, prefix, where, aggr, weighted)
    if isinstance(conv, APPNP):
        return appnp(b, x, conv, where, aggr, weighted)
    if isinstance(conv, GraphConv):
        need_aggr(where, aggr, ("add", "sum", "mean", "max", "min"))
        if isinstance(conv.in_channels, tuple | list):
            raise UnsupportedModelError(f"{where}: a bipartite GraphConv is not supported")
        if weighted and b.has_edge_weight:
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
        h = b.linear(agg, conv.lin_rel, f"{prefix}lin_rel.", f"{where}.lin_rel")
        r = b.linear(x, conv.lin_root, f"{prefix}lin_root.", f"{where}.lin_root")
        return b.add("add", (h, r), b.width(h), origin=where)
    # SGConv
    need_aggr(where, aggr, ("add", "sum"))
    norm = NormSpec(
        kind="gcn",
        add_self_loops=bool(conv.add_self_loops),
        weighted=weighted and b.has_edge_weight,
    )
    h = x
    for _ in range(int(conv.K)):
        h = b.aggregate(h, norm, where)
    return b.linear(h, conv.lin, f"{prefix}lin.", f"{where}.lin")


def appnp(b: Builder, x: int, conv: Any, where: str, aggr: str, weighted: bool) -> int:
    """``K`` times ``x = (1 - α) Â x + α h`` from ``h = x`` — PyG's order of operations
    (``x * (1 - α)``, then ``+ α h``)."""
    need_aggr(where, aggr, ("add", "sum"))
    if conv.dropout > 0:
        raise UnsupportedModelError(
            f"{where}: APPNP(dropout={conv.dropout:g}) is not supported (it drops edge "
            "weights); use dropout=0 and dropout modules on the features"
        )
    weighted = weighted and b.has_edge_weight
    if conv.normalize:
        norm = NormSpec(kind="gcn", add_self_loops=bool(conv.add_self_loops), weighted=weighted)
    else:
        norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
    alpha = float(conv.alpha)
    teleport = b.add("scale", (x,), b.width(x), factor=alpha, origin=where)
    h = x
    for _ in range(int(conv.K)):
        h = b.aggregate(h, norm, where)
        h = b.add("scale", (h,), b.width(h), factor=1 - alpha, origin=where)
        h = b.add("add", (h, teleport), b.width(h), origin=where)
    return h


def gcn2(
    b: Builder, x: int, x0: int, conv: Any, prefix: str, where: str, aggr: str, weighted: bool
) -> int:
    """GCNII (Chen et al.): ``h = (1 - α) Â x + α x_0``, then the identity mapping
    ``(1 - β) h + β h W`` — PyG's ``addmm`` — one weight for both terms, or
    ``weight2`` for the ``x_0`` term (``shared_weights=False``)."""
    need_aggr(where, aggr, ("add", "sum"))
    for v in (x, x0):
        if b.width(v) != int(conv.channels):
            raise UnsupportedModelError(
                f"{where}: shape mismatch, GCN2Conv({conv.channels}) gets inputs of width "
                f"{b.width(x)} and {b.width(x0)}; x and x_0 must both be "
                f"{conv.channels} wide"
            )
    weighted = weighted and b.has_edge_weight
    if conv.normalize:
        norm = NormSpec(kind="gcn", add_self_loops=bool(conv.add_self_loops), weighted=weighted)
    else:
        norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
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
