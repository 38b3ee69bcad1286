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
    from lotan.engines.spark.codec import messages_to_table, table_to_messages
    from lotan.runtime.message import Message

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
    from lotan.engines.spark.codec import messages_to_table, table_to_messages
    from lotan.graph_engine.tiles import plan_tile, write_tile
    from lotan.runtime.message import Message

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


def test_a_stage_yields_record_batches_of_bounded_size() -> None:
    """What a task yields reaches the JVM one record batch at a time, each read whole into
    its direct memory: ~100 MB of messages go as several batches, none over the limit."""
    from lotan.engines.spark import codec as arrow_messages
    from lotan.runtime.message import Message

    tile = np.ones((2048, 128), np.float32)  # 1 MiB
    msgs = [Message(3, d % 4, 0, "x", {"7": tile}) for d in range(100)]
    batches = arrow_messages.messages_to_table(msgs).to_batches()
    assert len(batches) > 1
    assert all(
        b.column("payload").buffers()[2].size <= arrow_messages._BATCH_BYTES for b in batches
    )
    assert sum(b.num_rows for b in batches) == 100


def test_a_tile_over_one_arrow_array_travels_in_chunks_across_arrays(monkeypatch) -> None:
    """A tile bigger than one encoded Arrow array (64 MB; here shrunk) is cut into chunks
    that fall into several arrays, and comes back whole."""
    from lotan.engines.spark import codec as arrow_messages
    from lotan.runtime.message import Message

    monkeypatch.setattr(arrow_messages, "_BATCH_BYTES", 10_000)
    rows = np.random.default_rng(5).standard_normal((200, 64)).astype(np.float32)  # 51 kB
    msgs = [Message(3, 1, 0, "x0", {"7": rows}), Message(3, 1, 2, "y", {"n": np.arange(5)})]
    table = arrow_messages.messages_to_table(msgs, chunk_bytes=4_000)
    assert table.column("payload").num_chunks > 3  # the chunks span arrays
    back = {m.src: m for m in arrow_messages.table_to_messages(table)}
    np.testing.assert_array_equal(back[0].payload["7"], rows)
    np.testing.assert_array_equal(back[2].payload["n"], np.arange(5))


def test_inbox_keeps_its_stage_copies_payloads_and_hands_back_the_rest() -> None:
    """A task reads batches as they come: the rows of its stage become messages whose
    arrays own their memory (so the batch can go), chunks in any batch and any order; the
    other rows come back to be forwarded; a chunk twice or one missing is an error."""
    import pyarrow as pa

    from lotan.engines.spark.codec import Inbox, messages_to_table
    from lotan.runtime.message import Message

    rng = np.random.default_rng(2)
    big = rng.standard_normal((100, 40)).astype(np.float32)
    msgs = [
        Message(4, 1, 0, "x0", {"7": big}),
        Message(5, 1, 0, "h0", {"7": big[:3]}),  # for a later stage
        Message(4, 1, 3, "x0", {"7": big[:9]}),
    ]
    table = messages_to_table(msgs, chunk_bytes=2_000)
    order = rng.permutation(table.num_rows)
    batches = [table.take(order[i : i + 4]).to_batches()[0] for i in range(0, len(order), 4)]
    inbox = Inbox(4)
    forwarded = [r for b in batches if (r := inbox.add(b)) is not None]
    later = table.column("stage").to_pylist().count(5)
    assert sum(r.num_rows for r in forwarded) == later
    got = {m.src: m for m in inbox.messages()}
    np.testing.assert_array_equal(got[0].payload["7"], big)
    np.testing.assert_array_equal(got[3].payload["7"], big[:9])
    for m in got.values():
        arr = m.payload["7"]
        assert not arr.flags.writeable
        for b in batches:
            data = b.column("payload").buffers()[2]
            assert not np.shares_memory(arr, np.frombuffer(data, np.uint8))
    rest = pa.Table.from_batches(forwarded)
    assert set(rest.column("stage").to_pylist()) == {5}
    again = Inbox(4)
    again.add(batches[0])
    with pytest.raises(EngineError, match="arrived in"):
        again.messages()  # the other batches never came
    with pytest.raises(EngineError, match="came twice"):
        again.add(batches[0])
