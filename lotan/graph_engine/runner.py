"""Running a physical plan: a sequence of per-partition stages that exchange messages.

A *stage* is a function ``stage(part, layout, inbox, value) -> outbox`` run once per
partition. ``inbox`` holds every message addressed to ``(stage, part)`` by earlier stages;
``outbox`` messages name their destination stage and partition, or the driver
(:data:`DRIVER`), or the plan's output (:data:`OUTPUT`). ``value`` is what the driver
broadcasts for this run (weights, epoch).

Both engines run the same stage functions: :class:`LocalRunner` routes messages in-process,
:class:`lotan.graph_engine.spark_runner.SparkRunner` routes them through Spark shuffles.
"""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any, NamedTuple

import numpy as np

from lotan.graph_engine.layout import PartitionLayout

__all__ = [
    "DEVICE_COUNTS",
    "DRIVER",
    "OUTPUT",
    "PHASES",
    "LocalRunner",
    "Message",
    "StageFn",
    "by_source",
    "phase",
    "record_device",
    "timed_stage",
]

#: Destination stage of messages collected by the driver (gradients, metrics).
DRIVER = -1
#: Destination stage of the plan's per-vertex output (predictions).
OUTPUT = -2


class Message(NamedTuple):
    """A block of arrays from one partition to a stage at another (or the driver)."""

    stage: int
    dest: int
    src: int
    tag: str
    payload: Mapping[str, np.ndarray]


StageFn = Callable[[int, PartitionLayout | None, list[Message], Any], list[Message]]


#: Phases a task's time is split into (seconds per task, summed over a run by the driver):
#: ``load`` layout from the store, ``decode``/``encode`` messages from/to Arrow,
#: ``exchange`` assembling and splitting rows for the exchange, ``spmm`` sparse products,
#: ``dense`` the neural engine's work, ``task`` the whole stage function.
PHASES = ("load", "decode", "exchange", "spmm", "dense", "encode", "task")

_current: dict[str, float] = defaultdict(float)

#: Counts a task's timing message carries about its dense work: pieces run, pieces whose
#: task Spark assigned a GPU, pieces that ran on CUDA.
DEVICE_COUNTS = ("dense_pieces", "gpu_assigned", "on_cuda")


def record_device(gpus_assigned: int, on_cuda: bool) -> None:
    """Note that the running task did dense work, whether Spark assigned it GPUs and whether
    it ran on CUDA (reported to the driver in the task's timing message)."""
    _current["dense_pieces"] += 1
    _current["gpu_assigned"] += gpus_assigned > 0
    _current["on_cuda"] += on_cuda


@contextmanager
def phase(name: str) -> Iterator[None]:
    """Add the time spent in the block to phase ``name`` of the running task."""
    start = time.perf_counter()
    try:
        yield
    finally:
        _current[name] += time.perf_counter() - start


@contextmanager
def timed_stage(k: int, part: int, out: list[Message]) -> Iterator[None]:
    """Time one task (stage ``k`` at ``part``); append its phase times to ``out`` as a
    ``timing`` message for the driver."""
    with phase("task"):
        yield
    payload = {name: np.array([_current.get(name, 0.0)]) for name in PHASES + DEVICE_COUNTS}
    payload["stage"] = np.array([k], dtype=np.int64)
    out.append(Message(DRIVER, -1, part, "timing", payload))
    _current.clear()  # phases timed before the task (loading its layout) count with it


def by_source(inbox: Iterable[Message], tag: str, key: str = "rows") -> dict[int, np.ndarray]:
    """``{source partition: payload[key]}`` of the messages with ``tag`` that carry ``key``
    (the inputs of one exchange may come from several stages, each sending its own)."""
    return {m.src: m.payload[key] for m in inbox if m.tag == tag and key in m.payload}


class LocalRunner:
    """Runs stages in-process, partition by partition, routing messages in memory."""

    def __init__(self, layouts: Mapping[int, PartitionLayout] | None = None) -> None:
        self.layouts = dict(layouts or {})

    def run(
        self, stages: Sequence[StageFn], value: Any, initial: Iterable[Message] = ()
    ) -> tuple[list[Message], list[Message]]:
        """Run ``stages`` in order; return (driver messages, output messages)."""
        pending: dict[tuple[int, int], list[Message]] = defaultdict(list)
        driver: list[Message] = []
        output: list[Message] = []

        def route(msgs: Iterable[Message]) -> None:
            for m in msgs:
                if m.stage == DRIVER:
                    driver.append(m)
                elif m.stage == OUTPUT:
                    output.append(m)
                else:
                    pending[(m.stage, m.dest)].append(m)

        route(initial)
        for k, stage in enumerate(stages):
            parts = set(self.layouts) | {d for (s, d) in pending if s == k}
            for p in sorted(parts):
                inbox = pending.pop((k, p), [])
                out: list[Message] = []
                with timed_stage(k, p, out):
                    out += stage(p, self.layouts.get(p), inbox, value)
                route(out)
        return driver, output
