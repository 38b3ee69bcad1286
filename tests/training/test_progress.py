"""The driver's progress display and the labels Spark's UI shows for each job."""

from __future__ import annotations

import io
from typing import Any

import lotan
from lotan.training.progress import Progress
from lotan.training.records import EpochRecord


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def _rec(epoch: int) -> EpochRecord:
    return EpochRecord(epoch, 0.5, 0.9, 0.8, 0.7, 2.0)


def test_a_bar_on_a_terminal_and_lines_in_a_log() -> None:
    tty = _Terminal()
    bar = Progress(10, stream=tty)
    for e in (1, 2):
        bar.update([_rec(e)])
    bar.close()
    text = tty.getvalue()
    assert text.count("\r") == 2 and text.endswith("\n") and "█" in text
    assert "epoch    2/10" in text and "val 0.8000" in text and "eta 0m16s" in text

    log = io.StringIO()
    bar = Progress(10, stream=log)
    bar.update([_rec(1)])
    bar.update([_rec(2), EpochRecord(2, 0.7, 0.5, 0.9, 0.4, 2.0)])  # two models
    bar.close()
    lines = log.getvalue().splitlines()
    assert len(lines) == 2 and "\r" not in log.getvalue()
    assert "2 models  loss 0.5000..0.7000  best val 0.9000" in lines[1]
    quiet = io.StringIO()
    Progress(10, enabled=False, stream=quiet).update([_rec(1)])
    assert quiet.getvalue() == ""


def test_spark_jobs_are_labelled_with_epoch_and_stages(spark: Any) -> None:
    import torch
    from torch_geometric.nn.models import GCN

    graph = lotan.datasets.sbm(200, num_classes=3, num_features=4, avg_degree=4, seed=0)
    torch.manual_seed(0)
    lotan.fit(
        GCN(4, 8, 2, 3), graph, epochs=2, engine="spark", num_partitions=2, spark=spark,
        progress=False,
    )  # fmt: skip
    store = spark.sparkContext._jsc.sc().statusStore()
    jobs = store.jobsList(None)
    labels = [jobs.apply(i).description() for i in range(jobs.size())]  # a Scala Seq
    labels = [str(d.get()) for d in labels if d.isDefined()]
    assert (
        "lotan · epoch 2/2 · stage 0 · forward → stage 1 · forward + loss → stage 0 · backward"
        in labels
    ), labels
    assert any(d.startswith("lotan · evaluate · stage 0 · forward") for d in labels), labels
