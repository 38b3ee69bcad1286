"""Rewrite rules, one per file; each states its identity and when it holds, and is turned on
and off by the :class:`~lotan.planner.flags.PlannerFlags` field of its name. :data:`RULES`
is the order they run in (:func:`lotan.planner.optimize.optimize`)."""

from lotan.planner.rules.cache_constant_aggregates import CacheConstantAggregates
from lotan.planner.rules.fuse_local_ops import FuseLocalOps
from lotan.planner.rules.prune_constant_gradients import PruneConstantGradients
from lotan.planner.rules.reorder_linear_aggregate import ReorderLinearAggregate
from lotan.planner.rules.rule import Rule

#: Every rule, in the order they run: reordering decides what is exchanged before constants
#: are cached, gradients into constants are pruned, then local work is fused.
RULES: tuple[type[Rule], ...] = (
    ReorderLinearAggregate,
    CacheConstantAggregates,
    PruneConstantGradients,
    FuseLocalOps,
)

__all__ = [
    "RULES",
    "CacheConstantAggregates",
    "FuseLocalOps",
    "PruneConstantGradients",
    "ReorderLinearAggregate",
    "Rule",
]
