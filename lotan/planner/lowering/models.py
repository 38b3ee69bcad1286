"""Lowering of whole models: PyG's ``GCN`` / ``GraphSAGE`` / ``GIN`` / ``GAT`` (the
``BasicGNN`` forward), a single convolution used as the model, or any module whose forward
``torch.fx`` can trace with the convolutions kept as leaves."""

from __future__ import annotations

import operator
from typing import Any

import torch
import torch.nn.functional as F

from lotan.errors import UnsupportedModelError
from lotan.ir.plan import LogicalPlan
from lotan.planner.lowering.builder import ACT_FUNCTIONS, Builder, is_norm
from lotan.planner.lowering.convs import lower_conv
from lotan.planner.lowering.registry import LOWERINGS, find, lowering, supported

_MODEL_OPTIONS = (
    "jk None/'last'/'cat'/'max', act_first, norm None/'batch_norm'/'layer_norm'/'pair_norm'"
)


@lowering("GCN", "model", "GCNConv layers (BasicGNN)", _MODEL_OPTIONS)
@lowering("GraphSAGE", "model", "SAGEConv layers (BasicGNN)", _MODEL_OPTIONS)
@lowering("GIN", "model", "GINConv layers over MLPs (BasicGNN)", _MODEL_OPTIONS)
@lowering(
    "GAT",
    "model",
    "GATConv (v2=True: GATv2Conv) layers (BasicGNN)",
    f"{_MODEL_OPTIONS}; heads, dropout, v2, edge_dim",
)
def _basic_gnn(b: Builder, model: Any) -> int:
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
        x = lower_conv(
            b,
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


def _traced(b: Builder, model: torch.nn.Module) -> int:
    import torch.fx
    from torch_geometric.nn import MessagePassing

    leaves = (MessagePassing, *(e.cls for e in LOWERINGS if e.family == "module"))

    class Tracer(torch.fx.Tracer):
        def is_leaf_module(self, m: torch.nn.Module, qualname: str) -> bool:
            return isinstance(m, leaves) or is_norm(m) or super().is_leaf_module(m, qualname)

    cls = f"{type(model).__module__}.{type(model).__qualname__}"
    try:
        graph = Tracer().trace(model)
    except Exception as exc:
        raise UnsupportedModelError(
            f"{cls} could not be traced with torch.fx ({type(exc).__name__}: {exc}); "
            f"supported: {supported()}"
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
        return lower_conv(
            b, value(node.args[0], where), mod, prefix, label, weighted=False, edges=edges, x0=x0
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
            elif fn in ACT_FUNCTIONS:
                slope = node.kwargs.get(
                    "negative_slope", node.args[1] if len(node.args) > 1 else 0.01
                )
                env[node.name] = b.act(
                    value(node.args[0], where),
                    ACT_FUNCTIONS[fn],
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
                raise UnsupportedModelError(f"{where} is not supported; supported: {supported()}")
            continue
        raise UnsupportedModelError(f"{where} is not supported; supported: {supported()}")
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
    from torch_geometric.nn.models.basic_gnn import BasicGNN

    b = Builder(in_width, has_edge_weight, edge_width)
    if find(model, "model") is not None:
        out = _basic_gnn(b, model)
    elif isinstance(model, BasicGNN):
        raise UnsupportedModelError(
            f"{type(model).__name__} is not supported; supported: {supported()}"
        )
    elif (conv := find(model, "convolution")) is not None and conv.alone:
        # called as model(x, edge_index, edge_weight) or model(x, edge_index, edge_attr)
        out = lower_conv(b, 0, model, "", type(model).__name__, weighted=True, edges=True)
    elif isinstance(model, torch.nn.Module):
        out = _traced(b, model)
    else:
        raise UnsupportedModelError(f"expected a torch.nn.Module, found {type(model).__name__}")
    return b.plan(out)
