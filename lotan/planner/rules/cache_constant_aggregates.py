"""CacheConstantAggregates: an aggregation of a constant is computed once.

Identity: ``Â C`` is the same every epoch when ``C`` depends on no parameter and no dropout
(the features ``X``, ``(1 + eps) X`` with a fixed ``eps``, SGC's ``Â^k X``, ...).

Holds when: the aggregation is constant (:attr:`LogicalPlan.constant`: its input is, and
an edge function it computes has no parameters). The cached
values are computed once per (graph, plan) before training and stored with the partition
layouts; each epoch reads them locally and exchanges nothing for them.
"""

from __future__ import annotations

from dataclasses import replace

from lotan.ir.plan import LogicalPlan
from lotan.planner.rules.rule import Rule

__all__ = ["CacheConstantAggregates"]


class CacheConstantAggregates(Rule):
    name = "cache_constants"

    def apply(self, plan: LogicalPlan) -> tuple[LogicalPlan, list[str]]:
        fired = []
        nodes = []
        for n in plan.nodes:
            if n.op == "aggregate" and not n.cached and n.id in plan.constant:
                n = replace(n, cached=True)
                of = ", ".join(f"%{i}" for i in n.inputs)
                fired.append(f"%{n.id}: aggregate of constant {of} cached")
            nodes.append(n)
        return (plan.with_nodes(nodes) if fired else plan), fired
