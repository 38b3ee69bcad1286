"""The op vocabulary and its nodes: each op declares the attributes it reads, and a node
that sets another op's attribute is refused."""

from __future__ import annotations

import pytest

from lotan.errors import UnsupportedModelError
from lotan.ir import LogicalPlan, Node, NormSpec


def test_a_node_carries_only_the_attributes_its_op_reads() -> None:
    Node(1, "dropout", (0,), 4, p=0.5)
    Node(1, "aggregate", (0,), 4, norm=NormSpec(), reduce="attention", heads=2, p=0.1)
    with pytest.raises(ValueError, match=r"node 1 \(linear\) sets p=0.5, which linear does"):
        Node(1, "linear", (0,), 4, param="w", p=0.5)
    with pytest.raises(ValueError, match=r"sets norm=.*which bias does not read"):
        Node(2, "bias", (1,), 4, param="b", norm=NormSpec())
    with pytest.raises(UnsupportedModelError, match="unknown op 'conv'"):
        Node(1, "conv", (0,), 4)  # type: ignore[arg-type]


def test_pure_ops_of_constants_are_constant() -> None:
    nodes = (
        Node(0, "input", (), 4),
        Node(1, "aggregate", (0,), 4, norm=NormSpec()),
        Node(2, "act", (1,), 4, act="relu"),
        Node(3, "linear", (2,), 2, param="w"),
        Node(4, "scale_eps", (2,), 4, eps=0.5),
        Node(5, "scale_eps", (2,), 4, param="eps"),
        Node(6, "add", (3, 3), 2),
    )
    plan = LogicalPlan(nodes, (6,))
    assert plan.constant == {0, 1, 2, 4}


def test_explain_lines_come_from_the_vocabulary() -> None:
    assert Node(3, "linear", (2,), 16, param="lin.weight").describe() == (
        "%3 = linear[lin.weight](%2) -> 16"
    )
    assert Node(4, "moments", (3,), 16).describe() == ("%4 = moments[batch statistics](%3) -> 2x16")
    agg = Node(5, "aggregate", (4,), 8, norm=NormSpec(), cached=True)
    assert agg.describe() == "%5 = aggregate[gcn(A+1I), cached](%4) -> 8"
