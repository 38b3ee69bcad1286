"""The engines that run a physical plan: the local engine (in-process) and the Spark
engine, behind one interface (:mod:`~lotan.engines.base`), and the choice between them for
``engine="auto"`` (:mod:`~lotan.engines.choice`)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from lotan.engines.base import Engine, GraphSource, Preparations, Prepared
from lotan.errors import LotanError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["Engine", "GraphSource", "Preparations", "Prepared", "make_engine"]


def make_engine(engine: str, spark: SparkSession | None = None) -> Engine[Any]:
    """The engine named ``engine`` (``"spark"`` or ``"local"``; for ``"auto"`` see
    :func:`lotan.engines.choice.choose_engine`)."""
    if engine == "local":
        from lotan.engines.local import LocalEngine

        return LocalEngine()
    if engine == "spark":
        from lotan.engines.spark.engine import SparkEngine
        from lotan.engines.spark.session import get_spark

        return SparkEngine(get_spark(spark))
    raise LotanError(f"engine={engine!r} is not one of ['spark', 'local']")
