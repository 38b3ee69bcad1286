"""What the driver broadcasts to every task of a run (:class:`EpochValue`), and how arrays
enter dense work (:func:`as_tensor`)."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import torch

__all__ = ["TENSOR_ALIGN", "EpochValue", "as_tensor"]


@dataclass(frozen=True)
class EpochValue:
    """What the driver broadcasts to every task of one run: the parameters, the buffers
    (BatchNorm's running statistics), the epoch, and the partitions that own vertices (the
    engine fills them in: a reduction across partitions sends its partial to each)."""

    params: dict[str, np.ndarray]
    epoch: int
    buffers: dict[str, np.ndarray] = field(default_factory=dict)
    parts: tuple[int, ...] = ()

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: as_tensor(v) for k, v in self.params.items()}


#: Byte alignment of every array that enters dense work (torch's own allocations have it).
TENSOR_ALIGN = 64


def as_tensor(a: np.ndarray) -> torch.Tensor:
    """``a`` as a tensor, without a copy when it starts on a :data:`TENSOR_ALIGN` boundary.

    A tile decoded from Spark is a view at whatever address its Arrow buffer has, while the
    same value handed over in memory (fused placement, the local engine) is a fresh
    allocation. MKL documents that its results may depend on the alignment of the inputs,
    so every input is given the same alignment: then split and fused placement, and two
    runs of one seed, compute the same sums on every CPU, not only where MKL happens to
    ignore alignment. The copy costs one pass over a misaligned input."""
    t = torch.from_numpy(np.asarray(a))
    if t.data_ptr() % TENSOR_ALIGN:
        t = t.clone(memory_format=torch.contiguous_format)
    return t
