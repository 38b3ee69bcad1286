"""FuseLocalOps: all local work between two exchanges runs in one stage.

Identity: running adjacent per-vertex (dense) ops in one task, one after the other, gives the
same values as running each in a stage of its own and passing its rows on.

Holds always. Without it every op is a stage of its own (a Spark stage each), which only
adds scheduling and shuffles; the flag exists to measure that and to test the identity.
"""

from __future__ import annotations

from dataclasses import replace

from lotan.ir.plan import LogicalPlan
from lotan.planner.rules.rule import Rule

__all__ = ["FuseLocalOps"]


class FuseLocalOps(Rule):
    name = "fuse"

    def apply(self, plan: LogicalPlan) -> tuple[LogicalPlan, list[str]]:
        dense = sum(1 for n in plan.nodes if n.op not in ("input", "aggregate"))
        return replace(plan, fused=True), [f"{dense} dense ops fused between exchanges"]
