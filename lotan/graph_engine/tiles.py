"""Tiles: blocks of arrays packed into one binary value.

A tile is the unit that crosses Spark: one row carries many vertices' vectors, so Spark's
per-row cost is paid per block. The format is a small header followed by the raw array bytes,
each array aligned to 64 bytes, so that decoding is a ``numpy.frombuffer`` view (no copy) of
the Arrow binary buffer.

Layout::

    b"LTN1" | uint32 header length | header (JSON: [[name, dtype, shape, offset], ...])
    | padding | array bytes ...

The codec never unpickles anything.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np

__all__ = ["TilePlan", "decode_tile", "encode_tile", "plan_tile", "write_tile"]

_MAGIC = b"LTN1"
_ALIGN = 64
_ALLOWED_DTYPES = frozenset(
    {"float32", "float64", "int64", "int32", "uint16", "int8", "uint8", "bool"}
)


@dataclass(frozen=True)
class TilePlan:
    """Where every byte of a tile goes: ``prefix`` (magic, header length, header), the
    arrays at ``start + offset``, ``size`` bytes in all."""

    prefix: bytes
    start: int
    blobs: tuple[tuple[int, np.ndarray], ...]
    size: int


def plan_tile(arrays: Mapping[str, np.ndarray]) -> TilePlan:
    """The layout of the tile of ``arrays`` (C order, native little endian)."""
    entries = []
    blobs = []
    offset = 0
    for name, array in arrays.items():
        a = np.ascontiguousarray(array)
        if a.dtype.name not in _ALLOWED_DTYPES:
            raise TypeError(
                f"tile array {name!r} has dtype {a.dtype}, expected one of "
                f"{sorted(_ALLOWED_DTYPES)}"
            )
        offset = -(-offset // _ALIGN) * _ALIGN
        entries.append([name, a.dtype.name, list(a.shape), offset])
        blobs.append((offset, a))
        offset += a.nbytes
    header = json.dumps(entries, separators=(",", ":")).encode()
    prefix = _MAGIC + struct.pack("<I", len(header)) + header
    start = -(-len(prefix) // _ALIGN) * _ALIGN
    return TilePlan(prefix, start, tuple(blobs), start + offset)


def write_tile(plan: TilePlan, out: np.ndarray, lo: int = 0, hi: int | None = None) -> None:
    """Write bytes ``[lo, hi)`` of the tile (all of it by default) into ``out`` (``uint8``,
    ``hi - lo`` long): array bytes are copied once, padding is zeroed. Writing a range lets a
    chunked tile go straight into its chunks."""
    hi = plan.size if hi is None else hi
    segments: list[tuple[int, np.ndarray | None]] = [(0, np.frombuffer(plan.prefix, np.uint8))]
    for off, a in plan.blobs:
        segments.append((plan.start + off, a.reshape(-1).view(np.uint8)))
    pos = lo
    for seg_start, data in segments:
        seg_end = seg_start + (data.shape[0] if data is not None else 0)
        if seg_end <= pos:
            continue
        if seg_start >= hi:
            break
        if seg_start > pos:  # padding before this segment
            gap_end = min(seg_start, hi)
            out[pos - lo : gap_end - lo] = 0
            pos = gap_end
            if pos >= hi:
                break
        end = min(seg_end, hi)
        assert data is not None
        out[pos - lo : end - lo] = data[pos - seg_start : end - seg_start]
        pos = end
    out[pos - lo : hi - lo] = 0


def encode_tile(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Pack named arrays into one ``bytes`` value (C order, native little endian)."""
    plan = plan_tile(arrays)
    out = np.empty(plan.size, np.uint8)
    write_tile(plan, out)
    return out.tobytes()


def decode_tile(buf: bytes | memoryview) -> dict[str, np.ndarray]:
    """Unpack a tile into read-only array views over ``buf`` (no copy)."""
    mv = memoryview(buf)
    if bytes(mv[0:4]) != _MAGIC:
        raise ValueError("not a Lotan tile (bad magic bytes)")
    (hlen,) = struct.unpack("<I", mv[4:8])
    entries = json.loads(bytes(mv[8 : 8 + hlen]))
    start = -(-(8 + hlen) // _ALIGN) * _ALIGN
    out: dict[str, np.ndarray] = {}
    for name, dtype, shape, off in entries:
        if dtype not in _ALLOWED_DTYPES:
            raise ValueError(f"tile array {name!r} has unsupported dtype {dtype!r}")
        dt = np.dtype(dtype)
        count = int(np.prod(shape, dtype=np.int64))
        arr = np.frombuffer(mv, dtype=dt, count=count, offset=start + off)
        out[name] = arr.reshape(shape)
    return out
