"""Lotan on Spark Connect: a real Connect server (``sbin/start-connect-server.sh`` of the
installed ``pyspark``, ``local[2]``) on 127.0.0.1; fit, fit_many, predict, explain, the
estimator and the ``lotan`` command give on it what they give on the classic session."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml

from lotan.cli import main
from lotan.engines.spark.session import get_spark
from lotan.errors import EngineError
from tests.connect.cases import run_all
from tests.connect.server import ConnectServer

ROOT = Path(__file__).resolve().parents[2]
TIMEOUT = 900


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ConnectServer]:
    s = ConnectServer(tmp_path_factory.mktemp("connect"))
    try:
        yield s.start()
    finally:
        s.stop()


def _client(*args: str) -> subprocess.CompletedProcess[str]:
    """A process of its own (a Connect client puts PySpark into Connect mode for good)."""
    env = {**os.environ, "PYSPARK_PYTHON": sys.executable}
    proc = subprocess.run(
        [sys.executable, *args], cwd=ROOT, env=env, capture_output=True, text=True,
        timeout=TIMEOUT,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    return proc


def _same(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert got.keys() == want.keys(), where
        for k in want:
            _same(got[k], want[k], f"{where}.{k}")
    elif isinstance(want, list | tuple):
        assert len(got) == len(want), where
        for i, (a, b) in enumerate(zip(got, want, strict=True)):
            _same(a, b, f"{where}[{i}]")
    elif isinstance(want, torch.Tensor):
        assert torch.equal(got, want), where
    elif isinstance(want, np.ndarray):
        np.testing.assert_array_equal(got, want, err_msg=where)
    else:
        assert got == want, where


def test_fit_fit_many_predict_explain_and_estimator_equal_the_classic_session(
    server: ConnectServer, spark: Any, tmp_path: Path
) -> None:
    out = tmp_path / "connect.pt"
    _client("-m", "tests.connect.cases", server.url, str(out))
    got = torch.load(out, weights_only=False)
    assert got.pop("connect").startswith("pyspark.sql.connect")
    want = run_all(spark)
    assert got.keys() == want.keys()
    for key in want:  # bit for bit: the same tasks run on the same data in the same order
        _same(got[key], want[key], key)
    _same(want["fit_chunked"], want["fit"], "chunked")  # the chunks are the same rows


def test_the_lotan_command_with_remote(server: ConnectServer, spark: Any, tmp_path: Path) -> None:
    job = {
        "graph": {"sbm": {"num_vertices": 300, "num_classes": 3, "num_features": 6, "seed": 1}},
        "model": {"name": "GCN", "hidden_channels": 8, "num_layers": 2, "dropout": 0.5},
        "epochs": 3,
        "engine": "spark",
        "num_partitions": 2,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(job))
    ckpts = {}
    for kind in ("connect", "classic"):
        ckpt = tmp_path / f"ckpt-{kind}"
        args = ["fit", "--config", str(path), "--set", f"checkpoint_dir={ckpt}"]
        if kind == "connect":
            proc = _client("-m", "lotan", *args, "--remote", server.url)
            assert "spark engine" in proc.stdout + proc.stderr
            explained = _client(
                "-m", "lotan", "explain", "--config", str(path), "--remote", server.url
            )
            assert "== Engine ==" in explained.stdout
            preds = tmp_path / "preds"
            _client(
                "-m", "lotan", "predict", "--config", str(path), "--checkpoint", str(ckpt),
                "--output", str(preds), "--remote", server.url,
            )  # fmt: skip
            assert spark.read.parquet(str(preds)).count() == 300
        else:
            assert main(args) == 0  # the test session is the active classic one
        ckpts[kind] = torch.load(sorted(ckpt.glob("epoch-*.pt"))[-1], weights_only=True)
    _same(ckpts["connect"]["trainers"][0]["model"], ckpts["classic"]["trainers"][0]["model"], "w")


def test_an_address_nothing_listens_on_is_a_clear_error() -> None:
    from tests.cluster.standalone import free_port

    with pytest.raises(EngineError, match="cannot reach the Spark Connect server"):
        get_spark(conf={"spark.remote": f"sc://127.0.0.1:{free_port()}"})
    with pytest.raises(EngineError, match="sc://host:port"):
        get_spark(conf={"spark.remote": "http://127.0.0.1:15002"})
