"""The Spark tax: what the Spark engine's epoch costs beyond the local engine's, by graph size.

    python -m bench.spark_tax [--graphs sbm10k,sbm100k] [--partitions 2,2] [--epochs 6]
                              [--partitioner hash] [--exchange-dtype float32] [--eval-every 1]
                              [--json out.json]

For each graph (the synthetic SBM of the bench, 128 features, 16 classes, degree 20), one
process trains ``GCN(128, 128, 2, 16, dropout=0.5)`` from the same weights with the local
engine and with the Spark engine (``local[*]``, the given partitions), and reports the
median epoch of both (epochs 3 on), their ratio, and where a Spark epoch goes:

- ``set-up``: building the run's query on the driver (:meth:`SparkRunner.run`: the
  broadcast, one ``mapInArrow`` per stage);
- ``job``: the Spark job, of which ``tasks`` is the task time summed over tasks divided by
  the tasks that run at once (``min(partitions, cores)``) and the rest is Spark's own
  (scheduling, shuffle, Arrow transfer between the JVM and the Python workers);
- ``driver``: the rest of the epoch (gradients reduced, the optimizer step, history);
- ``MB``: bytes written to Spark's shuffle per run, averaged over the epochs and the final
  evaluation run (which has no backward pass, so an epoch shuffles a little more); Spark's
  task metrics, from the REST API of the driver's UI on 127.0.0.1.

It uses only what every version of the runner has (``SparkRunner.run``,
``RunResult.collect_driver``), so that the same script measures an older checkout (the
Python workers import the installed ``lotan``, so check the commit out where it is
installed: ``cp bench/spark_tax.py /tmp && git checkout <commit> && python
/tmp/spark_tax.py; git checkout main``).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import torch
from torch_geometric.nn.models import GCN

import lotan
from lotan.engines.spark import runner as spark_runner

_SIZES = {"sbm10k": 10_000, "sbm100k": 100_000, "sbm1m": 1_000_000}


class _Timers:
    """Seconds spent in the runner's set-up and in its jobs, per epoch (wraps both)."""

    def __init__(self) -> None:
        self.setup: list[float] = []
        self.job: list[float] = []

    def install(self) -> None:
        timers = self
        run = spark_runner.SparkRunner.run
        collect = spark_runner.RunResult.collect_driver

        def timed_run(self: Any, *args: Any, **kw: Any) -> Any:
            start = time.perf_counter()
            out = run(self, *args, **kw)
            timers.setup.append(time.perf_counter() - start)
            return out

        def timed_collect(self: Any) -> Any:
            start = time.perf_counter()
            out = collect(self)
            timers.job.append(time.perf_counter() - start)
            return out

        spark_runner.SparkRunner.run = timed_run  # type: ignore[method-assign]
        spark_runner.RunResult.collect_driver = timed_collect  # type: ignore[method-assign]


def _shuffle_bytes(spark: Any) -> Callable[[], int]:
    """A function that returns the shuffle bytes written since it was made."""
    sc = spark.sparkContext
    url, app = sc.uiWebUrl, sc.applicationId

    def total() -> int:
        if not url:
            return 0
        with urllib.request.urlopen(f"{url}/api/v1/applications/{app}/stages") as r:
            return sum(int(s.get("shuffleWriteBytes", 0)) for s in json.load(r))

    start = total()
    return lambda: total() - start


#: ``fit`` settings beyond the defaults (``--partitioner``, ``--exchange-dtype``,
#: ``--eval-every``); only those
#: given, so that the script still runs on checkouts that lack them.
_EXTRA: dict[str, Any] = {}


def _fit(graph: lotan.Graph, engine: str, parts: int, epochs: int) -> lotan.FitResult:
    torch.manual_seed(0)
    model = GCN(128, 128, 2, 16, dropout=0.5)
    return lotan.fit(
        model,
        graph,
        engine=engine,
        num_partitions=parts,
        epochs=epochs,
        progress=False,
        seed=0,
        **_EXTRA,
    )


def measure(name: str, parts: int, epochs: int) -> dict[str, Any]:
    from lotan.engines.spark.session import get_spark

    graph = lotan.datasets.sbm(
        _SIZES[name], num_classes=16, num_features=128, avg_degree=20, seed=0
    )
    local = _fit(graph, "local", parts, epochs)
    spark = get_spark()
    timers = _Timers()
    timers.install()
    # Preparation (and its runs) first, so that the timers below hold epochs only.
    _fit(graph, "spark", parts, 1)
    timers.setup.clear()
    timers.job.clear()
    shuffled = _shuffle_bytes(spark)
    result = _fit(graph, "spark", parts, epochs)
    mb = shuffled() / 2**20 / (epochs + 1)  # the epochs and the final evaluation
    skip = 2  # the first epochs warm up
    spark_epochs = [r.seconds for r in result.history][skip:]
    local_epochs = [r.seconds for r in local.history][skip:]
    epoch = statistics.median(spark_epochs)
    setup = statistics.median(timers.setup[skip:epochs])
    job = statistics.median(timers.job[skip:epochs])
    driver = statistics.median(
        r.seconds - a - b
        for r, a, b in zip(
            result.history[skip:], timers.setup[skip:], timers.job[skip:], strict=False
        )
    )
    concurrent = min(parts, os.cpu_count() or 1)
    tasks = statistics.median(r.phases.get("task", 0.0) for r in result.history[skip:])
    tasks /= concurrent
    same = [a.loss for a in local.history] == [b.loss for b in result.history]
    return {
        "graph": name,
        "partitions": parts,
        "local_epoch_s": statistics.median(local_epochs),
        "spark_epoch_s": epoch,
        "ratio": epoch / statistics.median(local_epochs),
        "setup_s": setup,
        "job_s": job,
        "tasks_s": tasks,
        "spark_rest_s": job - tasks,
        "driver_s": driver,
        "shuffle_mb": mb,
        "same_losses": same,
    }


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "-C", os.path.dirname(lotan.__file__), "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            check=True,
        )
        return out.stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "?"


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", default="sbm10k,sbm100k")
    ap.add_argument("--partitions", default="2,2")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--partitioner", default="hash")
    ap.add_argument("--exchange-dtype", default="float32")
    ap.add_argument("--eval-every", type=int, default=1)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    if args.partitioner != "hash":
        _EXTRA["partitioner"] = args.partitioner
    if args.exchange_dtype != "float32":
        _EXTRA["exchange_dtype"] = args.exchange_dtype
    if args.eval_every != 1:
        _EXTRA["eval_every"] = args.eval_every
    graphs = args.graphs.split(",")
    parts = [int(p) for p in args.partitions.split(",")]
    commit = _commit()
    rows = [measure(g, p, args.epochs) for g, p in zip(graphs, parts, strict=True)]
    print(f"lotan at {commit}" + (f", {_EXTRA}" if _EXTRA else ""))
    print(
        "| graph | parts | local | Spark | Spark ÷ local | set-up | job | tasks | Spark rest "
        "| driver | MB shuffled | same losses |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for r in rows:
        print(
            f"| {r['graph']} | {r['partitions']} | {r['local_epoch_s']:.3f} s | "
            f"{r['spark_epoch_s']:.3f} s | {r['ratio']:.2f} | {r['setup_s']:.3f} s | "
            f"{r['job_s']:.3f} s | {r['tasks_s']:.3f} s | {r['spark_rest_s']:.3f} s | "
            f"{r['driver_s']:.3f} s | {r['shuffle_mb']:.1f} | {r['same_losses']} |"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump({"commit": commit, "rows": rows}, f, indent=1)


if __name__ == "__main__":
    main()
