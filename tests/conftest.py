"""Shared fixtures: one real local[2] SparkSession for the whole test session."""

from __future__ import annotations

import os
import shutil
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "datasets"


@pytest.fixture(scope="session")
def spark() -> Iterator[object]:
    from pyspark.sql import SparkSession

    from lotan.engines.spark.session import FAST_PYTHON

    os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    local_dir = tempfile.mkdtemp(prefix="lotan-tests-spark-")  # this session's shuffle files
    session = (
        SparkSession.builder.master("local[2]")
        .appName("lotan-tests")
        .config("spark.driver.memory", "2g")
        .config("spark.sql.shuffle.partitions", "4")
        .config("spark.default.parallelism", "2")
        .config("spark.driver.host", "127.0.0.1")
        .config("spark.driver.bindAddress", "127.0.0.1")
        .config("spark.ui.enabled", "false")
        .config("spark.local.dir", local_dir)
        .config(map=FAST_PYTHON)  # what sessions Lotan starts get
        .config("spark.ui.showConsoleProgress", "false")
        .getOrCreate()
    )
    session.sparkContext.setLogLevel("ERROR")
    yield session
    session.stop()
    shutil.rmtree(local_dir, ignore_errors=True)


@pytest.fixture(scope="session")
def data_dir() -> Path:
    """The folder that holds planetoid/<Name>/raw/ (``$LOTAN_DATA_DIR`` or ../shared)."""
    env = os.environ.get("LOTAN_DATA_DIR")
    root = Path(env) if env else SHARED_DATA
    if not (root / "planetoid" / "Cora" / "raw").is_dir():
        pytest.fail(f"Planetoid raw files not found under {root}; set LOTAN_DATA_DIR")
    return root


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--slow", action="store_true", help="also run tests marked slow (minutes each)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    if config.getoption("--slow"):
        return
    skip = pytest.mark.skip(reason="slow: run with pytest --slow")
    for item in items:
        if "slow" in item.keywords:
            item.add_marker(skip)
