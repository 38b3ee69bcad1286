"""What a Spark stage costs when it does nothing: runs of 1-4 no-op stages through Lotan's
Spark runner (routing, cogroup with the partition ids, Arrow in and out, one message per
partition), on a small prepared graph.

    python -m bench.spark_floor [--partitions 2] [--repeats 7]

The floor bounds the Spark engine's epoch from below: a 2-layer GCN epoch with ``ÂX`` cached
is three stages.
"""

from __future__ import annotations

import argparse
import statistics
import time
from typing import Any

import numpy as np

import lotan
from lotan.engines import SparkEngine
from lotan.graph_engine.layout import NormSpec
from lotan.graph_engine.runner import DRIVER, Message, StageFn
from lotan.graph_engine.session import get_spark


def _noop(k: int, last: bool) -> StageFn:
    def stage(part: int, layout: Any, inbox: list[Message], value: Any) -> list[Message]:
        dest_stage = DRIVER if last else k + 1
        return [Message(dest_stage, part, part, "x", {"rows": np.zeros(3)})]

    return stage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--repeats", type=int, default=7)
    args = ap.parse_args()
    spark = get_spark()
    graph = lotan.datasets.sbm(20_000, num_classes=16, num_features=16, avg_degree=5, seed=0)
    runner = SparkEngine(spark).prepare(graph, args.partitions, (NormSpec(),))
    for n in (1, 2, 3, 4):
        stages = [_noop(k, k == n - 1) for k in range(n)]
        times = []
        for _ in range(args.repeats):
            start = time.perf_counter()
            result = runner.run(stages, None)
            result.collect_driver()
            result.close()
            times.append(time.perf_counter() - start)
        print(f"{n} no-op stages: median {statistics.median(times[1:]):.3f} s per run")


if __name__ == "__main__":
    main()
