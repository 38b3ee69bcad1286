"""The README's way to ship the Python environment to a cluster: pack a virtual environment
with ``venv-pack`` and hand it to ``spark-submit --archives``; the executors run the packed
interpreter. Slow (builds, packs and unpacks a ~2 GB environment): ``pytest --slow``."""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

import pytest
import torch
import yaml

from lotan.training.checkpoint import load_latest
from tests.cluster.standalone import SPARK_HOME, StandaloneCluster

ROOT = Path(__file__).resolve().parents[2]
JOB = {
    "graph": {"sbm": {"num_vertices": 1000, "num_classes": 3, "num_features": 8, "seed": 0}},
    "model": {"name": "GCN", "hidden_channels": 8, "num_layers": 2},
    "epochs": 3,
    "engine": "spark",
    "num_partitions": 2,
}


@pytest.mark.slow
def test_spark_submit_with_a_packed_environment(tmp_path: Path) -> None:
    env = tmp_path / "lotan-env"
    venv.create(env, with_pip=True)
    pip = [str(env / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, f"{ROOT}[test]"], check=True, timeout=1800)  # not editable
    pack = [sys.executable, "-m", "venv_pack", "-p", str(env), "-o", str(tmp_path / "env.tar.gz")]
    pack += ["--compress-level", "1"]  # Spark unpacks .tar without exec bits; .tar.gz keeps them
    subprocess.run(pack, check=True, timeout=1800)

    job = tmp_path / "job.yaml"
    ckpt = tmp_path / "ckpt"
    job.write_text(yaml.safe_dump({**JOB, "checkpoint_dir": str(ckpt)}))
    cluster = StandaloneCluster(tmp_path / "cluster", workers=2, cores=1, memory="2g")
    try:
        cluster.start()
        cmd = [
            str(SPARK_HOME / "bin" / "spark-submit"),
            *("--master", cluster.url),
            *("--archives", f"{tmp_path / 'env.tar.gz'}#env"),
            *("--conf", "spark.pyspark.python=./env/bin/python"),
            *("--conf", f"spark.pyspark.driver.python={env / 'bin' / 'python'}"),
            *("--conf", f"spark.lotan.cacheDir={tmp_path / 'cache'}"),
            *("--conf", "spark.driver.host=127.0.0.1"),
            *("--conf", "spark.executor.memory=1g"),
            str(env / "lib" / "python3.11" / "site-packages" / "lotan" / "entry" / "submit.py"),
            *("fit", "--config", str(job)),
        ]
        out = subprocess.run(cmd, env=cluster.env, capture_output=True, text=True, timeout=1800)
        assert out.returncode == 0, (out.stdout + out.stderr)[-3000:]
        assert "trained 3 epochs" in out.stdout
    finally:
        cluster.stop()
    state = load_latest(ckpt)
    assert state is not None and state["complete"]
    # the executors ran the packed interpreter: its unpacked copy is in their work dirs
    unpacked = list((tmp_path / "cluster").glob("worker-*/app-*/*/env/bin/python"))
    assert unpacked, "no executor unpacked the environment"
    assert all(torch.isfinite(v).all() for v in state["trainers"][0]["final"].values())
