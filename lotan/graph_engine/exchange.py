"""The exchange plan: which rows travel between partitions, in both directions.

Forward (before an aggregation): every partition sends to each partition that has some of its
vertices in its halo exactly those rows, and its own rows to itself; the receiver stacks them
as ``[own | halo]``. Backward (after the transposed aggregation): the partial gradients of the
halo rows flow back to their owners along the same lists, where they are summed. One plan, two
directions; the messages are NumPy arrays, one per (source, destination) pair.

With ``exchange_dtype="bfloat16"`` the forward rows travel as bfloat16 bit patterns
(``uint16``, half the bytes): every row is rounded to nearest even once at its sender, its
own rows too, and :func:`assemble` widens them back to float32 exactly, so every engine and
every partitioning computes with the same rounded values. The rounding is integer
arithmetic on the float32 bits, the same on every CPU. Backward partial gradients stay
float32: rounding partial sums would make the result depend on how the graph is cut.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from lotan.errors import EngineError
from lotan.graph_engine.layout import PartitionLayout

__all__ = [
    "EXCHANGE_DTYPES",
    "assemble",
    "backward_messages",
    "forward_messages",
    "reduce_partials",
    "to_bfloat16",
    "widen",
]

#: How forward exchanges carry float rows.
EXCHANGE_DTYPES = ("float32", "bfloat16")


def to_bfloat16(a: np.ndarray) -> np.ndarray:
    """The bfloat16 bit patterns (``uint16``) of float32 ``a``, rounded to nearest, ties to
    even (as ``torch.bfloat16`` rounds); NaN stays NaN."""
    bits = np.ascontiguousarray(a, dtype=np.float32).view(np.uint32)
    out = ((bits + (0x7FFF + ((bits >> 16) & 1))) >> 16).astype(np.uint16)
    nan = np.isnan(a)
    if nan.any():
        out[nan] = 0x7FC0
    return out


def widen(bits: np.ndarray) -> np.ndarray:
    """float32 values of bfloat16 bit patterns (exact)."""
    return (bits.astype(np.uint32) << 16).view(np.float32)


def forward_messages(
    layout: PartitionLayout, own: np.ndarray, dtype: str = "float32"
) -> list[tuple[int, np.ndarray]]:
    """Rows of ``own`` (``(n_own, d)``) to send: to itself, then to each requesting partition;
    as bfloat16 bits with ``dtype="bfloat16"``."""
    if dtype not in EXCHANGE_DTYPES:
        raise ValueError(f"exchange dtype {dtype!r} is not one of {list(EXCHANGE_DTYPES)}")
    if dtype == "bfloat16" and own.dtype.kind == "f":
        own = to_bfloat16(own)
    out = [(layout.part, own)]
    for k, q in enumerate(layout.send_parts.tolist()):
        out.append((int(q), own[layout.send_list(k)]))
    return out


def assemble(layout: PartitionLayout, received: Mapping[int, np.ndarray]) -> np.ndarray:
    """Stack received rows as ``[own | halo]`` (bfloat16 bits widened to float32)."""
    blocks = [_take(received, layout.part, layout.num_own, layout.part)]
    for q, c in zip(layout.halo_parts.tolist(), layout.halo_counts.tolist(), strict=True):
        blocks.append(_take(received, int(q), int(c), layout.part))
    full = blocks[0] if len(blocks) == 1 else np.concatenate(blocks, axis=0)
    return widen(full) if full.dtype == np.uint16 else full


def backward_messages(layout: PartitionLayout, partial: np.ndarray) -> list[tuple[int, np.ndarray]]:
    """Split ``[own | halo]`` partial gradients into one message per owner."""
    out = [(layout.part, partial[: layout.num_own])]
    for k, q in enumerate(layout.halo_parts.tolist()):
        out.append((int(q), partial[layout.halo_block(k)]))
    return out


def reduce_partials(layout: PartitionLayout, received: Mapping[int, np.ndarray]) -> np.ndarray:
    """Sum the partial gradients of own rows sent by every partition (itself included)."""
    total = np.array(_take(received, layout.part, layout.num_own, layout.part), copy=True)
    for k, q in enumerate(layout.send_parts.tolist()):
        rows = layout.send_list(k)
        # A send list names each row once, so a fancy-indexed add is exact.
        total[rows] += _take(received, int(q), rows.shape[0], layout.part)
    return total


def _take(received: Mapping[int, np.ndarray], src: int, rows: int, part: int) -> np.ndarray:
    try:
        block = received[src]
    except KeyError:
        raise EngineError(
            f"partition {part} expected a message from partition {src} and got none; "
            "the exchange plan and the data are out of step (was the graph re-prepared "
            "with another num_partitions?)"
        ) from None
    if block.shape[0] != rows:
        raise EngineError(
            f"partition {part} expected {rows} rows from partition {src}, got {block.shape[0]}"
        )
    return block
