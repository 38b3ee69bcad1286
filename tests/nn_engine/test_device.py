"""Where dense work runs: the task's GPU when Spark assigned one and CUDA works, else the CPU;
the same values either way (checked on the CPU path here; on a GPU by bench/gpu_check.py)."""

from __future__ import annotations

import pytest
import torch

from lotan.errors import EngineError
from lotan.ir.nodes import Node
from lotan.nn_engine.dense import DenseGraph
from lotan.nn_engine.device import select_device, task_device


def test_select_device() -> None:
    cpu = torch.device("cpu")
    assert select_device("auto", ["3"], cuda_available=True) == torch.device("cuda:3")
    assert select_device("auto", ["3"], cuda_available=False) == cpu  # assigned, unusable
    assert select_device("auto", [], cuda_available=True) == cpu  # a CPU-only task
    assert select_device("cpu", ["0"], cuda_available=True) == cpu
    assert select_device("cuda:1", [], cuda_available=True) == torch.device("cuda:1")
    with pytest.raises(EngineError, match="CUDA is not available"):
        select_device("cuda", [], cuda_available=False)
    with pytest.raises(EngineError, match="is not one of auto, cpu, cuda"):
        select_device("tpu", [], cuda_available=True)


def test_outside_a_spark_task_dense_work_runs_on_the_cpu(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.delenv("LOTAN_DENSE_DEVICE", raising=False)
    if not torch.cuda.is_available():
        assert task_device() == torch.device("cpu")
    monkeypatch.setenv("LOTAN_DENSE_DEVICE", "cpu")
    assert task_device() == torch.device("cpu")


def test_an_explicit_cpu_device_changes_nothing() -> None:
    graph = DenseGraph(
        (
            Node(2, "linear", (0,), 4, param="w"),
            Node(3, "act", (2,), 4, act="relu"),
            Node(4, "dropout", (3,), 4, p=0.5),
        )
    )
    params = {"w": torch.randn(4, 3)}
    x = {0: torch.randn(5, 3)}
    a = graph.forward(params, x, train=True, seed=3)
    b = graph.forward(params, x, train=True, seed=3, device=torch.device("cpu"))
    assert torch.equal(a[4], b[4])
    g = {4: torch.randn(5, 4)}
    ga = graph.backward(params, x, g, train=True, seed=3, input_grads=[0])
    gb = graph.backward(
        params, x, g, train=True, seed=3, input_grads=[0], device=torch.device("cpu")
    )
    assert torch.equal(ga[0][0], gb[0][0]) and torch.equal(ga[1]["w"], gb[1]["w"])
