from __future__ import annotations

import numpy as np
import pytest

from lotan.errors import EngineError
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


def test_big_payloads_travel_as_chunks_and_come_back_whole() -> None:
    from lotan.graph_engine.runner import Message
    from lotan.graph_engine.spark_runner import messages_to_table, table_to_messages

    rng = np.random.default_rng(0)
    big = rng.standard_normal((300, 50)).astype(np.float32)  # ~60 kB
    msgs = [
        Message(1, 0, 2, "f3", {"rows": big}),
        Message(1, 0, 1, "small", {"rows": np.arange(3)}),
        Message(-1, -1, 2, "f3", {"rows": big[:7]}),
    ]
    table = messages_to_table(msgs, chunk_bytes=4096)
    assert table.num_rows > 10  # the big payload is split
    shuffled = table.take(np.random.default_rng(1).permutation(table.num_rows))
    back = {(m.stage, m.src, m.tag): m for m in table_to_messages(shuffled)}
    assert len(back) == 3
    np.testing.assert_array_equal(back[(1, 2, "f3")].payload["rows"], big)
    np.testing.assert_array_equal(back[(1, 1, "small")].payload["rows"], np.arange(3))
    np.testing.assert_array_equal(back[(-1, 2, "f3")].payload["rows"], big[:7])
    with pytest.raises(EngineError, match=r"arrived in .* chunks"):
        table_to_messages(table.slice(0, 3))


def test_tiles_write_in_ranges_and_messages_with_several_arrays_round_trip() -> None:
    from lotan.graph_engine.runner import Message
    from lotan.graph_engine.spark_runner import messages_to_table, table_to_messages
    from lotan.graph_engine.tiles import plan_tile, write_tile

    rng = np.random.default_rng(3)
    arrays = {"a": rng.standard_normal((37, 5)).astype(np.float32), "b": np.arange(11)}
    whole = encode_tile(arrays)
    assert whole == encode_tile(arrays)  # padding is zeroed: the same arrays, the same bytes
    plan = plan_tile(arrays)
    pieces = []
    for lo in range(0, plan.size, 100):  # any ranges, including ones that split the header
        out = np.full(min(100, plan.size - lo), 255, np.uint8)
        write_tile(plan, out, lo, lo + out.shape[0])
        pieces.append(out.tobytes())
    assert b"".join(pieces) == whole
    msgs = [Message(2, q, 0, "x0", {"7": arrays["a"][: q + 3], "9": arrays["a"]}) for q in (0, 1)]
    for chunk in (64, 1 << 20):
        back = table_to_messages(messages_to_table(msgs, chunk_bytes=chunk))
        for m, orig in zip(sorted(back, key=lambda m: m.dest), msgs, strict=True):
            assert m[:4] == orig[:4]
            for key in ("7", "9"):
                np.testing.assert_array_equal(m.payload[key], orig.payload[key])
