from __future__ import annotations

import numpy as np
import pytest

from lotan.graph_engine.tiles import decode_tile, encode_tile


def test_roundtrip_and_zero_copy() -> None:
    arrays = {
        "rows": np.arange(12, dtype=np.float32).reshape(3, 4),
        "ids": np.array([5, -1], dtype=np.int64),
        "empty": np.zeros((0, 7), dtype=np.float32),
        "flags": np.array([1, 0, 1], dtype=np.int8),
    }
    buf = encode_tile(arrays)
    out = decode_tile(buf)
    for k, v in arrays.items():
        assert out[k].dtype == v.dtype and out[k].shape == v.shape
        np.testing.assert_array_equal(out[k], v)
    assert not out["rows"].flags.writeable  # a view of the buffer, not a copy


def test_rejects_foreign_bytes_and_object_arrays() -> None:
    with pytest.raises(ValueError, match="not a Lotan tile"):
        decode_tile(b"\x80\x04pickle")
    with pytest.raises(TypeError, match="dtype object"):
        encode_tile({"bad": np.array([object()], dtype=object)})
