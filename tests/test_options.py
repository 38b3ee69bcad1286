"""The settings of a run are declared once (lotan.options) and every face takes each of them:
``fit`` by keyword, a job by key, the ``lotan`` command by flag, ``GNNEstimator`` by Param;
``predict``, ``explain`` and ``fit_many`` take theirs. An engine (or optimizer) may be passed
as an object instead of its keywords, with the same result."""

from __future__ import annotations

import inspect
from typing import Any

import pytest
import torch
from torch_geometric.nn.models import GCN

import lotan
from lotan.options import FIT_KEYWORDS, FitConfig, keyword_type
from tests.graph_cases import CASES

#: A value other than the default for every setting a face other than Python takes.
OTHER_VALUES: dict[str, Any] = {
    "epochs": 7,
    "seed": 3,
    "patience": 4,
    "monitor": "loss",
    "eval_every": 2,
    "progress": False,
    "optimizer": "sgd",
    "lr": 0.05,
    "weight_decay": 0.001,
    "momentum": 0.9,
    "checkpoint_dir": "runs/x",
    "checkpoint_every": 5,
    "resume": True,
    "num_partitions": 3,
    "partitioner": "label_propagation",
    "placement": "split",
    "dense_gpus": 0.5,
    "dense_cpus": 2,
    "exchange_dtype": "bfloat16",
    "engine": "local",
    "planner": lotan.PlannerFlags(reorder=False, edge_block_mb=64.0),
}
PORTABLE = [kw for kw, _, _, decl in FIT_KEYWORDS if decl.python_only is None]


def _keywords(fn: Any) -> set[str]:
    return {n for n, p in inspect.signature(fn).parameters.items() if p.kind is p.KEYWORD_ONLY}


def test_fit_takes_exactly_the_declared_settings() -> None:
    assert _keywords(lotan.fit) == {kw for kw, *_ in FIT_KEYWORDS}
    assert set(OTHER_VALUES) == set(PORTABLE)
    config = FitConfig.from_keywords(**OTHER_VALUES)
    assert {k: v for k, v in config.keywords().items() if k in PORTABLE} == OTHER_VALUES


def test_the_other_python_faces_take_their_settings() -> None:
    fit = _keywords(lotan.fit)
    engine = {kw for kw, part, _, _ in FIT_KEYWORDS if part == "engine"} | {"planner"}
    assert _keywords(lotan.predict) == engine
    assert _keywords(lotan.explain) == engine | {"memory_budget", "print_"}
    optimizer = {"optimizer", "lr", "weight_decay", "momentum"}
    checkpoints = {"checkpoint_dir", "checkpoint_every", "resume"}
    many = _keywords(lotan.fit_many)
    assert many == (fit - optimizer - checkpoints) | {"optimizers", "pairing", "memory_budget"}


def test_a_job_takes_every_setting() -> None:
    from lotan.job import FIT_KEYS, load_job

    assert list(FIT_KEYS) == PORTABLE
    data = {"graph": {"planetoid": "Cora"}, "model": {"name": "GCN", "hidden_channels": 4}}
    values = {**OTHER_VALUES, "planner": {"reorder": False, "edge_block_mb": 64.0}}
    job = load_job(None, data={**data, **values})
    got = {k: v for k, v in job.fit.keywords().items() if k in PORTABLE}
    assert got == OTHER_VALUES


def test_the_command_has_a_flag_for_every_setting(tmp_path: Any) -> None:
    from lotan.cli import _parser, _setting_flags
    from lotan.job import load_job

    parser = _parser()
    argv = ["fit", "--config", "job.yaml"]
    for key, value in OTHER_VALUES.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            argv.append(flag if value else f"--no-{key.replace('_', '-')}")
        elif key == "planner":
            argv += [flag, "{reorder: false, edge_block_mb: 64.0}"]
        else:
            argv += [flag, str(value)]
    args = parser.parse_args(argv)
    data = {"graph": {"planetoid": "Cora"}, "model": {"name": "GCN", "hidden_channels": 4}}
    job = load_job(None, _setting_flags(args), data=data)
    got = {k: v for k, v in job.fit.keywords().items() if k in PORTABLE}
    assert got == OTHER_VALUES
    for command in ("explain", "predict"):
        sub = parser.parse_args([command, "--config", "j.yaml", "--epochs", "2"]
                                + (["--checkpoint", "c", "--output", "o"] if command == "predict"
                                   else []))  # fmt: skip
        assert _setting_flags(sub) == ["epochs=2"]


def test_the_estimator_has_a_param_for_every_setting() -> None:
    from lotan.ml import SETTINGS

    assert list(SETTINGS) == PORTABLE
    est = lotan.GNNEstimator(model=GCN(3, 4, 2, 2), **OTHER_VALUES)
    for key in PORTABLE:
        assert est.hasParam(key), key
        assert keyword_type(key)  # every setting's type has a converter (or this raised)
    got = {k: v for k, v in est.fit_config().keywords().items() if k in PORTABLE}
    assert got == OTHER_VALUES
    default = lotan.GNNEstimator(model=GCN(3, 4, 2, 2)).fit_config()
    assert default.engine.kind == "spark" and default.training.progress is False
    with pytest.raises(lotan.LotanError, match=r"unknown setting\(s\) \['learning_rate'\]"):
        lotan.GNNEstimator(model=GCN(3, 4, 2, 2), learning_rate=0.1)
    with pytest.raises(lotan.LotanError, match="eval_every must be a positive integer"):
        lotan.GNNEstimator(model=GCN(3, 4, 2, 2), eval_every=0)


def _gcn(graph: lotan.Graph) -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(graph.num_features, 8, 2, 3, dropout=0.5)


def test_an_engine_object_trains_like_its_keywords() -> None:
    graph = CASES["disconnected"]()
    by_keywords, by_object = _gcn(graph), _gcn(graph)
    a = lotan.fit(by_keywords, graph, epochs=3, engine="local", num_partitions=2,
                  partitioner="label_propagation", progress=False)  # fmt: skip
    local = lotan.Local(partitions=2, partitioner="label_propagation")
    b = lotan.fit(by_object, graph, epochs=3, engine=local, progress=False)
    assert [r.loss for r in a.history] == [r.loss for r in b.history]
    for (name, p), q in zip(by_keywords.state_dict().items(), by_object.state_dict().values(),
                            strict=True):  # fmt: skip
        assert torch.equal(p, q), name
    assert b.config.engine == local and b.num_partitions == 2
    opt = lotan.OptimizerConfig("sgd", lr=0.1, momentum=0.9)
    c = lotan.fit(_gcn(graph), graph, epochs=1, engine="local", optimizer=opt, progress=False)
    assert c.config.optimizer == opt


def test_an_engine_object_and_its_keywords_do_not_mix() -> None:
    graph = CASES["disconnected"]()
    with pytest.raises(lotan.LotanError, match=r"\['num_partitions'\] given next to the engine"):
        lotan.fit(_gcn(graph), graph, engine=lotan.Local(partitions=2), num_partitions=3)
    with pytest.raises(lotan.LotanError, match=r"\['lr'\] given next to the optimizer"):
        lotan.fit(_gcn(graph), graph, optimizer=lotan.OptimizerConfig("sgd"), lr=0.5)
    with pytest.raises(lotan.LotanError, match="engine must be one of"):
        lotan.fit(_gcn(graph), graph, engine=3)  # type: ignore[arg-type]
    with pytest.raises(lotan.LotanError, match=r"unknown planner flag\(s\) \['fusion'\]"):
        lotan.fit(_gcn(graph), graph, planner={"fusion": False})  # type: ignore[arg-type]
