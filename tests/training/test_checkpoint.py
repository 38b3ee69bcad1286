"""Checkpoints: atomic files, a resumed run ends with an uninterrupted run's weights (plain,
with early stopping, after a real SIGKILL), and a checkpoint of another run is refused."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

import pytest
import torch
from torch_geometric.nn.models import GCN

import lotan
from lotan.training.checkpoint import CheckpointError, load_latest


def _graph(seed: int = 0) -> lotan.Graph:
    return lotan.datasets.sbm(400, num_classes=4, num_features=8, avg_degree=6, seed=seed)


def _model(**kw: Any) -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(8, 16, 2, 4, dropout=0.5, **kw)


def _fit(graph: lotan.Graph, model: dict[str, Any] | None = None, **kw: Any) -> lotan.FitResult:
    args: dict[str, Any] = {
        "epochs": 12,
        "lr": 0.05,
        "weight_decay": 5e-4,
        "engine": "local",
        "num_partitions": 3,
        "progress": False,
        **kw,
    }
    return lotan.fit(_model(**(model or {})), graph, **args)


def _same(a: lotan.FitResult, b: lotan.FitResult) -> None:
    """Same parameters and buffers (running statistics), bit for bit, and history."""
    sa, sb = a.model.state_dict(), b.model.state_dict()
    assert list(sa) == list(sb)
    for name, p in sa.items():
        assert torch.equal(p, sb[name]), name
    assert [(r.epoch, r.loss, r.val_acc) for r in a.history] == [
        (r.epoch, r.loss, r.val_acc) for r in b.history
    ]


def test_resume_from_a_mid_run_checkpoint_equals_an_uninterrupted_run(tmp_path: Path) -> None:
    graph = _graph()
    full = _fit(graph)
    run = _fit(graph, checkpoint_dir=str(tmp_path), checkpoint_every=5)
    _same(full, run)
    names = sorted(p.name for p in tmp_path.iterdir())
    assert names == ["epoch-000010.pt", "epoch-000012.pt"]  # the newest two are kept
    final = load_latest(tmp_path)
    assert final is not None and final["complete"] and final["epoch"] == 12

    # The state a run killed after epoch 10 leaves: resume goes on from there.
    (tmp_path / "epoch-000012.pt").unlink()
    (tmp_path / ".epoch-000011.pt.tmp-dead").write_bytes(b"half a checkpoint")  # ignored
    resumed = _fit(graph, checkpoint_dir=str(tmp_path), resume=True)
    assert resumed.resumed_from == 10
    _same(full, resumed)

    # A finished run resumes to its result without training.
    again = _fit(graph, checkpoint_dir=str(tmp_path), resume=True)
    assert again.resumed_from == 12
    _same(full, again)


def test_resume_with_early_stopping(tmp_path: Path) -> None:
    graph = _graph()
    kw: dict[str, Any] = {"epochs": 40, "patience": 3, "monitor": "loss", "lr": 0.5}
    full = _fit(graph, **kw)
    assert full.stopped_early
    run = _fit(graph, checkpoint_dir=str(tmp_path), checkpoint_every=2, **kw)
    _same(full, run)
    newest = load_latest(tmp_path)
    assert newest is not None and newest["complete"] and newest["epoch"] == full.epochs_run
    Path(newest["path"]).unlink()  # back to the last checkpoint before the stop
    resumed = _fit(graph, checkpoint_dir=str(tmp_path), checkpoint_every=2, resume=True, **kw)
    assert 0 < resumed.resumed_from < full.epochs_run
    assert resumed.stopped_early
    _same(full, resumed)


def test_resume_with_batch_norm_continues_its_running_statistics(tmp_path: Path) -> None:
    """The running statistics are part of the checkpoint: a resumed run updates them from
    where the killed one left them, and early stopping restores the best epoch's."""
    graph = _graph()
    bn: dict[str, Any] = {"model": {"norm": "batch_norm", "norm_kwargs": {"momentum": None}}}
    full = _fit(graph, **bn)
    assert int(full.model.state_dict()["norms.0.module.num_batches_tracked"]) == 12
    run = _fit(graph, checkpoint_dir=str(tmp_path), checkpoint_every=5, **bn)
    _same(full, run)
    (tmp_path / "epoch-000012.pt").unlink()
    resumed = _fit(graph, checkpoint_dir=str(tmp_path), resume=True, **bn)
    assert resumed.resumed_from == 10
    _same(full, resumed)
    kw: dict[str, Any] = {"epochs": 40, "patience": 3, "monitor": "loss", "lr": 0.5, **bn}
    stopped = _fit(graph, **kw)
    assert stopped.stopped_early
    best = stopped.best().epoch
    assert int(stopped.model.state_dict()["norms.0.module.num_batches_tracked"]) == best


def test_a_checkpoint_of_another_run_is_refused(tmp_path: Path) -> None:
    graph = _graph()
    _fit(graph, checkpoint_dir=str(tmp_path), epochs=3)
    with pytest.raises(CheckpointError, match="already holds checkpoints"):
        _fit(graph, checkpoint_dir=str(tmp_path))
    with pytest.raises(CheckpointError, match="other settings"):
        _fit(graph, checkpoint_dir=str(tmp_path), resume=True, lr=0.01)
    with pytest.raises(CheckpointError, match="another graph"):
        _fit(_graph(seed=1), checkpoint_dir=str(tmp_path), resume=True)
    # more epochs, another engine layout: the same run, continued
    longer = _fit(graph, checkpoint_dir=str(tmp_path), resume=True, num_partitions=2)
    assert longer.resumed_from == 3
    with pytest.raises(lotan.LotanError, match="resume=True needs checkpoint_dir"):
        _fit(graph, resume=True)
    with pytest.raises(lotan.LotanError, match="checkpoint_every must be a positive integer"):
        _fit(graph, checkpoint_dir=str(tmp_path / "x"), checkpoint_every=0)


def test_a_file_that_is_not_a_checkpoint_is_refused(tmp_path: Path) -> None:
    torch.save({"format": 99}, tmp_path / "epoch-000001.pt")
    with pytest.raises(CheckpointError, match="not a Lotan checkpoint"):
        _fit(_graph(), checkpoint_dir=str(tmp_path), resume=True)
    (tmp_path / "epoch-000002.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="could not read checkpoint"):
        _fit(_graph(), checkpoint_dir=str(tmp_path), resume=True)


_JOB = textwrap.dedent(
    """
    import sys, torch, lotan
    from torch_geometric.nn.models import GCN
    graph = lotan.datasets.sbm(400, num_classes=4, num_features=8, avg_degree=6, seed=0)
    torch.manual_seed(0)
    model = GCN(8, 16, 2, 4, dropout=0.5)
    res = lotan.fit(model, graph, epochs=30, lr=0.05, weight_decay=5e-4, engine="local",
                    num_partitions=3, progress=False, checkpoint_dir=sys.argv[1],
                    checkpoint_every=1, resume=True)
    torch.save(res.model.state_dict(), sys.argv[2])
    print("resumed_from", res.resumed_from, flush=True)
    """
)


def test_a_killed_process_resumes(tmp_path: Path) -> None:
    """SIGKILL a training process after a few checkpoints, run it again: same weights."""
    script = tmp_path / "job.py"
    script.write_text(_JOB)
    ckpt = tmp_path / "ckpt"
    cmd = [sys.executable, str(script), str(ckpt), str(tmp_path / "final.pt")]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(ckpt.glob("epoch-*.pt"))) < 2:
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    out = subprocess.run(cmd, capture_output=True, text=True, check=True, timeout=300)
    resumed_from = int(out.stdout.split("resumed_from")[1])
    assert 0 < resumed_from < 30
    expected = lotan.fit(
        _model(),
        _graph(),
        epochs=30,
        lr=0.05,
        weight_decay=5e-4,
        engine="local",
        num_partitions=3,
        progress=False,
    )
    got = torch.load(tmp_path / "final.pt", weights_only=True)
    for name, p in expected.model.state_dict().items():
        assert torch.equal(p, got[name]), name
