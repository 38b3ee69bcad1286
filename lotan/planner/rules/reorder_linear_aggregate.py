"""ReorderLinearAggregate: ``Â (H W) = (Â H) W``.

Identity: an aggregation is a linear map over vertices (``Â``, any weighting) and a
bias-free linear layer is a linear map over features (``W``); they commute.

Holds when: the aggregation is a sum (``reduce="sum"``: a max or min is not linear), the
linear op has no bias (Lotan lowers ``Linear`` as ``linear`` then ``bias``, so a bias stays
where it was) and the intermediate value has no other consumer.

Fires when the swap lowers the width exchanged per epoch: an aggregation exchanges the width
of its input — nothing at all when that input is constant and aggregations of constants are
cached. So ``GCNConv(1433, 16)`` keeps ``Â(XW)`` (16 columns) unless ``ÂX`` can be cached,
and ``SAGEConv(256, 16)`` becomes ``mean(H W_l)``.
"""

from __future__ import annotations

from dataclasses import replace

from lotan.ir.nodes import Node
from lotan.ir.plan import LogicalPlan
from lotan.planner.flags import PlannerFlags
from lotan.planner.rules.rule import Rule

__all__ = ["ReorderLinearAggregate"]


class ReorderLinearAggregate(Rule):
    name = "reorder"

    def __init__(self, cache_constants: bool) -> None:
        self.cache_constants = cache_constants

    @classmethod
    def configured(cls, flags: PlannerFlags) -> Rule:
        """Exchanging a constant's aggregation is free when the cache rule is on."""
        return cls(cache_constants=flags.cache_constants)

    def _cost(self, width: int, constant: bool) -> int:
        """Columns an aggregation of a ``width``-wide input exchanges per epoch."""
        return 0 if (constant and self.cache_constants) else width

    def apply(self, plan: LogicalPlan) -> tuple[LogicalPlan, list[str]]:
        fired: list[str] = []
        changed = True
        while changed:
            changed = False
            for n in plan.nodes:
                swap = self._swap(plan, n)
                if swap is not None:
                    plan, msg = swap
                    fired.append(msg)
                    changed = True
                    break
        return plan, fired

    def _swap(self, plan: LogicalPlan, outer: Node) -> tuple[LogicalPlan, str] | None:
        if outer.op not in ("linear", "aggregate") or len(outer.inputs) != 1:
            return None
        inner = plan.node(outer.inputs[0])
        pair = {outer.op, inner.op}
        if pair != {"linear", "aggregate"} or len(plan.consumers[inner.id]) != 1:
            return None
        if (outer if outer.op == "aggregate" else inner).reduce != "sum":
            return None
        (v,) = inner.inputs
        v_const = v in plan.constant
        if outer.op == "aggregate":  # Â (v W): aggregates width W_out; alternative (Â v) W
            now = outer.width
            alt = self._cost(plan.node(v).width, v_const)
        else:  # (Â v) W: aggregates width(v); alternative Â (v W)
            now = self._cost(plan.node(v).width, v_const)
            alt = outer.width
        if alt >= now:
            return None
        v_width = plan.node(v).width
        if outer.op == "aggregate":  # Â(vW) -> (Âv)W
            new_inner = replace(outer, id=inner.id, inputs=(v,), width=v_width)
            new_outer = replace(inner, id=outer.id, inputs=(inner.id,), width=outer.width)
        else:  # (Âv)W -> Â(vW)
            new_inner = replace(outer, id=inner.id, inputs=(v,), width=outer.width)
            new_outer = replace(inner, id=outer.id, inputs=(inner.id,), width=outer.width)
        nodes = [
            new_inner if n.id == inner.id else new_outer if n.id == outer.id else n
            for n in plan.nodes
        ]
        msg = (
            f"%{outer.id}: {outer.op}({inner.op}(%{v})) -> {inner.op}({outer.op}(%{v})), "
            f"exchanged width {now} -> {alt}"
        )
        return plan.with_nodes(nodes), msg
