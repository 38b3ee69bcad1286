"""Lowering of the convolutions with a value per edge: ``GATConv`` and ``GATv2Conv``
(attention) and ``GINEConv`` (messages from edge features); the reductions they lower to
are in :mod:`lotan.runtime.edge_functions`."""

from __future__ import annotations

from typing import Any

import torch

from lotan.errors import UnsupportedModelError
from lotan.ir.norm import NormSpec
from lotan.planner.lowering.builder import Builder, Call, need_aggr
from lotan.planner.lowering.registry import lowering


def attention_edges(b: Builder, conv: Any, where: str, edges: bool) -> tuple[bool, NormSpec]:
    """Whether a GAT layer's scores read edge features (PyG: an ``edge_attr`` passed to
    a layer with ``edge_dim``), and the edges it attends over."""
    uses = edges and conv.edge_dim is not None
    if uses:
        b.edge_input(where, int(conv.edge_dim))
        if conv.add_self_loops and conv.fill_value != "mean":
            raise UnsupportedModelError(
                f"{where}: fill_value={conv.fill_value!r} is not supported with edge "
                "features; use the default 'mean' (an added self loop gets the mean of "
                "the vertex's in-edge features)"
            )
    return uses, NormSpec(kind="loops") if conv.add_self_loops else NormSpec(kind="sum")


def heads_out(b: Builder, out: int, conv: Any, x: int, prefix: str, where: str) -> int:
    """A GAT layer after its aggregation: head mean (``concat=False``), residual, bias."""
    if not conv.concat:
        heads = int(conv.heads)
        out = b.add("head_mean", (out,), int(conv.out_channels), heads=heads, origin=where)
    if getattr(conv, "res", None) is not None:
        r = b.linear(x, conv.res, f"{prefix}res.", f"{where}.res")
        out = b.add("add", (out, r), b.width(out), origin=where)
    if conv.bias is not None:
        out = b.add("bias", (out,), b.width(out), param=f"{prefix}bias", origin=where)
    return out


@lowering(
    "GATConv",
    "convolution",
    "h = x W, scores h·att_src, h·att_dst (+ (edge_attr W_e)·att_edge), softmax per "
    "destination, attention dropout, Σ α h_j; head mean unless concat; residual; bias",
    "heads, concat, negative_slope, add_self_loops, bias, residual, dropout, edge_dim",
)
def gat(b: Builder, x: int, conv: Any, c: Call) -> int:
    prefix, where, edges = c.prefix, c.where, c.edges
    need_aggr(where, c.aggr, ("add", "sum"))
    if conv.lin is None:
        raise UnsupportedModelError(f"{where}: a bipartite GATConv is not supported")
    uses, norm = attention_edges(b, conv, where, edges)
    heads, channels = int(conv.heads), int(conv.out_channels)
    h = b.linear(x, conv.lin, f"{prefix}lin.", f"{where}.lin")
    scores = [
        b.add("head_dot", (h,), heads, param=f"{prefix}{name}", heads=heads, origin=where)
        for name in ("att_src", "att_dst")
    ]
    out = b.add(
        "aggregate",
        (h, *scores),
        heads * channels,
        norm=norm,
        reduce="attention",
        heads=heads,
        negative_slope=float(conv.negative_slope),
        p=float(conv.dropout),
        params=(f"{prefix}lin_edge.weight", f"{prefix}att_edge") if uses else (),
        edge_features=uses,
        origin=where,
    )
    return heads_out(b, out, conv, x, prefix, where)


@lowering(
    "GATv2Conv",
    "convolution",
    "x_l = x W_l, x_r = x W_r, scores att·leaky_relu(x_l_j + x_r_i + e_ij), then as GATConv",
    "heads, concat, negative_slope, add_self_loops, bias, residual, dropout, edge_dim, "
    "share_weights; not bipartite",
)
def gatv2(b: Builder, x: int, conv: Any, c: Call) -> int:
    """``x_l = x W_l``, ``x_r = x W_r`` (the same with ``share_weights``), the attention
    of :func:`lotan.graph_engine.attention.attention_v2` over them, then as GAT."""
    prefix, where, edges = c.prefix, c.where, c.edges
    need_aggr(where, c.aggr, ("add", "sum"))
    if isinstance(conv.in_channels, tuple | list):
        raise UnsupportedModelError(f"{where}: a bipartite GATv2Conv is not supported")
    uses, norm = attention_edges(b, conv, where, edges)
    heads, channels = int(conv.heads), int(conv.out_channels)
    x_l = b.linear(x, conv.lin_l, f"{prefix}lin_l.", f"{where}.lin_l")
    x_r = (
        x_l if conv.share_weights else b.linear(x, conv.lin_r, f"{prefix}lin_r.", f"{where}.lin_r")
    )
    params = (f"{prefix}att",) + ((f"{prefix}lin_edge.weight",) if uses else ())
    out = b.add(
        "aggregate",
        (x_l, x_r),
        heads * channels,
        norm=norm,
        reduce="attention_v2",
        heads=heads,
        negative_slope=float(conv.negative_slope),
        p=float(conv.dropout),
        params=params,
        edge_features=uses,
        origin=where,
    )
    return heads_out(b, out, conv, x, prefix, where)


@lowering(
    "GINEConv",
    "convolution",
    "nn((1 + eps) x + Σ relu(x_j + e_ji)), e the edge features or lin(edge_attr)",
    "edge_dim or raw edge features, eps fixed or train_eps",
)
def gine(b: Builder, x: int, conv: Any, c: Call) -> int:
    """``nn((1 + eps) x_i + Σ_j relu(x_j + e_ji))``, ``e`` the edge features or their
    projection ``lin(edge_attr)`` (``edge_dim``)."""
    prefix, where, edges = c.prefix, c.where, c.edges
    need_aggr(where, c.aggr, ("add", "sum"))
    if not edges:
        raise UnsupportedModelError(
            f"{where}: GINEConv needs the edge features: call it as conv(x, edge_index, edge_attr)"
        )
    if conv.lin is None:
        b.edge_input(where, None)
        if b.edge_width != b.width(x):
            raise UnsupportedModelError(
                f"{where}: shape mismatch, GINEConv without edge_dim adds the edge "
                f"features ({b.edge_width}) to the vertex features ({b.width(x)}); "
                "set edge_dim to project them"
            )
        params: tuple[str, ...] = ()
    else:
        b.edge_input(where, int(conv.lin.in_channels))
        if int(conv.lin.out_channels) != b.width(x):
            raise UnsupportedModelError(
                f"{where}: shape mismatch, GINEConv's edge projection gives "
                f"{conv.lin.out_channels} features for vertex features of width "
                f"{b.width(x)}; fix in_channels of its nn"
            )
        params = (f"{prefix}lin.weight",)
        if conv.lin.bias is not None:
            params += (f"{prefix}lin.bias",)
    agg = b.add(
        "aggregate",
        (x,),
        b.width(x),
        norm=NormSpec(kind="sum"),
        reduce="relu_sum",
        params=params,
        edge_features=True,
        origin=where,
    )
    if isinstance(conv.eps, torch.nn.Parameter):
        s = b.add("scale_eps", (x,), b.width(x), param=f"{prefix}eps", origin=where)
    else:
        s = b.add("scale_eps", (x,), b.width(x), eps=float(conv.eps), origin=where)
    h = b.add("add", (agg, s), b.width(x), origin=where)
    return b.mlp(h, conv.nn, f"{prefix}nn.", f"{where}.nn")
