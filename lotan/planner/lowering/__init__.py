"""Lowering PyTorch Geometric models to a :class:`~lotan.ir.plan.LogicalPlan`.

What can be lowered is declared once, in :mod:`~lotan.planner.lowering.registry`: every
supported class registers its lowering there — PyG's ``BasicGNN`` models
(:mod:`~lotan.planner.lowering.models`: ``GCN``, ``GraphSAGE``, ``GIN``, ``GAT``), the
convolutions (:mod:`~lotan.planner.lowering.convs` for those that aggregate vertex rows,
:mod:`~lotan.planner.lowering.edge_convs` for those with per-edge values) and the modules
applied to vertex rows (:mod:`~lotan.planner.lowering.modules`). Any ``torch.nn.Module``
whose ``forward(x, edge_index)`` or ``forward(x, edge_index, edge_attr)`` composes them,
with activations, dropout, ``+`` and ``torch.cat``, is captured with ``torch.fx``, the
registered classes kept as leaves. :func:`~lotan.planner.lowering.registry.supported` lists
what is supported (error messages end with it) and
:func:`~lotan.planner.lowering.registry.table` is the docs' model table.

Each layer becomes the ops it computes, in PyG's order (the registry's ``computes``); the
dense pieces every layer is made of are in :mod:`~lotan.planner.lowering.builder`.
"""

# The lowering modules register their classes when imported: all of them, in the order
# the docs list them.
from lotan.planner.lowering import convs, edge_convs, modules  # noqa: F401
from lotan.planner.lowering.models import lower_model
from lotan.planner.lowering.registry import LOWERINGS, supported, table

__all__ = ["LOWERINGS", "lower_model", "supported", "table"]
