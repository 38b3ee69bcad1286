"""The lowering registry is what is supported: every registered class exists, error messages
and the docs' table list them all, and every registered convolution and model is one the
PyG equivalence tests train."""

from __future__ import annotations

import torch

from lotan.planner.lowering import LOWERINGS, supported, table
from lotan.planner.lowering.registry import find
from tests.planner.test_models import ALL_MODELS
from tests.planner.test_norms import NORM_MODELS


def test_every_registered_class_exists_and_is_listed() -> None:
    text, rows = supported(), table().splitlines()[2:]
    assert len(rows) == len(LOWERINGS)
    for entry in LOWERINGS:
        assert isinstance(entry.cls, type), entry
        assert entry.name in text
        assert any(f"`{entry.package}.{entry.name}`" in row for row in rows), entry.name


def test_every_registered_convolution_and_model_is_tested_against_pyg() -> None:
    used: set[type] = set()
    for build in {**ALL_MODELS, **NORM_MODELS}.values():
        model = build(8, 3)
        used |= {type(m) for m in model.modules()}
    for entry in LOWERINGS:
        if entry.family in ("model", "convolution"):
            assert entry.cls in used, f"{entry.name} is registered but no test trains it"


def test_lookup_is_by_type_and_base_type() -> None:
    from torch_geometric.nn import GCNConv

    class MyConv(GCNConv):
        pass

    entry = find(MyConv(4, 4), "convolution")
    assert entry is not None and entry.name == "GCNConv"
    assert find(torch.nn.Conv1d(1, 1, 1), "module") is None
