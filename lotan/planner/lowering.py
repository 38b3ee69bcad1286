"""Lowering PyTorch Geometric models to a :class:`~lotan.planner.logical.LogicalPlan`.

Supported:

- ``torch_geometric.nn.models`` ``GCN``, ``GraphSAGE``, ``GIN``, ``GAT`` (jumping knowledge
  ``"last"``/``"cat"``/``"max"``, ``act_first``, ``norm`` ``"batch_norm"``,
  ``"layer_norm"`` (either mode), ``"pair_norm"`` or none);
- a single ``GCNConv``, ``SAGEConv``, ``GINConv``, ``GINEConv``, ``SGConv``, ``GraphConv``,
  ``GATConv`` or ``GATv2Conv`` used as the model;
- any ``torch.nn.Module`` whose ``forward(x, edge_index)`` or ``forward(x, edge_index,
  edge_attr)`` composes those convolutions, ``APPNP``, ``GCN2Conv`` (``conv(x, x_0,
  edge_index)``), ``torch.nn.Linear``, PyG ``Linear`` / ``MLP``, normalizations
  (``torch.nn.BatchNorm1d`` / ``LayerNorm``, PyG ``BatchNorm`` / ``LayerNorm`` /
  ``PairNorm``: those whose statistics span the graph read a ``moments`` node, a reduction
  across partitions), activations (relu,
  leaky_relu, elu, gelu, tanh), dropout, additions and concatenation — captured with
  ``torch.fx``, the convolutions kept as leaves. A convolution reads the edge features when
  the call passes ``edge_attr`` (as in PyG).

Each PyG layer becomes the ops it computes, in PyG's order: ``GCNConv`` is ``Â(xW) + b``,
``SAGEConv`` is ``mean(x) W_l + b + x W_r``, ``GINConv`` is ``nn((1 + eps) x + Σ x_j)``,
``SGConv`` is ``(Â^K x) W + b``, ``GraphConv`` is ``aggr(x_j) W_rel + b + x W_root``,
``APPNP`` is ``K`` times ``(1 - α) Â x + α x_0``, ``GCN2Conv`` is ``h = (1 - α) Â x + α
x_0`` then ``(1 - β) h + β h W``, ``GATConv`` is ``h = x W``, per-head scores
``a_src = h·att_src`` and ``a_dst = h·att_dst``, the attention aggregation of
``(h, a_src, a_dst)`` (with its dropout, and edge scores from ``edge_attr``), the mean over
heads unless ``concat``, the residual ``x W_res`` and the bias; ``GATv2Conv`` the same with
``x_l = x W_l``, ``x_r = x W_r`` and the score ``att · leaky_relu(x_l_j + x_r_i + e_ij)``;
``GINEConv`` is ``nn((1 + eps) x + Σ relu(x_j + e_ji))``. Aggregations are sums
(``aggr="add"``, ``"sum"``, ``"mean"``), column-wise extremes (``"max"``, ``"min"``, for
``SAGEConv`` and ``GraphConv``) or the per-edge reductions of
:mod:`lotan.planner.messages`.
"""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F

from lotan.errors import UnsupportedModelError
from lotan.graph_engine.layout import NormSpec
from lotan.planner.logical import LogicalPlan, Node

__all__ = ["SUPPORTED", "lower_model"]

SUPPORTED = (
    "torch_geometric.nn.models GCN, GraphSAGE, GIN, GAT (jk None/'last'/'cat'/'max', "
    "act_first, norm None/'batch_norm'/'layer_norm'/'pair_norm'; GAT with v2 and edge_dim); "
    "GCNConv, "
    "SAGEConv (aggr 'mean', 'sum', 'max', 'min'), GINConv, GINEConv (edge_dim), SGConv, APPNP "
    "(dropout=0), GCN2Conv, GraphConv (aggr 'add', 'mean', 'max', 'min'), GATConv and "
    "GATv2Conv (heads, concat, negative_slope, add_self_loops, bias, residual, dropout, "
    "edge_dim; GATv2Conv share_weights); torch.nn.Linear, PyG Linear and MLP; "
    "torch.nn.BatchNorm1d and LayerNorm, PyG BatchNorm, LayerNorm (mode 'graph' or 'node') and "
    "PairNorm; activations relu, leaky_relu, elu, gelu, "
    "tanh; dropout; + and torch.cat in a forward(x, edge_index) or forward(x, edge_index, "
    "edge_attr) that torch.fx can trace"
)


_ACT_MODULES: dict[type, str] = {
    torch.nn.ReLU: "relu",
    torch.nn.LeakyReLU: "leaky_relu",
    torch.nn.ELU: "elu",
    torch.nn.GELU: "gelu",
    torch.nn.Tanh: "tanh",
}
_ACT_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.leaky_relu: "leaky_relu",
    F.elu: "elu",
    F.gelu: "gelu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
}


class _Builder:
    def __init__(self, in_width: int, has_edge_weight: bool, edge_width: int = 0) -> None:
        self.nodes: list[Node] = [Node(0, "input", (), in_width, origin="x")]
        self.has_edge_weight = has_edge_weight
        self.edge_width = edge_width

    def add(self, op: str, inputs: tuple[int, ...], width: int, **attrs: Any) -> int:
        i = len(self.nodes)
        self.nodes.append(Node(i, op, inputs, width, **attrs))
        return i

    def width(self, i: int) -> int:
        return self.nodes[i].width

    # ------------------------------------------------------------------ dense pieces
    def linear(self, x: int, lin: torch.nn.Module, prefix: str, where: str) -> int:
        weight = getattr(lin, "weight", None)
        if weight is None or weight.dim() != 2:
            raise UnsupportedModelError(f"{where}: expected a linear layer with a 2-D weight")
        out_w, in_w = int(weight.shape[0]), int(weight.shape[1])
        if in_w != self.width(x):
            raise UnsupportedModelError(
                f"{where}: shape mismatch, the layer expects {in_w} input features but gets "
                f"{self.width(x)}; fix in_channels/in_features of {where}"
            )
        h = self.add("linear", (x,), out_w, param=f"{prefix}weight", origin=where)
        if getattr(lin, "bias", None) is not None:
            h = self.add("bias", (h,), out_w, param=f"{prefix}bias", origin=where)
        return h

    def act(self, x: int, name: str, where: str, negative_slope: float = 0.01) -> int:
        return self.add(
            "act", (x,), self.width(x), act=name, negative_slope=negative_slope, origin=where
        )

    def act_module(self, x: int, mod: torch.nn.Module | None, where: str) -> int:
        if mod is None or isinstance(mod, torch.nn.Identity):
            return x
        name = _ACT_MODULES.get(type(mod))
        if (
            name is None
            or (name == "elu" and mod.alpha != 1.0)
            or (name == "gelu" and mod.approximate != "none")
        ):
            raise UnsupportedModelError(
                f"{where}: activation {mod!r} is not supported; supported: {SUPPORTED}"
            )
        slope = float(getattr(mod, "negative_slope", 0.01))
        return self.act(x, name, where, slope)

    def norm(self, x: int, mod: torch.nn.Module | None, prefix: str, where: str) -> int:
        """A normalization layer on value ``x``. Per-vertex ones (``torch.nn.LayerNorm``,
        PyG's ``LayerNorm(mode="node")``) are dense ops; those whose statistics span the
        graph (``BatchNorm1d``, PyG's ``BatchNorm``, ``LayerNorm(mode="graph")``,
        ``PairNorm``) read a ``moments`` node: the column statistics over every vertex, a
        reduction across partitions."""
        from torch_geometric.nn.norm import BatchNorm as PygBatchNorm
        from torch_geometric.nn.norm import LayerNorm as PygLayerNorm
        from torch_geometric.nn.norm import PairNorm

        if mod is None or isinstance(mod, torch.nn.Identity):
            return x
        w = self.width(x)
        if isinstance(mod, PygBatchNorm):
            return self.batch_norm(x, mod.module, f"{prefix}module.", where)
        if isinstance(mod, torch.nn.BatchNorm1d) and type(mod) is torch.nn.BatchNorm1d:
            return self.batch_norm(x, mod, prefix, where)
        if isinstance(mod, PygLayerNorm) and mod.mode == "graph":
            self._check_width(mod.in_channels, w, "LayerNorm", where)
            m = self.add("moments", (x,), w, origin=where)
            affine = mod.weight is not None
            h = self.add(
                "graph_norm",
                (x, m),
                w,
                param=f"{prefix}weight" if affine else None,
                eps=float(mod.eps),
                origin=where,
            )
            return self.add("bias", (h,), w, param=f"{prefix}bias", origin=where) if affine else h
        if isinstance(mod, PairNorm):
            m = self.add("moments", (x,), w, origin=where)
            op = "pair_norm_rows" if mod.scale_individually else "pair_norm"
            return self.add(
                op, (x, m), w, factor=float(mod.scale), eps=float(mod.eps), origin=where
            )
        if isinstance(mod, torch.nn.LayerNorm):
            if tuple(mod.normalized_shape) != (w,):
                raise UnsupportedModelError(
                    f"{where}: LayerNorm{tuple(mod.normalized_shape)} on vertex rows of width "
                    f"{w}; normalize over the features: LayerNorm({w})"
                )
            weight = mod.weight is not None
            bias = getattr(mod, "bias", None) is not None
        elif isinstance(mod, PygLayerNorm) and mod.mode == "node":
            self._check_width(mod.in_channels, w, "LayerNorm", where)
            weight = bias = mod.weight is not None
        else:
            mode = getattr(mod, "mode", None)
            what = type(mod).__name__ + (f"(mode={mode!r})" if mode is not None else "")
            raise UnsupportedModelError(
                f"{where}: {what} is not supported; supported normalizations: "
                "torch.nn.BatchNorm1d, torch.nn.LayerNorm, torch_geometric.nn.BatchNorm, "
                "LayerNorm (mode 'graph' or 'node'), PairNorm"
            )
        h = self.add(
            "layer_norm",
            (x,),
            w,
            param=f"{prefix}weight" if weight else None,
            eps=float(mod.eps),
            origin=where,
        )
        if bias:
            h = self.add("bias", (h,), w, param=f"{prefix}bias", origin=where)
        return h

    @staticmethod
    def _check_width(channels: int, w: int, what: str, where: str) -> None:
        if int(channels) != w:
            raise UnsupportedModelError(
                f"{where}: shape mismatch, {what}({channels}) on vertex rows of width {w}"
            )

    def batch_norm(self, x: int, bn: torch.nn.BatchNorm1d, prefix: str, where: str) -> int:
        """``BatchNorm1d`` in training mode: the batch statistics over every vertex (and the
        running statistics updated from them, when it tracks them); in evaluation, the
        running statistics (or, untracked, the batch statistics again)."""
        w = self.width(x)
        self._check_width(bn.num_features, w, "BatchNorm1d", where)
        tracked = bn.track_running_stats and bn.running_mean is not None
        m = self.add(
            "moments",
            (x,),
            w,
            buffers=tuple(
                f"{prefix}{b}" for b in ("running_mean", "running_var", "num_batches_tracked")
            )
            if tracked
            else (),
            momentum=None if bn.momentum is None else float(bn.momentum),
            origin=where,
        )
        h = self.add(
            "batch_norm",
            (x, m),
            w,
            param=f"{prefix}weight" if bn.affine else None,
            eps=float(bn.eps),
            origin=where,
        )
        if bn.affine:
            h = self.add("bias", (h,), w, param=f"{prefix}bias", origin=where)
        return h

    def dropout(self, x: int, p: float, where: str) -> int:
        return self.add("dropout", (x,), self.width(x), p=float(p), origin=where) if p > 0 else x

    def aggregate(self, x: int, norm: NormSpec, where: str, reduce: str = "sum") -> int:
        return self.add("aggregate", (x,), self.width(x), norm=norm, reduce=reduce, origin=where)

    def neighbours(self, x: int, aggr: str, where: str) -> int:
        """PyG's ``aggr`` of the in-neighbours' rows, unweighted (every input edge, duplicates
        and self loops included; no self loop added)."""
        if aggr in ("max", "min"):
            return self.aggregate(x, NormSpec(kind="sum"), where, reduce=aggr)
        return self.aggregate(x, NormSpec(kind="mean" if aggr == "mean" else "sum"), where)

    def mlp(self, x: int, mlp: torch.nn.Module, prefix: str, where: str) -> int:
        from torch_geometric.nn.models import MLP

        if isinstance(mlp, torch.nn.Sequential):
            for name, sub in mlp.named_children():
                x = self.module(x, sub, f"{prefix}{name}.", f"{where}.{name}")
            return x
        if not isinstance(mlp, MLP):
            return self.module(x, mlp, prefix, where)
        lins = list(mlp.lins)
        hidden = lins[:-1] if mlp.plain_last else lins
        for i, (lin, norm) in enumerate(zip(hidden, mlp.norms, strict=True)):
            x = self.linear(x, lin, f"{prefix}lins.{i}.", f"{where}.lins[{i}]")
            if mlp.act_first:
                x = self.act_module(x, mlp.act, f"{where}.act")
            x = self.norm(x, norm, f"{prefix}norms.{i}.", f"{where}.norms[{i}]")
            if not mlp.act_first:
                x = self.act_module(x, mlp.act, f"{where}.act")
            x = self.dropout(x, mlp.dropout[i], f"{where}.dropout")
        if mlp.plain_last:
            i = len(lins) - 1
            x = self.linear(x, lins[-1], f"{prefix}lins.{i}.", f"{where}.lins[{i}]")
            x = self.dropout(x, mlp.dropout[-1], f"{where}.dropout")
        return x

    # ------------------------------------------------------------------ convolutions
    def gcn_norm(self, conv: Any, weighted: bool) -> NormSpec:
        weighted = weighted and self.has_edge_weight
        if not conv.normalize:
            return NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
        # PyG's gcn_norm applies fill_value (improved=True: 2) only to edge *attributes*:
        # without edge weights every self loop weighs 1.
        fill = 2.0 if (getattr(conv, "improved", False) and weighted) else 1.0
        return NormSpec(
            kind="gcn", add_self_loops=bool(conv.add_self_loops), fill_value=fill, weighted=weighted
        )

    def edge_input(self, where: str, width: int | None) -> None:
        """Check that the graph has edge features ``width`` wide (any width for ``None``)."""
        if not self.edge_width:
            raise UnsupportedModelError(
                f"{where} reads edge features, but the graph has none; give the graph edge "
                "features (Data.edge_attr, the edges table's attr column, or "
                "Graph.from_arrays(edge_attr=...)) or drop them from the layer"
            )
        if width is not None and width != self.edge_width:
            raise UnsupportedModelError(
                f"{where}: shape mismatch, the layer expects {width} edge features but the "
                f"graph has {self.edge_width}; fix edge_dim"
            )

    def conv(
        self,
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
            self._need_aggr(where, aggr, ("add", "sum"))
            h = self.linear(x, conv.lin, f"{prefix}lin.", f"{where}.lin")
            h = self.aggregate(h, self.gcn_norm(conv, weighted), where)
            if conv.bias is not None:
                h = self.add("bias", (h,), self.width(h), param=f"{prefix}bias", origin=where)
            return h
        if isinstance(conv, SAGEConv):
            self._need_aggr(where, aggr, ("mean", "add", "sum", "max", "min"))
            if conv.normalize or conv.project or isinstance(conv.in_channels, tuple | list):
                raise UnsupportedModelError(
                    f"{where}: SAGEConv(normalize=True / project=True / bipartite) is not "
                    "supported; use the defaults"
                )
            agg = self.neighbours(x, aggr, where)
            h = self.linear(agg, conv.lin_l, f"{prefix}lin_l.", f"{where}.lin_l")
            if conv.root_weight:
                r = self.linear(x, conv.lin_r, f"{prefix}lin_r.", f"{where}.lin_r")
                h = self.add("add", (h, r), self.width(h), origin=where)
            return h
        if isinstance(conv, GINConv):
            self._need_aggr(where, aggr, ("add", "sum"))
            agg = self.aggregate(x, NormSpec(kind="sum"), where)
            if isinstance(conv.eps, torch.nn.Parameter):
                s = self.add("scale_eps", (x,), self.width(x), param=f"{prefix}eps", origin=where)
            else:
                s = self.add("scale_eps", (x,), self.width(x), eps=float(conv.eps), origin=where)
            h = self.add("add", (agg, s), self.width(x), origin=where)
            return self.mlp(h, conv.nn, f"{prefix}nn.", f"{where}.nn")
        if isinstance(conv, GATConv):
            return self.gat(x, conv, prefix, where, aggr, edges)
        if isinstance(conv, GATv2Conv):
            return self.gatv2(x, conv, prefix, where, aggr, edges)
        if isinstance(conv, GINEConv):
            return self.gine(x, conv, prefix, where, aggr, edges)
        if isinstance(conv, GCN2Conv):
            if x0 is None:
                raise UnsupportedModelError(f"{where}: GCN2Conv needs (x, x_0, edge_index)")
            return self.gcn2(x, x0, conv, prefix, where, aggr, weighted)
        if isinstance(conv, APPNP):
            return self.appnp(x, conv, where, aggr, weighted)
        if isinstance(conv, GraphConv):
            self._need_aggr(where, aggr, ("add", "sum", "mean", "max", "min"))
            if isinstance(conv.in_channels, tuple | list):
                raise UnsupportedModelError(f"{where}: a bipartite GraphConv is not supported")
            if weighted and self.has_edge_weight:
                if aggr not in ("add", "sum"):
                    raise UnsupportedModelError(
                        f"{where}: GraphConv(aggr={aggr!r}) with edge weights is not "
                        "supported (only aggr='add' weighs its messages); drop the weights or "
                        "use aggr='add'"
                    )
                norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=True)
                agg = self.aggregate(x, norm, where)
            else:
                agg = self.neighbours(x, aggr, where)
            h = self.linear(agg, conv.lin_rel, f"{prefix}lin_rel.", f"{where}.lin_rel")
            r = self.linear(x, conv.lin_root, f"{prefix}lin_root.", f"{where}.lin_root")
            return self.add("add", (h, r), self.width(h), origin=where)
        # SGConv
        self._need_aggr(where, aggr, ("add", "sum"))
        norm = NormSpec(
            kind="gcn",
            add_self_loops=bool(conv.add_self_loops),
            weighted=weighted and self.has_edge_weight,
        )
        h = x
        for _ in range(int(conv.K)):
            h = self.aggregate(h, norm, where)
        return self.linear(h, conv.lin, f"{prefix}lin.", f"{where}.lin")

    def appnp(self, x: int, conv: Any, where: str, aggr: str, weighted: bool) -> int:
        """``K`` times ``x = (1 - α) Â x + α h`` from ``h = x`` — PyG's order of operations
        (``x * (1 - α)``, then ``+ α h``)."""
        self._need_aggr(where, aggr, ("add", "sum"))
        if conv.dropout > 0:
            raise UnsupportedModelError(
                f"{where}: APPNP(dropout={conv.dropout:g}) is not supported (it drops edge "
                "weights); use dropout=0 and dropout modules on the features"
            )
        weighted = weighted and self.has_edge_weight
        if conv.normalize:
            norm = NormSpec(kind="gcn", add_self_loops=bool(conv.add_self_loops), weighted=weighted)
        else:
            norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
        alpha = float(conv.alpha)
        teleport = self.add("scale", (x,), self.width(x), factor=alpha, origin=where)
        h = x
        for _ in range(int(conv.K)):
            h = self.aggregate(h, norm, where)
            h = self.add("scale", (h,), self.width(h), factor=1 - alpha, origin=where)
            h = self.add("add", (h, teleport), self.width(h), origin=where)
        return h

    def _attention_edges(self, conv: Any, where: str, edges: bool) -> tuple[bool, NormSpec]:
        """Whether a GAT layer's scores read edge features (PyG: an ``edge_attr`` passed to
        a layer with ``edge_dim``), and the edges it attends over."""
        uses = edges and conv.edge_dim is not None
        if uses:
            self.edge_input(where, int(conv.edge_dim))
            if conv.add_self_loops and conv.fill_value != "mean":
                raise UnsupportedModelError(
                    f"{where}: fill_value={conv.fill_value!r} is not supported with edge "
                    "features; use the default 'mean' (an added self loop gets the mean of "
                    "the vertex's in-edge features)"
                )
        return uses, NormSpec(kind="loops") if conv.add_self_loops else NormSpec(kind="sum")

    def _heads_out(self, out: int, conv: Any, x: int, prefix: str, where: str) -> int:
        """A GAT layer after its aggregation: head mean (``concat=False``), residual, bias."""
        if not conv.concat:
            heads = int(conv.heads)
            out = self.add("head_mean", (out,), int(conv.out_channels), heads=heads, origin=where)
        if getattr(conv, "res", None) is not None:
            r = self.linear(x, conv.res, f"{prefix}res.", f"{where}.res")
            out = self.add("add", (out, r), self.width(out), origin=where)
        if conv.bias is not None:
            out = self.add("bias", (out,), self.width(out), param=f"{prefix}bias", origin=where)
        return out

    def gat(self, x: int, conv: Any, prefix: str, where: str, aggr: str, edges: bool) -> int:
        self._need_aggr(where, aggr, ("add", "sum"))
        if conv.lin is None:
            raise UnsupportedModelError(f"{where}: a bipartite GATConv is not supported")
        uses, norm = self._attention_edges(conv, where, edges)
        heads, channels = int(conv.heads), int(conv.out_channels)
        h = self.linear(x, conv.lin, f"{prefix}lin.", f"{where}.lin")
        scores = [
            self.add("head_dot", (h,), heads, param=f"{prefix}{name}", heads=heads, origin=where)
            for name in ("att_src", "att_dst")
        ]
        out = self.add(
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
        return self._heads_out(out, conv, x, prefix, where)

    def gatv2(self, x: int, conv: Any, prefix: str, where: str, aggr: str, edges: bool) -> int:
        """``x_l = x W_l``, ``x_r = x W_r`` (the same with ``share_weights``), the attention
        of :func:`lotan.graph_engine.attention.attention_v2` over them, then as GAT."""
        self._need_aggr(where, aggr, ("add", "sum"))
        if isinstance(conv.in_channels, tuple | list):
            raise UnsupportedModelError(f"{where}: a bipartite GATv2Conv is not supported")
        uses, norm = self._attention_edges(conv, where, edges)
        heads, channels = int(conv.heads), int(conv.out_channels)
        x_l = self.linear(x, conv.lin_l, f"{prefix}lin_l.", f"{where}.lin_l")
        x_r = (
            x_l
            if conv.share_weights
            else self.linear(x, conv.lin_r, f"{prefix}lin_r.", f"{where}.lin_r")
        )
        params = (f"{prefix}att",) + ((f"{prefix}lin_edge.weight",) if uses else ())
        out = self.add(
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
        return self._heads_out(out, conv, x, prefix, where)

    def gine(self, x: int, conv: Any, prefix: str, where: str, aggr: str, edges: bool) -> int:
        """``nn((1 + eps) x_i + Σ_j relu(x_j + e_ji))``, ``e`` the edge features or their
        projection ``lin(edge_attr)`` (``edge_dim``)."""
        self._need_aggr(where, aggr, ("add", "sum"))
        if not edges:
            raise UnsupportedModelError(
                f"{where}: GINEConv needs the edge features: call it as conv(x, edge_index, "
                "edge_attr)"
            )
        if conv.lin is None:
            self.edge_input(where, None)
            if self.edge_width != self.width(x):
                raise UnsupportedModelError(
                    f"{where}: shape mismatch, GINEConv without edge_dim adds the edge "
                    f"features ({self.edge_width}) to the vertex features ({self.width(x)}); "
                    "set edge_dim to project them"
                )
            params: tuple[str, ...] = ()
        else:
            self.edge_input(where, int(conv.lin.in_channels))
            if int(conv.lin.out_channels) != self.width(x):
                raise UnsupportedModelError(
                    f"{where}: shape mismatch, GINEConv's edge projection gives "
                    f"{conv.lin.out_channels} features for vertex features of width "
                    f"{self.width(x)}; fix in_channels of its nn"
                )
            params = (f"{prefix}lin.weight",)
            if conv.lin.bias is not None:
                params += (f"{prefix}lin.bias",)
        agg = self.add(
            "aggregate",
            (x,),
            self.width(x),
            norm=NormSpec(kind="sum"),
            reduce="relu_sum",
            params=params,
            edge_features=True,
            origin=where,
        )
        if isinstance(conv.eps, torch.nn.Parameter):
            s = self.add("scale_eps", (x,), self.width(x), param=f"{prefix}eps", origin=where)
        else:
            s = self.add("scale_eps", (x,), self.width(x), eps=float(conv.eps), origin=where)
        h = self.add("add", (agg, s), self.width(x), origin=where)
        return self.mlp(h, conv.nn, f"{prefix}nn.", f"{where}.nn")

    def gcn2(
        self, x: int, x0: int, conv: Any, prefix: str, where: str, aggr: str, weighted: bool
    ) -> int:
        """GCNII (Chen et al.): ``h = (1 - α) Â x + α x_0``, then the identity mapping
        ``(1 - β) h + β h W`` — PyG's ``addmm`` — one weight for both terms, or
        ``weight2`` for the ``x_0`` term (``shared_weights=False``)."""
        self._need_aggr(where, aggr, ("add", "sum"))
        for v in (x, x0):
            if self.width(v) != int(conv.channels):
                raise UnsupportedModelError(
                    f"{where}: shape mismatch, GCN2Conv({conv.channels}) gets inputs of width "
                    f"{self.width(x)} and {self.width(x0)}; x and x_0 must both be "
                    f"{conv.channels} wide"
                )
        weighted = weighted and self.has_edge_weight
        if conv.normalize:
            norm = NormSpec(kind="gcn", add_self_loops=bool(conv.add_self_loops), weighted=weighted)
        else:
            norm = NormSpec(kind="weighted_sum", add_self_loops=False, weighted=weighted)
        alpha, beta = float(conv.alpha), float(conv.beta)
        w = self.width(x)
        h = self.aggregate(x, norm, where)
        h = self.add("scale", (h,), w, factor=1 - alpha, origin=where)
        t = self.add("scale", (x0,), w, factor=alpha, origin=where)

        def identity_map(v: int, weight: str) -> int:
            kept = self.add("scale", (v,), w, factor=1 - beta, origin=where)
            mapped = self.add("matmul", (v,), w, param=f"{prefix}{weight}", origin=where)
            mapped = self.add("scale", (mapped,), w, factor=beta, origin=where)
            return self.add("add", (kept, mapped), w, origin=where)

        if conv.weight2 is None:
            return identity_map(self.add("add", (h, t), w, origin=where), "weight1")
        return self.add(
            "add", (identity_map(h, "weight1"), identity_map(t, "weight2")), w, origin=where
        )

    @staticmethod
    def _need_aggr(where: str, aggr: str, allowed: tuple[str, ...]) -> None:
        if aggr not in allowed:
            raise UnsupportedModelError(
                f"{where}: aggr={aggr!r} is not supported; supported: {list(allowed)}"
            )

    def module(self, x: int, mod: torch.nn.Module, prefix: str, where: str) -> int:
        """Lower a leaf module applied to value ``x`` (no edge_index)."""
        from torch_geometric.nn.dense.linear import Linear as PygLinear
        from torch_geometric.nn.models import MLP

        if isinstance(mod, torch.nn.Linear | PygLinear):
            return self.linear(x, mod, prefix, where)
        if isinstance(mod, MLP | torch.nn.Sequential):
            return self.mlp(x, mod, prefix, where)
        if isinstance(mod, torch.nn.Dropout):
            return self.dropout(x, mod.p, where)
        if isinstance(mod, torch.nn.Identity):
            return x
        if _is_norm(mod):
            return self.norm(x, mod, prefix, where)
        return self.act_module(x, mod, where)

    def plan(self, out: int) -> LogicalPlan:
        return LogicalPlan(tuple(self.nodes), (out,))


def _is_norm(mod: torch.nn.Module) -> bool:
    """A normalization layer: torch's LayerNorm / GroupNorm / BatchNorm* / InstanceNorm* or
    anything of PyG's ``norm``."""
    cls = type(mod)
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    return isinstance(mod, norms) or (cls.__module__.startswith("torch_geometric.nn.norm"))


def _basic_gnn(b: _Builder, model: Any) -> int:
    """PyG's ``BasicGNN.forward``: each conv, then (between layers, and after the last with
    jumping knowledge) the activation before or after the norm (``act_first``) and dropout;
    jumping knowledge ``"last"``, ``"cat"`` or ``"max"`` of those outputs, then ``lin``."""
    name = type(model).__name__
    jk = getattr(model, "jk_mode", None)
    if jk not in (None, "last", "cat", "max"):
        raise UnsupportedModelError(
            f"{name}(jk={jk!r}) is not supported; use jk=None, 'last', 'cat' or 'max'"
        )
    x = 0
    outs: list[int] = []
    convs = list(model.convs)
    for i, conv in enumerate(convs):
        where = f"{name}.convs[{i}]"
        x = b.conv(
            x,
            conv,
            f"convs.{i}.",
            where,
            weighted=model.supports_edge_weight,
            edges=model.supports_edge_attr,
        )
        if i < len(convs) - 1 or jk is not None:
            if model.act_first:
                x = b.act_module(x, model.act, f"{name}.act")
            x = b.norm(x, model.norms[i], f"norms.{i}.", f"{name}.norms[{i}]")
            if not model.act_first:
                x = b.act_module(x, model.act, f"{name}.act")
            x = b.dropout(x, model.dropout.p, f"{name}.dropout")
            outs.append(x)
    if jk == "cat":
        x = b.add("concat", tuple(outs), sum(b.width(o) for o in outs), origin=f"{name}.jk")
    elif jk == "max":
        x = b.add("maximum", tuple(outs), b.width(outs[0]), origin=f"{name}.jk")
    if jk is not None:
        x = b.linear(x, model.lin, "lin.", f"{name}.lin")
    return x


def _traced(b: _Builder, model: torch.nn.Module) -> int:
    import torch.fx
    from torch_geometric.nn import MessagePassing
    from torch_geometric.nn.dense.linear import Linear as PygLinear
    from torch_geometric.nn.models import MLP

    leaves = (
        MessagePassing,
        torch.nn.Linear,
        PygLinear,
        MLP,
        torch.nn.Dropout,
        torch.nn.Identity,
        *_ACT_MODULES,
    )

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or _is_norm(m) or super().is_leaf_module(m, qualname)

    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    try:
        graph = Tracer().trace(model)
    except Exception as exc:
        raise UnsupportedModelError(
            f"{cls} could not be traced with torch.fx ({type(exc).__name__}: {exc}); "
            f"supported: {SUPPORTED}"
        ) from exc
    env: dict[str, Any] = {}
    placeholders = [n for n in graph.nodes if n.op == "placeholder"]
    names = [str(p.target) for p in placeholders]
    if len(placeholders) not in (2, 3) or (len(names) == 3 and names[2] != "edge_attr"):
        raise UnsupportedModelError(
            f"{cls}.forward must take (x, edge_index) or (x, edge_index, edge_attr), found {names}"
        )
    env[placeholders[0].name] = 0
    env[placeholders[1].name] = "edge_index"
    if len(placeholders) == 3:
        env[placeholders[2].name] = "edge_attr"
    out: int | None = None

    def is_(a: Any, what: str) -> bool:
        return isinstance(a, torch.fx.Node) and env.get(a.name) == what

    def conv_call(node: Any, mod: Any, where: str, prefix: str, label: str) -> int:
        """``conv(x, edge_index[, edge_attr])``, or GCN2Conv's ``conv(x, x_0, edge_index)``."""
        from torch_geometric.nn import GCN2Conv

        args = list(node.args)
        x0: int | None = None
        if isinstance(mod, GCN2Conv):
            if len(args) < 3 or not is_(args[2], "edge_index"):
                raise UnsupportedModelError(f"{where}: expected conv(x, x_0, edge_index)")
            x0 = value(args[1], where)
            args = [args[0], *args[2:]]
        if len(args) < 2 or not is_(args[1], "edge_index"):
            raise UnsupportedModelError(f"{where}: expected conv(x, edge_index)")
        extra = args[2:] + list(node.kwargs.values())
        edges = False
        for a in extra:
            if is_(a, "edge_attr"):
                edges = True
            elif a is not None:
                raise UnsupportedModelError(
                    f"{where}: conv arguments past edge_index must be the edge features "
                    f"(edge_attr), found {a!r}"
                )
        return b.conv(
            value(node.args[0], where), mod, prefix, label, weighted=False, edges=edges, x0=x0
        )

    def value(a: Any, where: str) -> int:
        if not isinstance(a, torch.fx.Node) or not isinstance(env.get(a.name), int):
            raise UnsupportedModelError(f"{cls}: {where} uses {a!r}, which is not a vertex tensor")
        return int(env[a.name])

    for node in graph.nodes:
        where = f"{cls}: {node.op} {node.target}"
        if node.op == "placeholder":
            continue
        if node.op == "output":
            out = value(node.args[0], where)
            continue
        if node.op == "call_module":
            mod = model.get_submodule(str(node.target))
            prefix = f"{node.target}."
            label = f"{type(model).__name__}.{node.target}"
            if isinstance(mod, MessagePassing):
                env[node.name] = conv_call(node, mod, where, prefix, label)
            else:
                env[node.name] = b.module(value(node.args[0], where), mod, prefix, label)
            continue
        if node.op in ("call_function", "call_method"):
            fn = node.target
            if node.op == "call_method" and fn in ("relu", "tanh"):
                env[node.name] = b.act(value(node.args[0], where), str(fn), where)
            elif fn in _ACT_FUNCTIONS:
                slope = node.kwargs.get(
                    "negative_slope", node.args[1] if len(node.args) > 1 else 0.01
                )
                env[node.name] = b.act(
                    value(node.args[0], where),
                    _ACT_FUNCTIONS[fn],
                    where,
                    float(slope) if fn is F.leaky_relu else 0.01,
                )
            elif fn is F.dropout:
                p = node.kwargs.get("p", node.args[1] if len(node.args) > 1 else 0.5)
                env[node.name] = b.dropout(value(node.args[0], where), float(p), where)
            elif fn in (operator.add, torch.add) or (node.op == "call_method" and fn == "add"):
                a, c = value(node.args[0], where), value(node.args[1], where)
                if b.width(a) != b.width(c):
                    raise UnsupportedModelError(
                        f"{where}: shape mismatch, adding widths {b.width(a)} and {b.width(c)}"
                    )
                env[node.name] = b.add("add", (a, c), b.width(a), origin=where)
            elif fn is torch.cat:
                dim = node.kwargs.get("dim", node.args[1] if len(node.args) > 1 else 0)
                if dim not in (1, -1):
                    raise UnsupportedModelError(
                        f"{where}: torch.cat is supported along dim=-1 only"
                    )
                parts = tuple(value(a, where) for a in node.args[0])
                env[node.name] = b.add(
                    "concat", parts, sum(b.width(p) for p in parts), origin=where
                )
            else:
                raise UnsupportedModelError(f"{where} is not supported; supported: {SUPPORTED}")
            continue
        raise UnsupportedModelError(f"{where} is not supported; supported: {SUPPORTED}")
    assert out is not None
    return out


def lower_model(
    model: torch.nn.Module, in_width: int, has_edge_weight: bool, edge_width: int = 0
) -> LogicalPlan:
    """Lower ``model`` applied to ``in_width`` vertex features (and ``edge_width`` edge
    features, 0 for none) to a logical plan.

    Raises
    ------
    UnsupportedModelError
        For a module, option or call that is not supported, or a shape mismatch; the message
        names it.
    """
    from torch_geometric.nn import (
        GATConv,
        GATv2Conv,
        GCNConv,
        GINConv,
        GINEConv,
        GraphConv,
        SAGEConv,
        SGConv,
    )
    from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE
    from torch_geometric.nn.models.basic_gnn import BasicGNN

    b = _Builder(in_width, has_edge_weight, edge_width)
    if isinstance(model, GCN | GraphSAGE | GIN | GAT):
        out = _basic_gnn(b, model)
    elif isinstance(model, BasicGNN):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not supported; supported: {SUPPORTED}"
        )
    elif isinstance(
        model, GCNConv | SAGEConv | GINConv | SGConv | GraphConv | GATConv | GATv2Conv | GINEConv
    ):
        # called as model(x, edge_index, edge_weight) or model(x, edge_index, edge_attr)
        out = b.conv(0, model, "", type(model).__name__, weighted=True, edges=True)
    elif isinstance(model, torch.nn.Module):
        out = _traced(b, model)
    else:
        raise UnsupportedModelError(f"expected a torch.nn.Module, found {type(model).__name__}")
    return b.plan(out)
