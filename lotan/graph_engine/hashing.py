"""Spark's ``xxhash64`` of a 64-bit integer, vectorized in NumPy.

The hash partitioner assigns a vertex to ``pmod(xxhash64(id), P)``. Spark computes this in
SQL; the local engine computes it here. Both must agree bit for bit so that the two engines
build the same partitions (tested against Spark).
"""

from __future__ import annotations

import numpy as np

__all__ = ["owner_of", "xxhash64"]

_P1 = np.uint64(0x9E3779B185EBCA87)
_P2 = np.uint64(0xC2B2AE3D27D4EB4F)
_P3 = np.uint64(0x165667B19E3779F9)
_P4 = np.uint64(0x85EBCA77C2B2AE63)
_P5 = np.uint64(0x27D4EB2F165667C5)
SPARK_HASH_SEED = 42


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint64(r)) | (x >> np.uint64(64 - r))


def xxhash64(values: np.ndarray, seed: int = SPARK_HASH_SEED) -> np.ndarray:
    """``XxHash64Function.hashLong`` of Spark, for an int64 array; returns int64."""
    with np.errstate(over="ignore"):
        x = np.asarray(values, dtype=np.int64).view(np.uint64)
        h = np.full(x.shape, np.uint64(seed), dtype=np.uint64) + _P5 + np.uint64(8)
        h ^= _rotl(x * _P2, 31) * _P1
        h = _rotl(h, 27) * _P1 + _P4
        h ^= h >> np.uint64(33)
        h *= _P2
        h ^= h >> np.uint64(29)
        h *= _P3
        h ^= h >> np.uint64(32)
    return h.view(np.int64)


def owner_of(ids: np.ndarray, num_partitions: int) -> np.ndarray:
    """The owner partition of each vertex id: ``pmod(xxhash64(id), num_partitions)``."""
    return np.mod(xxhash64(ids), np.int64(num_partitions)).astype(np.int32)
