"""Attention kernels: GAT's and GATv2's softmax-weighted sums over a partition's in-edges,
and their exact backward passes.

Both layers score each edge, take a softmax of the scores over each destination's edges
(shifted by the row's maximum, as PyG's ``softmax``; a row without edges gets an empty
softmax and a zero output) and sum the sources' rows weighted by the coefficients, head by
head. They differ in the score:

- ``GATConv``: ``leaky_relu(a_src[j] + a_dst[i] + a_edge[e])`` from per-vertex scores the
  dense stages compute (``a_src = (x W)·att_src``, ...) and, with edge features, per-edge
  scores ``a_edge`` (:func:`attention`);
- ``GATv2Conv``: ``Σ_c att[c] · leaky_relu(x_l[j] + x_r[i] + e[e])_c``, the activation
  *inside* the dot product, so the kernel reads the full rows of both ends and the
  parameter ``att`` (:func:`attention_v2`).

Edge values are computed where the edge lives (the partition that owns its destination),
from the source row (own or halo), the destination row and the edge's features. Every sum
runs in an order this module fixes: a destination's sums over its edges in CSR order, a
source's over the transposed index (``t_perm[t]`` is the CSR edge of transposed edge ``t``).
Rows are split between threads whole (:func:`lotan.graph_engine.kernels.run_rows`), so the
bits do not depend on the thread count. Per-edge arrays are ``(E, heads)`` (coefficients,
score gradients); GATv2's ``(E, heads·C)`` pre-activations are recomputed in each pass
instead of stored, except the gradient of the edge features' projection, which is
materialized only when that projection has parameters.

The package: :mod:`~lotan.graph_engine.attention.steps` (what both layers share),
:mod:`~lotan.graph_engine.attention.gat` and :mod:`~lotan.graph_engine.attention.gatv2`.
"""

from lotan.graph_engine.attention.gat import attention, attention_grad
from lotan.graph_engine.attention.gatv2 import attention_v2, attention_v2_grad

__all__ = ["attention", "attention_grad", "attention_v2", "attention_v2_grad"]
