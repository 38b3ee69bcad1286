"""The builder of a logical plan's nodes, and the dense pieces every lowered layer is
made of: linear maps, activations, normalizations (a ``moments`` node where the statistics
span the graph), dropout, MLPs and plain aggregations."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F

from lotan.errors import UnsupportedModelError
from lotan.ir.nodes import Node
from lotan.ir.norm import NormSpec
from lotan.ir.ops import OpName
from lotan.ir.plan import LogicalPlan
from lotan.planner.lowering.registry import find, supported


@dataclass(frozen=True)
class Call:
    """How a convolution is called: its parameters' prefix, its name in messages, PyG's
    ``aggr``, whether the graph's edge weights reach it, whether it gets the edge features,
    and GCN2Conv's initial representation ``x_0``."""

    prefix: str
    where: str
    aggr: str = "add"
    weighted: bool = False
    edges: bool = False
    x0: int | None = None


ACT_MODULES: dict[type, str] = {
    torch.nn.ReLU: "relu",
    torch.nn.LeakyReLU: "leaky_relu",
    torch.nn.ELU: "elu",
    torch.nn.GELU: "gelu",
    torch.nn.Tanh: "tanh",
}
ACT_FUNCTIONS: dict[Any, str] = {
    F.relu: "relu",
    torch.relu: "relu",
    F.leaky_relu: "leaky_relu",
    F.elu: "elu",
    F.gelu: "gelu",
    torch.tanh: "tanh",
    F.tanh: "tanh",
}


class Builder:
    """The nodes of the plan being lowered (node 0 is ``X``), with the helpers that append
    them; the layer families' lowerings (:mod:`~lotan.planner.lowering.convs`,
    :mod:`~lotan.planner.lowering.edge_convs`) are functions of a builder."""

    def __init__(self, in_width: int, has_edge_weight: bool, edge_width: int = 0) -> None:
        self.nodes: list[Node] = [Node(0, "input", (), in_width, origin="x")]
        self.has_edge_weight = has_edge_weight
        self.edge_width = edge_width

    def add(self, op: OpName, inputs: tuple[int, ...], width: int, **attrs: Any) -> int:
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
        name = ACT_MODULES.get(type(mod))
        if (
            name is None
            or (name == "elu" and mod.alpha != 1.0)
            or (name == "gelu" and mod.approximate != "none")
        ):
            raise UnsupportedModelError(
                f"{where}: activation {mod!r} is not supported; supported: {supported()}"
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
            op: OpName = "pair_norm_rows" if mod.scale_individually else "pair_norm"
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

    def module(self, x: int, mod: torch.nn.Module, prefix: str, where: str) -> int:
        """Lower a leaf module applied to value ``x`` (no edge_index): its registered
        lowering (:mod:`lotan.planner.lowering.modules`); an unregistered normalization or
        activation is refused with what is supported."""
        entry = find(mod, "module")
        if entry is not None:
            return entry.lower(self, x, mod, prefix, where)
        if is_norm(mod):
            return self.norm(x, mod, prefix, where)
        return self.act_module(x, mod, where)

    def plan(self, out: int) -> LogicalPlan:
        return LogicalPlan(tuple(self.nodes), (out,))


def is_norm(mod: torch.nn.Module) -> bool:
    """A normalization layer: torch's LayerNorm / GroupNorm / BatchNorm* / InstanceNorm* or
    anything of PyG's ``norm``."""
    cls = type(mod)
    norms = (torch.nn.LayerNorm, torch.nn.GroupNorm, torch.nn.modules.batchnorm._NormBase)
    return isinstance(mod, norms) or (cls.__module__.startswith("torch_geometric.nn.norm"))


def need_aggr(where: str, aggr: str, allowed: tuple[str, ...]) -> None:
    if aggr not in allowed:
        raise UnsupportedModelError(
            f"{where}: aggr={aggr!r} is not supported; supported: {list(allowed)}"
        )
