"""What a Spark stage costs when it does nothing: runs of 1-4 no-op stages through Lotan's
Spark runner (routing, ``mapInArrow``, Arrow in and out, one message per partition), on a
small prepared graph; then what moving data costs: three stages whose tasks each send ``M``
MB (random float32, which does not compress, half to each partition of 2) to the next;
and, in the same session, a JVM-only shuffle of the same bytes (rows of 8 MB, as Lotan's
chunks, cached first, shuffled twice, summed in the JVM) for the cost per MB Spark itself
pays.

    python -m bench.spark_floor [--partitions 2] [--repeats 7] [--megabytes 0,32,128]

The floor bounds the Spark engine's epoch from below: a 2-layer GCN epoch with ``ÂX`` cached
is three stages. The cost per MB is what every exchanged byte adds.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import lotan
from lotan.engines.spark.engine import SparkEngine
from lotan.engines.spark.session import get_spark
from lotan.ir.norm import NormSpec
from lotan.runtime.message import DRIVER, Message, StageFn


def _noop(k: int, last: bool) -> StageFn:
    def stage(part: int, layout: Any, inbox: list[Message], value: Any) -> list[Message]:
        dest_stage = DRIVER if last else k + 1
        return [Message(dest_stage, part, part, "x", {"rows": np.zeros(3)})]

    return stage


def _send(k: int, last: bool, megabytes: float, parts: int) -> StageFn:
    floats = int(megabytes * 2**20 / 4 / parts)

    def stage(part: int, layout: Any, inbox: list[Message], value: Any) -> list[Message]:
        if last:
            return [Message(DRIVER, part, part, "x", {"rows": np.zeros(3)})]
        rows = np.random.default_rng(part).random(floats, np.float32)
        return [Message(k + 1, q, part, "x", {"rows": rows}) for q in range(parts)]

    return stage


def _time(runner: Any, stages: list[StageFn], repeats: int) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        result = runner.run(stages, None)
        result.collect_driver()
        result.close()
        times.append(time.perf_counter() - start)
    return statistics.median(times[1:])


def _jvm_shuffle(spark: Any, megabytes: float, parts: int, repeats: int) -> float:
    """Median seconds of two JVM-only shuffles of ``megabytes * parts`` MB of random float32
    (the payloads of :func:`_send`; cached beforehand, so that generating them is not
    timed)."""
    import pandas as pd
    from pyspark.sql import functions as F

    rows = max(0, round(megabytes * parts / 8))
    rng = np.random.default_rng(0)
    data = pd.DataFrame(
        {
            "id": np.arange(rows),
            "payload": [rng.random(2 << 20, np.float32).tobytes() for _ in range(rows)],
        }
    )
    df = spark.createDataFrame(data, "id long, payload binary") if rows else None
    if df is None:
        df = spark.range(0).select("id", F.lit(b"").alias("payload"))
    df = df.repartition(parts).cache()
    df.count()
    times = []
    for _ in range(repeats):
        q = df.repartition(parts, "id").repartition(parts, F.col("id") + 1)
        start = time.perf_counter()
        q.select(F.sum(F.length("payload"))).collect()
        times.append(time.perf_counter() - start)
    df.unpersist()
    return statistics.median(times[1:])


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    ap.add_argument("--megabytes", default="0,32,128")
    args = ap.parse_args()
    spark = get_spark()
    graph = lotan.datasets.sbm(20_000, num_classes=16, num_features=16, avg_degree=5, seed=0)
    runner = SparkEngine(spark).prepare(graph, args.partitions, (NormSpec(),))
    for n in (1, 2, 3, 4):
        stages = [_noop(k, k == n - 1) for k in range(n)]
        print(f"{n} no-op stages: median {_time(runner, stages, args.repeats):.3f} s per run")
    base = jvm_base = None
    for mb in (float(m) for m in args.megabytes.split(",")):
        stages = [_send(k, k == 2, mb, args.partitions) for k in range(3)]
        t = _time(runner, stages, args.repeats)
        jvm = _jvm_shuffle(spark, mb, args.partitions, args.repeats)
        base = t if base is None else base
        jvm_base = jvm if jvm_base is None else jvm_base
        crossed = 2 * mb * args.partitions  # MB through Spark's shuffle per run
        extra = ""
        if mb:
            lotan_ms = (t - base) / crossed * 1e3
            jvm_ms = (jvm - jvm_base) / crossed * 1e3
            extra = (
                f", {lotan_ms:.1f} ms per MB; JVM-only shuffle of the same bytes {jvm:.3f} s, "
                f"{jvm_ms:.1f} ms per MB; Lotan / JVM {lotan_ms / max(jvm_ms, 1e-9):.2f}"
            )
        print(f"3 stages, each task sending {mb:g} MB twice: {t:.3f} s per run{extra}")


if __name__ == "__main__":
    main()
