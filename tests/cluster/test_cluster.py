"""Lotan as an ordinary Spark application on a real standalone cluster (a master and two
workers on 127.0.0.1): a job sent with ``spark-submit`` equals the local-mode result, survives
a worker killed mid-epoch, and a killed driver resumes from its checkpoint to the same weights.
"""

from __future__ import annotations

import os
import signal
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import lotan
from lotan.job import load_job
from lotan.training.checkpoint import load_latest
from tests.cluster.standalone import StandaloneCluster

EPOCHS = 8
JOB = {
    "graph": {
        "sbm": {
            "num_vertices": 4000,
            "num_classes": 4,
            "num_features": 16,
            "avg_degree": 8,
            "seed": 0,
        }
    },
    "model": {"name": "GCN", "hidden_channels": 16, "num_layers": 2, "dropout": 0.5},
    "epochs": EPOCHS,
    "lr": 0.02,
    "weight_decay": 5e-4,
    "engine": "spark",
    "num_partitions": 2,
    "checkpoint_every": 1,
}
TIMEOUT = 600


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    c = StandaloneCluster(tmp_path_factory.mktemp("cluster"), workers=2, cores=1, memory="2g")
    try:
        yield c.start()
    finally:
        c.stop()


@pytest.fixture(scope="module")
def job_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("job") / "job.yaml"
    path.write_text(yaml.safe_dump(JOB))
    return path


def _conf(tmp: Path) -> dict[str, str]:
    return {"spark.lotan.cacheDir": str(tmp / "cache"), "spark.sql.shuffle.partitions": "4"}


def _final(ckpt: Path) -> dict[str, torch.Tensor]:
    state = load_latest(ckpt)
    assert state is not None and state["complete"], f"no finished checkpoint in {ckpt}"
    weights: dict[str, torch.Tensor] = state["trainers"][0]["final"]
    return weights


def _run(cluster: StandaloneCluster, job: Path, tmp: Path, *extra: str) -> str:
    args = ["fit", "--config", str(job), "--set", f"checkpoint_dir={tmp / 'ckpt'}", *extra]
    proc = cluster.submit(args, _conf(tmp), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=TIMEOUT)
    assert proc.returncode == 0, out[-3000:]
    return out


@pytest.fixture(scope="module")
def uninterrupted(
    cluster: StandaloneCluster, job_file: Path, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, torch.Tensor]:
    tmp = tmp_path_factory.mktemp("uninterrupted")
    out = _run(cluster, job_file, tmp, "--set", "engine=auto")
    assert f"trained {EPOCHS} epochs" in out
    # engine=auto under spark-submit to a cluster takes Spark, and says so
    assert (
        "spark engine (engine='auto': the Spark session runs on a cluster (master spark://" in out
    )
    return _final(tmp / "ckpt")


def test_spark_submit_equals_local_mode(
    uninterrupted: dict[str, torch.Tensor], job_file: Path, spark: Any
) -> None:
    job = load_job(job_file)
    graph = job.load_graph()
    model = job.build_model(graph)
    settings = {**job.fit.keywords(), "progress": False, "checkpoint_dir": None, "spark": spark}
    lotan.fit(model, graph, **settings)
    for name, p in model.state_dict().items():
        torch.testing.assert_close(uninterrupted[name], p, rtol=1e-5, atol=1e-6)


def _wait_for(proc: subprocess.Popen[str], text: str, lines: list[str]) -> None:
    """Read ``proc``'s output until a line contains ``text``."""
    assert proc.stdout is not None
    deadline = time.monotonic() + TIMEOUT
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            raise AssertionError("the job ended before: " + "".join(lines[-30:]))
        lines.append(line)
        if text in line:
            return
    raise TimeoutError(text)


def test_a_worker_killed_mid_epoch(
    cluster: StandaloneCluster,
    job_file: Path,
    uninterrupted: dict[str, torch.Tensor],
    tmp_path: Path,
) -> None:
    args = ["fit", "--config", str(job_file), "--set", f"checkpoint_dir={tmp_path / 'ckpt'}"]
    proc = cluster.submit(args, _conf(tmp_path), stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    lines: list[str] = []
    try:
        _wait_for(proc, "epoch    3/", lines)  # epoch 4 is running now
        cluster.kill_worker(0)
        out, _ = proc.communicate(timeout=TIMEOUT)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    text = "".join(lines) + out
    assert proc.returncode == 0, text[-3000:]
    assert "Lost executor" in text, text[-3000:]  # Spark saw the worker go
    assert f"trained {EPOCHS} epochs" in text
    got = _final(tmp_path / "ckpt")
    for name, p in uninterrupted.items():
        assert torch.equal(got[name], p), name
    cluster.restart_worker(0)


def test_a_killed_driver_resumes(
    cluster: StandaloneCluster,
    job_file: Path,
    uninterrupted: dict[str, torch.Tensor],
    tmp_path: Path,
) -> None:
    ckpt = tmp_path / "ckpt"
    args = ["fit", "--config", str(job_file), "--set", f"checkpoint_dir={ckpt}"]
    proc = cluster.submit(
        args, _conf(tmp_path), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + TIMEOUT
        while not (ckpt / "epoch-000003.pt").exists():
            assert proc.poll() is None, "the job ended before its third checkpoint"
            assert time.monotonic() < deadline
            time.sleep(0.05)
    finally:
        os.killpg(proc.pid, signal.SIGKILL)  # the driver JVM and its Python process
        proc.wait()
    state = load_latest(ckpt)
    assert state is not None and not state["complete"] and 3 <= state["epoch"] < EPOCHS
    out = _run(cluster, job_file, tmp_path, "--resume")
    assert f"resumed after epoch {state['epoch']}" in out
    got = _final(ckpt)
    for name, p in uninterrupted.items():
        assert torch.equal(got[name], p), name
