"""The two engines behind one interface: prepare a graph once, run plans over it.

``LocalEngine`` runs the stages in-process; ``SparkEngine`` runs them through Spark. Both use
the same preparation kernels and the same stage functions, so they compute the same numbers.
:func:`lotan.engine_choice.choose_engine` resolves ``engine="auto"`` to one of them and says
why.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from lotan.graph import Graph
from lotan.graph_engine.partition import LabelPropagation
from lotan.graph_engine.prepare import prepare_local, prepare_spark
from lotan.graph_engine.runner import LocalRunner, Message, StageFn
from lotan.ir.norm import NormSpec
from lotan.planner.physical import EpochValue
from lotan.planner.placement import DENSE, Placement

if TYPE_CHECKING:
    import pandas as pd
    from pyspark.sql import DataFrame, SparkSession


__all__ = ["Engine", "LocalEngine", "SparkEngine", "make_engine"]

STRUCTURE = NormSpec(kind="sum")


class Engine(Protocol):
    name: str

    def default_partitions(self) -> int: ...

    def prepare(
        self,
        graph: Graph,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> Any: ...

    def with_constants(
        self, graph: Graph, prepared: Any, key: Any, stages: Sequence[StageFn], value: Any
    ) -> Any: ...

    def stats(self, prepared: Any) -> dict[str, int]: ...

    def run(
        self, prepared: Any, stages: Sequence[StageFn], value: Any, label: str
    ) -> list[Message]: ...

    def predictions(self, prepared: Any, stages: Sequence[StageFn], value: Any) -> Any: ...

    def check_placement(self, placement: Placement) -> None: ...


def _predictions_frame(ids: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    import torch

    probs = torch.softmax(torch.from_numpy(np.asarray(logits)), dim=1).numpy()
    return {
        "id": ids.astype(np.int64),
        "prediction": logits.argmax(axis=1).astype(np.int64),
        "probability": list(probs.astype(np.float32)),
        "logits": list(np.asarray(logits, dtype=np.float32)),
    }


def _with_parts(value: Any, parts: Iterable[int]) -> Any:
    """``value`` with the partitions that own vertices (what a reduction across partitions
    sends its partials to), when it is an :class:`EpochValue`."""
    if isinstance(value, EpochValue):
        return replace(value, parts=tuple(sorted(int(p) for p in parts)))
    return value


def _stats(sizes: list[tuple[int, int, int]]) -> dict[str, int]:
    """Totals and maxima of (own vertices, halo rows, edges) over partitions."""
    return {
        "parts": len(sizes),
        "own": sum(s[0] for s in sizes),
        "halo": sum(s[1] for s in sizes),
        "edges": sum(s[2] for s in sizes),
        "max_own": max((s[0] for s in sizes), default=0),
        "max_edges": max((s[2] for s in sizes), default=0),
        "max_halo": max((s[1] for s in sizes), default=0),
        "max_rows": max((s[0] + s[1] for s in sizes), default=0),
    }


#: Columns of ``lotan.predict``'s output.
PREDICTION_SCHEMA = "id long, prediction long, probability array<float>, logits array<float>"


def _list_column(rows: list[np.ndarray]) -> Any:
    import pyarrow as pa

    width = rows[0].shape[0] if rows else 0
    flat = np.concatenate(rows) if rows else np.zeros(0, np.float32)
    offsets = np.arange(0, (len(rows) + 1) * width, width if width else 1, dtype=np.int32)[
        : len(rows) + 1
    ]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.float32)))


class LocalEngine:
    """In-process engine: the physical plan without Spark."""

    name = "local"

    def check_placement(self, placement: Placement) -> None:
        """Any placement runs in-process (split only changes how stages are grouped)."""

    def default_partitions(self) -> int:
        return 1

    def prepare(
        self,
        graph: Graph,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> LocalRunner:
        key = ("local", num_partitions, norms, partitioner)
        if key not in graph._prepared:
            a = graph.arrays()
            owner = None
            if partitioner == "label_propagation" and num_partitions > 1:
                owner = self._label_propagation(graph, num_partitions)
            layouts = prepare_local(
                a.ids,
                a.x,
                a.y,
                a.split,
                a.src,
                a.dst,
                a.weight,
                num_partitions,
                norms,
                owner,
                a.edge_attr,
            )
            graph._prepared[key] = LocalRunner(layouts)
        runner: LocalRunner = graph._prepared[key]
        return runner

    @staticmethod
    def _label_propagation(graph: Graph, num_partitions: int) -> np.ndarray:
        """Each vertex's partition, in the order of ``graph.arrays().ids``."""
        a = graph.arrays()
        n = a.ids.shape[0]
        structure = prepare_local(
            a.ids, np.zeros((n, 0), np.float32), a.y, a.split, a.src, a.dst, None,
            num_partitions, (STRUCTURE,),
        )  # fmt: skip
        _, out = LocalRunner(structure).run(LabelPropagation(num_partitions, n).stages(), None)
        ids = np.concatenate([m.payload["ids"] for m in out])
        parts = np.concatenate([m.payload["rows"] for m in out])
        order = np.argsort(ids)
        return parts[order][np.searchsorted(ids[order], a.ids)]

    def with_constants(
        self, graph: Graph, prepared: LocalRunner, key: Any, stages: Sequence[StageFn], value: Any
    ) -> LocalRunner:
        full_key = ("local-constants", id(prepared), key)
        if full_key not in graph._prepared:
            _, out = prepared.run(stages, value)
            layouts = dict(prepared.layouts)
            for m in out:
                lay = layouts[m.dest]
                consts = {**lay.constants, m.tag[1:]: np.asarray(m.payload["rows"])}
                layouts[m.dest] = replace(lay, constants=consts)
            graph._prepared[full_key] = LocalRunner(layouts)
        runner: LocalRunner = graph._prepared[full_key]
        return runner

    def stats(self, prepared: LocalRunner) -> dict[str, int]:
        return _stats(
            [(lay.num_own, lay.num_halo, lay.num_edges) for lay in prepared.layouts.values()]
        )

    def run(
        self, prepared: LocalRunner, stages: Sequence[StageFn], value: Any, label: str
    ) -> list[Message]:
        driver, _ = prepared.run(stages, _with_parts(value, prepared.layouts))
        return driver

    def predictions(
        self, prepared: LocalRunner, stages: Sequence[StageFn], value: Any
    ) -> pd.DataFrame:
        import pandas as pd

        _, out = prepared.run(stages, _with_parts(value, prepared.layouts))
        ids = np.concatenate([m.payload["ids"] for m in out])
        logits = np.concatenate([m.payload["rows"] for m in out])
        order = np.argsort(ids)
        return pd.DataFrame(_predictions_frame(ids[order], logits[order]))


class SparkEngine:
    """Spark engine: stages run as Spark stages over partition layouts kept in files."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def check_placement(self, placement: Placement) -> None:
        """Under split, register the dense stages' resource profile and run one task under
        it now — before the graph is prepared — so that a request the cluster cannot meet
        fails at once (:mod:`lotan.graph_engine.scheduling`)."""
        if placement.split:
            from lotan.graph_engine.scheduling import dense_profile

            dense_profile(self.spark, placement.task_request(DENSE))

    def default_partitions(self) -> int:
        from lotan.graph_engine.session import default_parallelism

        return default_parallelism(self.spark)

    def prepare(
        self,
        graph: Graph,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> Any:
        from lotan.graph_engine.spark_runner import SparkRunner
        from lotan.graph_engine.store import LayoutStore, cache_root

        key = ("spark", id(self.spark), num_partitions, norms, partitioner)
        if key not in graph._prepared:
            # One pair of DataFrames for the partitioner and the layouts: a graph held on the
            # driver becomes a local relation in the driver JVM's heap, and two of them (one
            # per call) ran a 1M-vertex graph out of a 4 GiB heap under label propagation.
            vertices, edges = graph.dataframes(self.spark)
            owner = None
            if partitioner == "label_propagation" and num_partitions > 1:
                owner = self._label_propagation(vertices, edges, graph.num_vertices, num_partitions)
            directory = LayoutStore.new_dir(cache_root(self.spark))
            sizes = prepare_spark(
                self.spark,
                vertices,
                edges,
                num_partitions,
                norms,
                directory,
                owner,
                graph.num_edge_features,
            )
            graph._prepared[key] = SparkRunner(
                self.spark, num_partitions, LayoutStore(directory), sizes
            )
        return graph._prepared[key]

    def _label_propagation(
        self, vertices: DataFrame, edges: DataFrame, num_vertices: int, num_partitions: int
    ) -> DataFrame:
        """``(id, part)`` of every vertex of the graph ``(vertices, edges)``, computed in
        Spark and checkpointed."""
        import pyarrow as pa
        from pyspark.sql import functions as F

        from lotan.graph_engine.session import local_checkpoint
        from lotan.graph_engine.spark_runner import SparkRunner, map_messages
        from lotan.graph_engine.store import LayoutStore, cache_root

        def decode(_part: int, msgs: list[Message]) -> pa.Table:
            return pa.table(
                {
                    "id": pa.array(np.concatenate([m.payload["ids"] for m in msgs]), pa.int64()),
                    "part": pa.array(np.concatenate([m.payload["rows"] for m in msgs]), pa.int32()),
                }
            )

        vertices = vertices.withColumn("features", F.array().cast("array<float>"))
        directory = LayoutStore.new_dir(cache_root(self.spark))
        sizes = prepare_spark(self.spark, vertices, edges, num_partitions, (STRUCTURE,), directory)
        runner = SparkRunner(self.spark, num_partitions, LayoutStore(directory), sizes)
        stages = LabelPropagation(num_partitions, num_vertices).stages()
        result = runner.run(stages, None, description="lotan partition (label propagation)")
        try:
            owner: DataFrame = result.execute(
                lambda: local_checkpoint(
                    map_messages(result.output(), runner.router, decode, "id long, part int")
                )
            )
        finally:
            result.close()
            runner.unpersist()
        return owner

    def with_constants(
        self, graph: Graph, prepared: Any, key: Any, stages: Sequence[StageFn], value: Any
    ) -> Any:
        from lotan.graph_engine.spark_runner import SparkRunner, write_constants_of
        from lotan.graph_engine.store import LayoutStore, cache_root

        full_key = ("spark-constants", id(prepared), key)
        if full_key not in graph._prepared:
            directory = LayoutStore.new_dir(cache_root(self.spark))
            result = prepared.run(stages, value, description="lotan cache constants")
            try:
                result.execute(
                    lambda: write_constants_of(result.output(), directory, prepared.router)
                )
            finally:
                result.close()
            graph._prepared[full_key] = SparkRunner(
                self.spark,
                prepared.num_partitions,
                prepared.store.with_constants(directory),
                prepared.sizes,
            )
        return graph._prepared[full_key]

    def stats(self, prepared: Any) -> dict[str, int]:
        return _stats([tuple(s[1:]) for s in prepared.sizes])

    def run(
        self, prepared: Any, stages: Sequence[StageFn], value: Any, label: str
    ) -> list[Message]:
        value = _with_parts(value, [p for p, *_ in prepared.sizes])
        result = prepared.run(stages, value, description=label)
        try:
            return result.collect_driver()
        finally:
            result.close()

    def predictions(self, prepared: Any, stages: Sequence[StageFn], value: Any) -> DataFrame:
        import pyarrow as pa

        from lotan.graph_engine.session import local_checkpoint
        from lotan.graph_engine.spark_runner import map_messages

        def decode(_part: int, msgs: list[Message]) -> pa.Table:
            ids = np.concatenate([m.payload["ids"] for m in msgs])
            frame = _predictions_frame(ids, np.concatenate([m.payload["rows"] for m in msgs]))
            return pa.table(
                {
                    "id": pa.array(frame["id"], pa.int64()),
                    "prediction": pa.array(frame["prediction"], pa.int64()),
                    "probability": _list_column(frame["probability"]),
                    "logits": _list_column(frame["logits"]),
                }
            )

        value = _with_parts(value, [p for p, *_ in prepared.sizes])
        result = prepared.run(stages, value, description="lotan predict")
        try:
            # Checkpointed (kept in the block managers, memory and disk, lineage cut): the
            # predictions must not be recomputed from layouts that graph.unpersist() deletes.
            out: DataFrame = result.execute(
                lambda: local_checkpoint(
                    map_messages(result.output(), prepared.router, decode, PREDICTION_SCHEMA)
                )
            )
        finally:
            result.close()
        return out


def make_engine(engine: str, spark: SparkSession | None = None) -> Engine:
    """The engine named ``engine`` (``"spark"`` or ``"local"``; for ``"auto"`` see
    :func:`lotan.engine_choice.choose_engine`)."""
    from lotan.errors import LotanError

    if engine == "local":
        return LocalEngine()
    if engine == "spark":
        from lotan.graph_engine.session import get_spark

        return SparkEngine(get_spark(spark))
    raise LotanError(f"engine={engine!r} is not one of ['spark', 'local']")
