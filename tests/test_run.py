"""A call's Run builds each plan once: one physical plan for training (and one for the
constants it caches), however many epochs, evaluations and predictions follow."""

from __future__ import annotations

from typing import Any

import pytest
import torch
from torch_geometric.nn.models import GCN

import lotan
from lotan.planner.physical import PhysicalPlan
from tests.graph_cases import CASES


@pytest.fixture
def builds(monkeypatch: pytest.MonkeyPatch) -> list[Any]:
    calls: list[Any] = []
    original = PhysicalPlan.build.__func__  # type: ignore[attr-defined]

    def counting(cls: type, logical: Any, **kwargs: Any) -> PhysicalPlan:
        calls.append(kwargs)
        return original(cls, logical, **kwargs)

    monkeypatch.setattr(PhysicalPlan, "build", classmethod(counting))
    return calls


def test_a_fit_builds_its_physical_plans_once(builds: list[Any]) -> None:
    graph = CASES["disconnected"]()
    torch.manual_seed(0)
    model = GCN(graph.num_features, 8, 2, 3, dropout=0.5)
    lotan.fit(model, graph, epochs=4, engine="local", num_partitions=2, progress=False)
    # the training plan, and the plan that computes its cached ÂX once
    assert len(builds) == 2, builds
    assert [b.get("use_cache", True) for b in builds] == [True, False]
