"""The language every layer of Lotan speaks: the op vocabulary of a logical plan
(:mod:`~lotan.ir.ops`), its nodes and plans (:mod:`~lotan.ir.nodes`, :mod:`~lotan.ir.plan`),
how an aggregation weighs its edges (:mod:`~lotan.ir.norm`) and the codes of a vertex's split
(:mod:`~lotan.ir.splits`). It imports nothing of Lotan but :mod:`lotan.errors`: the planner,
the runtime and both numeric engines build on it, and none of them is below it."""

from lotan.ir.nodes import Node
from lotan.ir.norm import NormSpec
from lotan.ir.ops import DENSE_OPS, EDGE_REDUCES, OPS, STAGE_STARTS, Op
from lotan.ir.plan import LogicalPlan
from lotan.ir.splits import SPLIT_CODES, SPLIT_NAMES

__all__ = [
    "DENSE_OPS",
    "EDGE_REDUCES",
    "OPS",
    "SPLIT_CODES",
    "SPLIT_NAMES",
    "STAGE_STARTS",
    "LogicalPlan",
    "Node",
    "NormSpec",
    "Op",
]
