"""A real Spark Connect server on 127.0.0.1 for the tests, started with the
``sbin/start-connect-server.sh`` script inside the installed ``pyspark`` package (in the
foreground, ``--wait``, in its own process group) and stopped, group and all, at the end."""

from __future__ import annotations

import contextlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

from tests.cluster.standalone import HOST, SPARK_HOME, free_port


class ConnectServer:
    """A Connect server whose driver runs ``master`` (default ``local[2]``), logs under
    ``root``; :attr:`url` is its ``sc://`` address."""

    def __init__(self, root: Path, *, master: str = "local[2]", memory: str = "2g") -> None:
        self.root = root
        self.master = master
        self.memory = memory
        self.port = free_port()
        self.url = f"sc://{HOST}:{self.port}"
        self.proc: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        root.mkdir(parents=True, exist_ok=True)

    def start(self, timeout: float = 180) -> ConnectServer:
        env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_LOG_DIR": str(self.root / "logs"),
            "PYSPARK_PYTHON": sys.executable,
        }
        conf = {
            "spark.connect.grpc.binding.address": HOST,
            "spark.connect.grpc.binding.port": str(self.port),
            "spark.driver.memory": self.memory,
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.ui.enabled": "false",
            "spark.sql.shuffle.partitions": "4",
            "spark.default.parallelism": "2",
            "spark.python.unix.domain.socket.enabled": "true",
        }
        args = [str(SPARK_HOME / "sbin" / "start-connect-server.sh"), "--wait"]
        args += ["--master", self.master]
        for key, value in conf.items():
            args += ["--conf", f"{key}={value}"]
        self._log = open(self.root / "server.log", "wb")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(
            args, env=env, stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"the Connect server exited; see {self.root / 'server.log'}")
            with contextlib.suppress(OSError), socket.create_connection((HOST, self.port), 1):
                return self
            time.sleep(0.5)
        raise TimeoutError(f"the Connect server did not listen in {timeout:g} s; see {self.root}")

    def stop(self) -> None:
        if self.proc is not None:
            for sig in (signal.SIGTERM, signal.SIGKILL):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, sig)
                try:
                    self.proc.wait(timeout=30)
                    break
                except subprocess.TimeoutExpired:
                    continue
        if self._log is not None:
            self._log.close()
