"""Property-based tests over small random graphs (hypothesis): directed edges, duplicate edges,
self loops, isolated vertices, non-dense ids, tiny and empty val/test splits.

Valid graphs train exactly as the PyG reference does (logits, loss, every gradient); a graph
with one thing wrong raises a ``LotanError`` subclass — never another exception type."""

from __future__ import annotations

from typing import Any

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch_geometric.nn.models import GCN, GIN, GraphSAGE

import lotan
from tests.reference import assert_one_epoch_matches

MODELS = {"gcn": GCN, "sage": GraphSAGE, "gin": GIN}


@st.composite
def graphs(draw: Any) -> dict[str, Any]:
    """Arrays of a valid graph: at least one edge and one labelled train vertex."""
    n = draw(st.integers(2, 14))
    m = draw(st.integers(1, 3 * n))
    src = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    dst = draw(st.lists(st.integers(0, n - 1), min_size=m, max_size=m))
    classes = draw(st.integers(2, 4))
    seed = draw(st.integers(0, 2**16))
    rng = np.random.default_rng(seed)
    ids = rng.choice(10**9, n, replace=False).astype(np.int64)  # sparse, shuffled
    split = draw(st.lists(st.sampled_from(["train", "val", "test", None]), min_size=n, max_size=n))
    split[draw(st.integers(0, n - 1))] = "train"
    y = rng.integers(0, classes, n)
    weighted = draw(st.booleans())
    weight = rng.uniform(0.1, 2.0, m).astype(np.float32) if weighted else None
    if weight is not None:
        # Several weighted self loops on one vertex are ambiguous in PyG (a scatter with
        # duplicate indices keeps one of them); Lotan documents its choice (the largest).
        # Give a vertex's self loops one weight so that the reference is well defined.
        loops = np.array(src) == np.array(dst)
        weight[loops] = rng.uniform(0.1, 2.0, n).astype(np.float32)[np.array(src)[loops]]
    return {
        "x": rng.uniform(-2, 2, (n, 3)).astype(np.float32),
        "ids": ids,
        "src": ids[np.array(src)],
        "dst": ids[np.array(dst)],
        "y": y,
        "split": np.array(split, dtype=object),
        "weight": weight,
        "classes": classes,
    }


def _build(g: dict[str, Any]) -> lotan.Graph:
    return lotan.Graph.from_arrays(**{k: v for k, v in g.items() if k != "classes"})


def _model(kind: str, layers: int, classes: int) -> torch.nn.Module:
    torch.manual_seed(0)
    return MODELS[kind](3, 5, layers, classes)  # dropout 0: comparable with PyG


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    g=graphs(),
    kind=st.sampled_from(sorted(MODELS)),
    layers=st.integers(1, 3),
    parts=st.integers(1, 3),
)
def test_valid_graphs_train_as_pyg_does(g: dict[str, Any], kind: str, layers: int, parts: int):
    graph = _build(g)
    parts = min(parts, graph.num_vertices)
    assert_one_epoch_matches(_model(kind, layers, g["classes"]), graph, "local", parts, None)


@pytest.mark.usefixtures("spark")
@settings(max_examples=6, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=graphs(), kind=st.sampled_from(sorted(MODELS)))
def test_valid_graphs_train_as_pyg_does_on_spark(g: dict[str, Any], kind: str) -> None:
    from pyspark.sql import SparkSession

    graph = _build(g)
    spark = SparkSession.getActiveSession()
    parts = min(2, graph.num_vertices)
    assert_one_epoch_matches(_model(kind, 2, g["classes"]), graph, "spark", parts, spark)


def _corrupt(g: dict[str, Any], how: str, rng: np.random.Generator) -> dict[str, Any]:
    g = dict(g)
    n = len(g["ids"])
    i = int(rng.integers(0, n))
    if how == "nan_feature":
        x = g["x"].copy()
        x[i, int(rng.integers(0, 3))] = rng.choice([np.nan, np.inf, -np.inf])
        g["x"] = x
    elif how == "unknown_endpoint":
        dst = g["dst"].copy()
        dst[int(rng.integers(0, len(dst)))] = 10**9 + 7  # no vertex has this id
        g["dst"] = dst
    elif how == "duplicate_id":
        ids = g["ids"].copy()
        ids[i] = ids[(i + 1) % n]
        g["ids"] = ids
    elif how == "negative_label":
        y = g["y"].copy()
        y[i] = -int(rng.integers(2, 100))
        g["y"] = y
    elif how == "unlabelled_train":
        y = g["y"].copy()
        y[g["split"] == "train"] = -1
        g["y"] = y
    elif how == "no_edges":
        g["src"], g["dst"] = g["src"][:0], g["dst"][:0]
        g["weight"] = None
    elif how == "bad_weight":
        w = np.ones(len(g["src"]), np.float32) if g["weight"] is None else g["weight"].copy()
        w[int(rng.integers(0, len(w)))] = np.nan
        g["weight"] = w
    elif how == "bad_split":
        split = g["split"].copy()
        split[i] = "training"
        g["split"] = split
    elif how == "ragged_ids":
        g["ids"] = g["ids"][:-1]
    return g


FIT_PROBLEMS = ["label_beyond_outputs", "no_train", "too_many_partitions", "input_width"]
GRAPH_PROBLEMS = [
    "nan_feature",
    "unknown_endpoint",
    "duplicate_id",
    "negative_label",
    "unlabelled_train",
    "no_edges",
    "bad_weight",
    "bad_split",
    "ragged_ids",
]


@settings(max_examples=80, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(g=graphs(), how=st.sampled_from(GRAPH_PROBLEMS + FIT_PROBLEMS), seed=st.integers(0, 99))
def test_invalid_graphs_raise_a_lotan_error(g: dict[str, Any], how: str, seed: int) -> None:
    rng = np.random.default_rng(seed)
    classes = g["classes"]
    kw: dict[str, Any] = {"epochs": 1, "engine": "local", "progress": False}
    in_width = 3
    if how == "label_beyond_outputs":
        g["y"] = g["y"].copy()
        g["y"][g["split"] == "train"] = classes  # one more class than the model outputs
    elif how == "no_train":
        g["split"] = np.where(g["split"] == "train", "val", g["split"])
    elif how == "too_many_partitions":
        kw["num_partitions"] = len(g["ids"]) + 1
    elif how == "input_width":
        in_width = 4
    else:
        g = _corrupt(g, how, rng)
    torch.manual_seed(0)
    model = GCN(in_width, 4, 2, classes)
    with pytest.raises(lotan.LotanError):  # any other exception type fails the test
        lotan.fit(model, _build(g), **kw)
