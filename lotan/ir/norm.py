"""How an aggregation weighs the in-edges of a vertex (:class:`NormSpec`)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

__all__ = ["NormSpec"]


@dataclass(frozen=True)
class NormSpec:
    """How the weights of one aggregation are derived, mirroring PyG's layers.

    Attributes
    ----------
    kind : ``"gcn"`` — ``D^-1/2 (A + I) D^-1/2`` with edge weights (``GCNConv``, ``SGConv``);
        ``"weighted_sum"`` — raw edge weights (``GCNConv(normalize=False)``);
        ``"sum"`` — unweighted sum over in-edges (``GINConv``);
        ``"mean"`` — unweighted mean over in-edges (``SAGEConv``);
        ``"loops"`` — weight 1 on every in-edge but self loops, and on one added self loop
        per vertex (PyG's ``remove_self_loops`` + ``add_self_loops``: ``GATConv``'s edges).
    add_self_loops : for ``gcn``: one self loop per vertex, replacing existing ones (PyG's
        ``add_remaining_self_loops``).
    fill_value : for ``gcn``: weight of an added self loop.
    weighted : for ``gcn`` / ``weighted_sum``: use the graph's edge weights (else 1).
    """

    kind: Literal["gcn", "weighted_sum", "sum", "mean", "loops"] = "gcn"
    add_self_loops: bool = True
    fill_value: float = 1.0
    weighted: bool = True

    def describe(self) -> str:
        if self.kind == "loops":
            return "A-loops+I"
        if self.kind != "gcn":
            return self.kind
        loops = f"+{self.fill_value:g}I" if self.add_self_loops else ""
        return f"gcn(A{loops})"
