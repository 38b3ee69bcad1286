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
from collections.abc import Callable, Iterator, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from lotan.engines.base import partition_stats
from lotan.engines.spark.codec import (
    ARROW_ROUTED_SCHEMA,
    ROUTED_SCHEMA,
    Inbox,
    messages_to_table,
    table_to_messages,
)
from lotan.engines.spark.scheduling import dense_profile
from lotan.engines.spark.session import set_job_description, ship
from lotan.engines.spark.store import (
    LayoutStore,
    write_constants,
    write_layout,
)
from lotan.engines.spark.worker import set_torch_threads, task_setup
from lotan.errors import EngineError
from lotan.graph_engine.hashing import route_keys
from lotan.graph_engine.layout import PartitionLayout
from lotan.runtime.message import DRIVER, OUTPUT, Message, StageFn
from lotan.runtime.tags import OUTPUT_ROWS
from lotan.runtime.task import assign_gpus, phase, timed_stage

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "Router",
    "SparkRunner",
    "map_messages",
    "write_constants_of",
    "write_layouts",
]


def _run_stage(
    fn: StageFn,
    k: int,
    part: int,
    layout: PartitionLayout | None,
    inbox: list[Message],
    forward: list[pa.RecordBatch | pa.Table],
    value: Any,
    keys: np.ndarray,
) -> Iterator[pa.RecordBatch]:
    """Run stage ``k`` on the messages addressed to it; forward the other rows untouched
    (with their routes); route what it emits by destination (``keys``: :func:`route_keys`)."""
    for rows in forward:
        yield from pa.table(rows).cast(ARROW_ROUTED_SCHEMA).to_batches()
    forward.clear()
    if not inbox and layout is None:
        return  # the driver's group, or a partition without vertices
    set_torch_threads()
    out: list[Message] = []
    with timed_stage(k, part, out):
        out += fn(part, layout, inbox, value)
        inbox.clear()  # the stage's inputs go as soon as it is done
        with phase("encode"):
            table = messages_to_table(out)
    # the timing message (appended on exit) is encoded on its own
    new = pa.concat_tables([table, messages_to_table(out[-1:])])
    out.clear()
    dest = np.maximum(new.column("dest").to_numpy(), 0)  # the driver's go with partition 0
    yield from new.append_column("route", pa.array(keys[dest].astype(np.int32))).to_batches()


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
        gpu = ctx.resources().get("gpu")
        assign_gpus(gpu.addresses if gpu is not None else [])
        inbox = Inbox(k)
        forward: list[pa.RecordBatch | pa.Table] = []
        expected = [int(router.keys[part])]
        for batch in batches:  # read as they come: each batch is freed once read
            if first or not batch.num_rows:
                continue
            routes = pc.unique(batch.column("route")).to_pylist()
            if routes != expected:
                raise EngineError(
                    f"task {part} of stage {k} received the rows of routes {routes}; each "
                    "task must hold one partition's rows (was the shuffle re-partitioned?)"
                )
            with phase("decode"):
                rest = inbox.add(batch)
            if rest is not None:
                forward.append(rest)
            del batch, rest
        layout = None
        if store is not None:
            with phase("load"):
                layout = store.load(part)
        if layout is None and first:
            return
        with phase("decode"):
            msgs = inbox.messages()
        del inbox
        yield from _run_stage(fn, k, part, layout, msgs, forward, value_ref.value, router.keys)

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

    def stats(self) -> dict[str, int]:
        return partition_stats(tuple(s[1:]) for s in self.sizes)  # type: ignore[misc]

    def release(self) -> None:
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
#: A run's shuffle files are deleted when its action ends (a new run is a new query, so
#: nothing reads them again). Left to Spark's cleaner they stay until the driver's JVM
#: collects them (``spark.cleaner.periodicGC.interval``, 30 min): at products scale an
#: epoch's files took ~19 GB of the local disk. (A Spark Connect server has its own setting,
#: ``spark.sql.connect.shuffleDependency.fileCleanup.enabled``, left as the server has it.)
_CLEANUP = "spark.sql.classic.shuffleDependency.fileCleanup.enabled"


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
        description, with adaptive execution off (unless the run wants it) and the shuffle
        files deleted at its end (of a DataFrame ``action`` makes: a query takes the
        setting when it is made); the session's own settings come back after."""
        from lotan.engines.spark.session import is_connect

        settings = {} if is_connect(self._spark) else {_CLEANUP: "true"}
        if not self._adaptive:
            settings[_ADAPTIVE] = "false"
        conf = self._spark.conf
        saved = {key: conf.get(key, None) for key in settings}
        set_job_description(self._spark, self._description)
        for key, value in settings.items():
            conf.set(key, value)
        try:
            return action()
        finally:
            set_job_description(self._spark, None)
            for key, before in saved.items():
                if before is None:
                    conf.unset(key)
                else:
                    conf.set(key, before)

    def collect_driver(self) -> list[Message]:
        """Run the plan and return the messages addressed to the driver."""
        from pyspark.sql import functions as F

        # built inside the action: a query takes the shuffle clean-up setting when made
        rows = self.execute(lambda: self._final.filter(F.col("stage") == DRIVER).toArrow())
        return table_to_messages(rows)

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
        rows = {str(OUTPUT_ROWS.index_of(m.tag)): np.asarray(m.payload["rows"]) for m in msgs}
        write_constants(directory, part, rows)
        return pa.table({"part": pa.array([part], pa.int32())})

    map_messages(output, router, write, "part int").collect()
