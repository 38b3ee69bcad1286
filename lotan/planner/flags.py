"""One flag per planner rule."""

from __future__ import annotations

from dataclasses import dataclass

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
    """

    reorder: bool = True
    cache_constants: bool = True
    prune_constant_gradients: bool = True
    fuse: bool = True


#: Every rule on.
DEFAULT_FLAGS = PlannerFlags()
