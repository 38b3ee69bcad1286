"""Rewrite rules, one per file; each states its identity and when it holds."""

from lotan.planner.rules.cache_constant_aggregates import CacheConstantAggregates
from lotan.planner.rules.fuse_local_ops import FuseLocalOps
from lotan.planner.rules.prune_constant_gradients import PruneConstantGradients
from lotan.planner.rules.reorder_linear_aggregate import ReorderLinearAggregate

__all__ = [
    "CacheConstantAggregates",
    "FuseLocalOps",
    "PruneConstantGradients",
    "ReorderLinearAggregate",
]
