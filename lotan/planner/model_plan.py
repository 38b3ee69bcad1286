"""Lowering a PyTorch Geometric model to a :class:`ModelPlan`: graph layers, each a dense
program before the aggregation, the aggregation, and a dense program after it.

Supported now: ``torch_geometric.nn.models.GCN`` (``GCNConv`` layers, ``norm=None``,
``jk=None``). ``GCNConv`` applies its linear map before propagating (``Â (H W) + b``), and so
does the plan: only ``out_channels`` columns cross partitions.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import torch

from lotan.errors import UnsupportedModelError
from lotan.graph_engine.layout import NormSpec
from lotan.nn_engine.dense import DenseOp, DenseProgram

__all__ = ["SUPPORTED_MODELS", "GraphLayer", "ModelPlan", "graph_norm", "lower_model"]

SUPPORTED_MODELS = "torch_geometric.nn.models.GCN (GCNConv layers, norm=None, jk=None)"


@dataclass(frozen=True)
class GraphLayer:
    """``H_out = post(Â · pre(H_in))``; ``width`` is the width of what is aggregated."""

    pre: DenseProgram
    post: DenseProgram
    width: int


@dataclass(frozen=True)
class ModelPlan:
    """A model as a sequence of graph layers over one normalization of the graph."""

    layers: tuple[GraphLayer, ...]
    norm: NormSpec
    in_channels: int
    out_channels: int

    @property
    def has_dropout(self) -> bool:
        return any(layer.pre.has_dropout or layer.post.has_dropout for layer in self.layers)

    @property
    def num_layers(self) -> int:
        return len(self.layers)


def graph_norm(plan: ModelPlan, has_edge_weight: bool) -> NormSpec:
    """The normalization PyG actually applies for this plan on this graph.

    PyG's ``gcn_norm`` passes ``fill_value`` (2 when ``improved=True``) to
    ``add_remaining_self_loops``, which uses it only for edge *attributes*: on a graph without
    edge weights every self loop gets weight 1, so ``improved`` has no effect there. Lotan
    reproduces that.
    """
    if has_edge_weight:
        return plan.norm
    return replace(plan.norm, fill_value=1.0)


def _activation_op(act: torch.nn.Module | None, where: str) -> DenseOp | None:
    if act is None or isinstance(act, torch.nn.Identity):
        return None
    if isinstance(act, torch.nn.ReLU):
        return DenseOp("act", act="relu")
    if isinstance(act, torch.nn.LeakyReLU):
        return DenseOp("act", act="leaky_relu", negative_slope=float(act.negative_slope))
    if isinstance(act, torch.nn.ELU) and act.alpha == 1.0:
        return DenseOp("act", act="elu")
    if isinstance(act, torch.nn.GELU) and act.approximate == "none":
        return DenseOp("act", act="gelu")
    if isinstance(act, torch.nn.Tanh):
        return DenseOp("act", act="tanh")
    raise UnsupportedModelError(
        f"{where}: activation {act!r} is not supported; use one of ReLU, LeakyReLU, "
        "ELU(alpha=1), GELU(approximate='none'), Tanh"
    )


def lower_model(model: torch.nn.Module) -> ModelPlan:
    """Lower ``model`` to a :class:`ModelPlan`.

    Raises
    ------
    UnsupportedModelError
        When the model (or one of its options) is not supported; the message names it.
    """
    from torch_geometric.nn import GCNConv
    from torch_geometric.nn.models import GCN

    if not isinstance(model, GCN):
        raise UnsupportedModelError(
            f"model of type {type(model).__module__}.{type(model).__qualname__} is not "
            f"supported yet; supported: {SUPPORTED_MODELS}"
        )
    if getattr(model, "jk_mode", None) is not None:
        raise UnsupportedModelError(
            f"GCN(jk={model.jk_mode!r}) is not supported; build the model with jk=None"
        )
    if any(not isinstance(n, torch.nn.Identity) for n in model.norms):
        raise UnsupportedModelError(
            "GCN(norm=...) is not supported; build the model with norm=None"
        )
    act = _activation_op(model.act, "GCN.act")
    p = float(model.dropout.p)

    layers: list[GraphLayer] = []
    norm: NormSpec | None = None
    convs = list(model.convs)
    for i, conv in enumerate(convs):
        where = f"GCN.convs[{i}]"
        if not isinstance(conv, GCNConv):
            raise UnsupportedModelError(f"{where} is {type(conv).__name__}, expected GCNConv")
        if conv.aggr != "add" or conv.flow != "source_to_target":
            raise UnsupportedModelError(
                f"{where}: aggr={conv.aggr!r}, flow={conv.flow!r} not supported; use the "
                "defaults aggr='add', flow='source_to_target'"
            )
        layer_norm = NormSpec(
            kind="gcn" if conv.normalize else "none",
            add_self_loops=bool(conv.add_self_loops) and bool(conv.normalize),
            fill_value=2.0 if conv.improved else 1.0,
        )
        if norm is not None and layer_norm != norm:
            raise UnsupportedModelError(
                f"{where} normalizes the graph differently ({layer_norm}) from convs[0] "
                f"({norm}); use the same improved/add_self_loops/normalize in every layer"
            )
        norm = layer_norm
        pre = DenseProgram((DenseOp("linear", param=f"convs.{i}.lin.weight"),))
        post_ops: list[DenseOp] = []
        if conv.bias is not None:
            post_ops.append(DenseOp("bias", param=f"convs.{i}.bias"))
        if i < len(convs) - 1:
            if act is not None:
                post_ops.append(act)
            if p > 0:
                post_ops.append(DenseOp("dropout", p=p))
        layers.append(GraphLayer(pre, DenseProgram(tuple(post_ops)), int(conv.out_channels)))
    assert norm is not None
    return ModelPlan(
        layers=tuple(layers),
        norm=norm,
        in_channels=int(convs[0].in_channels),
        out_channels=int(convs[-1].out_channels),
    )
