"""Placement: ``split`` runs every graph and dense piece as a Spark stage of its own and gives
the numbers ``fused`` gives — bit for bit — and PyG's, on both engines.

(That dense stages land on GPU executors is tested on a real standalone cluster, in
``tests/cluster/test_gpu_placement.py``.)
"""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import GCN, GIN, GraphSAGE

import lotan
from lotan.errors import LotanError
from lotan.planner.flags import PlannerFlags
from lotan.planner.physical import PhysicalPlan
from lotan.planner.placement import DENSE, FUSED, GRAPH, Placement
from lotan.runtime.stages import inference_stages, training_stages
from tests.graph_cases import CASES
from tests.planner.test_models import MODELS
from tests.reference import assert_one_epoch_matches

SPLIT = Placement("split")


def _physical(model: torch.nn.Module, graph: lotan.Graph, **flags: bool) -> PhysicalPlan:
    from lotan.run import plan_model

    return PhysicalPlan.build(plan_model(model, graph, PlannerFlags(**flags)).optimized)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("parts", [1, 3])
def test_split_matches_pyg_local(name: str, parts: int, spark: object) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = MODELS[name](graph.num_features, 3)
    assert_one_epoch_matches(model, graph, "local", parts, spark, placement="split")


@pytest.mark.parametrize("name", ["skip", "gin_sgc"])
def test_split_matches_pyg_spark(name: str, spark: object) -> None:
    graph = CASES["weighted"]()
    torch.manual_seed(0)
    model = MODELS[name](graph.num_features, 3)
    assert_one_epoch_matches(model, graph, "spark", 2, spark, placement="split")


def test_split_without_fusing_matches_pyg(spark: object) -> None:
    """Every op a stage of its own (``fuse=False``): stages without an exchange, or
    without dense work, still split cleanly."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = MODELS["residual"](graph.num_features, 3)
    phys = _physical(model, graph, fuse=False)
    assert phys.num_stages > 4
    ref = copy.deepcopy(model)
    for m, placement in ((model, "fused"), (ref, "split")):
        lotan.fit(
            m,
            graph,
            epochs=2,
            engine="local",
            num_partitions=3,
            placement=placement,
            planner=PlannerFlags(fuse=False),
            progress=False,
        )
    for (name, a), (_, b) in zip(model.named_parameters(), ref.named_parameters(), strict=True):
        assert torch.equal(a, b), name


def _assert_split_equals_fused(
    make: type[torch.nn.Module], engine: str, parts: int, spark: object
) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(4)
    model = make(graph.num_features, 8, 3, 3, dropout=0.5)
    out = []
    for placement in ("fused", "split"):
        m = copy.deepcopy(model)
        res = lotan.fit(
            m,
            graph,
            epochs=3,
            lr=0.05,
            engine=engine,
            num_partitions=parts,
            placement=placement,
            spark=spark,
            progress=False,
            seed=11,
        )
        out.append(([r.loss for r in res.history], [r.val_acc for r in res.history], m))
    (loss_f, acc_f, fused), (loss_s, acc_s, split) = out
    assert loss_f == loss_s
    assert acc_f == acc_s
    for (name, a), (_, b) in zip(fused.named_parameters(), split.named_parameters(), strict=True):
        assert torch.equal(a, b), name


@pytest.mark.parametrize("make", [GCN, GraphSAGE, GIN], ids=["gcn", "sage", "gin"])
def test_split_equals_fused_bitwise_local(make: type[torch.nn.Module], spark: object) -> None:
    """Same pieces, same inputs: identical losses, accuracies and weights (with dropout)."""
    _assert_split_equals_fused(make, "local", 3, spark)


def test_split_equals_fused_bitwise_spark(spark: object) -> None:
    _assert_split_equals_fused(GCN, "spark", 2, spark)


def test_schedule_fused_keeps_one_stage_per_exchange() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    phys = _physical(GCN(graph.num_features, 8, 3, 3), graph)
    s = phys.num_stages
    runs = training_stages(phys, seed=0, num_train=1)
    assert len(runs) == 2 * s - 1
    assert [r.label for r in runs][:s] == [
        *(f"stage {j} · forward" for j in range(s - 1)),
        f"stage {s - 1} · forward + loss",
    ]
    assert all(r.resources == {} for r in runs)  # fused: the default profile everywhere
    assert {r.kind for r in runs} <= {FUSED, DENSE}


def test_schedule_split_alternates_graph_and_dense() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    phys = _physical(GCN(graph.num_features, 8, 3, 3), graph)
    runs = training_stages(phys, seed=0, num_train=1, placement=Placement("split", 0.5, 2))
    kinds = [r.kind for r in runs]
    assert FUSED not in kinds
    assert all(len(r.pieces) == 1 for r in runs)
    assert kinds[0] == DENSE and kinds[-1] == DENSE
    assert all(a != b for a, b in zip(kinds, kinds[1:], strict=False))  # no two alike in a row
    for r in runs:
        assert r.resources == ({"cpus": 2, "gpu": 0.5} if r.kind == DENSE else {})
    # forward: dense 0, then (graph, dense) per later stage; backward: transpose + backward
    s = phys.num_stages
    assert len(runs) == 1 + 2 * (s - 1) + 2 * (s - 1)
    inference = inference_stages(phys, emit_outputs=True, placement=SPLIT)
    assert [r.kind for r in inference] == [DENSE] + [GRAPH, DENSE] * (s - 1)


def test_explain_shows_placement_and_resources() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = GCN(graph.num_features, 8, 2, 3)
    fused = lotan.explain(model, graph, num_partitions=2, print_=False)
    assert "placement fused: 3 Spark stages per epoch" in fused
    assert "1  fused  stage 1 · forward + loss" in fused
    text = lotan.explain(
        model, graph, num_partitions=2, placement="split", dense_gpus=0.25, print_=False
    )
    assert "placement split: 5 Spark stages per epoch" in text
    assert "dense stages for 1 cpu, 0.25 gpu per task" in text
    for line in (
        "0  dense  stage 0 · forward",
        "1  graph  stage 1 · aggregate",
        "2  dense  stage 1 · forward + loss",
        "3  graph  stage 1 · transpose",
        "4  dense  stage 0 · backward",
    ):
        assert line in text, text


def test_devices_count_every_dense_piece() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = GCN(graph.num_features, 8, 2, 3)
    phys = _physical(model, graph)
    per_epoch = sum(
        r.kind == DENSE for r in training_stages(phys, seed=0, num_train=1, placement=SPLIT)
    )
    evaluate = sum(
        r.kind == DENSE for r in inference_stages(phys, emit_outputs=False, placement=SPLIT)
    )
    parts = 3
    res = lotan.fit(
        model, graph, epochs=2, engine="local", num_partitions=parts, placement="split",
        progress=False,
    )  # fmt: skip
    assert res.devices == {
        "dense_pieces": (2 * per_epoch + evaluate) * parts,
        "gpu_assigned": 0,  # the local engine: no Spark task, no GPU
        "on_cuda": 0,
    }


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"placement": "gpu"}, "placement='gpu' is not one of ['fused', 'split']"),
        ({"dense_gpus": 1.5}, "not a fraction above 1"),
        ({"dense_gpus": -1}, "dense_gpus must be a number >= 0"),
        ({"dense_cpus": 0}, "dense_cpus must be a positive integer"),
    ],
)
def test_bad_placement_settings(kwargs: dict[str, object], message: str) -> None:
    graph = CASES["directed_multi"]()
    with pytest.raises(LotanError, match=message.replace("[", r"\[").replace("]", r"\]")):
        lotan.fit(GCN(graph.num_features, 8, 2, 3), graph, engine="local", **kwargs)  # type: ignore[arg-type]


def test_a_batch_of_models_splits_too() -> None:
    """``fit_many`` under split: the batch's shared exchanges and per-model dense work give
    what the fused batch gives, bit for bit."""
    graph = CASES["directed_multi"]()
    runs = []
    for placement in ("fused", "split"):
        trials = lotan.grid(
            lambda hidden, dropout: GCN(graph.num_features, hidden, 2, 3, dropout=dropout),
            {"hidden": [8, 16], "dropout": [0.0, 0.5]},
            seed=2,
        )
        runs.append(
            lotan.fit_many(
                trials, graph, epochs=3, engine="local", num_partitions=2, placement=placement,
                progress=False,
            )
        )  # fmt: skip
    for fused, split in zip(*runs, strict=True):
        assert [r.loss for r in fused.history] == [r.loss for r in split.history]
        for (name, a), (_, b) in zip(
            fused.model.named_parameters(), split.model.named_parameters(), strict=True
        ):
            assert torch.equal(a, b), name


def test_partitions_without_vertices_split_cleanly(spark: object) -> None:
    """Ids 0..5 hash to 3 of 5 partitions: the dense stages' tasks for the other two get no
    rows at all (mapInArrow calls them with nothing)."""
    from lotan.graph_engine.hashing import owner_of

    ids = np.arange(6)
    assert len(set(owner_of(ids, 5).tolist())) < 5
    rng = np.random.default_rng(0)
    graph = lotan.Graph.from_arrays(
        x=rng.standard_normal((6, 3)).astype(np.float32),
        ids=ids,
        y=np.array([0, 1, 0, 1, 0, 1]),
        split=np.array(["train", "train", "val", "val", "test", "test"], dtype=object),
        src=np.array([0, 1, 2, 3, 4, 5]),
        dst=np.array([1, 2, 3, 4, 5, 0]),
    )
    torch.manual_seed(0)
    model = GCN(3, 4, 2, 2)
    assert_one_epoch_matches(model, graph, "spark", 5, spark, placement="split")
