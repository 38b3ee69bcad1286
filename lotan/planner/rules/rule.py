"""What a rewrite rule is: an object with the name of the :class:`PlannerFlags` field that
turns it on, and ``apply(plan) -> (plan, what it did)``."""

from __future__ import annotations

from typing import ClassVar

from lotan.ir.plan import LogicalPlan
from lotan.planner.flags import PlannerFlags

__all__ = ["Rule"]


class Rule:
    """A rewrite rule (one per file, its identity and when it holds in the docstring)."""

    #: The :class:`~lotan.planner.flags.PlannerFlags` field that turns it on and off.
    name: ClassVar[str]

    @classmethod
    def configured(cls, flags: PlannerFlags) -> Rule:
        """The rule as ``flags`` configure it (most rules have nothing to configure)."""
        return cls()

    def apply(self, plan: LogicalPlan) -> tuple[LogicalPlan, list[str]]:
        """The rewritten plan and what changed (empty: the rule did not fire)."""
        raise NotImplementedError
