"""Attention dropout: the same coefficients are dropped whatever the partitioning (masks are
keyed by edge, like feature dropout by vertex), on both engines; a run repeats bit for bit,
and split placement equals fused bit for bit. (Without dropout, GAT equals PyG:
``tests/planner/test_models.py``.)"""

from __future__ import annotations

import copy

import torch
from torch_geometric.nn.models import GAT

import lotan
from tests.graph_cases import CASES


def _fit(model: torch.nn.Module, graph: lotan.Graph, **kw: object) -> lotan.FitResult:
    args: dict[str, object] = {"epochs": 3, "seed": 7, "lr": 0.05, "progress": False, **kw}
    return lotan.fit(copy.deepcopy(model), graph, **args)  # type: ignore[arg-type]


def test_attention_dropout_does_not_depend_on_the_partitioning(spark: object) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = GAT(graph.num_features, 8, 2, 3, heads=2, dropout=0.5)
    runs = [
        _fit(model, graph, engine="local", num_partitions=1),
        _fit(model, graph, engine="local", num_partitions=3),
        _fit(model, graph, engine="spark", num_partitions=2, spark=spark),
    ]
    first = dict(runs[0].model.named_parameters())
    for run in runs[1:]:
        for name, p in run.model.named_parameters():
            torch.testing.assert_close(p, first[name], rtol=1e-4, atol=1e-5, msg=name)
        for a, b in zip(run.history, runs[0].history, strict=True):
            assert abs(a.loss - b.loss) <= 1e-5 * abs(b.loss)
    # Dropping coefficients changes training (the masks are not all ones).
    plain = GAT(graph.num_features, 8, 2, 3, heads=2, dropout=0.0)
    plain.load_state_dict(model.state_dict())
    other = _fit(plain, graph, engine="local", num_partitions=1)
    assert abs(other.history[0].loss - runs[0].history[0].loss) > 1e-4


def test_attention_dropout_repeats_and_split_equals_fused() -> None:
    graph = CASES["weighted"]()
    torch.manual_seed(1)
    model = GAT(graph.num_features, 8, 2, 3, heads=2, dropout=0.6)
    fused = _fit(model, graph, engine="local", num_partitions=3)
    again = _fit(model, graph, engine="local", num_partitions=3)
    split = _fit(model, graph, engine="local", num_partitions=3, placement="split")
    for run in (again, split):
        assert [r.loss for r in run.history] == [r.loss for r in fused.history]
        assert [r.val_acc for r in run.history] == [r.val_acc for r in fused.history]
        ours = dict(run.model.named_parameters())
        for name, p in fused.model.named_parameters():
            assert torch.equal(ours[name], p), name


def test_edge_blocks_train_like_one_block(spark: object) -> None:
    """A budget of a few edges per block (``PlannerFlags(edge_block_mb=...)``): every layer
    with per-edge values runs over many blocks of destination rows, with attention dropout
    and edge features, on both engines. Without edge projections it trains bit for bit like
    the default single block; with them, the first epoch's loss is the same bit for bit and
    training differs by rounding only: their parameters' gradients add up block by block."""
    from tests.planner.test_models import EdgeAttentionNet, GineNet

    graph = CASES["edge_features"]()
    tiny = lotan.PlannerFlags(edge_block_mb=200 / 2**20)  # ~200 bytes: a few edges a block
    text = lotan.explain(GineNet(graph.num_features, 3), graph, planner=tiny, print_=False)
    assert "blocks of" in text
    torch.manual_seed(5)
    for model, exact in (
        (GAT(graph.num_features, 8, 2, 3, heads=2, dropout=0.4, v2=True), True),
        (EdgeAttentionNet(graph.num_features, 3), False),
        (GineNet(graph.num_features, 3), False),
    ):
        for engine, parts in (("local", 3), ("spark", 2)):
            kw = {"engine": engine, "num_partitions": parts, "spark": spark}
            one = _fit(model, graph, **kw)
            many = _fit(model, graph, planner=tiny, **kw)
            assert many.history[0].loss == one.history[0].loss
            ours = dict(many.model.named_parameters())
            for name, p in one.model.named_parameters():
                if exact:
                    assert torch.equal(ours[name], p), name
                else:
                    torch.testing.assert_close(ours[name], p, rtol=1e-5, atol=1e-6, msg=name)
            if exact:
                assert [r.loss for r in many.history] == [r.loss for r in one.history]
