"""The contract the project hangs on: Lotan and PyTorch Geometric agree.

Same weights in → same loss, logits and every parameter gradient out after one epoch, and the
same parameters after several epochs of SGD (with momentum) and of Adam — on both engines,
several partition counts, shuffled sparse vertex ids, directed graphs with isolated vertices,
duplicate edges and pre-existing self loops.
"""

from __future__ import annotations

import copy

import pytest
import torch
from torch_geometric.nn.models import GCN

import lotan
from tests.graph_cases import CASES
from tests.reference import (
    ATOL,
    RTOL,
    assert_one_epoch_matches,
    assert_training_matches,
    pyg_reference,
)


def _model(graph: lotan.Graph, seed: int = 0, **kw: object) -> GCN:
    torch.manual_seed(seed)
    return GCN(graph.num_features, 8, 2, max(graph.num_classes, 3), dropout=0.0, **kw)


def _check_one_epoch(
    graph: lotan.Graph, engine: str, parts: int, spark: object, **kw: object
) -> None:
    assert_one_epoch_matches(_model(graph, **kw), graph, engine, parts, spark)


def _check_training(
    graph: lotan.Graph, engine: str, parts: int, spark: object, optimizer: str, **opt: float
) -> None:
    assert_training_matches(_model(graph, seed=1), graph, engine, parts, spark, optimizer, **opt)


@pytest.mark.parametrize("parts", [1, 2, 3, 7])
@pytest.mark.parametrize("engine", ["local", "spark"])
def test_gcn_matches_pyg(engine: str, parts: int, spark: object) -> None:
    graph = CASES["directed_multi"]()
    _check_one_epoch(graph, engine, parts, spark)
    _check_training(graph, engine, parts, spark, "sgd", lr=0.05, momentum=0.9)
    _check_training(graph, engine, parts, spark, "adam", lr=0.01, weight_decay=5e-4)


@pytest.mark.parametrize("parts", [2, 3])
@pytest.mark.parametrize("engine", ["local", "spark"])
def test_label_propagation_partitioner_matches_pyg(engine: str, parts: int, spark: object) -> None:
    graph = CASES["directed_multi"]()
    assert_one_epoch_matches(_model(graph), graph, engine, parts, spark, "label_propagation")
    assert_training_matches(
        _model(graph, seed=1),
        graph,
        engine,
        parts,
        spark,
        "adam",
        partitioner="label_propagation",
        lr=0.01,
        weight_decay=5e-4,
    )


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_cases_with_label_propagation(name: str, spark: object) -> None:
    assert_one_epoch_matches(
        _model(CASES[name]()), CASES[name](), "local", 4, spark, "label_propagation"
    )


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("parts", [1, 4])
def test_graph_cases_local(name: str, parts: int, spark: object) -> None:
    _check_one_epoch(CASES[name](), "local", parts, spark)


@pytest.mark.parametrize("name", sorted(CASES))
def test_graph_cases_spark(name: str, spark: object) -> None:
    _check_one_epoch(CASES[name](), "spark", 3, spark)


@pytest.mark.parametrize(
    "options",
    [{"improved": True}, {"add_self_loops": False}, {"normalize": False}, {"bias": False}],
    ids=["improved", "no_self_loops", "no_normalize", "no_bias"],
)
@pytest.mark.parametrize("case", ["weighted", "directed_multi"])
def test_gcnconv_options(case: str, options: dict[str, bool], spark: object) -> None:
    _check_one_epoch(CASES[case](), "local", 3, spark, **options)


def test_three_layers_with_activation(spark: object) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(5)
    model = GCN(graph.num_features, 8, 3, 3, dropout=0.0, act="tanh")
    ref = pyg_reference(model, graph, epochs=3, optimizer="adam", lr=0.02)
    for engine in ("local", "spark"):
        ours = copy.deepcopy(model)
        lotan.fit(
            ours,
            graph,
            epochs=3,
            optimizer="adam",
            lr=0.02,
            engine=engine,
            num_partitions=3,
            spark=spark,
            progress=False,
        )
        for name, p in ours.named_parameters():
            torch.testing.assert_close(p.detach(), ref.params_after[name], atol=ATOL, rtol=RTOL)


def test_dropout_same_on_both_engines_and_deterministic(spark: object) -> None:
    """With dropout the masks come from (seed, epoch, layer, partition): runs repeat exactly,
    and the two engines agree for the same partition count."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(3)
    model = GCN(graph.num_features, 8, 2, 3, dropout=0.5)
    runs = []
    for engine in ("local", "local", "spark"):
        m = copy.deepcopy(model)
        res = lotan.fit(
            m, graph, epochs=3, engine=engine, num_partitions=2, spark=spark, progress=False, seed=7
        )
        runs.append((res.history, dict(m.named_parameters())))
    assert [r.loss for r in runs[0][0]] == [r.loss for r in runs[1][0]]
    for name, p in runs[0][1].items():
        assert torch.equal(p, runs[1][1][name])
        torch.testing.assert_close(p, runs[2][1][name], atol=ATOL, rtol=RTOL)
