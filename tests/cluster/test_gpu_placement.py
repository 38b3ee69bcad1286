"""``placement: split`` on a real standalone cluster whose workers differ: worker 0 advertises
two GPUs through a discovery script (addresses only: this machine has no GPU), worker 1 none.
With dynamic allocation Spark starts executors with a GPU for the dense stages — on worker 0
only — while graph stages run on the default, GPU-less executors. The job's result equals the
fused plan's, bit for bit; a request no worker can meet fails with a clear error, not a hang.

Where tasks ran is read from Spark's event log (executors with their resources and worker,
stages with their resource profile, tasks with their executor).
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

import lotan
from lotan.job import load_job
from tests.cluster.standalone import StandaloneCluster
from tests.cluster.test_cluster import JOB, TIMEOUT, _final

EPOCHS = 4
SPLIT_JOB = {**JOB, "epochs": EPOCHS, "placement": "split"}
DYNAMIC = {
    "spark.dynamicAllocation.enabled": "true",
    "spark.dynamicAllocation.shuffleTracking.enabled": "true",
    "spark.executor.cores": "1",
    # Per resource profile: graph executors cannot take every core of worker 0 (with shuffle
    # tracking they are kept while they hold shuffle files, i.e. for good).
    "spark.dynamicAllocation.maxExecutors": "2",
    "spark.sql.shuffle.partitions": "4",
    "spark.lotan.dense.startTimeout": "240",
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StandaloneCluster]:
    # Worker 0 has a core to spare beside the graph stages' executors for a GPU executor.
    c = StandaloneCluster(
        tmp_path_factory.mktemp("gpu-cluster"), workers=2, cores=[3, 2], memory="4g", gpus=[2]
    )
    try:
        yield c.start()
    finally:
        c.stop()


def _submit(
    cluster: StandaloneCluster, job: dict[str, Any], tmp: Path, **conf: str
) -> tuple[int, str]:
    path = tmp / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    args = ["fit", "--config", str(path), "--set", f"checkpoint_dir={tmp / 'ckpt'}"]
    settings = {**DYNAMIC, "spark.lotan.cacheDir": str(tmp / "cache"), **conf}
    proc = cluster.submit(args, settings, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    out, _ = proc.communicate(timeout=TIMEOUT)
    return proc.returncode, out


def _events(directory: Path) -> list[dict[str, Any]]:
    (log,) = [p for p in directory.iterdir() if not p.name.endswith(".inprogress")]
    return [json.loads(line) for line in log.read_text().splitlines() if line.strip()]


def test_split_places_dense_stages_on_gpu_workers(
    cluster: StandaloneCluster, tmp_path: Path, spark: Any
) -> None:
    events_dir = tmp_path / "events"
    events_dir.mkdir()
    code, out = _submit(
        cluster,
        SPLIT_JOB,
        tmp_path,
        **{
            "spark.eventLog.enabled": "true",
            "spark.eventLog.dir": events_dir.as_uri(),
            "spark.eventLog.rolling.enabled": "false",
            "spark.eventLog.compress": "false",
        },
    )
    assert code == 0, out[-3000:]
    assert f"trained {EPOCHS} epochs" in out

    # Every dense piece ran in a task that Spark gave a GPU (and, torch being a CPU build
    # here, on the CPU).
    (report,) = [line for line in out.splitlines() if line.startswith("dense work (split)")]
    pieces = int(report.split(": ")[1].split(" task pieces")[0])
    assert pieces > 0
    assert f"{pieces} in tasks Spark gave a GPU, 0 on CUDA" in report, report

    executors: dict[str, dict[str, Any]] = {}
    profile_of_stage: dict[int, int] = {}
    tasks: list[tuple[int, str]] = []
    for e in _events(events_dir):
        kind = e["Event"]
        if kind == "SparkListenerExecutorAdded":
            info = e["Executor Info"]
            executors[e["Executor ID"]] = {
                "profile": info["Resource Profile Id"],
                "gpus": info.get("Resources", {}).get("gpu", {}).get("addresses", []),
                "logs": " ".join(info.get("Log Urls", {}).values()),
            }
        elif kind == "SparkListenerStageSubmitted":
            stage = e["Stage Info"]
            profile_of_stage[stage["Stage ID"]] = stage["Resource Profile Id"]
        elif kind == "SparkListenerTaskEnd":
            tasks.append((e["Stage ID"], e["Task Info"]["Executor ID"]))

    gpu_worker = f":{cluster.worker_ui_ports[0]}/"
    dense = [(s, x) for s, x in tasks if profile_of_stage[s] != 0]
    other = [(s, x) for s, x in tasks if profile_of_stage[s] == 0]
    assert dense and other
    for _, x in dense:  # dense tasks: on GPU executors of worker 0, with an address each
        assert executors[x]["gpus"], executors[x]
        assert gpu_worker in executors[x]["logs"], executors[x]
    for _, x in other:  # graph tasks: on the default executors, which have no GPU
        assert executors[x]["profile"] == 0 and not executors[x]["gpus"], executors[x]
    # The default executors may run anywhere; the GPU ones only where GPUs are.
    assert all(gpu_worker in v["logs"] for v in executors.values() if v["gpus"])

    # The same result as the fused plan (here: in local mode, same partitions), bit for bit.
    job = load_job(tmp_path / "job.yaml")
    graph = job.load_graph()
    model = job.build_model(graph)
    settings = {
        **job.fit.keywords(),
        "placement": "fused",
        "progress": False,
        "checkpoint_dir": None,
        "spark": spark,
    }
    lotan.fit(model, graph, **settings)
    got = _final(tmp_path / "ckpt")
    for name, p in model.state_dict().items():
        assert torch.equal(got[name], p), name


def test_a_gpu_request_no_worker_can_meet_is_an_error(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """Three GPUs per dense task: no worker has them; Spark would wait forever."""
    job = {**SPLIT_JOB, "epochs": 1, "dense_gpus": 3}
    code, out = _submit(cluster, job, tmp_path, **{"spark.lotan.dense.startTimeout": "15"})
    assert code == 2, out[-3000:]
    assert "placement='split': no executor could run a dense task asking for 1 cpu, 3 gpu" in out
    assert "spark.worker.resource.gpu.amount" in out


def test_split_without_dynamic_allocation_uses_the_executors_gpus(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    """Dynamic allocation off: every executor has a GPU (so all start on worker 0) and dense
    tasks ask for one under a task-only profile, graph tasks for none."""
    job = {**SPLIT_JOB, "epochs": 1}
    code, out = _submit(
        cluster,
        job,
        tmp_path,
        **{
            "spark.dynamicAllocation.enabled": "false",
            "spark.executor.resource.gpu.amount": "1",
            "spark.cores.max": "2",
        },
    )
    assert code == 0, out[-3000:]
    (report,) = [line for line in out.splitlines() if line.startswith("dense work (split)")]
    pieces = int(report.split(": ")[1].split(" task pieces")[0])
    assert pieces > 0 and f"{pieces} in tasks Spark gave a GPU" in report, report


def test_split_without_dynamic_allocation_needs_executor_gpus(
    cluster: StandaloneCluster, tmp_path: Path
) -> None:
    job = {**SPLIT_JOB, "epochs": 1}
    code, out = _submit(cluster, job, tmp_path, **{"spark.dynamicAllocation.enabled": "false"})
    assert code == 2, out[-3000:]
    assert "dynamic allocation is off and the executors have no GPUs" in out, out[-3000:]
