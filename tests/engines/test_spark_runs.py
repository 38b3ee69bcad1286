"""A Spark run end to end on the real session: rows routed to their partition's task,
messages forwarded through the stages in between, the run's shuffle files deleted when it
ends, and the session's settings as they were."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from lotan.engines.spark.codec import messages_to_table
from lotan.engines.spark.runner import SparkRunner
from lotan.graph_engine.layout import PartitionLayout
from lotan.runtime.message import DRIVER, Message


def _shuffle_files(spark: Any) -> set[str]:
    """The shuffle data files under the session's local directory (its own: conftest)."""
    root = Path(spark.sparkContext.getConf().get("spark.local.dir"))
    return {str(p) for p in root.rglob("shuffle_*.data")}


def _hop(part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any) -> list:
    """Stage 0: each message goes on to the next partition's stage 1, plus a note for
    stage 2 that stage 1 must forward untouched."""
    out = []
    for m in inbox:
        rows = np.asarray(m.payload["rows"])
        out.append(Message(1, (part + 1) % 3, part, "x", {"rows": rows + 1}))
        out.append(Message(2, part, part, "note", {"rows": rows[:2]}))
    return out


def _pass(part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any) -> list:
    assert all(m.tag == "x" for m in inbox)  # the note is not stage 1's
    return [Message(2, m.dest, part, "x", dict(m.payload)) for m in inbox]


def _report(part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any) -> list:
    return [Message(DRIVER, -1, part, m.tag, dict(m.payload)) for m in inbox]


def test_a_run_routes_forwards_and_leaves_no_shuffle_files(spark: Any) -> None:
    big = np.arange(3 * 5000, dtype=np.float32).reshape(3, 5000)  # 60 kB: chunked below
    msgs = [Message(0, p, -1, "in", {"rows": big * (p + 1)}) for p in range(3)]
    table = messages_to_table(msgs, chunk_bytes=16_000)
    initial = spark.createDataFrame(table.to_pandas())
    conf = spark.conf
    before_conf = {
        k: conf.get(k, None)
        for k in (
            "spark.sql.adaptive.enabled",
            "spark.sql.classic.shuffleDependency.fileCleanup.enabled",
        )
    }
    before = _shuffle_files(spark)
    result = SparkRunner(spark, 3).run([_hop, _pass, _report], None, initial)
    got = result.collect_driver()
    result.close()
    notes = {m.src: m.payload["rows"] for m in got if m.tag == "note"}
    xs = {m.src: m.payload["rows"] for m in got if m.tag == "x"}
    for p in range(3):
        np.testing.assert_array_equal(notes[p], (big * (p + 1))[:2])
        np.testing.assert_array_equal(xs[(p + 1) % 3], big * (p + 1) + 1)
    assert _shuffle_files(spark) <= before  # the run's shuffles are gone
    assert {k: conf.get(k, None) for k in before_conf} == before_conf
