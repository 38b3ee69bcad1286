"""The ``lotan`` command: jobs from YAML (examples/cora.yaml among them), ``--set``,
checkpoints and ``--resume``, predictions to Parquet, plots, and errors that name the key."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from torch_geometric.nn.models import GCN

import lotan
from lotan.cli import ENTRY, main
from lotan.job import load_job

ROOT = Path(__file__).resolve().parents[1]
EXAMPLE = ROOT / "examples" / "cora.yaml"

SBM = {"num_vertices": 300, "num_classes": 3, "num_features": 8, "avg_degree": 5, "seed": 0}


def _job(tmp_path: Path, **extra: Any) -> Path:
    data = {
        "graph": {"sbm": SBM},
        "model": {"name": "GCN", "hidden_channels": 8, "num_layers": 2, "dropout": 0.5},
        "epochs": 6,
        "lr": 0.05,
        "weight_decay": 5e-4,
        "engine": "local",
        "num_partitions": 2,
        "progress": False,
        **extra,
    }
    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(data))
    return path


def _reference(epochs: int = 6, **kw: Any) -> lotan.FitResult:
    graph = lotan.datasets.sbm(**SBM)
    torch.manual_seed(0)
    model = GCN(8, 8, 2, 3, dropout=0.5)
    return lotan.fit(
        model,
        graph,
        epochs=epochs,
        lr=0.05,
        weight_decay=5e-4,
        engine="local",
        num_partitions=2,
        progress=False,
        **kw,
    )


def test_fit_then_predict_writes_what_the_api_computes(tmp_path: Path, capsys: Any) -> None:
    ckpt = tmp_path / "ckpt"
    job = _job(tmp_path, checkpoint_dir=str(ckpt), checkpoint_every=2)
    assert main(["fit", "--config", str(job), "--plot", str(tmp_path / "curves.png")]) == 0
    out = capsys.readouterr().out
    assert "trained 6 epochs" in out and "final test accuracy" in out
    assert (tmp_path / "curves.png").stat().st_size > 10_000
    expected = _reference()
    state = torch.load(sorted(ckpt.glob("epoch-*.pt"))[-1], weights_only=True)
    for name, p in expected.model.state_dict().items():
        assert torch.equal(p, state["trainers"][0]["model"][name]), name

    preds = tmp_path / "preds"
    args = ["predict", "--config", str(job), "--checkpoint", str(ckpt), "--output", str(preds)]
    assert main(args) == 0
    got = pd.read_parquet(preds).sort_values("id").reset_index(drop=True)
    want = lotan.predict(expected.model, lotan.datasets.sbm(**SBM), engine="local")
    assert list(got.columns) == ["id", "prediction", "probability"]
    assert (got["id"].to_numpy() == want["id"].to_numpy()).all()
    assert (got["prediction"].to_numpy() == want["prediction"].to_numpy()).all()
    # (2 partitions here, 1 in the reference: sums in another order)
    np.testing.assert_allclose(
        np.stack(got["probability"]), np.stack(want["probability"]), rtol=1e-5
    )

    emb = tmp_path / "emb"
    assert main([*args[:-1], str(emb), "--embedding"]) == 0
    e = pd.read_parquet(emb).sort_values("id")
    assert list(e.columns) == ["id", "embedding"] and len(e["embedding"].iloc[0]) == 3
    # the output exists now: refused, not overwritten or half-written
    assert main(args) == 2
    assert "exists; remove it" in capsys.readouterr().err


def test_set_overrides_and_resume(tmp_path: Path, capsys: Any) -> None:
    ckpt = tmp_path / "ckpt"
    job = _job(tmp_path, checkpoint_dir=str(ckpt), checkpoint_every=1)
    assert main(["fit", "--config", str(job), "--set", "epochs=3"]) == 0
    # a second run refuses the directory unless asked to resume, then trains epochs 4..6
    assert main(["fit", "--config", str(job)]) == 2
    assert "already holds checkpoints" in capsys.readouterr().err
    assert main(["fit", "--config", str(job), "--resume"]) == 0
    assert "resumed after epoch 3" in capsys.readouterr().out
    state = torch.load(sorted(ckpt.glob("epoch-*.pt"))[-1], weights_only=True)
    expected = _reference()
    for name, p in expected.model.state_dict().items():
        assert torch.equal(p, state["trainers"][0]["model"][name]), name
    # other settings are refused on resume
    assert main(["fit", "--config", str(job), "--resume", "--set", "lr=0.1"]) == 2
    assert "other settings" in capsys.readouterr().err


def test_a_grid_job_trains_every_combination(tmp_path: Path, capsys: Any) -> None:
    job = _job(tmp_path, grid={"hidden_channels": [4, 8], "lr": [0.01, 0.05]})
    assert main(["fit", "--config", str(job)]) == 0
    out = capsys.readouterr().out
    assert "best: {'hidden_channels'" in out
    cfg = load_job(job)
    trials = cfg.trials(lotan.datasets.sbm(**SBM))
    assert [(t.params["hidden_channels"], t.optimizer.lr) for t in trials] == [
        (4, 0.01),
        (4, 0.05),
        (8, 0.01),
        (8, 0.05),
    ]
    assert all(t.optimizer.weight_decay == 5e-4 for t in trials)  # from the job


def test_a_grid_of_seeds_trains_replicates_as_their_own_fits(tmp_path: Path) -> None:
    job = _job(tmp_path, grid={"seed": [0, 3]}, epochs=3)
    cfg = load_job(job)
    graph = lotan.datasets.sbm(**SBM)
    trials = cfg.trials(graph)
    assert [t.seed for t in trials] == [0, 3]
    results = lotan.fit_many(
        trials, graph, epochs=3, engine="local", num_partitions=2, progress=False
    )
    for res, seed in zip(results, (0, 3), strict=True):
        torch.manual_seed(seed)
        alone = lotan.fit(
            GCN(8, 8, 2, 3, dropout=0.5),
            graph,
            epochs=3,
            lr=0.05,
            weight_decay=5e-4,
            engine="local",
            num_partitions=2,
            seed=seed,
            progress=False,
        )
        assert [r.loss for r in res.history] == [r.loss for r in alone.history]
        for p, q in zip(res.model.parameters(), alone.model.parameters(), strict=True):
            assert torch.equal(p, q)
    assert results[0].history[0].loss != results[1].history[0].loss
    assert main(["fit", "--config", str(job)]) == 0


def test_explain(tmp_path: Path, capsys: Any) -> None:
    assert main(["explain", "--config", str(_job(tmp_path))]) == 0
    assert "per epoch: " in capsys.readouterr().out
    # the docs' (engines.md): the Spark stages of an epoch under split placement
    assert main(["explain", "--config", str(_job(tmp_path)), "--set", "placement=split"]) == 0
    out = capsys.readouterr().out
    assert "placement split: " in out and "graph  stage 1 · aggregate" in out


def test_spark_job_on_parquet_matches_the_local_engine(
    spark: Any, tmp_path: Path, capsys: Any
) -> None:
    vertices, edges = lotan.datasets.sbm(**SBM).dataframes(spark)
    vertices.write.parquet(str(tmp_path / "v"))
    edges.write.parquet(str(tmp_path / "e"))
    ckpt = tmp_path / "ckpt"
    job = _job(
        tmp_path,
        graph={"vertices": str(tmp_path / "v"), "edges": str(tmp_path / "e")},
        engine="spark",
        checkpoint_dir=str(ckpt),
        spark={"spark.sql.shuffle.partitions": 4},
    )
    assert main(["fit", "--config", str(job)]) == 0
    state = torch.load(sorted(ckpt.glob("epoch-*.pt"))[-1], weights_only=True)
    expected = _reference()
    for name, p in expected.model.state_dict().items():
        torch.testing.assert_close(state["trainers"][0]["model"][name], p, rtol=1e-4, atol=1e-5)
    preds = tmp_path / "preds"
    assert (
        main(
            [
                "predict",
                *("--config", str(job), "--checkpoint", str(ckpt), "--output", str(preds)),
            ]
        )
        == 0
    )
    got = spark.read.parquet(str(preds))
    assert got.count() == SBM["num_vertices"]
    assert got.columns == ["id", "prediction", "probability"]


def test_the_readme_example_job_runs(data_dir: Path, tmp_path: Path, capsys: Any) -> None:
    """examples/cora.yaml, shortened, on the local engine (the Spark run is the quickstart's)."""
    args = ["--config", str(EXAMPLE), "--set", f"checkpoint_dir={tmp_path / 'cora'}"]
    args += ["--set", "epochs=5", "--set", "engine=local"]
    assert main(["fit", *args]) == 0
    assert "trained 5 epochs" in capsys.readouterr().out
    assert len(list((tmp_path / "cora").glob("epoch-*.pt"))) == 1


BAD = [
    ({"lrr": 0.1}, "unknown key(s) ['lrr']"),
    ({"lr": -1}, "lr must be > 0, found -1"),
    ({"epochs": "ten"}, "epochs must be a positive integer"),
    ({"engine": "dask"}, "engine='dask' is not one of"),
    ({"graph": {"planetoid": "Cora", "vertices": "v"}}, "graph needs exactly one source"),
    ({"graph": {"sbm": SBM, "color": 1}}, "unknown key(s) graph.['color']"),
    ({"graph": {"planetoid": "Coraa"}}, "unknown Planetoid dataset 'Coraa'"),
    ({"model": {"hidden_channels": 8}}, "model needs a name"),
    ({"model": {"name": "GAT2"}}, "model.name 'GAT2' is not one of"),
    ({"model": {"name": "nowhere.module:build"}}, "cannot import it"),
    ({"model": {"name": "GCN", "hidden_channels": 8, "num_layers": 2, "bogus": 1}}, "bogus"),
    ({"model": {"name": "GCN", "in_channels": 3}}, "model.in_channels comes from the graph"),
    ({"spark": {"executor.memory": "2g"}}, "spark settings start with 'spark.'"),
    ({"grid": {"hidden_channels": 8}}, "grid.hidden_channels must be a non-empty list"),
    ({"grid": {"epochs": [1, 2]}}, "grid.epochs: a grid varies model and optimizer keys"),
    ({"patience": 0}, "patience must be a positive integer"),
]


@pytest.mark.parametrize(("extra", "message"), BAD, ids=[m for _, m in BAD])
def test_bad_jobs_name_the_key(tmp_path: Path, capsys: Any, extra: dict, message: str) -> None:
    assert main(["fit", "--config", str(_job(tmp_path, **extra))]) == 2
    err = capsys.readouterr().err
    assert err.startswith("lotan fit: error: ") and message in err, err


def test_bad_command_lines(tmp_path: Path, capsys: Any) -> None:
    job = str(_job(tmp_path))
    assert main(["fit", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "does not exist" in capsys.readouterr().err
    (tmp_path / "broken.yaml").write_text("graph: [unclosed")
    assert main(["fit", "--config", str(tmp_path / "broken.yaml")]) == 2
    assert "is not valid YAML" in capsys.readouterr().err
    assert main(["fit", "--config", job, "--set", "lr"]) == 2
    assert "expected key=value" in capsys.readouterr().err
    with pytest.raises(lotan.LotanError, match="expected key=value"):  # -v: the traceback
        main(["fit", "--config", job, "--set", "lr", "-v"])
    empty = tmp_path / "empty"
    args = ["predict", "--config", job, "--checkpoint", str(empty), "--output", "x"]
    assert main(args) == 2
    assert "no checkpoint in" in capsys.readouterr().err
    # a checkpoint of another architecture
    ckpt = tmp_path / "ckpt"
    assert main(["fit", "--config", job, "--set", f"checkpoint_dir={ckpt}"]) == 0
    capsys.readouterr()
    out = str(tmp_path / "p")
    args = ["predict", "--config", job, "--checkpoint", str(ckpt), "--output", out]
    assert main([*args, "--set", "model.hidden_channels=4"]) == 2
    assert "holds another model than the job's" in capsys.readouterr().err
    assert not Path(out).exists()


def test_python_m_lotan_and_the_entry_file() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "lotan", "entry"], capture_output=True, text=True, check=True
    )
    assert Path(out.stdout.strip()) == ENTRY and ENTRY.is_file()
    bad = subprocess.run(
        [sys.executable, str(ENTRY), "fit", "--config", "missing.yaml"],
        capture_output=True,
        text=True,
    )
    assert bad.returncode == 2 and "does not exist" in bad.stderr


def test_the_command_keeps_sparks_log_off_the_terminal(data_dir: Path) -> None:
    """``lotan explain`` on Spark in a fresh process (its own JVM): Lotan's output only, no
    Spark banner or WARN lines."""
    from tests.test_docs import SPARK_NOISE

    args = [sys.executable, "-m", "lotan", "explain", "--config", str(EXAMPLE)]
    args += ["--set", "engine=spark", "--set", "spark.ui.enabled=false"]
    env = {**os.environ, "LOTAN_DATA_DIR": str(data_dir)}
    proc = subprocess.run(args, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "== Physical plan ==" in proc.stdout
    noise = [w for w in SPARK_NOISE if w in proc.stdout + proc.stderr]
    assert not noise, (noise, proc.stderr[-2000:])
