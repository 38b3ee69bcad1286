"""Model batching: a grid trained with ``fit_many`` equals the same models trained one by one
with ``fit`` (same seed) — parameters and history — on both engines, whatever the batches,
sub-batches and early stops."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import GAT, GCN, GIN, GraphSAGE

import lotan
from lotan.errors import GraphInputError, LotanError
from lotan.planner.batching import merge
from lotan.planner.estimates import working_set_bytes
from lotan.planner.lowering import lower_model
from lotan.planner.optimize import optimize
from lotan.planner.physical import PhysicalPlan
from tests.graph_cases import CASES


def _graph() -> lotan.Graph:
    return CASES["directed_multi"]()


def _grid(graph: lotan.Graph, seed: int = 0) -> list[lotan.Trial]:
    """8 models: hidden size, dropout and learning rate all differ."""
    return lotan.grid(
        lambda hidden, dropout: GCN(graph.num_features, hidden, 2, 3, dropout=dropout),
        {"hidden": [8, 16], "dropout": [0.0, 0.5], "lr": [0.01, 0.05]},
        seed=seed,
    )


def _separate(trials: list[lotan.Trial], graph: lotan.Graph, **kw: object) -> list[lotan.FitResult]:
    out = []
    for t in trials:
        o = t.optimizer
        out.append(
            lotan.fit(
                copy.deepcopy(t.model),
                graph,
                optimizer=o.name,
                lr=o.lr,
                weight_decay=o.weight_decay,
                momentum=o.momentum,
                progress=False,
                **kw,  # type: ignore[arg-type]
            )
        )
    return out


def _assert_same(batched: lotan.FitResult, alone: lotan.FitResult) -> None:
    """Bit for bit: a batched model runs the same dense code on the same shapes as alone, and
    its aggregations' columns are summed in an order that does not depend on the columns
    beside them (``lotan.graph_engine.kernels``)."""
    a = dict(batched.model.named_parameters())
    for name, p in alone.model.named_parameters():
        assert torch.equal(a[name], p), name
    assert len(batched.history) == len(alone.history)
    for rb, ra in zip(batched.history, alone.history, strict=True):
        assert rb.epoch == ra.epoch
        assert rb.loss == ra.loss
        for acc in ("train_acc", "val_acc", "test_acc"):
            assert getattr(rb, acc) == pytest.approx(getattr(ra, acc), nan_ok=True, abs=0)
    assert batched.stopped_early == alone.stopped_early


@pytest.mark.parametrize(("engine", "parts"), [("local", 3), ("spark", 2)])
def test_grid_equals_separate_fits(engine: str, parts: int, spark: object) -> None:
    graph = _graph()
    trials = _grid(graph)
    kw = dict(engine=engine, num_partitions=parts, epochs=4, seed=3)
    if engine == "spark":
        kw["spark"] = spark
    alone = _separate(trials, graph, **kw)
    results = lotan.fit_many(trials, graph, progress=False, **kw)  # type: ignore[arg-type]
    assert len(results) == 8 and len(results.batches) == 1
    assert results.batches[0].sub_batches[0][0] == tuple(range(8))  # one batch, one plan
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


def test_per_model_optimizers_and_weight_decay() -> None:
    graph = _graph()
    torch.manual_seed(0)
    models = [GCN(graph.num_features, h, 2, 3, dropout=0.5) for h in (8, 12, 16)]
    opts = [
        {"name": "sgd", "lr": 0.1, "momentum": 0.9},
        {"name": "adamw", "lr": 0.02, "weight_decay": 0.01},
        {"optimizer": "adam", "lr": 0.01, "weight_decay": 5e-4},
    ]
    trials = [
        lotan.Trial(m, lotan.OptimizerConfig.of(o)) for m, o in zip(models, opts, strict=True)
    ]
    alone = _separate(trials, graph, engine="local", num_partitions=2, epochs=5)
    results = lotan.fit_many(
        [copy.deepcopy(m) for m in models],
        graph,
        optimizers=opts,
        pairing="zip",
        engine="local",
        num_partitions=2,
        epochs=5,
        progress=False,
    )
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)
    assert [r.optimizer.name for r in results] == ["sgd", "adamw", "adam"]  # type: ignore[union-attr]


def test_optimizers_product_trains_a_copy_per_optimizer() -> None:
    graph = _graph()
    models = [GCN(graph.num_features, 8, 2, 3), GCN(graph.num_features, 16, 2, 3)]
    results = lotan.fit_many(
        models,
        graph,
        optimizers=[{"lr": 0.01}, {"lr": 0.05}],
        engine="local",
        epochs=2,
        progress=False,
    )
    assert len(results) == 4
    assert results[0].model is models[0] and results[2].model is models[1]
    assert results[1].model is not models[0]
    assert [r.optimizer.lr for r in results] == [0.01, 0.05, 0.01, 0.05]  # type: ignore[union-attr]


def test_early_stopping_leaves_the_batch() -> None:
    graph = _graph()
    torch.manual_seed(1)
    models = [GCN(graph.num_features, 8, 2, 3) for _ in range(3)]
    # lr 1e-7 never changes the predictions: val accuracy cannot improve, the model stops.
    opts = [{"lr": 1e-7}, {"lr": 0.05}, {"lr": 0.01}]
    trials = [
        lotan.Trial(copy.deepcopy(m), lotan.OptimizerConfig.of(o))
        for m, o in zip(models, opts, strict=True)
    ]
    kw = dict(engine="local", num_partitions=2, epochs=15, patience=3)
    alone = _separate(trials, graph, **kw)
    results = lotan.fit_many(trials, graph, progress=False, **kw)  # type: ignore[arg-type]
    assert results[0].stopped_early and results[0].epochs_run == 4
    assert results[1].epochs_run > results[0].epochs_run
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


def test_patience_restores_the_best_weights() -> None:
    graph = _graph()
    torch.manual_seed(2)
    model = GCN(graph.num_features, 8, 2, 3)
    start = copy.deepcopy(model)
    res = lotan.fit(model, graph, engine="local", epochs=30, lr=0.2, patience=4, progress=False)
    best = res.best("val_acc")
    assert res.stopped_early and res.final.epoch == best.epoch + 4
    again = lotan.fit(start, graph, engine="local", epochs=best.epoch, lr=0.2, progress=False)
    for (name, p), q in zip(model.named_parameters(), again.model.parameters(), strict=True):
        torch.testing.assert_close(p, q, msg=name)


def test_early_stopping_needs_the_monitored_split() -> None:
    graph = _graph()
    a = graph.arrays()
    split = np.where(a.split == 2, 3, a.split)  # no val vertices (codes: see SPLIT_CODES)
    no_val = lotan.Graph.from_arrays(x=a.x, src=a.src, dst=a.dst, y=a.y, split=split, ids=a.ids)
    if no_val.split_counts()["val"]:
        pytest.skip("split codes changed")  # pragma: no cover
    with pytest.raises(GraphInputError, match="no 'val' vertices"):
        lotan.fit(GCN(6, 8, 2, 3), no_val, engine="local", patience=2, progress=False)


def test_memory_budget_splits_the_batch_and_results_do_not_change() -> None:
    graph = _graph()
    trials = _grid(graph)[:4]
    copies = [copy.deepcopy(t.model) for t in trials]
    whole = lotan.fit_many(
        [lotan.Trial(c, t.optimizer, t.params) for c, t in zip(copies, trials, strict=True)],
        graph,
        engine="local",
        num_partitions=2,
        epochs=3,
        memory_budget=None,
        progress=False,
    )
    # A budget between one model's and two models' estimated working set: one per sub-batch.
    per_model = whole.batches[0].sub_batches[0][1] // 4
    text = lotan.explain(trials, graph, num_partitions=2, memory_budget=per_model, print_=False)
    assert "4 sub-batches, run in turn" in text
    split = lotan.fit_many(
        trials,
        graph,
        engine="local",
        num_partitions=2,
        epochs=3,
        memory_budget=per_model,
        progress=False,
    )
    assert [m for m, _ in split.batches[0].sub_batches] == [(0,), (1,), (2,), (3,)]
    assert set(split.table()["batch"]) == {"0.0", "0.1", "0.2", "0.3"}
    for a, b in zip(split, whole, strict=True):
        _assert_same(a, b)


def test_models_of_different_structure_go_to_separate_batches(spark: object) -> None:
    graph = _graph()
    torch.manual_seed(0)
    models = [
        GCN(graph.num_features, 8, 2, 3),
        GraphSAGE(graph.num_features, 8, 2, 3),
        GCN(graph.num_features, 16, 2, 3, dropout=0.5),
        GCN(graph.num_features, 8, 3, 3),
        GIN(graph.num_features, 8, 2, 3),
    ]
    text = lotan.explain(models, graph, num_partitions=2, print_=False)
    assert "5 models in 4 batch(es)" in text
    assert "batch 0: models 0, 2 (" in text and "batch 1: models 1 (" in text
    trials = [lotan.Trial(copy.deepcopy(m)) for m in models]
    alone = _separate(trials, graph, engine="spark", spark=spark, num_partitions=2, epochs=2)
    results = lotan.fit_many(
        models, graph, engine="spark", spark=spark, num_partitions=2, epochs=2, progress=False
    )
    assert [b.members for b in results.batches] == [(0, 2), (1,), (3,), (4,)]
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


def _plan(model: torch.nn.Module, features: int) -> lotan.ir.plan.LogicalPlan:  # type: ignore[name-defined]
    return optimize(lower_model(model, features, False))[0]


def test_one_exchange_per_layer_for_the_whole_batch() -> None:
    torch.manual_seed(0)
    models = [GCN(32, h, 3, 4, dropout=p) for h in (8, 64) for p in (0.0, 0.5)]
    plans = [_plan(m, 32) for m in models]
    merged = merge(plans)
    physical = PhysicalPlan.build(merged.plan)
    alone = [PhysicalPlan.build(p) for p in plans]
    assert physical.num_stages == alone[0].num_stages == 3
    # 3 layers with a cached ÂX: two exchanges per epoch forward, for one model or four.
    assert len(physical.exchanges) == len(alone[0].exchanges) == 2
    for x in physical.exchanges:
        assert len(x.inputs) == 4
        width = sum(a.exchanges[x.index].widths[0] for a in alone)
        assert x.width(x.inputs) == width
    # Layer 0's aggregation of X is one cached value shared by all four models.
    cached = [n for n in merged.plan.nodes if n.op == "aggregate" and n.cached]
    assert len(cached) == 1
    # The working set grows with the batch.
    one = working_set_bytes(alone[0], 1000, 1500)
    assert working_set_bytes(physical, 1000, 1500) > 3 * one


def test_grid_helper() -> None:
    calls: list[dict[str, object]] = []

    def build(hidden: int, dropout: float) -> torch.nn.Module:
        calls.append({"hidden": hidden, "dropout": dropout})
        return GCN(6, hidden, 2, 3, dropout=dropout)

    trials = lotan.grid(
        build,
        {"hidden": [8, 16], "dropout": [0.0, 0.5], "lr": [0.01, 0.1], "weight_decay": [5e-4]},
    )
    assert len(trials) == 8 and len(calls) == 8
    assert trials[1].optimizer == lotan.OptimizerConfig("adam", 0.1, 5e-4)
    assert trials[1].params == {"hidden": 8, "dropout": 0.0, "lr": 0.1, "weight_decay": 5e-4}
    # Same seed, same shape: the same initial weights.
    for p, q in zip(trials[0].model.parameters(), trials[1].model.parameters(), strict=True):
        torch.testing.assert_close(p, q)


@pytest.mark.parametrize(
    ("call", "match"),
    [
        (lambda g: lotan.grid(lambda h: GCN(6, h, 2, 3), {"hidden": 8}), "non-empty list"),
        (lambda g: lotan.grid(lambda h: GCN(6, h, 2, 3), {"width": [8]}), "grid's model keys"),
        (lambda g: lotan.OptimizerConfig.of({"name": "adam", "lr": 0.1, "lrr": 1}), "'lrr'"),
        (lambda g: lotan.OptimizerConfig.of({"name": "rmsprop"}), "rmsprop"),
        (lambda g: lotan.fit_many([], g, engine="local"), "non-empty list"),
        (lambda g: lotan.fit_many(GCN(6, 8, 2, 3), g, engine="local"), "non-empty list"),
        (
            lambda g: lotan.fit_many([GCN(6, 8, 2, 3)] * 2, g, engine="local", progress=False),
            "same module object",
        ),
        (
            lambda g: lotan.fit_many(
                [GCN(6, 8, 2, 3)], g, optimizers=[{}, {}], pairing="zip", engine="local"
            ),
            "one optimizer per model",
        ),
        (
            lambda g: lotan.fit_many([GCN(6, 8, 2, 3)], g, memory_budget="lots", engine="local"),
            "memory_budget",
        ),
        (lambda g: lotan.fit_many([GCN(6, 8, 2, 3)], g, monitor="f1", engine="local"), "f1"),
        (lambda g: lotan.fit_many([GCN(7, 8, 2, 3)], g, engine="local"), "7 input features"),
    ],
)
def test_bad_grid_input_is_a_clear_error(call: object, match: str) -> None:
    with pytest.raises(LotanError, match=match):
        call(_graph())  # type: ignore[operator]


def test_best_and_table() -> None:
    graph = _graph()
    results = lotan.fit_many(
        _grid(graph)[:4], graph, engine="local", num_partitions=2, epochs=6, progress=False
    )
    best = results.best("val_acc")
    top = max(max(r.val_acc for r in res.history) for res in results)
    assert best.best("val_acc").val_acc == top
    assert results.best("loss").best("loss").loss == min(
        min(r.loss for r in res.history) for res in results
    )
    table = results.table()
    assert list(table.columns[:3]) == ["model", "hidden", "dropout"]
    assert len(table) == 4 and table["epochs_run"].tolist() == [6] * 4
    assert table["val_acc"].max() == top
    assert "GridResult(4 models)" in repr(results)


def test_max_aggregation_models_batch_together_and_apart_from_sums() -> None:
    """A max exchange is its own kind: max models share a batch, a mean model does not."""
    graph = _graph()
    torch.manual_seed(0)
    models = [
        GraphSAGE(graph.num_features, 8, 2, 3, aggr="max"),
        GraphSAGE(graph.num_features, 12, 2, 3, aggr="max", dropout=0.5),
        GraphSAGE(graph.num_features, 8, 2, 3, aggr="mean"),
    ]
    trials = [lotan.Trial(copy.deepcopy(m)) for m in models]
    alone = _separate(trials, graph, engine="local", num_partitions=3, epochs=3)
    results = lotan.fit_many(
        models, graph, engine="local", num_partitions=3, epochs=3, progress=False
    )
    assert [b.members for b in results.batches] == [(0, 1), (2,)]
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


def test_gat_configurations_batch_and_equal_their_own_fits() -> None:
    graph = _graph()
    trials = lotan.grid(
        lambda hidden, heads: GAT(graph.num_features, hidden, 2, 3, heads=heads),
        {"hidden": [8, 16], "heads": [1, 2], "lr": [0.01]},
        seed=4,
    )
    kw = dict(engine="local", num_partitions=3, epochs=3, seed=5)
    alone = _separate(trials, graph, **kw)
    results = lotan.fit_many(trials, graph, progress=False, **kw)  # type: ignore[arg-type]
    assert len(results.batches) == 1
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


def test_edge_feature_models_batch_and_equal_their_own_fits() -> None:
    """GATv2 with edge features and GINE: the edge functions' own parameters (``att``, the
    edge projections) are renamed per model like the dense ones."""
    from torch_geometric.nn import GINEConv
    from torch_geometric.nn.models import MLP

    class Gine(torch.nn.Module):
        def __init__(self, hidden: int) -> None:
            super().__init__()
            self.conv = GINEConv(MLP([6, hidden, 3], norm=None), edge_dim=3, train_eps=True)

        def forward(
            self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
        ) -> torch.Tensor:
            return self.conv(x, edge_index, edge_attr)

    graph = CASES["edge_features"]()
    torch.manual_seed(2)
    models = [
        GAT(graph.num_features, 8, 2, 3, heads=2, v2=True, edge_dim=3),
        GAT(graph.num_features, 16, 2, 3, heads=2, v2=True, edge_dim=3, dropout=0.3),
        Gine(8),
        Gine(12),
    ]
    trials = [lotan.Trial(copy.deepcopy(m)) for m in models]
    kw = dict(engine="local", num_partitions=3, epochs=3, seed=5)
    alone = _separate(trials, graph, **kw)
    results = lotan.fit_many(models, graph, progress=False, **kw)  # type: ignore[arg-type]
    assert [b.members for b in results.batches] == [(0, 1), (2, 3)]  # by depth
    for batched, single in zip(results, alone, strict=True):
        _assert_same(batched, single)


@pytest.mark.parametrize(("engine", "parts"), [("local", 3), ("spark", 2)])
def test_seed_replicates_equal_fits_with_their_own_seeds(
    engine: str, parts: int, spark: object
) -> None:
    """``grid(..., {"seed": [...]})``: replicate ``s`` is built after ``manual_seed(s)`` and
    draws the dropout masks (features and GAT's attention coefficients) of ``fit(seed=s)``,
    not those of ``fit_many``'s seed."""
    graph = _graph()
    f = graph.num_features

    def build() -> torch.nn.Module:
        return GAT(f, 8, 2, 3, heads=2, dropout=0.5)

    seeds = [4, 7, 11]
    kw: dict[str, object] = dict(engine=engine, num_partitions=parts, epochs=4)
    if engine == "spark":
        kw["spark"] = spark
    alone = []
    for s in seeds:
        torch.manual_seed(s)
        alone.append(lotan.fit(build(), graph, seed=s, progress=False, **kw))  # type: ignore[arg-type]
    trials = lotan.grid(build, {"seed": seeds})
    assert [t.seed for t in trials] == seeds
    results = lotan.fit_many(trials, graph, seed=0, progress=False, **kw)  # type: ignore[arg-type]
    assert len(results.batches) == 1 and results.batches[0].sub_batches[0][0] == (0, 1, 2)
    for batched, single, s in zip(results, alone, seeds, strict=True):
        _assert_same(batched, single)
        assert batched.config.training.seed == s
    assert list(results.table()["seed"]) == seeds
    # Same weights, other masks: fit_many's own seed for a trial without one.
    torch.manual_seed(4)
    same_start = lotan.fit_many([build()], graph, seed=0, progress=False, **kw)[0]  # type: ignore[arg-type]
    assert same_start.history[0].loss != alone[0].history[0].loss


def test_a_trial_seed_survives_optimizer_pairing_and_sub_batches() -> None:
    graph = _graph()
    torch.manual_seed(3)
    start = GCN(graph.num_features, 8, 2, 3, dropout=0.5)
    kw: dict[str, object] = dict(engine="local", num_partitions=2, epochs=3)

    def alone(seed: int, lr: float = 0.01) -> lotan.FitResult:
        m = copy.deepcopy(start)
        return lotan.fit(m, graph, seed=seed, lr=lr, progress=False, **kw)  # type: ignore[arg-type]

    # Two trials in two sub-batches (a budget below one model's working set).
    split = lotan.fit_many(
        [lotan.Trial(copy.deepcopy(start), seed=s) for s in (9, 5)],
        graph,
        memory_budget=1,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )
    assert [m for m, _ in split.batches[0].sub_batches] == [(0,), (1,)]
    _assert_same(split[0], alone(9))
    _assert_same(split[1], alone(5))
    # Trials of one seed with optimizers of their own.
    paired = lotan.fit_many(
        [
            lotan.Trial(copy.deepcopy(start), lotan.OptimizerConfig.of({"lr": lr}), seed=9)
            for lr in (0.01, 0.05)
        ],
        graph,
        progress=False,
        **kw,  # type: ignore[arg-type]
    )
    assert [r.config.training.seed for r in paired] == [9, 9]
    _assert_same(paired[0], alone(9))
    _assert_same(paired[1], alone(9, lr=0.05))


@pytest.mark.parametrize("bad", [[0.5], ["1"], [True]])
def test_grid_seed_values_must_be_ints(bad: list[object]) -> None:
    with pytest.raises(LotanError, match="grid value 'seed' must be a list of ints"):
        lotan.grid(lambda: GCN(6, 8, 2, 3), {"seed": bad})
    with pytest.raises(LotanError, match="Trial seed must be an int or None"):
        lotan.Trial(GCN(6, 8, 2, 3), seed=bad[0])  # type: ignore[arg-type]
