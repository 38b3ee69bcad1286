"""Finding or starting the SparkSession Lotan runs on, and checking Java first."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
from collections.abc import Mapping
from typing import TYPE_CHECKING

from lotan.errors import EngineError

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["DEFAULT_DRIVER_MEMORY", "FAST_PYTHON", "check_java", "get_spark"]

#: Driver memory of a local session Lotan starts itself (local mode runs the executors in
#: the driver JVM). Override with ``LOTAN_SPARK_DRIVER_MEMORY`` or pass your own session.
DEFAULT_DRIVER_MEMORY = "4g"
#: Settings of a session Lotan starts (pass them to your own session too): the executors
#: talk to their Python workers over Unix domain sockets. Over TCP every Arrow batch a
#: worker sent waited ~40 ms (Nagle's algorithm meeting delayed ACKs): a 4-stage chain of
#: ``mapInArrow`` no-ops took 0.61 s per run with TCP and 0.37 s with these sockets.
FAST_PYTHON = {"spark.python.unix.domain.socket.enabled": "true"}
#: Spark 4 needs Java 17 or newer.
MIN_JAVA = 17


def check_java() -> int:
    """Return the Java major version; raise :class:`EngineError` if Java is missing or old."""
    java_home = os.environ.get("JAVA_HOME")
    java = os.path.join(java_home, "bin", "java") if java_home else shutil.which("java")
    if not java or not os.path.exists(java):
        raise EngineError(
            "Java was not found (JAVA_HOME is unset and no `java` on PATH); Spark 4 needs "
            f"Java {MIN_JAVA}+: install it (Debian: apt-get install openjdk-17-jre-headless) "
            "or set JAVA_HOME"
        )
    proc = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=60)
    text = proc.stderr + proc.stdout
    match = re.search(r'version "(\d+)(?:\.(\d+))?', text)
    if not match:
        raise EngineError(f"could not read the Java version from `{java} -version`: {text!r}")
    major = int(match.group(1))
    if major == 1 and match.group(2):  # "1.8.0" style
        major = int(match.group(2))
    if major < MIN_JAVA:
        raise EngineError(
            f"Spark 4 needs Java {MIN_JAVA}+, found Java {major} at {java}; install a newer JDK "
            "and point JAVA_HOME at it"
        )
    return major


def check_master(master: str, timeout: float = 5.0) -> None:
    """For a standalone master (``spark://host:port[,host:port]``), check that one of its
    addresses accepts connections — Spark itself would retry for a minute and then leave the
    session without executors."""
    if not master.startswith("spark://"):
        return
    errors = []
    for address in master[len("spark://") :].split(","):
        host, _, port = address.rpartition(":")
        try:
            with socket.create_connection((host, int(port)), timeout=timeout):
                return
        except (OSError, ValueError) as exc:
            errors.append(f"{address}: {exc}")
    raise EngineError(
        f"cannot reach the Spark master {master} ({'; '.join(errors)}); check the URL (from "
        "the master's log or web UI) and that the master is running and reachable from here"
    )


def get_spark(
    spark: SparkSession | None = None, conf: Mapping[str, str] | None = None
) -> SparkSession:
    """``spark`` if given, else the active session, else a new one with the settings
    ``conf`` (``spark.*`` keys, passed through as they are).

    A new session is local (``local[*]``, or ``LOTAN_SPARK_MASTER``, or ``spark.master`` in
    ``conf``) with ``spark.driver.memory`` from ``LOTAN_SPARK_DRIVER_MEMORY`` (default
    :data:`DEFAULT_DRIVER_MEMORY`). Under ``spark-submit`` the master and driver settings are
    those of the submit command; ``conf`` still applies.
    """
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    check_java()
    # Python workers of a local session run this interpreter (with torch and lotan on its
    # path), not whatever `python3` is first on PATH.
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    settings = {
        "spark.app.name": "lotan",
        "spark.ui.showConsoleProgress": "false",
        "spark.sql.execution.arrow.pyspark.enabled": "true",
    }
    # spark-submit starts the JVM first and hands the Python driver its gateway.
    submitted = "PYSPARK_GATEWAY_PORT" in os.environ
    if not submitted:
        settings["spark.master"] = os.environ.get("LOTAN_SPARK_MASTER", "local[*]")
        settings["spark.driver.memory"] = os.environ.get(
            "LOTAN_SPARK_DRIVER_MEMORY", DEFAULT_DRIVER_MEMORY
        )
    settings.update({str(k): str(v) for k, v in (conf or {}).items()})
    submitted_conf = None
    if submitted:  # what spark-submit was told wins over Lotan's defaults
        from pyspark import SparkConf

        submitted_conf = SparkConf()
    for key, value in FAST_PYTHON.items():
        if submitted_conf is None or not submitted_conf.contains(key):
            settings.setdefault(key, value)
    if not submitted:
        check_master(settings["spark.master"])
    if not submitted and settings["spark.master"].startswith("local"):
        # A local session talks to itself only.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        settings.setdefault("spark.driver.host", "127.0.0.1")
        settings.setdefault("spark.driver.bindAddress", "127.0.0.1")
    builder = SparkSession.builder
    for key, value in settings.items():
        builder = builder.config(key, value)
    try:
        session = builder.getOrCreate()
    except Exception as exc:  # py4j / JVM start-up errors
        raise EngineError(
            f"could not start a Spark session ({settings.get('spark.master', 'spark-submit')}):"
            f" {exc}; check JAVA_HOME, LOTAN_SPARK_MASTER and the spark settings, or pass "
            "spark= a session you created"
        ) from exc
    session.sparkContext.setLogLevel(os.environ.get("LOTAN_SPARK_LOG_LEVEL", "ERROR"))
    return session
