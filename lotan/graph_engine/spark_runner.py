"""Running a physical plan on Spark.

A run is a *chain* of Spark stages, one per plan stage: stage ``k`` is
``previous.repartition(P, "route").mapInArrow(...)``. Every message a task emits carries a
``route`` (:class:`Router`: the key that lands in the Spark task of its destination
partition), so the shuffle delivers partition ``p``'s messages to task ``p``, which
memory-maps that partition's layout from the :class:`LayoutStore` (layouts never travel
through Spark). Every task runs, also one that receives nothing. Messages addressed to a
later stage (activations saved for the backward pass, gradients for the driver) are
forwarded unchanged, as Arrow rows, by every stage in between; so each stage reads only its
predecessor, the query plan grows linearly with the number of stages, nothing needs to be
persisted, and Spark's shuffle files hold the intermediate state (spilled to disk, retried
from lineage). Stage 0 maps ``spark.range(P)`` (one row per task, nothing shuffled). A run
is one Spark query and one job (adaptive execution off), triggered by collecting the
driver's messages.

What a stage costs beyond its work (``python -m bench.spark_floor``) was mostly Python
worker overhead: the daemon's ``gc.collect()`` between tasks (:mod:`.worker`), a grouped map
cogrouped with the partition ids (replaced by this map over routed rows), the route
computed per row in the JVM, and adaptive re-planning between stages.
"""

from __future__ import annotations

import functools
import os
import struct
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lotan.errors import EngineError
from lotan.graph_engine.hashing import route_keys
from lotan.graph_engine.layout import PartitionLayout
from lotan.graph_engine.runner import DRIVER, OUTPUT, Message, StageFn, phase, timed_stage
from lotan.graph_engine.scheduling import dense_profile
from lotan.graph_engine.session import set_job_description, ship
from lotan.graph_engine.store import (
    LayoutStore,
    write_constants,
    write_layout,
)
from lotan.graph_engine.tiles import TilePlan, decode_tile, plan_tile, write_tile
from lotan.graph_engine.worker import set_torch_threads, task_setup

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "MESSAGE_SCHEMA",
    "ROUTED_SCHEMA",
    "Router",
    "SparkRunner",
    "binary_views",
    "map_messages",
    "messages_to_table",
    "table_to_messages",
    "write_constants_of",
    "write_layouts",
]

MESSAGE_SCHEMA = "stage int, dest int, src int, tag string, payload binary"

_ARROW_MESSAGE_SCHEMA = pa.schema(
    [
        ("stage", pa.int32()),
        ("dest", pa.int32()),
        ("src", pa.int32()),
        ("tag", pa.string()),
        ("payload", pa.binary()),
    ]
)
#: A message row with its routing key (:class:`Router`): what every stage emits.
_ARROW_ROUTED_SCHEMA = _ARROW_MESSAGE_SCHEMA.append(pa.field("route", pa.int32()))
ROUTED_SCHEMA = MESSAGE_SCHEMA + ", route int"


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


#: Largest payload one Spark row carries; bigger tiles travel as several rows (chunks), so
#: the JVM never holds one huge value (a 300 MB layout as one value exhausted a 4 GB heap).
CHUNK_BYTES = 8 << 20
_CHUNK_MAGIC = b"LTNC"
_CHUNK_HEADER = struct.Struct("<4sQII")  # magic, message id, chunk index, chunk count


#: Largest Arrow data buffer one encoded column holds (binary offsets are int32).
_BATCH_BYTES = 1 << 30


def _pieces(size: int, limit: int) -> list[int]:
    """Row sizes of a tile of ``size`` bytes: itself, or chunks with their headers."""
    if size <= limit:
        return [size]
    count = -(-size // limit)
    return [_CHUNK_HEADER.size + min(limit, size - k * limit) for k in range(count)]


def _encode_rows(plans: list[TilePlan], limit: int) -> tuple[list[int], list[pa.Array]]:
    """Encode tiles straight into Arrow binary arrays (each array's bytes copied once):
    the message index of every row, and the payload arrays (one per ~1 GB)."""
    owner: list[int] = []
    sizes: list[int] = []
    for i, plan in enumerate(plans):
        pieces = _pieces(plan.size, limit)
        owner += [i] * len(pieces)
        sizes += pieces
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
        r = row
        while r < end:
            plan = plans[owner[r]]
            lo = int(offsets[r - row])
            if sizes[r] == plan.size and _pieces(plan.size, limit) == [plan.size]:
                write_tile(plan, data[lo : lo + plan.size])
                r += 1
                continue
            # A chunked tile: each chunk's header, then its range of the tile.
            count = len(_pieces(plan.size, limit))
            mid = int.from_bytes(os.urandom(8), "little")
            for k in range(count):
                lo = int(offsets[r - row])
                head = _CHUNK_HEADER.pack(_CHUNK_MAGIC, mid, k, count)
                data[lo : lo + len(head)] = np.frombuffer(head, np.uint8)
                t_lo, t_hi = k * limit, min((k + 1) * limit, plan.size)
                write_tile(plan, data[lo + len(head) : lo + len(head) + t_hi - t_lo], t_lo, t_hi)
                r += 1
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
        schema=_ARROW_MESSAGE_SCHEMA,
    )


def table_to_messages(table: pa.Table) -> list[Message]:
    """Decode an Arrow table of :data:`MESSAGE_SCHEMA` (payloads are zero-copy views, except
    for chunked ones, joined once); every chunk of a message must be in ``table``."""
    if table.num_rows == 0:
        return []
    stage = table.column("stage").to_numpy()
    dest = table.column("dest").to_numpy()
    src = table.column("src").to_numpy()
    tag = table.column("tag").to_pylist()
    payloads = binary_views(table.column("payload"))
    out: list[Message | int] = []
    pending: dict[int, dict[int, memoryview]] = {}
    heads: dict[int, tuple[int, int, int, str, int]] = {}
    for s, d, r, t, p in zip(stage, dest, src, tag, payloads, strict=True):
        if bytes(p[:4]) != _CHUNK_MAGIC:
            out.append(Message(int(s), int(d), int(r), str(t), decode_tile(p)))
            continue
        _, mid, idx, count = _CHUNK_HEADER.unpack(bytes(p[: _CHUNK_HEADER.size]))
        if mid not in pending:
            pending[mid] = {}
            heads[mid] = (int(s), int(d), int(r), str(t), count)
            out.append(mid)  # a placeholder keeps the message's position
        pending[mid][idx] = p[_CHUNK_HEADER.size :]
    result: list[Message] = []
    for item in out:
        if isinstance(item, Message):
            result.append(item)
            continue
        s_, d_, r_, t_, count = heads[item]
        parts = pending[item]
        if len(parts) != count:
            raise EngineError(
                f"message {t_!r} from partition {r_} to {d_} arrived in {len(parts)} of "
                f"{count} chunks; the shuffle lost rows"
            )
        joined = b"".join(parts[i] for i in range(count))
        result.append(Message(s_, d_, r_, t_, decode_tile(joined)))
    return result


def _split(inbox: pa.Table, k: int) -> tuple[pa.Table, pa.Table]:
    """The rows of ``inbox`` addressed to stage ``k``, and the others. Filtering copies
    every payload byte, so a side that holds every row is ``inbox`` itself."""
    is_mine = pc.equal(inbox.column("stage"), pa.scalar(k, pa.int32()))
    count = pc.sum(is_mine).as_py() or 0
    if count == inbox.num_rows:
        return inbox, inbox.slice(0, 0)
    if count == 0:
        return inbox.slice(0, 0), inbox
    return inbox.filter(is_mine), inbox.filter(pc.invert(is_mine))


def _run_stage(
    fn: StageFn,
    k: int,
    part: int,
    layout: PartitionLayout | None,
    inbox: pa.Table,
    value: Any,
    keys: np.ndarray,
) -> pa.Table:
    """Run stage ``k`` on the routed messages addressed to it; forward the others untouched
    (with their routes); route what it emits by destination (``keys``: :func:`route_keys`)."""
    mine, forward = _split(inbox, k)
    if mine.num_rows == 0 and layout is None:
        return forward  # the driver's group, or a partition without vertices
    set_torch_threads()
    out: list[Message] = []
    with timed_stage(k, part, out):
        with phase("decode"):
            inbox_msgs = table_to_messages(mine)
        out += fn(part, layout, inbox_msgs, value)
        with phase("encode"):
            table = messages_to_table(out)
    # the timing message (appended on exit) is encoded on its own
    new = pa.concat_tables([table, messages_to_table(out[-1:])])
    dest = np.maximum(new.column("dest").to_numpy(), 0)  # the driver's go with partition 0
    new = new.append_column("route", pa.array(keys[dest].astype(np.int32)))
    return pa.concat_tables([forward.cast(_ARROW_ROUTED_SCHEMA), new])


def _named(run: Callable[..., pa.Table], fn: StageFn) -> Callable[..., pa.Table]:
    """Name ``run`` after its stage (``stage_2_backward``): the Spark UI's SQL plan shows
    each grouped map under its function's name."""
    label = getattr(fn, "label", None)
    if label:
        name = "_".join(w for w in label.replace("·", " ").replace("+", " ").split())
        run.__name__ = run.__qualname__ = name
    return run


def _task(
    fn: StageFn,
    k: int,
    value_ref: Any,
    store: LayoutStore | None,
    router: Router,
    first: bool = False,
) -> Callable[[Iterator[pa.RecordBatch]], Iterator[pa.RecordBatch]]:
    """Stage ``k`` as the function of a ``mapInArrow``: task ``p`` runs partition ``p``.

    Task ``p`` of a :meth:`Router.route` shuffle holds partition ``p``'s rows and only those
    (the routing keys are chosen so); every task runs, also one that receives no message
    (its stage may read only its layout). The first stage maps ``spark.range`` with one row
    per partition (nothing shuffled)."""

    def run(batches: Iterator[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        from pyspark import TaskContext

        task_setup()
        ctx = TaskContext.get()
        assert ctx is not None
        part = ctx.partitionId()
        received = [b for b in batches if b.num_rows]
        inbox = (
            pa.Table.from_batches(received)
            if received and not first
            else _ARROW_ROUTED_SCHEMA.empty_table()  # no message for this partition
        )
        routes = pc.unique(inbox.column("route")).to_pylist()
        if routes not in ([], [int(router.keys[part])]):
            raise EngineError(
                f"task {part} of stage {k} received the rows of routes {routes}; each "
                "task must hold one partition's rows (was the shuffle re-partitioned?)"
            )
        layout = None
        if store is not None:
            with phase("load"):
                layout = store.load(part)
        if layout is None and first:
            return
        out = _run_stage(fn, k, part, layout, inbox, value_ref.value, router.keys)
        yield from out.to_batches()

    return _named(run, fn)


class Router:
    """Routes rows keyed by a partition id to the Spark task of that id.

    ``repartition(P, col)`` sends a row to ``pmod(murmur3(col), P)``; routing by the id
    itself put partitions 0 and 1 of 2 (and 3 of 4) in the same task, so half the cores
    idled. The router adds a ``route`` column holding :func:`route_keys`' key of the id
    (ids below 0 — the driver's messages — go with partition 0).
    """

    def __init__(self, num_partitions: int) -> None:
        self.num_partitions = num_partitions
        self.keys = route_keys(num_partitions)
        self.part_of = {int(k): p for p, k in enumerate(self.keys.tolist())}
        self._columns: dict[str, Any] = {}

    def column(self, col: str) -> Any:
        from pyspark.sql import functions as F

        if col not in self._columns:  # built once: each literal is a py4j round trip
            keys = F.array(*[F.lit(int(k)) for k in self.keys.tolist()])
            self._columns[col] = F.element_at(keys, F.greatest(F.col(col), F.lit(0)) + 1)
        return self._columns[col]

    def __getstate__(self) -> dict[str, Any]:  # Columns stay on the driver
        return {**self.__dict__, "_columns": {}}

    def route(self, df: DataFrame, col: str) -> DataFrame:
        """``df`` with a ``route`` column, shuffled so that id ``p`` lands in task ``p``."""
        return df.withColumn("route", self.column(col)).repartition(self.num_partitions, "route")


class SparkRunner:
    """Runs stages on Spark: messages travel through Spark's shuffle, each routed to the
    task of its destination partition; layouts are read from ``store`` by that task."""

    def __init__(
        self,
        spark: SparkSession,
        num_partitions: int,
        store: LayoutStore | None = None,
        sizes: Sequence[tuple[int, int, int, int]] = (),
    ) -> None:
        self.spark = spark
        self.num_partitions = num_partitions
        self.store = store
        #: (partition, own vertices, halo rows, edges) of every partition with vertices.
        self.sizes = list(sizes)
        self.router = Router(num_partitions)

    def unpersist(self) -> None:
        """Delete the layout files."""
        if self.store is not None:
            self.store.remove()
        self.store = None

    def _profile(self, fn: StageFn) -> Any:
        """The resource profile of a stage that asks for resources of its own (a dense
        stage under split placement; None in local mode, which has no profiles, and for
        every other stage)."""
        request = getattr(fn, "resources", None)
        return dense_profile(self.spark, request) if request else None

    def run(
        self,
        stages: Sequence[StageFn],
        value: Any,
        initial: DataFrame | None = None,
        *,
        description: str = "lotan",
        adaptive: bool = False,
    ) -> RunResult:
        """Build the run lazily (a new query each time: re-running a DataFrame would reuse
        its shuffle files, i.e. the previous epoch's messages); :class:`RunResult` executes
        it and cleans up."""
        bc = ship(self.spark, value)
        schema = _routed_type()
        first = 0
        if initial is not None:
            current = initial.withColumn("route", self.router.column("dest"))
        elif self.store is not None:
            current = self.spark.range(0, self.num_partitions, 1, self.num_partitions)
            current = current.mapInArrow(
                _task(stages[0], 0, bc, self.store, self.router, first=True),
                schema,
                profile=self._profile(stages[0]),
            )
            first = 1
        else:
            current = self.spark.createDataFrame([], schema)
        for k in range(first, len(stages)):
            current = current.repartition(self.num_partitions, "route").mapInArrow(
                _task(stages[k], k, bc, self.store, self.router),
                schema,
                profile=self._profile(stages[k]),
            )
        labels = [getattr(fn, "label", None) for fn in stages]
        if all(labels):
            description += " · " + " → ".join(str(x) for x in labels)
        return RunResult(self.spark, current, bc, description, adaptive)


@functools.cache
def _routed_type() -> Any:
    """:data:`ROUTED_SCHEMA` as a ``StructType``, parsed once (a string is parsed by the JVM:
    three py4j round trips per stage and run)."""
    from pyspark.sql.types import _parse_datatype_string

    return _parse_datatype_string(ROUTED_SCHEMA)


#: Adaptive query execution is off while a run executes: every shuffle of a run is an
#: exact repartition it must not change, and with it on each Spark stage became a job of
#: its own, re-planned in between (3 no-op stages: 0.45 -> 0.37 s per run). Preparation
#: keeps it (``adaptive=True``): its joins want their 200 shuffle partitions coalesced.
_ADAPTIVE = "spark.sql.adaptive.enabled"


class RunResult:
    """One Spark run: its final messages (the driver's and the output's), and its clean-up."""

    def __init__(
        self,
        spark: SparkSession,
        final: DataFrame,
        broadcast: Any,
        description: str,
        adaptive: bool = False,
    ) -> None:
        self._spark = spark
        self._final = final
        self._broadcast = broadcast
        self._description = description
        self._adaptive = adaptive

    def execute(self, action: Callable[[], Any]) -> Any:
        """Run ``action`` (a Spark action over this run's DataFrames) under the run's job
        description."""
        set_job_description(self._spark, self._description)
        conf = self._spark.conf
        adaptive = conf.get(_ADAPTIVE, None)
        if not self._adaptive:
            conf.set(_ADAPTIVE, "false")
        try:
            return action()
        finally:
            set_job_description(self._spark, None)
            if self._adaptive:
                pass
            elif adaptive is None:  # the session's own setting back
                conf.unset(_ADAPTIVE)
            else:
                conf.set(_ADAPTIVE, adaptive)

    def collect_driver(self) -> list[Message]:
        """Run the plan and return the messages addressed to the driver."""
        from pyspark.sql import functions as F

        driver = self._final.filter(F.col("stage") == DRIVER)
        return table_to_messages(self.execute(driver.toArrow))

    def output(self) -> DataFrame:
        """The messages addressed to :data:`OUTPUT`, as a (lazy) DataFrame."""
        from pyspark.sql import functions as F

        return self._final.filter(F.col("stage") == OUTPUT)

    def close(self) -> None:
        """Release the broadcast value."""
        self._broadcast.unpersist(blocking=False)


_SIZES_SCHEMA = "part int, own long, halo long, edges long"


def map_messages(
    output: DataFrame, router: Router, fn: Callable[[int, list[Message]], pa.Table], schema: str
) -> DataFrame:
    """``fn(partition, messages)`` for the messages of ``output`` addressed to each partition
    (grouped by destination, so that the chunks of a message meet)."""

    def run(key: Any, msgs: pa.Table) -> pa.Table:
        task_setup()
        part = router.part_of[int(key[0].as_py())]
        return fn(part, table_to_messages(msgs.drop_columns(["route"])))

    return router.route(output, "dest").groupBy("route").applyInArrow(run, schema)


def write_layouts(
    output: DataFrame, directory: str, router: Router
) -> list[tuple[int, int, int, int]]:
    """Write the layouts in ``output`` (messages whose payload is a layout's arrays) to
    ``directory``; return (partition, own, halo, edges) of each, computed where written."""

    def write(_part: int, msgs: list[Message]) -> pa.Table:
        layouts = [PartitionLayout.from_arrays(m.payload) for m in msgs]
        for layout in layouts:
            write_layout(directory, layout)
        return pa.table(
            {
                "part": pa.array([lay.part for lay in layouts], pa.int32()),
                "own": pa.array([lay.num_own for lay in layouts], pa.int64()),
                "halo": pa.array([lay.num_halo for lay in layouts], pa.int64()),
                "edges": pa.array([lay.num_edges for lay in layouts], pa.int64()),
            }
        )

    rows = map_messages(output, router, write, _SIZES_SCHEMA).collect()
    return sorted((r["part"], r["own"], r["halo"], r["edges"]) for r in rows)


def write_constants_of(output: DataFrame, directory: str, router: Router) -> None:
    """Write the per-partition constants in ``output`` (messages tagged ``o<node>``, rows
    under ``payload["rows"]``) to ``directory``, one tile per partition."""

    def write(part: int, msgs: list[Message]) -> pa.Table:
        write_constants(directory, part, {m.tag[1:]: np.asarray(m.payload["rows"]) for m in msgs})
        return pa.table({"part": pa.array([part], pa.int32())})

    map_messages(output, router, write, "part int").collect()
