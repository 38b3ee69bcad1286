"""Lowering PyTorch Geometric models to a :class:`~lotan.ir.plan.LogicalPlan`.

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
:mod:`lotan.runtime.edge_functions`.

The package, by concern: :mod:`~lotan.planner.lowering.builder` (the plan's nodes and the
dense pieces every layer is made of: linear, activation, normalization, dropout, MLP, plain
aggregations), :mod:`~lotan.planner.lowering.convs` (the convolutions that aggregate rows:
GCN, SAGE, GIN, GraphConv, SGConv, APPNP, GCN2), :mod:`~lotan.planner.lowering.edge_convs`
(those with per-edge values: GAT, GATv2, GINE) and :mod:`~lotan.planner.lowering.models`
(whole models: PyG's ``BasicGNN`` family, a single convolution, or a module traced with
``torch.fx``).
"""

from lotan.planner.lowering.builder import SUPPORTED
from lotan.planner.lowering.models import lower_model

__all__ = ["SUPPORTED", "lower_model"]
