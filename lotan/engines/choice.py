"""Which engine a run uses: ``engine="spark"`` or ``"local"`` as asked, and for ``"auto"``
the local engine when the graph is in memory, no cluster is in play and the estimated
working set fits the local budget — else Spark; :class:`EngineChoice` says why."""

from __future__ import annotations

import os
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from lotan.engines.base import GraphSource
from lotan.engines.spark.session import session_master
from lotan.planner.estimates import local_working_set
from lotan.planner.placement import Placement

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from lotan.ir.plan import LogicalPlan

__all__ = [
    "LOCAL_MEMORY_ENV",
    "EngineChoice",
    "choose_engine",
    "local_budget",
    "local_working_set",
]

#: Sets the local engine's memory budget for ``engine="auto"`` (``"8g"``, ``"512m"``, bytes);
#: default: half of this machine's physical memory.
LOCAL_MEMORY_ENV = "LOTAN_LOCAL_MEMORY"


@dataclass(frozen=True)
class EngineChoice:
    """The engine a run uses (``"spark"`` or ``"local"``) and why, as ``explain`` and the
    progress display show it."""

    name: str
    reason: str
    auto: bool = True

    def describe(self) -> str:
        how = "engine='auto'" if self.auto else "asked for"
        return f"{self.name} engine ({how}: {self.reason})"


def _size(b: int) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def local_budget() -> int:
    """Bytes the local engine may use under ``engine="auto"``: ``LOTAN_LOCAL_MEMORY``, else
    half of the machine's physical memory."""
    from lotan.options import parse_bytes

    env = os.environ.get(LOCAL_MEMORY_ENV)
    if env:
        out = parse_bytes(env, LOCAL_MEMORY_ENV)
        assert out is not None
        return out
    try:
        total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        total = 8 << 30
    return int(total) // 2


def choose_engine(
    engine: str,
    graph: GraphSource,
    plans: Sequence[LogicalPlan],
    spark: SparkSession | None = None,
    placement: Placement | None = None,
) -> EngineChoice:
    """Which engine runs: ``engine`` itself when it is ``"spark"`` or ``"local"``; for
    ``"auto"``, Spark when the graph is held in Spark DataFrames, placement is ``split``
    (dense stages scheduled by Spark), or a session on a cluster is active (or passed); else
    the local engine when :func:`local_working_set` fits :func:`local_budget`, else Spark."""
    from lotan.errors import LotanError
    from lotan.options import ENGINES

    if engine not in ENGINES:
        raise LotanError(f"engine={engine!r} is not one of {list(ENGINES)}")
    if engine != "auto":
        return EngineChoice(engine, f"engine={engine!r}", auto=False)
    if not graph.in_memory:
        return EngineChoice("spark", "the graph is held in Spark DataFrames")
    if placement is not None and placement.split:
        return EngineChoice("spark", "placement='split' schedules dense stages in Spark")
    master = session_master(spark)
    if master is not None and not master.startswith("local"):
        where = "Spark Connect" if master == "connect" else f"master {master}"
        return EngineChoice("spark", f"the Spark session runs on a cluster ({where})")
    cluster = os.environ.get("LOTAN_SPARK_MASTER", "")
    if master is None and cluster and not cluster.startswith("local"):
        return EngineChoice("spark", f"LOTAN_SPARK_MASTER is a cluster ({cluster})")
    need, budget = local_working_set(graph, plans), local_budget()
    sizes = f"estimated working set {_size(need)}, local budget {_size(budget)}"
    if need > budget:
        return EngineChoice("spark", f"the graph does not fit in this process: {sizes}")
    session = "no Spark session" if master is None else f"a local Spark session ({master})"
    return EngineChoice("local", f"{session}, and the graph fits in this process: {sizes}")
