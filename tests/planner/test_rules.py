"""Each rewrite rule: a plan where it fires, one where it must not, and the same numbers with
the rule turned off (both engines). Plans are built by hand; only the last test needs Spark."""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.nn.models import GCN, GraphSAGE

import lotan
from lotan.ir.nodes import Node
from lotan.ir.norm import NormSpec
from lotan.ir.plan import LogicalPlan
from lotan.planner.physical import PhysicalPlan
from lotan.planner.rules import (
    CacheConstantAggregates,
    FuseLocalOps,
    PruneConstantGradients,
    ReorderLinearAggregate,
)
from tests.graph_cases import CASES

GCN_NORM = NormSpec()


def _plan(*nodes: Node) -> LogicalPlan:
    return LogicalPlan((Node(0, "input", (), 100), *nodes), (nodes[-1].id,))


def lin_then_agg(width_in: int, width_out: int, source: int = 0) -> LogicalPlan:
    """%2 = Â(%1), %1 = %source W — a GCNConv."""
    return _plan(
        Node(1, "linear", (source,), width_out, param="w"),
        Node(2, "aggregate", (1,), width_out, norm=GCN_NORM),
    )


def test_reorder_fires_when_it_shrinks_the_exchange() -> None:
    # (ÂH)W with H 64 wide and W 64 -> 8: exchanging 8 columns beats 64.
    plan = LogicalPlan(
        (
            Node(0, "input", (), 100),
            Node(1, "linear", (0,), 64, param="w0"),
            Node(2, "act", (1,), 64, act="relu"),
            Node(3, "aggregate", (2,), 64, norm=GCN_NORM),
            Node(4, "linear", (3,), 8, param="w1"),
        ),
        (4,),
    )
    new, fired = ReorderLinearAggregate(cache_constants=True).apply(plan)
    assert fired and "exchanged width 64 -> 8" in fired[0]
    assert new.node(4).op == "aggregate" and new.node(3).op == "linear"
    assert new.node(3).width == 8 and new.out_width == 8


def test_reorder_never_moves_a_linear_map_across_a_max() -> None:
    # max(H W) != max(H) W: the same plan as above, with a max instead of a sum.
    plan = LogicalPlan(
        (
            Node(0, "input", (), 100),
            Node(1, "linear", (0,), 64, param="w0"),
            Node(2, "act", (1,), 64, act="relu"),
            Node(3, "aggregate", (2,), 64, norm=NormSpec(kind="sum"), reduce="max"),
            Node(4, "linear", (3,), 8, param="w1"),
        ),
        (4,),
    )
    new, fired = ReorderLinearAggregate(cache_constants=True).apply(plan)
    assert not fired and new == plan
    assert "%3 = aggregate[max](%2) -> 64" in new.describe()


def test_reorder_prefers_caching_a_constant_aggregation() -> None:
    # Â(XW): 16 columns every epoch; (ÂX)W: ÂX is constant, cached, nothing exchanged.
    new, fired = ReorderLinearAggregate(cache_constants=True).apply(lin_then_agg(100, 16))
    assert fired and new.node(1).op == "aggregate" and new.node(2).op == "linear"


def test_reorder_must_not_fire() -> None:
    rule = ReorderLinearAggregate(cache_constants=False)
    # Without caching, Â(XW) with W 100 -> 16 already exchanges the narrow side.
    assert rule.apply(lin_then_agg(100, 16))[1] == []
    # The intermediate value has a second consumer: swapping would change it.
    shared = LogicalPlan(
        (
            Node(0, "input", (), 100),
            Node(1, "linear", (0,), 16, param="w"),
            Node(2, "aggregate", (1,), 16, norm=GCN_NORM),
            Node(3, "add", (2, 1), 16),
        ),
        (3,),
    )
    assert ReorderLinearAggregate(cache_constants=True).apply(shared)[1] == []


def test_cache_constant_aggregates() -> None:
    sgc = _plan(
        Node(1, "aggregate", (0,), 100, norm=GCN_NORM),
        Node(2, "aggregate", (1,), 100, norm=GCN_NORM),
        Node(3, "linear", (2,), 4, param="w"),
    )
    new, fired = CacheConstantAggregates().apply(sgc)
    assert len(fired) == 2 and new.node(1).cached and new.node(2).cached
    physical = PhysicalPlan.build(FuseLocalOps().apply(new)[0])
    assert physical.num_stages == 1 and physical.exchanges == ()  # no exchange per epoch
    # Must not fire: the aggregation's input depends on a parameter.
    new, fired = CacheConstantAggregates().apply(lin_then_agg(100, 16))
    assert fired == [] and not new.node(2).cached
    # ... or on dropout.
    drop = _plan(
        Node(1, "dropout", (0,), 100, p=0.5), Node(2, "aggregate", (1,), 100, norm=GCN_NORM)
    )
    assert CacheConstantAggregates().apply(drop)[1] == []


def test_prune_constant_gradients() -> None:
    plan = _plan(
        Node(1, "aggregate", (0,), 100, norm=GCN_NORM),
        Node(2, "linear", (1,), 16, param="w"),
        Node(3, "aggregate", (2,), 16, norm=GCN_NORM),
    )
    with_rule, fired = PruneConstantGradients().apply(plan)
    assert fired and "%1" in fired[0]
    assert 1 not in PhysicalPlan.build(with_rule).requires_grad
    assert 1 in PhysicalPlan.build(plan).requires_grad
    # Must not fire on a plan without constants.
    assert PruneConstantGradients().apply(lin_then_agg(100, 16))[1] == []


def test_fuse_local_ops() -> None:
    plan = _plan(
        Node(1, "linear", (0,), 16, param="w"),
        Node(2, "act", (1,), 16, act="relu"),
        Node(3, "aggregate", (2,), 16, norm=GCN_NORM),
        Node(4, "bias", (3,), 16, param="b"),
    )
    fused, fired = FuseLocalOps().apply(plan)
    assert fired
    assert PhysicalPlan.build(fused).num_stages == 2  # [linear, act] | [aggregate, bias]
    assert PhysicalPlan.build(plan).num_stages == 5  # one stage per op
    # Must not change anything without dense ops to fuse: stages stay one per aggregation.
    only = _plan(Node(1, "aggregate", (0,), 100, norm=GCN_NORM))
    assert PhysicalPlan.build(FuseLocalOps().apply(only)[0]).num_stages == 2


FLAG_SETS = {
    "no_reorder": lotan.PlannerFlags(reorder=False),
    "no_cache": lotan.PlannerFlags(cache_constants=False),
    "no_prune": lotan.PlannerFlags(cache_constants=False, prune_constant_gradients=False),
    "no_fuse": lotan.PlannerFlags(fuse=False),
    "none": lotan.PlannerFlags(False, False, False, False),
}


@pytest.mark.parametrize("flags", sorted(FLAG_SETS))
@pytest.mark.parametrize("engine", ["local", "spark"])
def test_rules_off_give_the_same_numbers(flags: str, engine: str, spark) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    models = [GCN(graph.num_features, 8, 3, 3), GraphSAGE(graph.num_features, 16, 2, 3)]
    for model in models:
        runs = []
        for planner in (lotan.PlannerFlags(), FLAG_SETS[flags]):
            m = copy.deepcopy(model)
            res = lotan.fit(
                m,
                graph,
                epochs=2,
                lr=0.05,
                engine=engine,
                num_partitions=2,
                spark=spark,
                progress=False,
                planner=planner,
            )
            runs.append(([r.loss for r in res.history], dict(m.named_parameters())))
        assert runs[0][0] == pytest.approx(runs[1][0], rel=1e-5)
        for k, v in runs[0][1].items():
            torch.testing.assert_close(v, runs[1][1][k], atol=1e-5, rtol=1e-4)


def test_every_rule_has_its_flag_and_every_flag_its_rule() -> None:
    from dataclasses import fields

    from lotan.planner.flags import PlannerFlags
    from lotan.planner.optimize import optimize
    from lotan.planner.rules import RULES

    switches = [f.name for f in fields(PlannerFlags) if isinstance(f.default, bool)]
    assert sorted(r.name for r in RULES) == sorted(switches)
    plan = lin_then_agg(100, 16)
    _, fired = optimize(plan, PlannerFlags(reorder=False, fuse=False))
    assert [name for name, _ in fired] == ["cache_constants", "prune_constant_gradients"]
