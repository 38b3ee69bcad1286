"""Every input kind gives the same training result; bad input gets a clear LotanError."""

from __future__ import annotations

import copy
import os

import numpy as np
import pytest
import torch
from torch_geometric.nn.models import GAT, GCN

import lotan
from lotan.errors import GraphInputError, LotanError, UnsupportedModelError
from tests.graph_cases import CASES


def _train(
    graph: lotan.Graph, model: torch.nn.Module, engine: str, spark
) -> dict[str, torch.Tensor]:
    m = copy.deepcopy(model)
    lotan.fit(
        m,
        graph,
        epochs=2,
        optimizer="adam",
        lr=0.05,
        engine=engine,
        num_partitions=2,
        spark=spark,
        progress=False,
    )
    return {k: v.detach() for k, v in m.named_parameters()}


@pytest.mark.parametrize("name", ["weighted", "edge_features"])
def test_every_input_kind_trains_identically(name: str, spark, tmp_path) -> None:
    """In memory, from PyG, from DataFrames and from Parquet; with edge weights, and with edge
    features (the edges table's ``attr`` column, PyG's ``edge_attr``) read by GAT's scores."""
    base = CASES[name]()
    torch.manual_seed(0)
    if base.num_edge_features:
        model: torch.nn.Module = GAT(base.num_features, 8, 2, 3, heads=2, edge_dim=3)
    else:
        model = GCN(base.num_features, 8, 2, 3)
    expected = _train(base, model, "local", spark)

    from_pyg = lotan.Graph.from_pyg(base.to_pyg())  # ids become 0..N-1 in id order
    vertices, edges = base.dataframes(spark)
    from_df = lotan.Graph.from_dataframes(vertices, edges)
    vertices.write.parquet(str(tmp_path / "v"))
    edges.write.parquet(str(tmp_path / "e"))
    from_parquet = lotan.Graph.from_parquet(str(tmp_path / "v"), str(tmp_path / "e"), spark=spark)

    assert from_df.num_edge_features == from_pyg.num_edge_features == base.num_edge_features
    for graph, engine in [
        (from_pyg, "local"),
        (from_df, "local"),
        (from_df, "spark"),
        (from_parquet, "spark"),
    ]:
        got = _train(graph, model, engine, spark)
        for k, v in expected.items():
            torch.testing.assert_close(got[k], v, atol=1e-5, rtol=1e-4, msg=f"{engine}:{k}")


def test_predict_maps_back_to_original_ids(spark) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    model = GCN(graph.num_features, 8, 2, 3)
    local = lotan.predict(model, graph, engine="local", num_partitions=3)
    df = lotan.predict(model, graph, engine="spark", num_partitions=3, spark=spark)
    remote = df.toPandas().sort_values("id").reset_index(drop=True)
    df.unpersist()
    assert sorted(local["id"]) == sorted(graph.arrays().ids.tolist())
    np.testing.assert_array_equal(remote["id"], local["id"])
    np.testing.assert_array_equal(remote["prediction"], local["prediction"])


def test_from_pyg_reads_every_valid_form_of_a_field_the_same() -> None:
    """int32 or int64 ``edge_index``, ``y`` as ``[N]`` or OGB's ``[N, 1]``, integer or float
    ``edge_weight``, tensors or NumPy arrays: one graph."""
    base = CASES["weighted"]().to_pyg()
    expected = lotan.Graph.from_pyg(base).arrays()
    variants = {
        "int32 edge_index": {"edge_index": base.edge_index.int()},
        "y [N, 1]": {"y": base.y.view(-1, 1)},
        "float64 edge_weight": {"edge_weight": base.edge_weight.double()},
        "numpy arrays": {k: base[k].numpy() for k in ("x", "edge_index", "y", "train_mask")},
    }
    for what, fields in variants.items():
        data = base.clone()
        for key, value in fields.items():
            data[key] = value
        got = lotan.Graph.from_pyg(data).arrays()
        for name in ("ids", "x", "y", "split", "src", "dst", "weight"):
            np.testing.assert_array_equal(getattr(got, name), getattr(expected, name), what)


def test_from_pyg_raises_on_fields_of_another_kind() -> None:
    data = CASES["weighted"]().to_pyg()
    data.edge_weight = [1.0] * data.edge_index.shape[1]
    with pytest.raises(GraphInputError, match=r"data\.edge_weight must be a torch\.Tensor"):
        lotan.Graph.from_pyg(data)
    data = CASES["weighted"]().to_pyg()
    data.x = data.x[:, 0]
    with pytest.raises(GraphInputError, match=r"data.x must be a 2-D tensor .* found shape \["):
        lotan.Graph.from_pyg(data)


# ---------------------------------------------------------------------------- bad input
def _arrays(**overrides):
    n = 6
    kw = dict(
        x=np.ones((n, 3), np.float32),
        src=np.array([0, 1, 2]),
        dst=np.array([1, 2, 3]),
        y=np.array([0, 1, 0, 1, 0, 1]),
        split=np.array(["train"] * 3 + ["test"] * 3, dtype=object),
    )
    kw.update(overrides)
    return kw


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"ids": np.array([1, 2, 2, 3, 4, 5])}, r"vertex ids must be unique.*\[2\]"),
        ({"src": np.array([0, 1, 9])}, r"edges have a src that is not a vertex id, e\.g\. \[9\]"),
        ({"dst": np.array([0, -4, 1])}, r"dst that is not a vertex id"),
        (
            {"x": np.array([[1, 2, np.nan]] + [[0, 0, 0]] * 5, np.float32)},
            r"NaN or inf features.*\[0\]",
        ),
        ({"y": np.array([0, 1, -2, 1, 0, 1])}, r"labels must be >= 0"),
        ({"y": np.array([-1, 1, 0, 1, 0, 1])}, r"1 train vertices have no label"),
        (
            {"split": np.array(["train", "dev", "test", "test", "test", "test"], dtype=object)},
            r"\['dev'\]",
        ),
        ({"x": np.ones(6, np.float32)}, r"features must be a 2-D array"),
        ({"weight": np.array([1.0, np.inf, 1.0])}, r"edge weights must be finite"),
    ],
    ids=[
        "dup_ids",
        "unknown_src",
        "unknown_dst",
        "nan_features",
        "negative_label",
        "unlabeled_train",
        "bad_split",
        "ragged_features",
        "inf_weight",
    ],
)
def test_bad_arrays(overrides, match) -> None:
    with pytest.raises(GraphInputError, match=match):
        lotan.Graph.from_arrays(**_arrays(**overrides))


def _frames(spark, vertices_rows, edges_rows, vschema=None, eschema="src long, dst long"):
    vschema = vschema or "id long, features array<float>, label long, split string"
    return spark.createDataFrame(vertices_rows, vschema), spark.createDataFrame(edges_rows, eschema)


GOOD_V = [(10, [1.0, 2.0], 0, "train"), (20, [0.5, 1.0], 1, "val"), (30, [0.0, 1.0], 1, "test")]
GOOD_E = [(10, 20), (20, 30)]


@pytest.mark.parametrize(
    ("vrows", "erows", "vschema", "eschema", "match"),
    [
        (
            GOOD_V,
            GOOD_E,
            "id long, features array<float>, label long, fold string",
            None,
            r"missing \['split'\], found \['id', 'features', 'label', 'fold'\]",
        ),
        (
            GOOD_V,
            [(10, 20)],
            None,
            "source long, dst long",
            r"needs columns \['src', 'dst'\]; missing \['src'\]",
        ),
        (
            GOOD_V + [(10, [1.0, 1.0], 0, "val")],
            GOOD_E,
            None,
            None,
            r"duplicate rows, e\.g\. ids \[10\]",
        ),
        (GOOD_V, GOOD_E + [(10, 99)], None, None, r"dst that is not a vertex id, e\.g\. \[99\]"),
        ([(10, [1.0, float("nan")], 0, "train")] + GOOD_V[1:], GOOD_E, None, None, r"NaN or inf"),
        ([(10, [1.0], 0, "train")] + GOOD_V[1:], GOOD_E, None, None, r"lengths from 1 to 2"),
        ([(10, [1.0, 2.0], -3, "train")] + GOOD_V[1:], GOOD_E, None, None, r"labels must be >= 0"),
        (
            GOOD_V,
            GOOD_E,
            "id string, features array<float>, label long, split string",
            None,
            r"vertices\.id must be an integer column, found string",
        ),
    ],
    ids=[
        "missing_split",
        "misnamed_src",
        "dup_ids",
        "unknown_dst",
        "nan",
        "ragged",
        "label",
        "id_type",
    ],
)
def test_bad_dataframes(spark, vrows, erows, vschema, eschema, match) -> None:
    if vschema and vschema.startswith("id string"):
        vrows = [(str(r[0]), *r[1:]) for r in vrows]
    v, e = _frames(spark, vrows, erows, vschema, eschema or "src long, dst long")
    with pytest.raises(GraphInputError, match=match):
        lotan.Graph.from_dataframes(v, e)


def test_model_and_graph_mismatch() -> None:
    graph = lotan.Graph.from_arrays(**_arrays())
    with pytest.raises(
        UnsupportedModelError, match=r"the layer expects 5 input features but gets 3"
    ):
        lotan.fit(GCN(5, 4, 2, 2), graph, engine="local", epochs=1, progress=False)
    with pytest.raises(GraphInputError, match=r"only 1 outputs; build it with out_channels >= 2"):
        lotan.fit(GCN(3, 4, 2, 1), graph, engine="local", epochs=1, progress=False)
    no_train = lotan.Graph.from_arrays(**_arrays(split=np.array(["test"] * 6, dtype=object)))
    with pytest.raises(GraphInputError, match=r"train split is empty"):
        lotan.fit(GCN(3, 4, 2, 2), no_train, engine="local", epochs=1, progress=False)
    with pytest.raises(GraphInputError, match=r"num_partitions=9 is more than the graph's 6"):
        lotan.fit(
            GCN(3, 4, 2, 2), graph, engine="local", num_partitions=9, epochs=1, progress=False
        )


def test_unsupported_models_and_settings() -> None:
    graph = lotan.Graph.from_arrays(**_arrays())
    with pytest.raises(
        UnsupportedModelError,
        match=r"forward must take \(x, edge_index\) or \(x, edge_index, edge_attr\), found",
    ):
        lotan.fit(torch.nn.Linear(3, 2), graph, engine="local", progress=False)
    with pytest.raises(UnsupportedModelError, match=r"GCN\(jk='lstm'\) is not supported"):
        lotan.fit(GCN(3, 4, 2, 2, jk="lstm"), graph, engine="local", progress=False)
    with pytest.raises(UnsupportedModelError, match=r"GCN.norms\[0\]: GraphNorm is not"):
        lotan.fit(GCN(3, 4, 2, 2, norm="graph_norm"), graph, engine="local", progress=False)
    for kwargs, match in [
        ({"optimizer": "lbfgs"}, r"optimizer='lbfgs' is not supported"),
        ({"epochs": 0}, r"epochs must be a positive integer, found 0"),
        ({"engine": "dask"}, r"engine='dask' is not one of"),
        ({"num_partitions": 0}, r"num_partitions must be a positive integer"),
        ({"lr": -1.0}, r"lr must be > 0"),
    ]:
        with pytest.raises(LotanError, match=match):
            lotan.fit(GCN(3, 4, 2, 2), graph, progress=False, **kwargs)


def test_preparation_is_cached_and_released(spark) -> None:
    graph = CASES["disconnected"]()
    torch.manual_seed(0)
    model = GCN(graph.num_features, 4, 2, 3)
    lotan.fit(model, graph, epochs=1, engine="spark", num_partitions=2, spark=spark, progress=False)
    # The layouts, and the layouts with the cached aggregation ÂX of this plan.
    runners = list(graph.preparations.values())
    assert len(runners) == 2
    lotan.fit(model, graph, epochs=1, engine="spark", num_partitions=2, spark=spark, progress=False)
    assert list(graph.preparations.values()) == runners  # reused, not re-prepared
    dirs = [d for r in runners for d in (r.store.base, *r.store.extra)]
    assert all(os.path.isdir(d) for d in dirs)  # the layout files of each
    graph.unpersist()
    assert not graph.preparations and all(r.store is None for r in runners)
    assert not any(os.path.exists(d) for d in dirs)


def test_explain_checks_the_partition_count_too() -> None:
    graph = lotan.Graph.from_arrays(**_arrays())
    with pytest.raises(GraphInputError, match=r"num_partitions=9 is more than the graph's 6"):
        lotan.explain(GCN(3, 4, 2, 2), graph, num_partitions=9, print_=False)
    text = lotan.explain(GCN(3, 4, 2, 2), graph, num_partitions=2, print_=False)
    assert "== Physical plan ==" in text and "replication factor" in text
