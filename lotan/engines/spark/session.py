"""Finding or starting the SparkSession Lotan runs on, and checking Java first."""

from __future__ import annotations

import os
import re
import shutil
import socket
import subprocess
import sys
import uuid
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lotan.errors import EngineError

if TYPE_CHECKING:
    from pyspark import StorageLevel
    from pyspark.sql import DataFrame, SparkSession

__all__ = [
    "DEFAULT_DRIVER_MEMORY",
    "FAST_PYTHON",
    "REMOTE_ENV",
    "Shipped",
    "check_java",
    "conf_get",
    "default_parallelism",
    "get_spark",
    "is_connect",
    "local_checkpoint",
    "master_of",
    "set_job_description",
    "set_log_level",
    "ship",
]

#: Driver memory of a local session Lotan starts itself (local mode runs the executors in
#: the driver JVM). Override with ``LOTAN_SPARK_DRIVER_MEMORY`` or pass your own session.
DEFAULT_DRIVER_MEMORY = "4g"
#: Spark's log configuration for the JVMs Lotan starts: errors only (Spark's start-up banner
#: and WARN lines stay off the user's terminal; ``lotan ... -v`` shows them).
QUIET_LOG = (Path(__file__).resolve().parents[2] / "conf" / "log4j2-quiet.properties").as_uri()
#: Settings of a session Lotan starts (pass them to your own session too): the executors
#: talk to their Python workers over Unix domain sockets. Over TCP every Arrow batch a
#: worker sent waited ~40 ms (Nagle's algorithm meeting delayed ACKs): a 4-stage chain of
#: ``mapInArrow`` no-ops took 0.61 s per run with TCP and 0.37 s with these sockets.
FAST_PYTHON = {"spark.python.unix.domain.socket.enabled": "true"}
#: PySpark's own variable naming a Spark Connect server (``sc://host:port``); a session Lotan
#: starts while it is set is a Spark Connect session.
REMOTE_ENV = "SPARK_REMOTE"
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
        error = _unreachable(address, timeout)
        if error is None:
            return
        errors.append(f"{address}: {error}")
    raise EngineError(
        f"cannot reach the Spark master {master} ({'; '.join(errors)}); check the URL (from "
        "the master's log or web UI) and that the master is running and reachable from here"
    )


def _unreachable(address: str, timeout: float) -> str | None:
    """None if ``host:port`` accepts a TCP connection within ``timeout``, else why not."""
    host, _, port = address.rpartition(":")
    try:
        with socket.create_connection((host, int(port)), timeout=timeout):
            return None
    except (OSError, ValueError) as exc:
        return str(exc)


def get_spark(
    spark: SparkSession | None = None,
    conf: Mapping[str, str] | None = None,
    *,
    quiet: bool = True,
) -> SparkSession:
    """``spark`` if given, else the active session, else a new one with the settings
    ``conf`` (``spark.*`` keys, passed through as they are). A new local JVM logs errors
    only (:data:`QUIET_LOG`: no start-up banner, no WARN lines on the user's terminal)
    unless ``quiet=False`` or ``conf`` sets ``spark.driver.extraJavaOptions``.

    With ``spark.remote`` in ``conf`` (or ``SPARK_REMOTE`` set and no active session) it is a
    Spark Connect session on that server. A new classic session is local (``local[*]``, or
    ``LOTAN_SPARK_MASTER``, or ``spark.master`` in ``conf``) with ``spark.driver.memory``
    from ``LOTAN_SPARK_DRIVER_MEMORY`` (default :data:`DEFAULT_DRIVER_MEMORY`). Under
    ``spark-submit`` the master and driver settings are those of the submit command;
    ``conf`` still applies.
    """
    if spark is not None:
        return spark
    from pyspark.sql import SparkSession

    if conf and conf.get("spark.remote"):
        return _connect(str(conf["spark.remote"]), conf)
    active = SparkSession.getActiveSession()
    if active is not None:
        return active
    if os.environ.get(REMOTE_ENV):
        return _connect(os.environ[REMOTE_ENV], conf or {})
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
    if quiet and not submitted:  # the JVM starts here: its log configuration too
        settings["spark.driver.extraJavaOptions"] = f"-Dlog4j2.configurationFile={QUIET_LOG}"
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
    set_log_level(session, os.environ.get("LOTAN_SPARK_LOG_LEVEL", "ERROR"))
    return session


def _connect(remote: str, conf: Mapping[str, str]) -> SparkSession:
    """A Spark Connect session on the server ``remote`` (``sc://host:port``) with the
    settings ``conf`` (the server's own master and memory stand; these are session settings)."""
    from pyspark.sql import SparkSession

    if not remote.startswith("sc://"):
        raise EngineError(
            f"spark.remote must be a Spark Connect address sc://host:port, got {remote!r}"
        )
    try:
        import pyspark.sql.connect.session  # noqa: F401 (needs the client extras)
    except ImportError as exc:
        raise EngineError(
            f"a Spark Connect session ({remote}) needs PySpark's client extras: "
            f'pip install "pyspark[connect]" ({exc})'
        ) from exc
    address = remote[len("sc://") :].split("/", 1)[0].split(";", 1)[0]
    if ":" not in address:
        address += ":15002"  # Spark Connect's default port
    error = _unreachable(address, 5.0)
    if error is not None:
        raise EngineError(
            f"cannot reach the Spark Connect server {remote} ({error}); start it "
            "(sbin/start-connect-server.sh in the pyspark package or your cluster's) or fix "
            "the address"
        )
    builder = SparkSession.builder.remote(remote)
    for key, value in conf.items():
        if key not in ("spark.remote", "spark.master", "spark.driver.memory"):
            builder = builder.config(str(key), str(value))
    try:
        return builder.getOrCreate()
    except Exception as exc:  # gRPC start-up errors
        raise EngineError(
            f"could not open a Spark Connect session on {remote}: {exc}; check that the "
            "server runs (sbin/start-connect-server.sh) and that the address is right"
        ) from exc


# ---------------------------------------------------------------------------- session kinds
# What Lotan needs of a session, on a classic session (a SparkContext in this process) and
# on a Spark Connect session (a gRPC client; the driver runs on the server): confs, the
# master, the default parallelism, job descriptions, log levels and values shipped to tasks.


def is_connect(spark: SparkSession) -> bool:
    """Whether ``spark`` is a Spark Connect (client) session."""
    return type(spark).__module__.startswith("pyspark.sql.connect")


def conf_get(spark: SparkSession, key: str) -> str | None:
    """The setting ``key`` of the session (or of its application), or None."""
    if not is_connect(spark):
        value = spark.sparkContext.getConf().get(key)
        if value is not None:
            return str(value)
    value = spark.conf.get(key, None)
    return None if value is None else str(value)


def master_of(spark: SparkSession) -> str:
    """The session's master URL (on Spark Connect, the server's)."""
    if is_connect(spark):
        return conf_get(spark, "spark.master") or ""
    return str(spark.sparkContext.master or "")


#: Spark Connect sessions' default parallelism, by session id (measured once).
_PARALLELISM: dict[str, int] = {}


def default_parallelism(spark: SparkSession) -> int:
    """The application's default parallelism. On Spark Connect the client cannot ask the
    SparkContext, so it reads ``spark.default.parallelism`` or, unset, counts the slices of
    a ``spark.range`` (which has that many) in one small job."""
    if not is_connect(spark):
        return max(1, int(spark.sparkContext.defaultParallelism))
    key = str(spark.session_id)  # type: ignore[attr-defined]
    if key not in _PARALLELISM:
        setting = conf_get(spark, "spark.default.parallelism")
        if setting:
            _PARALLELISM[key] = max(1, int(setting))
        else:
            from pyspark.sql import functions as F

            row = spark.range(1 << 16).select(F.max(F.spark_partition_id())).first()
            _PARALLELISM[key] = int(row[0]) + 1 if row is not None else 1
    return _PARALLELISM[key]


def set_job_description(spark: SparkSession, text: str | None) -> None:
    """Name the jobs this thread starts next in the Spark UI (classic sessions; Spark Connect
    names each job by its operation and has no such call on the client)."""
    if not is_connect(spark):
        spark.sparkContext.setJobDescription(text)  # type: ignore[arg-type]


def set_log_level(spark: SparkSession, level: str) -> None:
    """The driver's log level (classic sessions; a Spark Connect server logs as it was
    started)."""
    if not is_connect(spark):
        spark.sparkContext.setLogLevel(level)


def local_checkpoint(df: DataFrame, storage_level: StorageLevel | None = None) -> DataFrame:
    """``df`` computed now and kept in the block managers with its lineage cut
    (``localCheckpoint(eager=True)``, at ``storage_level``, else Spark's default). A Spark
    Connect client builds that command by copying the whole plan into a protobuf message,
    which the client's protobuf refuses past ~100 levels (a run of ~30 stages); a temporary
    view holds the plan on the server instead, and the checkpoint of the view is one level
    deep."""
    spark = df.sparkSession
    if not is_connect(spark):
        return df.localCheckpoint(eager=True, storageLevel=storage_level)
    name = f"lotan_checkpoint_{uuid.uuid4().hex}"
    df.createOrReplaceTempView(name)
    try:
        return spark.table(name).localCheckpoint(eager=True, storageLevel=storage_level)
    finally:
        spark.catalog.dropTempView(name)


class Shipped:
    """A value that travels inside the task functions that use it (Spark Connect has no
    broadcast variables: the client serializes each function with what it captures)."""

    def __init__(self, value: Any) -> None:
        self.value = value

    def unpersist(self, blocking: bool = False) -> None:
        del blocking


def ship(spark: SparkSession, value: Any) -> Any:
    """``value`` for the tasks of a run: a broadcast variable on a classic session, else a
    :class:`Shipped` (both read as ``.value`` in a task, released with ``unpersist``)."""
    if is_connect(spark):
        return Shipped(value)
    return spark.sparkContext.broadcast(value)


def session_master(spark: SparkSession | None) -> str | None:
    """The master of ``spark``, or of the active session, without starting one (``None``:
    no session; ``"connect"``: a Spark Connect session, which has no master here)."""
    if spark is None:
        if "pyspark" not in sys.modules:  # no session can exist yet
            return None
        from pyspark.sql import SparkSession

        spark = SparkSession.getActiveSession()
        if spark is None:
            return None
    return "connect" if is_connect(spark) else str(spark.sparkContext.master)
