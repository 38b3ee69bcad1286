"""Messages as Arrow rows: what crosses a Spark shuffle.

A message is one row of :data:`MESSAGE_SCHEMA` (stage, destination, source, tag and its
payload, a tile: :mod:`lotan.graph_engine.tiles`), or several for a payload over :data:`CHUNK_BYTES`
(*chunks*, each with a header naming its message, its place and the tile's size), so that
the JVM never holds one huge value.

Encoding writes every tile straight into the Arrow buffer (each byte copied once).
Decoding (:class:`Inbox`) reads batches as a Spark task receives them and copies each
payload of a message it keeps into memory of its own — a chunk straight to its place in
its tile —, so a batch is freed once read: a task holds what it received once, not the
received batches, a filtered copy of its own rows and the joined chunks of each big tile
on top (at 20 % of the products shape the filter added 0.52 GiB to a task, the join 0.58).
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterable, Sequence

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lotan.errors import EngineError
from lotan.graph_engine.tiles import TilePlan, decode_tile, plan_tile, write_tile
from lotan.runtime.message import Message

__all__ = [
    "ARROW_ROUTED_SCHEMA",
    "CHUNK_BYTES",
    "MESSAGE_SCHEMA",
    "ROUTED_SCHEMA",
    "Inbox",
    "binary_views",
    "messages_to_table",
    "table_to_messages",
]

MESSAGE_SCHEMA = "stage int, dest int, src int, tag string, payload binary"

ARROW_MESSAGE_SCHEMA = pa.schema(
    [
        ("stage", pa.int32()),
        ("dest", pa.int32()),
        ("src", pa.int32()),
        ("tag", pa.string()),
        ("payload", pa.binary()),
    ]
)
#: A message row with its routing key (:class:`~.spark_runner.Router`): what every stage
#: emits.
ARROW_ROUTED_SCHEMA = ARROW_MESSAGE_SCHEMA.append(pa.field("route", pa.int32()))
ROUTED_SCHEMA = MESSAGE_SCHEMA + ", route int"

#: Largest payload one Spark row carries; bigger tiles travel as several rows (chunks), so
#: the JVM never holds one huge value (a 300 MB layout as one value exhausted a 4 GB heap).
CHUNK_BYTES = 8 << 20
_CHUNK_MAGIC = b"LTNC"
#: magic, message id, chunk index, chunk count, offset of the chunk in its tile, tile size
_CHUNK_HEADER = struct.Struct("<4sQIIQQ")
#: Largest Arrow data buffer one encoded column holds, hence the payload of one record batch
#: a task yields. The JVM reads each batch whole into direct memory (``MaxDirectMemorySize``
#: defaults to the heap's size), one per running task: two tasks' 1 GB batches ran a 4 GiB
#: local-mode JVM out of it (GIN on the 2M-vertex benchmark graph, 8 partitions). Binary
#: offsets are int32, so it must stay under 2 GiB anyway.
_BATCH_BYTES = 64 << 20


def binary_views(column: pa.ChunkedArray | pa.Array) -> list[memoryview]:
    """Zero-copy views of the values of an Arrow binary column."""
    chunks = column.chunks if isinstance(column, pa.ChunkedArray) else [column]
    out: list[memoryview] = []
    for arr in chunks:
        if len(arr) == 0:
            continue
        _, offs_buf, data_buf = arr.buffers()
        wide = pa.types.is_large_binary(arr.type)
        offsets = np.frombuffer(
            offs_buf, dtype=np.int64 if wide else np.int32, count=len(arr) + 1, offset=0
        )[arr.offset : arr.offset + len(arr) + 1]
        data = memoryview(data_buf) if data_buf is not None else memoryview(b"")
        out.extend(data[int(a) : int(b)] for a, b in zip(offsets[:-1], offsets[1:], strict=True))
    return out


def _pieces(size: int, limit: int) -> list[int]:
    """Row sizes of a tile of ``size`` bytes: itself, or chunks with their headers."""
    if size <= limit:
        return [size]
    count = -(-size // limit)
    return [_CHUNK_HEADER.size + min(limit, size - k * limit) for k in range(count)]


def _encode_rows(plans: list[TilePlan], limit: int) -> tuple[list[int], list[pa.Array]]:
    """Encode tiles straight into Arrow binary arrays (each array's bytes copied once):
    the message index of every row, and the payload arrays (one per :data:`_BATCH_BYTES`;
    a chunked tile's chunks may fall in several)."""
    owner: list[int] = []
    index: list[int] = []  # of the row among its tile's chunks
    sizes: list[int] = []
    chunked: dict[int, tuple[int, int]] = {}  # tile -> (message id, chunk count)
    for i, plan in enumerate(plans):
        pieces = _pieces(plan.size, limit)
        owner += [i] * len(pieces)
        index += range(len(pieces))
        sizes += pieces
        if len(pieces) > 1:
            chunked[i] = (int.from_bytes(os.urandom(8), "little"), len(pieces))
    arrays: list[pa.Array] = []
    row = 0
    while row < len(sizes) or not arrays:
        end, total = row, 0
        while end < len(sizes) and (end == row or total + sizes[end] <= _BATCH_BYTES):
            total += sizes[end]
            end += 1
        offsets = np.zeros(end - row + 1, np.int32)
        np.cumsum(sizes[row:end], out=offsets[1:])
        data = np.empty(total, np.uint8)
        for r in range(row, end):
            plan = plans[owner[r]]
            lo = int(offsets[r - row])
            if owner[r] not in chunked:
                write_tile(plan, data[lo : lo + plan.size])
                continue
            # A chunk: its header, then its range of the tile.
            k = index[r]
            t_lo, t_hi = k * limit, min((k + 1) * limit, plan.size)
            mid, count = chunked[owner[r]]
            head = _CHUNK_HEADER.pack(_CHUNK_MAGIC, mid, k, count, t_lo, plan.size)
            data[lo : lo + len(head)] = np.frombuffer(head, np.uint8)
            write_tile(plan, data[lo + len(head) : lo + len(head) + t_hi - t_lo], t_lo, t_hi)
        arrays.append(
            pa.Array.from_buffers(
                pa.binary(), end - row, [None, pa.py_buffer(offsets), pa.py_buffer(data)]
            )
        )
        row = end
    return owner, arrays


def messages_to_table(msgs: Sequence[Message], chunk_bytes: int = CHUNK_BYTES) -> pa.Table:
    """Encode messages as an Arrow table of :data:`MESSAGE_SCHEMA`, one row per message, or
    several for a payload over ``chunk_bytes`` (rows with the same stage, dest, src, tag).
    Each array's bytes are copied once, straight into the Arrow buffer."""
    owner, payloads = _encode_rows([plan_tile(m.payload) for m in msgs], chunk_bytes)
    rows = [msgs[i] for i in owner]
    return pa.Table.from_arrays(
        [
            pa.array([m.stage for m in rows], pa.int32()),
            pa.array([m.dest for m in rows], pa.int32()),
            pa.array([m.src for m in rows], pa.int32()),
            pa.array([m.tag for m in rows], pa.string()),
            pa.chunked_array(payloads, pa.binary()),
        ],
        schema=ARROW_MESSAGE_SCHEMA,
    )


class _Chunked:
    """A chunked tile being put together: its bytes, and which chunks came."""

    def __init__(self, head: tuple[int, int, int, str], count: int, size: int) -> None:
        self.head = head
        self.count = count
        self.data = np.empty(size, np.uint8)
        self.seen: set[int] = set()


class Inbox:
    """The messages of ``stage`` (all of them: ``None``) in the Arrow batches given to
    :meth:`add`, each payload copied into memory of its own so that no batch outlives its
    reading; :meth:`add` returns the rows for other stages (to forward)."""

    def __init__(self, stage: int | None = None) -> None:
        self.stage = stage
        self._out: list[Message | int] = []  # a chunked message's id keeps its place
        self._chunked: dict[int, _Chunked] = {}

    def add(self, batch: pa.RecordBatch | pa.Table) -> pa.RecordBatch | pa.Table | None:
        """Read the messages of ``batch``; the rows of other stages (``None``: none)."""
        if batch.num_rows == 0:
            return None
        if self.stage is None:
            mine, rest = batch, None
        else:
            is_mine = pc.equal(batch.column("stage"), pa.scalar(self.stage, pa.int32()))
            count = pc.sum(is_mine).as_py() or 0
            if count == 0:
                return batch  # forwarded whole: no copy
            mine = batch if count == batch.num_rows else batch.filter(is_mine)
            rest = None if count == batch.num_rows else batch.filter(pc.invert(is_mine))
        self._read(mine)
        return rest

    def _read(self, rows: pa.RecordBatch | pa.Table) -> None:
        stage = rows.column("stage").to_numpy()
        dest = rows.column("dest").to_numpy()
        src = rows.column("src").to_numpy()
        tag = rows.column("tag").to_pylist()
        for s, d, r, t, p in zip(
            stage, dest, src, tag, binary_views(rows.column("payload")), strict=True
        ):
            head = (int(s), int(d), int(r), str(t))
            if bytes(p[:4]) != _CHUNK_MAGIC:
                own = np.frombuffer(p, np.uint8).copy()
                self._out.append(Message(*head, decode_tile(own.data.toreadonly())))
                continue
            _, mid, idx, count, lo, size = _CHUNK_HEADER.unpack(bytes(p[: _CHUNK_HEADER.size]))
            tile = self._chunked.get(mid)
            if tile is None:
                tile = self._chunked[mid] = _Chunked(head, count, size)
                self._out.append(mid)
            body = np.frombuffer(p, np.uint8, offset=_CHUNK_HEADER.size)
            if idx in tile.seen or lo + body.shape[0] > size:
                raise EngineError(
                    f"message {t!r} from partition {r} to {d}: chunk {idx} of {count} came "
                    "twice or does not fit its tile; the shuffle duplicated or mixed rows"
                )
            tile.data[lo : lo + body.shape[0]] = body
            tile.seen.add(idx)

    def messages(self) -> list[Message]:
        """The messages read, in the order their first rows came."""
        out: list[Message] = []
        for item in self._out:
            if isinstance(item, Message):
                out.append(item)
                continue
            tile = self._chunked[item]
            s, d, r, t = tile.head
            if len(tile.seen) != tile.count:
                raise EngineError(
                    f"message {t!r} from partition {r} to {d} arrived in {len(tile.seen)} "
                    f"of {tile.count} chunks; the shuffle lost rows"
                )
            out.append(Message(s, d, r, t, decode_tile(tile.data.data.toreadonly())))
        return out


def table_to_messages(table: pa.Table | Iterable[pa.RecordBatch]) -> list[Message]:
    """The messages of a table (or batches) of :data:`MESSAGE_SCHEMA`; every chunk of a
    message must be in it."""
    inbox = Inbox()
    for batch in table.to_batches() if isinstance(table, pa.Table) else table:
        inbox.add(batch)
    return inbox.messages()
