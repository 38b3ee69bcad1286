"""The naive in-Spark GCN (the ladder's baseline) computes PyG's GCN: same weights in, same
loss and every gradient out, on a messy directed graph."""

from __future__ import annotations

import copy
import importlib.util
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn.models import GCN

from bench import ladder
from bench.naive import (
    GRAPHFRAMES_JAR_ENV,
    Aggregator,
    GraphFramesAggregator,
    SqlAggregator,
    graphframes_missing,
    naive_forward,
)


def _messy(n: int = 40, m: int = 160, seed: int = 3) -> tuple[np.ndarray, np.ndarray]:
    """Directed edges with duplicates, some self loops (not all) and isolated vertices."""
    rng = np.random.default_rng(seed)
    src = rng.integers(0, n - 4, m)  # the last 4 vertices send nothing
    dst = rng.integers(0, n - 2, m)  # and the last 2 receive nothing
    src = np.concatenate([src, src[:10], [0, 5, 5]])  # duplicated edges, a double self loop
    dst = np.concatenate([dst, dst[:10], [0, 5, 5]])
    return src.astype(np.int64), dst.astype(np.int64)


@pytest.mark.parametrize("layers", [2, 3])
def test_naive_gcn_matches_pyg(spark: object, layers: int) -> None:
    check_naive_gcn(lambda src, dst, n: SqlAggregator(spark, src, dst, n), layers)  # type: ignore[arg-type]


def test_naive_graphframes_gcn_matches_pyg() -> None:
    """The ladder's GraphFrames row (``GraphFrame.aggregateMessages``) computes PyG's GCN
    too: in a session of its own that loads the GraphFrames jar."""
    jar = os.environ.get(GRAPHFRAMES_JAR_ENV)
    if not jar:
        pytest.skip(f"{GRAPHFRAMES_JAR_ENV} is unset: the GraphFrames jar comes from Maven")
    pytest.importorskip("graphframes", reason="pip install graphframes-py")
    proc = subprocess.run(
        [sys.executable, "-m", "tests.bench.test_naive", jar],
        cwd=Path(__file__).resolve().parents[2], capture_output=True, text=True, timeout=900,
    )  # fmt: skip
    assert proc.returncode == 0, (proc.stdout + proc.stderr)[-4000:]
    assert "naive GraphFrames GCN equals PyG" in proc.stdout


def check_naive_gcn(make: Callable[[np.ndarray, np.ndarray, int], Aggregator], layers: int) -> None:
    """A naive GCN whose aggregations ``make(src, dst, n)`` computes: PyG's loss and every
    gradient, on a messy directed graph."""
    n = 40
    src, dst = _messy(n)
    torch.manual_seed(0)
    x = torch.randn(n, 7)
    y = torch.randint(0, 3, (n,))
    ref = GCN(7, 6, layers, 3, dropout=0.5)
    ours = copy.deepcopy(ref)
    edge_index = torch.from_numpy(np.stack([src, dst]))

    torch.manual_seed(1)  # the same dropout masks: both draw them in the same order
    ref_loss = F.cross_entropy(ref(x, edge_index), y)
    ref_loss.backward()

    agg = make(src, dst, n)
    torch.manual_seed(1)
    loss = F.cross_entropy(naive_forward(ours, x, agg), y)
    loss.backward()

    torch.testing.assert_close(loss, ref_loss, rtol=1e-5, atol=1e-6)
    for (name, p), q in zip(ours.named_parameters(), ref.parameters(), strict=True):
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, q.grad, rtol=1e-4, atol=1e-6, msg=name)


def test_graphframes_absence_is_explained(spark: object) -> None:
    """The fixture's session has no GraphFrames jar: the ladder's GraphFrames row says why
    it did not run (package missing, or jar missing) instead of failing deep in py4j."""
    why = graphframes_missing(spark)  # type: ignore[arg-type]
    assert why is not None
    if importlib.util.find_spec("graphframes") is None:
        assert "pip install graphframes-py" in why
    else:
        assert "not on the classpath" in why


@pytest.mark.slow
def test_the_ladder_measures_every_step(tmp_path: Path) -> None:
    """Every step in its own worker on a small graph; the GraphFrames row says why it did
    not run when GraphFrames is missing, and the report gives each step's factor."""
    cfg = {"graph": "sbm2k", "hidden": 16, "layers": 2, "epochs": 3, "naive_epochs": 2}
    cfg |= {"partitions": 2, "models": 2}
    seen: list[str] = []
    records = ladder.run(cfg, tmp_path, None, seen.append)
    assert [r["step"] for r in records] == [step for step, _ in ladder.STEPS]
    assert len(seen) == len(ladder.STEPS)
    for r in records:
        if r["system"] == "naive-graphframes" and not r["ok"]:
            assert r["error"].startswith("not run: "), r
        else:
            assert r["ok"], r
            assert r["epoch"] > 0 and np.isfinite(r["loss"])
    lines = ladder.render(records, {"ladder": cfg})
    rows = [line for line in lines if line.startswith("| ") and "×" in line]
    assert len(rows) == sum(r["ok"] for r in records)
    assert rows[0].startswith(f"| {ladder.BASE} |") and "| 1.0× |" in rows[0]


if __name__ == "__main__":  # the GraphFrames check, in a session that loads the jar
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    from lotan.engines.spark.session import get_spark

    session = get_spark(conf={"spark.jars": sys.argv[1]})
    for depth in (2, 3):
        check_naive_gcn(lambda src, dst, n: GraphFramesAggregator(session, src, dst, n), depth)
    print("naive GraphFrames GCN equals PyG")
