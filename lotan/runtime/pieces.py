"""What the pieces of a stage share: the base class (a piece addresses its messages
through the schedule), values read from the partition layout, the device of dense work and
the per-partition metrics row sent to the driver."""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any, ClassVar

import numpy as np
import torch

from lotan.graph_engine.layout import PartitionLayout
from lotan.ir.splits import SPLIT_CODES
from lotan.nn_engine.device import task_device
from lotan.planner.physical import PhysicalPlan, Schedule
from lotan.planner.placement import PIECES
from lotan.runtime.message import DRIVER, Message
from lotan.runtime.tags import METRICS
from lotan.runtime.task import assigned_gpus, record_device

# Tiles decode to read-only views of Arrow buffers; the stages never write into them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

#: Layout of the per-partition ``metrics`` vector sent to the driver.
METRIC_FIELDS = (
    "loss",
    "train_correct",
    "train_count",
    "val_correct",
    "val_count",
    "test_correct",
    "test_count",
)


def layout_value(layout: PartitionLayout, node: int) -> np.ndarray:
    """Value ``node`` as the layout holds it: ``X`` (node 0) or a cached aggregation."""
    return layout.x if node == 0 else layout.constants[str(node)]


def metrics_message(
    layout: PartitionLayout, logits: list[torch.Tensor], losses: list[float], measure: bool = True
) -> Message:
    """One row of :data:`METRIC_FIELDS` per model; without ``measure`` the accuracies' counts
    are 0 (the driver reads NaN: not measured this run)."""
    rows = []
    for out, loss in zip(logits, losses, strict=True):
        correct = out.argmax(dim=1).numpy() == layout.y
        vec = [loss]
        for name in ("train", "val", "test"):
            mask = layout.split == SPLIT_CODES[name]
            vec += [float(correct[mask].sum()), float(mask.sum())] if measure else [0.0, 0.0]
        rows.append(vec)
    metrics = np.array(rows, dtype=np.float64).reshape(len(rows), len(METRIC_FIELDS))
    return Message(DRIVER, -1, layout.part, METRICS.of(), {"metrics": metrics})


def dense_device() -> torch.device:
    """The device of this task's dense work (recorded for the driver's device report)."""
    gpus = assigned_gpus()
    device = task_device(gpus)
    record_device(len(gpus), device.type == "cuda")
    return device


@dataclass(frozen=True)
class Piece:
    """One piece of stage ``j``'s work (:data:`lotan.planner.placement.PIECES`); it addresses
    its messages through the schedule, so fused and split placement run the same code."""

    plan: PhysicalPlan
    j: int
    sched: Schedule
    #: Which piece it is (``aggregate``, ``forward``, ``backward``, ``transpose``).
    name: ClassVar[str]

    @property
    def kind(self) -> str:
        """Graph or dense work."""
        return PIECES[self.name]

    @property
    def label(self) -> str:
        return self.sched.label(self.name, self.j)

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        raise NotImplementedError
