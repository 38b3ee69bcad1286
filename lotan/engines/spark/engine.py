"""The Spark engine: the stages of a run as Spark stages over partition layouts kept in
files (:mod:`~lotan.engines.spark.runner`, :mod:`~lotan.engines.spark.store`)."""

from __future__ import annotations

from collections.abc import Hashable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.engines.base import GraphSource, predictions_frame, with_parts
from lotan.engines.spark.prepare import prepare_spark
from lotan.ir.norm import NormSpec
from lotan.planner.placement import DENSE, Placement
from lotan.runtime.label_propagation import STRUCTURE, LabelPropagation
from lotan.runtime.message import Message, StageFn
from lotan.runtime.value import EpochValue

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from lotan.engines.spark.runner import SparkRunner

__all__ = ["PREDICTION_SCHEMA", "SparkEngine", "list_column"]


#: Columns of ``lotan.predict``'s output.
PREDICTION_SCHEMA = "id long, prediction long, probability array<float>, logits array<float>"


def list_column(rows: list[np.ndarray]) -> Any:
    import pyarrow as pa

    width = rows[0].shape[0] if rows else 0
    flat = np.concatenate(rows) if rows else np.zeros(0, np.float32)
    offsets = np.arange(0, (len(rows) + 1) * width, width if width else 1, dtype=np.int32)[
        : len(rows) + 1
    ]
    return pa.ListArray.from_arrays(pa.array(offsets), pa.array(flat.astype(np.float32)))


class SparkEngine:
    """Spark engine: stages run as Spark stages over partition layouts kept in files."""

    name = "spark"

    def __init__(self, spark: SparkSession) -> None:
        self.spark = spark

    def check_placement(self, placement: Placement) -> None:
        """Under split, register the dense stages' resource profile and run one task under
        it now — before the graph is prepared — so that a request the cluster cannot meet
        fails at once (:mod:`lotan.engines.spark.scheduling`)."""
        if placement.split:
            from lotan.engines.spark.scheduling import dense_profile

            dense_profile(self.spark, placement.task_request(DENSE))

    def default_partitions(self) -> int:
        from lotan.engines.spark.session import default_parallelism

        return default_parallelism(self.spark)

    def prepare(
        self,
        graph: GraphSource,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> SparkRunner:
        from lotan.engines.spark.runner import SparkRunner
        from lotan.engines.spark.store import LayoutStore, cache_root

        def make() -> SparkRunner:
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
            return SparkRunner(self.spark, num_partitions, LayoutStore(directory), sizes)

        key = ("spark", id(self.spark), num_partitions, norms, partitioner)
        return graph.preparations.get(key, make)

    def _label_propagation(
        self, vertices: DataFrame, edges: DataFrame, num_vertices: int, num_partitions: int
    ) -> DataFrame:
        """``(id, part)`` of every vertex of the graph ``(vertices, edges)``, computed in
        Spark and checkpointed."""
        import pyarrow as pa
        from pyspark.sql import functions as F

        from lotan.engines.spark.runner import SparkRunner, map_messages
        from lotan.engines.spark.session import local_checkpoint
        from lotan.engines.spark.store import LayoutStore, cache_root

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
            runner.release()
        return owner

    def with_constants(
        self, graph: GraphSource, prepared: SparkRunner, key: Hashable, stages: Sequence[StageFn]
    ) -> SparkRunner:
        from lotan.engines.spark.runner import SparkRunner, write_constants_of
        from lotan.engines.spark.store import LayoutStore, cache_root

        def make() -> SparkRunner:
            directory = LayoutStore.new_dir(cache_root(self.spark))
            # Constants depend on no parameter.
            value = EpochValue(params={}, epoch=0)
            result = prepared.run(stages, value, description="lotan cache constants")
            try:
                result.execute(
                    lambda: write_constants_of(result.output(), directory, prepared.router)
                )
            finally:
                result.close()
            assert prepared.store is not None, "the graph's layouts were released"
            return SparkRunner(
                self.spark,
                prepared.num_partitions,
                prepared.store.with_constants(directory),
                prepared.sizes,
            )

        return graph.preparations.get(("spark-constants", id(prepared), key), make)

    def run(
        self, prepared: SparkRunner, stages: Sequence[StageFn], value: Any, label: str
    ) -> list[Message]:
        value = with_parts(value, [p for p, *_ in prepared.sizes])
        result = prepared.run(stages, value, description=label)
        try:
            return result.collect_driver()
        finally:
            result.close()

    def predictions(
        self, prepared: SparkRunner, stages: Sequence[StageFn], value: Any
    ) -> DataFrame:
        import pyarrow as pa

        from lotan.engines.spark.runner import map_messages
        from lotan.engines.spark.session import local_checkpoint

        def decode(_part: int, msgs: list[Message]) -> pa.Table:
            ids = np.concatenate([m.payload["ids"] for m in msgs])
            frame = predictions_frame(ids, np.concatenate([m.payload["rows"] for m in msgs]))
            return pa.table(
                {
                    "id": pa.array(frame["id"], pa.int64()),
                    "prediction": pa.array(frame["prediction"], pa.int64()),
                    "probability": list_column(frame["probability"]),
                    "logits": list_column(frame["logits"]),
                }
            )

        value = with_parts(value, [p for p, *_ in prepared.sizes])
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
