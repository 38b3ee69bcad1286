"""Messages between the pieces of a run: a block of arrays from one partition to a stage at
another partition, to the driver (:data:`DRIVER`) or to the run's output (:data:`OUTPUT`).

A *stage* is a function ``stage(part, layout, inbox, value) -> outbox`` run once per
partition (:data:`StageFn`). ``inbox`` holds every message addressed to ``(stage, part)`` by
earlier stages; ``value`` is what the driver broadcasts for the run (weights, epoch). Both
engines run the same stage functions and route the same messages: the local engine in
memory, the Spark engine through Spark's shuffle. What each message's tag means, who sends
it and who reads it, is declared in :mod:`lotan.runtime.tags`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any, NamedTuple

import numpy as np

from lotan.graph_engine.layout import PartitionLayout

__all__ = ["DRIVER", "OUTPUT", "Message", "StageFn", "by_source", "payloads"]

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


def by_source(inbox: Iterable[Message], tag: str, key: str = "rows") -> dict[int, np.ndarray]:
    """``{source partition: payload[key]}`` of the messages with ``tag`` that carry ``key``
    (the inputs of one exchange may come from several stages, each sending its own)."""
    return {m.src: m.payload[key] for m in inbox if m.tag == tag and key in m.payload}


def payloads(inbox: Iterable[Message], tag: str) -> dict[int, Mapping[str, np.ndarray]]:
    """``{source partition: payload}`` of the messages with ``tag``."""
    return {m.src: m.payload for m in inbox if m.tag == tag}
