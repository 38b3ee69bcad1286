"""The per-task set-up of a Spark Python worker (:mod:`lotan.engines.spark.worker`)."""

from __future__ import annotations

import gc
import sys

from lotan.engines.spark import worker


def test_task_setup_freezes_only_after_new_imports() -> None:
    gc.unfreeze()
    before = gc.get_freeze_count()
    worker._frozen_at = 0
    worker.task_setup()
    frozen = gc.get_freeze_count()
    assert frozen > before and worker._frozen_at == len(sys.modules)
    junk = [[i] for i in range(1000)]  # tracked objects created after the freeze
    worker.task_setup()  # no new module: nothing more frozen
    # A second freeze would add the junk. The count may still fall below ``frozen``: a frozen
    # object freed meanwhile (by another thread, under load) leaves the permanent generation.
    assert gc.get_freeze_count() < frozen + len(junk)
    del junk
    gc.unfreeze()  # leave the test process as it was


def test_spark_tasks_run_with_imports_frozen(spark) -> None:
    """A real task freezes the worker's imported objects, so that the daemon's
    ``gc.collect()`` after the task walks only what the task created."""

    def probe(_batches):  # type: ignore[no-untyped-def]
        import pyarrow as pa

        from lotan.engines.spark.worker import task_setup

        task_setup()
        yield pa.RecordBatch.from_pydict({"frozen": [gc.get_freeze_count()]})

    rows = spark.range(2).repartition(2).mapInArrow(probe, "frozen long").collect()
    assert all(r["frozen"] > 10_000 for r in rows)
