"""The benchmark harness: graphs every system reads alike, workers in fresh processes, and a
report computed from the results (numbers and ratios, not hard-coded)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pytest

from bench.graphs import load_npz, write_graph
from bench.report import render
from bench.suite import KIPF, measure
from bench.systems import best_val_test


def test_graph_files_round_trip(tmp_path: Path) -> None:
    path = write_graph("sbm2k", tmp_path)
    g = load_npz(path)
    n = g["x"].shape[0]
    assert n == 2000 and g["x"].dtype == np.float32 and g["src"].max() < n
    assert not (g["train"] & g["test"]).any() and g["train"].any()
    assert write_graph("sbm2k", tmp_path) == path  # written once


def test_best_validation_epoch_picks_the_first_best() -> None:
    curve = [[0.5, 0.6, 0.61], [0.6, 0.7, 0.65], [0.7, 0.7, 0.9], [0.8, 0.5, 0.95]]
    assert best_val_test(curve) == (0.7, 0.65)


@pytest.mark.parametrize("system", ["pyg", "pyg-csr", "lotan-local"])
def test_workers_measure_in_a_fresh_process(system: str, tmp_path: Path) -> None:
    path = write_graph("sbm2k", tmp_path)
    spec = {
        "system": system,
        "task": "accuracy",
        "graph": str(path),
        "model": "gcn",
        "epochs": 3,
        "seeds": [0, 1],
        **KIPF,
    }
    res = measure(spec, None)
    assert res["ok"], res
    assert len(res["test"]) == 2 and all(0.0 <= t <= 1.0 for t in res["test"])
    assert res["rss_gib"]["driver"] > 0


def test_a_failing_worker_is_reported_not_raised(tmp_path: Path) -> None:
    spec = {"system": "pyg", "task": "epochs", "graph": str(tmp_path / "missing.npz")}
    res = measure(spec, None)
    assert not res["ok"] and "exit" in res["error"]
    assert measure({**spec, "system": "dgl"}, None) == {"ok": False, "error": "no DGL environment"}


def test_report_computes_ratios_and_keeps_published_numbers(tmp_path: Path) -> None:
    rec = {"ok": True, "rss_gib": {"driver": 1.0}, "first_epoch": 2.0}
    results = {
        "suite": "quick",
        "seconds": {"accuracy": 60.0},
        "config": {
            "accuracy": {"epochs": 200, "seeds": 2},
            "scale": {"layers": 2},
            "depth_width": {"systems": ["pyg-csr", "lotan-local"], "graph": "sbm10k"},
        },
        "machine": {
            "cores": 2,
            "cpu": "x",
            "memory_gib": 24,
            "gpu": "none",
            "python": "3.11",
            "torch": "t",
            "torch_geometric": "g",
            "pyspark": "s",
            "java": "j",
            "lotan": "l",
        },
        "dgl": {"pins": ["dgl==2.1.0"]},
        "records": [
            {
                "experiment": "accuracy",
                "graph": "cora",
                "system": "pyg",
                "ok": True,
                "test": [0.80, 0.82],
                "val": [0.79, 0.79],
            },
            {
                "experiment": "scale",
                "graph": "sbm10k",
                "model": "gcn",
                "system": "pyg",
                **rec,
                "epoch": 0.5,
            },
            {
                "experiment": "scale",
                "graph": "sbm10k",
                "model": "gcn",
                "system": "lotan-local",
                **rec,
                "epoch": 0.25,
            },
            {
                "experiment": "scale",
                "graph": "sbm100k",
                "model": "gcn",
                "system": "dgl",
                "ok": False,
                "error": "killed (out of memory)",
            },
            *(
                {
                    "experiment": "depth_width",
                    "axis": "width",
                    "layers": 2,
                    "hidden": 4096,
                    "system": system,
                    **rec,
                    "epoch": epoch,
                }
                for system, epoch in (("pyg-csr", 0.8), ("lotan-local", 0.2))
            ),
            {
                "experiment": "batching",
                "system": "lotan-spark",
                "ok": True,
                "sequential": [1.0, 1.0, 1.2, 0.8],
                "batched": {
                    "1": {"cost": 0.9, "sub_batches": [{"models": 1}]},
                    "4": {"cost": 1.8, "sub_batches": [{"models": 3}, {"models": 1}]},
                },
            },
            *(
                {
                    "experiment": "planner",
                    "config": name,
                    "system": "lotan-local",
                    **rec,
                    "epoch": epoch,
                    "plan": {"stages": stages, "fwd_mb": 10.0, "bwd_mb": 5.0},
                }
                for name, epoch, stages in (("all rules", 1.0, 5), ("no fuse", 1.5, 9))
            ),
            *(
                {
                    "experiment": "partitioners",
                    "partitions": 4,
                    "partitioner": name,
                    "system": "lotan-local",
                    **rec,
                    "epoch": epoch,
                    "plan": {"replication": rf, "vertex_skew": 1.0, "fwd_mb": 1234.5},
                }
                for name, epoch, rf in (("hash", 0.8, 2.9), ("label_propagation", 0.6, 1.9))
            ),
        ],
    }
    path = tmp_path / "results.json"
    path.write_text(json.dumps(results))
    text = render(path).read_text()
    assert "| Cora | PyG (`edge_index`) | 81.0 ± 1.4 | 79.0 ± 0.0 | 81.5 |" in text
    assert "| sbm10k | GCN | Lotan, local engine | 0.250 | 0.50 |" in text
    assert "killed (out of memory)" in text
    assert "| width | 2 | 4096 | Lotan, local engine | 0.200 | 0.25 |" in text
    assert "| Lotan, Spark engine | 4 | 1.800 | 4.000 | 2.22x | 2.00 | 3 + 1 |" in text
    assert "| no fuse | 1.500 | 1.50 | 9 | 10.0 | 5.0 | 2.00 |" in text
    assert "| 4 | label_propagation | 1.900 | 1.00 | 1,234.5 | 0.600 | 0.75 | 1.4 |" in text
    assert (tmp_path / "scale.png").stat().st_size > 1000
    assert "Machine: 2 cores (x), 24 GiB" in text
    # experiments merged from --only runs on another machine say which ran where
    other = {**results["machine"], "cpu": "AMD EPYC, AVX2", "commit": "abc1234"}
    results["machines"] = {"accuracy": results["machine"], "scale": other}
    path.write_text(json.dumps(results))
    text = render(path).read_text()
    assert "merged: accuracy on 2 cores (x)" in text
    assert "; scale on 2 cores (AMD EPYC, AVX2), 24 GiB" in text and "(abc1234)" in text


def test_lotan_worker_reports_the_physical_plan(tmp_path: Path) -> None:
    """The planner/partitioner experiments' numbers come from ``lotan.explain``: a rule
    switched off changes the stage count, label propagation shrinks the halo."""
    path = write_graph("sbm2k", tmp_path)
    spec = {
        "system": "lotan-local",
        "task": "epochs",
        "graph": str(path),
        "model": "gcn",
        "hidden": 16,
        "layers": 2,
        "dropout": 0.5,
        "lr": 0.01,
        "weight_decay": 5e-4,
        "epochs": 2,
        "local_partitions": 4,
        "plan": True,
    }
    plans = {}
    for name, extra in {
        "all": {},
        "no fuse": {"planner": {"fuse": False}},
        "lp": {"partitioner": "label_propagation"},
    }.items():
        res = measure({**spec, **extra}, None)
        assert res["ok"], res
        plans[name] = res["plan"]
    assert plans["no fuse"]["stages"] > plans["all"]["stages"]
    assert plans["lp"]["replication"] < plans["all"]["replication"]
    assert plans["all"]["fwd_mb"] > 0 and plans["all"]["vertex_skew"] >= 1.0


def test_the_exchange_dtype_bench_prints_both_dtypes(
    data_dir: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from bench import exchange_dtype

    monkeypatch.setenv("LOTAN_DATA_DIR", str(data_dir))
    monkeypatch.setattr("sys.argv", ["x", "--datasets", "Cora", "--seeds", "0", "--epochs", "3"])
    exchange_dtype.main()
    rows = [r for r in capsys.readouterr().out.splitlines() if r.startswith("| Cora")]
    assert [r.split(" | ")[1] for r in rows] == ["GCN", "GraphSAGE"]
    for r in rows:
        accs = [float(v) for v in r.strip(" |").split(" | ")[2:]]
        assert all(0.0 <= a <= 1.0 for a in accs)


def test_products_run_reports_outcome_memory_and_spark_io(tmp_path: Path) -> None:
    """The products experiment at 0.1 % of ogbn-products' vertices: the peer reads the
    ``.npz`` (the same degree-corrected SBM), Lotan generates the graph inside Spark, and
    the report row carries its preparation, peak RSS per process kind and shuffle bytes."""
    from bench import products
    from bench.graphs import products_kwargs

    cfg = {
        "systems": ["pyg-csr", "lotan-spark"],
        "epochs": 2,
        "partitions": 2,
        "limit_gb": 8,
        "scale": 0.001,
    }
    logged: list[str] = []
    rows = products.run(cfg, tmp_path, None, logged.append)
    assert [r["system"] for r in rows] == ["pyg-csr", "lotan-spark"]
    assert all(r["ok"] for r in rows), rows
    g = load_npz(tmp_path / "products_like@0.001.npz")
    kw = products_kwargs(0.001)
    assert g["x"].shape == (kw["num_vertices"], 100) and g["y"].max() < 47
    assert abs(g["src"].shape[0] / kw["num_vertices"] - kw["avg_degree"]) < 5
    lotan_row = rows[1]
    assert lotan_row["preparation_s"] > 0 and lotan_row["spark_io"]["shuffle_write_gib"] > 0
    assert {"driver", "jvm", "py-workers"} <= set(lotan_row["rss_gib"])
    text = "\n".join(products.render(rows, {"products": cfg}))
    assert "| lotan-spark | completed |" in text and "| pyg-csr | completed |" in text
    assert all("completed" in line for line in logged)


def test_the_products_command_prints_its_section(tmp_path: Path) -> None:
    """``python -m bench.products --scale`` (the README's command), one peer, tiny scale."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bench.products", "--scale", "0.001", "--systems", "pyg-csr"]
    cmd += ["--epochs", "2", "--limit-gb", "8", "--data", str(tmp_path), "--task-cpus", "2"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "products products_like@0.001 pyg-csr: completed" in proc.stdout
    assert "| pyg-csr | completed |" in proc.stdout
    assert "2 cores per task (`spark.task.cpus=2`" in proc.stdout


def test_a_rerun_of_some_graphs_replaces_only_their_records(tmp_path: Path, monkeypatch) -> None:
    """``--only scale --graphs g`` re-runs one graph of an experiment and merges: the other
    graphs' records stay as they were, and the report keeps both runs' seconds and machine."""
    from bench import suite

    tiny = {
        "scale": {
            "graphs": ["sbm1k", "sbm2k"],
            "models": ["gcn"],
            "systems": ["pyg-csr"],
            "spark_models": [],
            "hidden": 8,
            "layers": 2,
            "epochs": 2,
            "partitions": 2,
        },
        "depth_width": {"graph": "sbm1k"},
    }
    monkeypatch.setitem(suite.SUITES, "tiny", tiny)
    path = suite.run_suite("tiny", ["scale"], tmp_path, use_dgl=False)
    first = json.loads(path.read_text())
    assert [r["graph"] for r in first["records"]] == ["sbm1k", "sbm2k"]
    assert set(first["seconds"]) == set(first["machines"]) == {"scale"}

    suite.run_suite("tiny", ["scale"], tmp_path, use_dgl=False, graphs=["sbm2k"])
    again = json.loads(path.read_text())
    assert again["records"][0] == first["records"][0]  # sbm1k: kept as it was
    assert [r["graph"] for r in again["records"]] == ["sbm1k", "sbm2k"]
    assert again["records"][1]["wall_s"] != first["records"][1]["wall_s"]  # measured anew
    assert again["config"]["scale"]["graphs"] == ["sbm1k", "sbm2k"]  # the suite's, not narrowed
    assert set(again["seconds"]) == set(again["machines"]) == {"scale", "scale[sbm2k]"}
    assert again["seconds"]["scale"] == first["seconds"]["scale"]
    assert re.search(r"minutes \(scale \d+\.\d, scale\[sbm2k\] \d+\.\d\)", render(path).read_text())

    suite.run_suite("tiny", ["scale"], tmp_path, use_dgl=False)  # the whole experiment again
    assert set(json.loads(path.read_text())["seconds"]) == {"scale"}

    with pytest.raises(SystemExit, match="name it with --only"):
        suite.run_suite("tiny", None, tmp_path, use_dgl=False, graphs=["sbm2k"])
    with pytest.raises(SystemExit, match=r"sbm9k not among 'scale'\'s graphs \(sbm1k, sbm2k\)"):
        suite.run_suite("tiny", ["scale"], tmp_path, use_dgl=False, graphs=["sbm9k"])
    with pytest.raises(SystemExit, match="'depth_width' has no graph list"):
        suite.run_suite("tiny", ["depth_width"], tmp_path, use_dgl=False, graphs=["sbm1k"])


def test_the_bench_command_takes_graphs_with_only() -> None:
    """``python -m bench run --only scale --graphs ...`` reaches the narrowing (which checks
    the graphs before anything runs or is written)."""
    import subprocess
    import sys

    cmd = [sys.executable, "-m", "bench", "run", "--suite", "full", "--only", "scale"]
    cmd += ["--graphs", "sbm2m,sbm9k", "--no-dgl"]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode != 0
    assert "--graphs: sbm9k not among 'scale''s graphs (sbm10k, sbm100k, sbm1m, sbm2m)" in (
        proc.stderr
    )
