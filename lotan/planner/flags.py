"""One flag per planner rule, and the memory budget of edge-level work."""

from __future__ import annotations

from dataclasses import dataclass

from lotan.errors import LotanError

__all__ = ["DEFAULT_FLAGS", "PlannerFlags"]


@dataclass(frozen=True)
class PlannerFlags:
    """Turn individual rewrite rules on or off (all on by default).

    Attributes
    ----------
    reorder : :class:`~lotan.planner.rules.reorder_linear_aggregate.ReorderLinearAggregate`.
    cache_constants :
        :class:`~lotan.planner.rules.cache_constant_aggregates.CacheConstantAggregates`.
    prune_constant_gradients :
        :class:`~lotan.planner.rules.prune_constant_gradients.PruneConstantGradients`.
    fuse : :class:`~lotan.planner.rules.fuse_local_ops.FuseLocalOps`.
    edge_block_mb : not a rule: the most memory (MiB) one layer's per-edge tensors may take
        on one partition (attention coefficients and their gradients, edge feature
        projections, dropout multipliers; :func:`lotan.planner.estimates.edge_bytes`). Past
        it, the layer processes its destination rows in blocks whose edges fit; the result
        is the same bit for bit.
    """

    reorder: bool = True
    cache_constants: bool = True
    prune_constant_gradients: bool = True
    fuse: bool = True
    edge_block_mb: float = 512.0

    def __post_init__(self) -> None:
        v = self.edge_block_mb
        if isinstance(v, bool) or not isinstance(v, int | float) or not v > 0:
            raise LotanError(f"edge_block_mb must be a number > 0 (MiB), found {v!r}")


#: Every rule on.
DEFAULT_FLAGS = PlannerFlags()
