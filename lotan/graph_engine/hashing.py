"""Spark's hash functions of integers, vectorized in NumPy.

- ``xxhash64``: the hash partitioner assigns a vertex to ``pmod(xxhash64(id), P)``. Spark
  computes this in SQL; the local engine computes it here. Both must agree bit for bit so
  that the two engines build the same partitions.
- ``murmur3`` of an int: what Spark's ``repartition(P, col)`` (``HashPartitioning``) routes
  rows by. :func:`route_keys` uses it to pick, for each partition id ``p``, a key that Spark
  sends to shuffle partition ``p`` — routing by the id itself would put partitions 0 and 1
  of 2 in the same task, and 3 of 4 in one.

Both are tested bit for bit against Spark.
"""

from __future__ import annotations

import numpy as np

__all__ = ["murmur3_int", "owner_of", "route_keys", "xxhash64"]

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


def _rotl32(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmur3_int(values: np.ndarray, seed: int = SPARK_HASH_SEED) -> np.ndarray:
    """``Murmur3_x86_32.hashInt`` of Spark (``hash(col)`` of an int column); returns int32."""
    with np.errstate(over="ignore"):
        k = np.asarray(values, dtype=np.int32).view(np.uint32)
        k = _rotl32(k * np.uint32(0xCC9E2D51), 15) * np.uint32(0x1B873593)
        h = np.full(k.shape, np.uint32(seed), dtype=np.uint32) ^ k
        h = _rotl32(h, 13) * np.uint32(5) + np.uint32(0xE6546B64)
        h ^= np.uint32(4)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h.view(np.int32)


def route_keys(num_partitions: int) -> np.ndarray:
    """``keys[p]``: the smallest non-negative int that ``repartition(num_partitions, key)``
    sends to shuffle partition ``p`` (``pmod(murmur3(key), num_partitions) == p``)."""
    keys = np.full(num_partitions, -1, dtype=np.int64)
    start, block = 0, max(1024, 16 * num_partitions)
    while (keys < 0).any():
        cand = np.arange(start, start + block, dtype=np.int64)
        target = np.mod(murmur3_int(cand).astype(np.int64), num_partitions)
        first = np.unique(target, return_index=True)
        for t, i in zip(first[0].tolist(), first[1].tolist(), strict=True):
            if keys[t] < 0:
                keys[t] = cand[i]
        start += block
    return keys.astype(np.int32)
