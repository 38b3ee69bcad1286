"""Stage-level scheduling of dense stages (``placement="split"``).

A dense stage's tasks ask for ``{"cpus": c, "gpu": g}`` (:meth:`Placement.task_request`); this
module turns that into the :class:`pyspark.resource.ResourceProfile` its ``mapInArrow`` runs
under. What Spark can do depends on the cluster manager and on dynamic allocation:

- **local mode**: no stage-level scheduling; dense stages run in Spark stages of their own on
  the local executor, with the default resources (their tasks get no GPU; dense work runs on
  the CPU, or on ``LOTAN_DENSE_DEVICE``).
- **dynamic allocation on** (standalone, YARN, Kubernetes; with shuffle tracking or an
  external shuffle service): a full profile. Spark starts executors for it — ``c`` cores per
  task slot and ``ceil(g)`` GPUs each — on workers that have GPUs, while graph stages keep
  running on the default (CPU) executors. This is the decoupled layout.
- **dynamic allocation off**: a task-only profile; dense tasks run on the default executors
  that have the GPUs they ask for, so every executor needs GPUs
  (``spark.executor.resource.gpu.amount``). Graph tasks then use every core, dense tasks only
  as many as there are GPUs.

A profile is registered once per application and then *probed*: one task is run under it and
must start within ``spark.lotan.dense.startTimeout`` seconds (default 300). A cluster that
cannot start such an executor (no worker advertises enough GPUs, no free cores beside them)
would otherwise leave the epoch waiting forever; the probe turns that into an error that says
what to set.
"""

from __future__ import annotations

import math
import threading
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from lotan.errors import EngineError
from lotan.planner.placement import describe_request

if TYPE_CHECKING:
    from pyspark.resource import ResourceProfile
    from pyspark.sql import SparkSession

__all__ = ["START_TIMEOUT_CONF", "dense_profile"]

#: Seconds a dense stage's first task may wait for an executor before Lotan gives up.
START_TIMEOUT_CONF = "spark.lotan.dense.startTimeout"
DEFAULT_START_TIMEOUT = 300.0

#: (application id, request) -> profile (None: local mode), so that every epoch reuses the
#: same profile (a new profile would start new executors).
_PROFILES: dict[tuple[str, tuple[tuple[str, float], ...]], Any] = {}
_LOCK = threading.Lock()


def _conf_flag(conf: Any, key: str) -> bool:
    return str(conf.get(key, "false")).strip().lower() == "true"


def _build(spark: SparkSession, request: Mapping[str, float]) -> ResourceProfile:
    from pyspark.resource import (
        ExecutorResourceRequests,
        ResourceProfileBuilder,
        TaskResourceRequests,
    )

    conf = spark.sparkContext.getConf()
    cpus, gpus = int(request["cpus"]), float(request.get("gpu", 0.0))
    tasks = TaskResourceRequests().cpus(cpus)
    if gpus:
        tasks.resource("gpu", gpus)
    builder = ResourceProfileBuilder().require(tasks)
    if _conf_flag(conf, "spark.dynamicAllocation.enabled"):
        executor_gpus = math.ceil(gpus)
        slots = round(executor_gpus / gpus) if gpus else 1  # tasks sharing an executor's GPUs
        executors = ExecutorResourceRequests().cores(cpus * slots)
        memory = conf.get("spark.executor.memory")
        if memory:
            executors.memory(memory)
        if gpus:
            executors.resource(
                "gpu",
                executor_gpus,
                discoveryScript=conf.get("spark.executor.resource.gpu.discoveryScript", ""),
                vendor=conf.get("spark.executor.resource.gpu.vendor", ""),
            )
        builder.require(executors)
    elif gpus and not float(conf.get("spark.executor.resource.gpu.amount", "0") or 0):
        raise EngineError(
            f"placement='split' asks for {gpus:g} GPU per dense task, but dynamic allocation is "
            "off and the executors have no GPUs: either let Spark start GPU executors for "
            "the dense stages (spark.dynamicAllocation.enabled=true, "
            "spark.dynamicAllocation.shuffleTracking.enabled=true), or give every executor "
            "GPUs (spark.executor.resource.gpu.amount, with a discovery script), or set "
            "dense_gpus=0"
        )
    return builder.build


def _probe(spark: SparkSession, profile: ResourceProfile, request: Mapping[str, float]) -> None:
    """Run one task under ``profile``; raise if none starts within the timeout."""
    from pyspark import InheritableThread

    sc = spark.sparkContext
    timeout = float(sc.getConf().get(START_TIMEOUT_CONF, str(DEFAULT_START_TIMEOUT)))
    group = f"lotan-dense-probe-{uuid.uuid4().hex[:8]}"
    outcome: dict[str, Any] = {}

    def run() -> None:
        sc.setJobGroup(group, "lotan · starting executors for the dense stages", True)
        try:
            outcome["gpus"] = (
                sc.parallelize([0], 1).withResources(profile).map(_assigned_gpus).collect()
            )
        except Exception as exc:  # reported on the driver's thread below
            outcome["error"] = exc

    worker = InheritableThread(target=run, daemon=True)
    worker.start()
    worker.join(timeout)
    if worker.is_alive():
        sc.cancelJobGroup(group)
        worker.join(60)
        raise EngineError(
            f"placement='split': no executor could run a dense task asking for "
            f"{describe_request(request)} within {timeout:g} s ({START_TIMEOUT_CONF}). Spark "
            "starts executors for the dense stages only on workers that advertise enough "
            "GPUs (standalone: spark.worker.resource.gpu.amount and "
            "spark.worker.resource.gpu.discoveryScript) and have cores free beside the "
            "graph stages' executors (cap those with spark.dynamicAllocation.maxExecutors); "
            "check the master's UI for waiting executors, lower dense_gpus, or use "
            "placement='fused'"
        )
    if "error" in outcome:
        first = str(outcome["error"]).strip().splitlines()[0][:500]
        raise EngineError(
            f"placement='split': Spark could not run a dense task asking for "
            f"{describe_request(request)}: {first}"
        ) from outcome["error"]


def _assigned_gpus(_: Any) -> list[str]:
    from pyspark import TaskContext

    ctx = TaskContext.get()
    gpu = ctx.resources().get("gpu") if ctx is not None else None
    return list(gpu.addresses) if gpu is not None else []


def dense_profile(spark: SparkSession, request: Mapping[str, float]) -> ResourceProfile | None:
    """The resource profile of dense stages asking for ``request`` (registered and probed
    once per application); None in local mode, where Spark has no stage-level scheduling."""
    from lotan.engines.spark.session import is_connect, master_of

    if master_of(spark).startswith("local"):
        return None
    if is_connect(spark):
        raise EngineError(
            "placement='split' runs the dense stages under a resource profile of their own "
            "(stage-level scheduling), which a Spark Connect client cannot register; use "
            "placement='fused', or run the job on a classic session (spark-submit)"
        )
    sc = spark.sparkContext
    key = (str(sc.applicationId), tuple(sorted((k, float(v)) for k, v in request.items())))
    with _LOCK:
        if key not in _PROFILES:
            profile = _build(spark, request)
            _probe(spark, profile, request)
            _PROFILES[key] = profile
        return _PROFILES[key]
