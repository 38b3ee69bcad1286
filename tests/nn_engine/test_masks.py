"""The compiled dropout mask equals the hash written out in NumPy, bit for bit."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from lotan.nn_engine.masks import dropout_scale


def _fmix64(x: np.ndarray) -> np.ndarray:
    x = x ^ (x >> np.uint64(30))
    x = x * np.uint64(0xBF58476D1CE4E5B9)
    x ^= x >> np.uint64(27)
    x *= np.uint64(0x94D049BB133111EB)
    x ^= x >> np.uint64(31)
    return x


def _reference(rows: np.ndarray, width: int, p: float, key: int) -> torch.Tensor:
    """murmur3's 32-bit finalizer of a per-vertex and a per-column SplitMix64 hash."""
    with np.errstate(over="ignore"):
        k = np.uint64(key & 0xFFFFFFFFFFFFFFFF)
        rh = (_fmix64(rows.astype(np.uint64) ^ k) >> np.uint64(32)).astype(np.uint32)
        cols = np.arange(width, dtype=np.uint64) * np.uint64(0x9E3779B97F4A7C15) + k
        ch = (_fmix64(cols) >> np.uint64(32)).astype(np.uint32)
        x = np.bitwise_xor(rh[:, None], ch[None, :])
        x *= np.uint32(0x85EBCA6B)
        x ^= x >> np.uint32(13)
        x *= np.uint32(0xC2B2AE35)
        x ^= x >> np.uint32(16)
    keep = torch.from_numpy(x >= np.uint32(min(int(p * 2**32), 2**32 - 1)))
    return keep.to(torch.float32).mul_(1.0 / (1.0 - p))


@pytest.mark.parametrize(
    ("rows", "width", "p", "key"),
    [
        (np.arange(1000), 64, 0.5, 123),
        (np.random.default_rng(0).integers(-(2**62), 2**62, 5000), 7, 0.3, 2**63 + 5),
        (np.arange(10), 3, 0.0, 1),
        (np.arange(10), 3, 0.999, -4),
        (np.zeros(0, np.int64), 5, 0.5, 2),
    ],
)
def test_mask_is_the_reference_hash(rows: np.ndarray, width: int, p: float, key: int) -> None:
    assert torch.equal(dropout_scale(rows, width, p, key), _reference(rows, width, p, key))
