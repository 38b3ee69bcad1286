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

import numpy as np

__all__ = ["decode_tile", "encode_tile"]

_MAGIC = b"LTN1"
_ALIGN = 64
_ALLOWED_DTYPES = frozenset({"float32", "float64", "int64", "int32", "int8", "uint8", "bool"})


def encode_tile(arrays: Mapping[str, np.ndarray]) -> bytes:
    """Pack named arrays into one ``bytes`` value (C order, native little endian)."""
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
    start = -(-(8 + len(header)) // _ALIGN) * _ALIGN
    out = bytearray(start + offset)
    out[0:4] = _MAGIC
    out[4:8] = struct.pack("<I", len(header))
    out[8 : 8 + len(header)] = header
    for off, a in blobs:
        out[start + off : start + off + a.nbytes] = a.tobytes()
    return bytes(out)


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
