"""A real Spark standalone cluster on 127.0.0.1 for the tests: a master and workers started
with the ``spark-class`` script inside the installed ``pyspark`` package, jobs sent with its
``spark-submit``, everything stopped (process groups killed) at the end, also on failure."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

import pyspark

SPARK_HOME = Path(pyspark.__file__).resolve().parent
HOST = "127.0.0.1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind((HOST, 0))
        return int(s.getsockname()[1])


class StandaloneCluster:
    """``workers`` workers of ``cores`` cores (one number, or one per worker) and ``memory``
    each, logs under ``root``. ``gpus[i]``: how many GPU addresses worker ``i`` advertises
    (through a discovery script that prints them; no GPU is needed to schedule by them)."""

    def __init__(
        self,
        root: Path,
        *,
        workers: int = 2,
        cores: int | Sequence[int] = 1,
        memory: str = "2g",
        gpus: Sequence[int] = (),
    ):
        self.root = root
        self.num_workers = workers
        self.cores = [cores] * workers if isinstance(cores, int) else list(cores)
        self.memory = memory
        self.gpus = list(gpus) + [0] * (workers - len(gpus))
        self.worker_ui_ports = [free_port() for _ in range(workers)]
        self.port = free_port()
        self.ui_port = free_port()
        self.url = f"spark://{HOST}:{self.port}"
        self.master: subprocess.Popen[bytes] | None = None
        self.workers: list[subprocess.Popen[bytes]] = []
        self._logs: list[IO[bytes]] = []
        root.mkdir(parents=True, exist_ok=True)
        self.env = {
            **os.environ,
            "SPARK_HOME": str(SPARK_HOME),
            "SPARK_LOCAL_IP": HOST,
            "SPARK_LOG_DIR": str(root / "logs"),
            "PYSPARK_PYTHON": sys.executable,
        }

    # ------------------------------------------------------------------ lifecycle
    def _start(self, name: str, args: Sequence[str]) -> subprocess.Popen[bytes]:
        log = open(self.root / f"{name}.log", "wb")  # noqa: SIM115 (closed in stop)
        self._logs.append(log)
        return subprocess.Popen(
            [str(SPARK_HOME / "bin" / "spark-class"), *args],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: executors and Python workers too
        )

    def start(self, timeout: float = 120) -> StandaloneCluster:
        self.master = self._start(
            "master",
            [
                "org.apache.spark.deploy.master.Master",
                *("--host", HOST, "--port", str(self.port), "--webui-port", str(self.ui_port)),
            ],
        )
        self._wait(lambda s: s is not None, timeout, "the master to start")
        self.workers = [self._worker(i) for i in range(self.num_workers)]
        self.wait_workers(self.num_workers, timeout)
        return self

    def _worker(self, i: int) -> subprocess.Popen[bytes]:
        work = self.root / f"worker-{i}"
        work.mkdir(exist_ok=True)
        props = work / "worker.properties"
        lines = []
        if self.gpus[i]:
            script = work / "gpus.sh"
            found = json.dumps({"name": "gpu", "addresses": [str(a) for a in range(self.gpus[i])]})
            script.write_text(f"#!/bin/sh\necho '{found}'\n")
            script.chmod(0o755)
            lines += [
                f"spark.worker.resource.gpu.amount {self.gpus[i]}",
                f"spark.worker.resource.gpu.discoveryScript {script}",
            ]
        props.write_text("\n".join(lines) + "\n")
        return self._start(
            f"worker-{i}",
            [
                "org.apache.spark.deploy.worker.Worker",
                *("--host", HOST, "--cores", str(self.cores[i]), "--memory", self.memory),
                *("--webui-port", str(self.worker_ui_ports[i]), "--work-dir", str(work)),
                *("--properties-file", str(props), self.url),
            ],
        )

    def restart_worker(self, i: int, timeout: float = 120) -> None:
        """Start worker ``i`` again (after :meth:`kill_worker`)."""
        self.workers[i].wait()
        self.workers[i] = self._worker(i)
        self.wait_workers(self.num_workers, timeout)

    def status(self) -> dict[str, Any] | None:
        """The master's JSON status, or None while it does not answer."""
        try:
            with urllib.request.urlopen(f"http://{HOST}:{self.ui_port}/json/", timeout=5) as r:
                out: dict[str, Any] = json.load(r)
                return out
        except OSError:
            return None

    def alive_workers(self) -> int:
        s = self.status()
        return sum(w["state"] == "ALIVE" for w in s["workers"]) if s else 0

    def wait_workers(self, n: int, timeout: float = 120) -> None:
        self._wait(lambda s: s is not None and self.alive_workers() >= n, timeout, f"{n} workers")

    def _wait(self, ok: Any, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.master is not None and self.master.poll() is not None:
                raise RuntimeError(f"the master exited; see {self.root / 'master.log'}")
            if ok(self.status()):
                return
            time.sleep(0.5)
        raise TimeoutError(f"timed out waiting for {what}; logs in {self.root}")

    def kill_worker(self, i: int) -> None:
        """SIGKILL worker ``i`` with its executors and their Python workers."""
        _killpg(self.workers[i], signal.SIGKILL)

    def stop(self) -> None:
        for proc in [*self.workers, *([self.master] if self.master else [])]:
            _killpg(proc, signal.SIGTERM)
        for proc in [*self.workers, *([self.master] if self.master else [])]:
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                _killpg(proc, signal.SIGKILL)
                proc.wait()
        for log in self._logs:
            log.close()

    # ------------------------------------------------------------------ jobs
    def submit_command(self, args: Sequence[str], conf: dict[str, str]) -> list[str]:
        """The ``spark-submit`` command line of a Lotan job on this cluster (client mode)."""
        from lotan.cli import ENTRY

        cmd = [str(SPARK_HOME / "bin" / "spark-submit"), "--master", self.url]
        settings = {
            "spark.driver.host": HOST,
            "spark.driver.bindAddress": HOST,
            "spark.driver.memory": "1g",
            "spark.executor.memory": "1g",
            "spark.pyspark.python": sys.executable,
            "spark.pyspark.driver.python": sys.executable,
            "spark.ui.enabled": "false",
            **conf,
        }
        for k, v in settings.items():
            cmd += ["--conf", f"{k}={v}"]
        return [*cmd, str(ENTRY), *args]

    def submit(
        self, args: Sequence[str], conf: dict[str, str], **popen: Any
    ) -> subprocess.Popen[str]:
        """Start ``spark-submit`` in its own process group (so that it can be killed whole)."""
        return subprocess.Popen(
            self.submit_command(args, conf),
            env=self.env,
            text=True,
            start_new_session=True,
            **popen,
        )


def _killpg(proc: subprocess.Popen[Any], sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.killpg(proc.pid, sig)
