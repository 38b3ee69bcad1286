"""What a task knows about itself: the GPUs its engine was given for it, and what it
measures — its time by phase and where its dense work ran, sent to the driver in a
``timing`` message when the task ends."""

from __future__ import annotations

import time
from collections import defaultdict
from collections.abc import Iterator, Sequence
from contextlib import contextmanager

import numpy as np

from lotan.runtime.message import DRIVER, Message
from lotan.runtime.tags import TIMING

__all__ = [
    "DEVICE_COUNTS",
    "PHASES",
    "assign_gpus",
    "assigned_gpus",
    "phase",
    "record_device",
    "timed_stage",
]

#: Phases a task's time is split into (seconds per task, summed over a run by the driver):
#: ``load`` layout from the store, ``decode``/``encode`` messages from/to Arrow,
#: ``exchange`` assembling and splitting rows for the exchange, ``spmm`` sparse products,
#: ``dense`` the neural engine's work, ``task`` the whole stage function.
PHASES = ("load", "decode", "exchange", "spmm", "dense", "encode", "task")

_current: dict[str, float] = defaultdict(float)
#: The GPU addresses the engine was given for the running task (none: a CPU task).
_gpus: list[str] = []


def assign_gpus(addresses: Sequence[str]) -> None:
    """Record the GPUs the scheduler assigned to the task about to run (the Spark engine
    reads them from ``TaskContext.resources()``; the local engine assigns none)."""
    _gpus[:] = [str(a) for a in addresses]


def assigned_gpus() -> list[str]:
    """The GPU addresses of the running task."""
    return list(_gpus)


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
    out.append(Message(DRIVER, -1, part, TIMING.of(), payload))
    _current.clear()  # phases timed before the task (loading its layout) count with it
