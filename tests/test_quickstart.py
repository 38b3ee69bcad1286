"""The README's quickstart, run for real (shortened on Spark; full protocol on the local
engine, which runs the same plan and kernels)."""

from __future__ import annotations

import pytest

from lotan import quickstart


def test_quickstart_through_spark(spark, data_dir, capsys) -> None:
    result = quickstart.main(["--root", str(data_dir), "--epochs", "3", "--partitions", "2"])
    out = capsys.readouterr().out
    assert "epoch    3/3" in out and "final test accuracy:" in out
    assert len(result.history) == 3
    assert result.final.loss < result.history[0].loss


def test_kipf_welling_protocol_reaches_published_accuracy(data_dir, capsys) -> None:
    accs = [
        quickstart.main(
            ["--root", str(data_dir), "--engine", "local", "--seed", str(s)]
        ).final.test_acc
        for s in range(2)
    ]
    assert min(accs) >= 0.79, accs
    assert "final test accuracy" in capsys.readouterr().out


@pytest.mark.parametrize("argv", [["--dataset", "Reddit"]])
def test_quickstart_unknown_dataset(data_dir, argv) -> None:
    from lotan.errors import DatasetNotFoundError

    with pytest.raises(DatasetNotFoundError):
        quickstart.main(["--root", str(data_dir), *argv])


def test_module_entry_point(data_dir) -> None:
    import os
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "lotan.quickstart", "--engine", "local", "--epochs", "2"],
        env={**os.environ, "LOTAN_DATA_DIR": str(data_dir)},
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    assert "epoch    2/2" in proc.stdout and "final test accuracy:" in proc.stdout
