"""PruneConstantGradients: no gradient pass into constants.

Identity: ``∂L/∂C`` is never used when ``C`` is constant — no parameter lies upstream of it —
so the transposed aggregations (``Âᵀ G``) and exchanges that would compute it can be dropped.

Holds always; it matters for aggregations of constants that are not cached (the cache rule is
off, or the constant is consumed by a later stage), where the backward pass would otherwise
run ``Âᵀ`` and its exchange only to throw the result away at ``X``.
"""

from __future__ import annotations

from dataclasses import replace

from lotan.ir.plan import LogicalPlan
from lotan.planner.rules.rule import Rule

__all__ = ["PruneConstantGradients"]


class PruneConstantGradients(Rule):
    name = "prune_constant_gradients"

    def apply(self, plan: LogicalPlan) -> tuple[LogicalPlan, list[str]]:
        pruned = [n.id for n in plan.nodes if n.id in plan.constant and n.op != "input"]
        msg = [f"no gradients into constants {['%' + str(i) for i in pruned]}"] if pruned else []
        return replace(plan, prune_constant_grads=True), msg
