"""Apply the rewrite rules in order; after each, check that the output did not change."""

from __future__ import annotations

from dataclasses import replace

from lotan.ir.plan import LogicalPlan
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.planner.rules import RULES

__all__ = ["optimize"]


def optimize(
    plan: LogicalPlan, flags: PlannerFlags = DEFAULT_FLAGS
) -> tuple[LogicalPlan, list[tuple[str, list[str]]]]:
    """The optimized plan and, per rule that ran (those ``flags`` turn on), what it did."""
    fired: list[tuple[str, list[str]]] = []
    plan = replace(plan, edge_block_bytes=int(flags.edge_block_mb * 2**20))
    for rule_class in RULES:
        if not getattr(flags, rule_class.name):
            continue
        rule = rule_class.configured(flags)
        new, what = rule.apply(plan)
        new.check_same_output(plan, rule.name)
        fired.append((rule.name, what))
        plan = new
    return plan, fired
