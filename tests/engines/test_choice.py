"""``engine="auto"``: which engine runs, why, and that the choice never changes the result."""

from __future__ import annotations

import copy
import io
from typing import Any

import pandas as pd
import pytest
import torch
from torch_geometric.nn.models import GCN

import lotan
from lotan.engines.choice import choose_engine
from lotan.planner.estimates import local_working_set
from lotan.planner.lowering import lower_model
from lotan.planner.placement import Placement


def _graph() -> lotan.Graph:
    return lotan.datasets.sbm(300, num_classes=3, num_features=6, avg_degree=5, seed=4)


def _model() -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(6, 8, 2, 3, dropout=0.5)


def _plan(model: torch.nn.Module, graph: lotan.Graph) -> Any:
    return lower_model(model, graph.num_features, graph.has_edge_weight)


def test_a_small_graph_with_a_local_session_runs_locally(spark: Any) -> None:
    g = _graph()
    choice = choose_engine("auto", g, [_plan(_model(), g)], spark)
    assert choice.name == "local" and choice.auto
    assert "a local Spark session (local[2])" in choice.reason
    assert "local budget" in choice.describe()


def test_asked_for_is_kept_and_said() -> None:
    g = _graph()
    for name in ("spark", "local"):
        choice = choose_engine(name, g, [])
        assert choice.name == name and not choice.auto
        assert choice.describe() == f"{name} engine (asked for: engine={name!r})"
    with pytest.raises(lotan.LotanError, match=r"engine='gpu' is not one of \['auto'"):
        choose_engine("gpu", g, [])


def test_over_the_budget_spark_runs_it(spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    g = _graph()
    monkeypatch.setenv("LOTAN_LOCAL_MEMORY", "64k")
    choice = choose_engine("auto", g, [_plan(_model(), g)], spark)
    assert choice.name == "spark"
    assert "does not fit in this process" in choice.reason and "local budget 0.1 MiB" in (
        choice.reason
    )
    monkeypatch.setenv("LOTAN_LOCAL_MEMORY", "lots")
    with pytest.raises(lotan.LotanError, match="LOTAN_LOCAL_MEMORY must be bytes"):
        choose_engine("auto", g, [_plan(_model(), g)], spark)


def test_spark_held_graphs_and_split_placement_take_spark(spark: Any) -> None:
    g = _graph()
    held = lotan.Graph.from_dataframes(*g.dataframes(spark))
    assert choose_engine("auto", held, [], spark).reason == "the graph is held in Spark DataFrames"
    split = choose_engine("auto", g, [], spark, Placement("split", 0.0, 1))
    assert split.name == "spark" and "placement='split'" in split.reason


def test_the_estimate_counts_the_graph_and_every_model() -> None:
    g = _graph()
    a = g.arrays()
    one = local_working_set(g, [_plan(_model(), g)])
    two = local_working_set(g, [_plan(_model(), g)] * 2)
    assert one >= a.x.nbytes + a.src.nbytes + a.dst.nbytes
    assert two > one


def test_auto_trains_like_either_engine(spark: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The same run three ways: auto (local here), auto pushed to Spark by a tiny budget,
    and engine="local": the same weights and history; the choice is printed first."""
    g = _graph()
    kw: dict[str, Any] = {"epochs": 3, "num_partitions": 2, "spark": spark, "seed": 2}
    out = io.StringIO()
    monkeypatch.setattr("sys.stdout", out)
    auto = lotan.fit(_model(), g, **kw)
    monkeypatch.undo()
    assert auto.engine is not None and auto.engine.name == "local"
    first = out.getvalue().splitlines()[0]
    assert first == f"lotan: {auto.engine.describe()}"
    monkeypatch.setenv("LOTAN_LOCAL_MEMORY", "1k")
    on_spark = lotan.fit(_model(), g, progress=False, **kw)
    assert on_spark.engine is not None and on_spark.engine.name == "spark"
    local = lotan.fit(_model(), g, engine="local", progress=False, **kw)
    for res in (on_spark, local):
        for (name, p), q in zip(
            auto.model.state_dict().items(), res.model.state_dict().values(), strict=True
        ):
            torch.testing.assert_close(p, q, rtol=1e-5, atol=1e-6, msg=name)
        assert [r.loss for r in res.history] == pytest.approx(
            [r.loss for r in auto.history], rel=1e-5
        )


def test_predict_returns_what_the_chosen_engine_makes(
    spark: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    g = _graph()
    model = _model()
    local = lotan.predict(model, g, num_partitions=2, spark=spark)
    assert isinstance(local, pd.DataFrame)
    monkeypatch.setenv("LOTAN_LOCAL_MEMORY", "1k")
    remote = lotan.predict(model, g, num_partitions=2, spark=spark).toPandas()
    assert (remote.sort_values("id")["prediction"].to_numpy() == local["prediction"]).all()


def test_explain_and_fit_many_say_which_engine(spark: Any) -> None:
    g = _graph()
    text = lotan.explain(_model(), g, num_partitions=2, spark=spark, print_=False)
    assert text.startswith("== Engine ==\nlocal engine (engine='auto': a local Spark session")
    text = lotan.explain(
        [_model(), _model()], g, engine="spark", num_partitions=2, spark=spark, print_=False
    )
    assert text.startswith("== Engine ==\nspark engine (asked for: engine='spark')")
    models = [_model(), copy.deepcopy(_model())]
    grid = lotan.fit_many(models, g, epochs=2, num_partitions=2, progress=False)
    assert all(r.engine is not None and r.engine.name == "local" for r in grid.results)
