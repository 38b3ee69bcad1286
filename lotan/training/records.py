"""What training reports: one :class:`EpochRecord` per epoch, the :class:`FitResult` of a
model (its history, best epoch, plots), and the :class:`GridResult` of ``fit_many``."""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lotan.errors import LotanError
from lotan.options import MONITORS, OPTIMIZER_KEYS, FitConfig, OptimizerConfig
from lotan.runtime.task import DEVICE_COUNTS

if TYPE_CHECKING:
    from collections.abc import Iterator

    import pandas as pd

    from lotan.engines.choice import EngineChoice
    from lotan.planner.batching import BatchPlan

__all__ = ["EpochRecord", "FitResult", "GridResult", "better"]


@dataclass(frozen=True)
class EpochRecord:
    """One epoch: the training loss (weights before the step) and accuracies with dropout off
    after the step, as PyG's example loop reports them."""

    epoch: int
    loss: float
    train_acc: float
    val_acc: float
    test_acc: float
    seconds: float
    #: Task seconds of the epoch's training run by phase (see
    #: :data:`lotan.runtime.task.PHASES`), summed over partitions and stages. In a
    #: batch of models, the whole batch's run.
    phases: dict[str, float] = field(default_factory=dict, compare=False)


def better(metric: str, a: float, b: float) -> bool:
    """``a`` improves on ``b`` for ``metric`` (NaN never improves)."""
    if math.isnan(a):
        return False
    if math.isnan(b):
        return True
    return a < b if metric == "loss" else a > b


@dataclass
class FitResult:
    """What ``fit`` returns (and ``fit_many``, per model): the trained model (the same
    module object) and its history.

    Attributes
    ----------
    model : the trained module (with ``patience``, the weights of its best epoch).
    history : one :class:`EpochRecord` per epoch run.
    config : the settings it was trained with.
    optimizer : this model's optimizer settings.
    params : the grid values this model was built with (``lotan.grid``), else empty.
    stopped_early : early stopping ended its training before ``config.training.epochs``.
    resumed_from : the checkpoint epoch this run resumed after (0: it started fresh).
    diverged : why this model stopped on a NaN/inf loss or gradient (``fit_many``; ``fit``
        raises :class:`~lotan.errors.TrainingDivergedError` instead), else None.
    devices : where the dense work of this run went, counted over tasks and epochs:
        ``dense_pieces`` (dense pieces run), ``gpu_assigned`` (of those, in a task Spark gave
        a GPU), ``on_cuda`` (of those, run on CUDA). ``gpu_assigned > on_cuda`` means tasks
        got GPUs that torch could not use (a CPU build of torch on the executors?).
    engine : the engine that ran it and why (``engine.name``, ``engine.reason``).
    """

    model: torch.nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    config: FitConfig | None = None
    num_partitions: int = 0
    optimizer: OptimizerConfig | None = None
    params: dict[str, Any] = field(default_factory=dict)
    stopped_early: bool = False
    resumed_from: int = 0
    diverged: str | None = None
    devices: dict[str, int] = field(default_factory=lambda: dict.fromkeys(DEVICE_COUNTS, 0))
    engine: EngineChoice | None = None

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]

    def best(self, metric: str | None = None) -> EpochRecord:
        """The epoch with the best ``metric`` (default: the monitored one; the first such
        epoch on ties)."""
        metric = metric or (self.config.training.monitor if self.config else "val_acc")
        best = self.history[0]
        for rec in self.history[1:]:
            if better(metric, getattr(rec, metric), getattr(best, metric)):
                best = rec
        return best

    @property
    def epochs_run(self) -> int:
        return len(self.history)

    def plot(self, path: str | os.PathLike[str] | None = None) -> Any:
        """Training curves: the loss, and train/val/test accuracy per epoch, with the best
        epoch of the monitored metric marked. Returns the matplotlib ``Figure``; with
        ``path``, also writes it there (PNG, SVG, PDF by the suffix). Needs matplotlib."""
        try:
            from matplotlib.figure import Figure
        except ImportError as exc:
            raise LotanError("plot() needs matplotlib: pip install matplotlib") from exc
        if not self.history:
            raise LotanError("nothing to plot: this result has no epochs")
        epochs = [r.epoch for r in self.history]
        fig = Figure(figsize=(10, 4))
        loss_ax, acc_ax = fig.subplots(1, 2)
        loss_ax.plot(epochs, [r.loss for r in self.history], color="tab:red")
        loss_ax.set(xlabel="epoch", ylabel="training loss", title="loss")
        for split in ("train", "val", "test"):
            acc_ax.plot(epochs, [getattr(r, f"{split}_acc") for r in self.history], label=split)
        metric = self.config.training.monitor if self.config else "val_acc"
        best = self.best(metric)
        for ax in (loss_ax, acc_ax):
            ax.axvline(best.epoch, color="gray", linestyle=":", linewidth=1)
            ax.grid(True, alpha=0.3)
        acc_ax.set(
            xlabel="epoch", ylabel="accuracy", title=f"accuracy (best {metric}: epoch {best.epoch})"
        )
        acc_ax.legend()
        fig.tight_layout()
        if path is not None:
            fig.savefig(os.fspath(path), dpi=100)
        return fig


class GridResult:
    """What :func:`fit_many` returns: one :class:`~lotan.FitResult` per model, in the order
    of the models (``results[i]``, iteration, ``len``), and how they were batched."""

    def __init__(self, results: list[FitResult], plan: list[BatchPlan]) -> None:
        self.results = results
        self.batches = plan

    def __len__(self) -> int:
        return len(self.results)

    def __getitem__(self, i: int) -> FitResult:
        return self.results[i]

    def __iter__(self) -> Iterator[FitResult]:
        return iter(self.results)

    def best(self, metric: str = "val_acc") -> FitResult:
        """The model whose best epoch is best on ``metric`` (``val_acc``, ``train_acc``,
        ``test_acc``: highest; ``loss``: lowest); its ``.model`` is the trained module."""
        if metric not in MONITORS:
            raise LotanError(f"metric={metric!r} is not one of {list(MONITORS)}")
        best = self.results[0]
        for r in self.results[1:]:
            if better(metric, getattr(r.best(metric), metric), getattr(best.best(metric), metric)):
                best = r
        return best

    def table(self, metric: str = "val_acc") -> pd.DataFrame:
        """One row per model: its grid values (or a description), optimizer settings, the
        epoch with the best ``metric`` and its val/test accuracy, epochs run, whether it
        stopped early, and its batch."""
        import pandas as pd

        where = {}
        for b, bp in enumerate(self.batches):
            for s, (members, _) in enumerate(bp.sub_batches):
                for i in members:
                    where[i] = f"{b}.{s}" if len(bp.sub_batches) > 1 else str(b)
        rows = []
        for i, r in enumerate(self.results):
            best = r.best(metric)
            row: dict[str, Any] = {"model": _describe(r.model)}
            row.update({k: v for k, v in r.params.items() if k not in OPTIMIZER_KEYS})
            if r.optimizer is not None:
                row.update(
                    optimizer=r.optimizer.name,
                    lr=r.optimizer.lr,
                    weight_decay=r.optimizer.weight_decay,
                )
                if r.optimizer.momentum:
                    row["momentum"] = r.optimizer.momentum
            row.update(
                best_epoch=best.epoch,
                val_acc=best.val_acc,
                test_acc=best.test_acc,
                epochs_run=r.epochs_run,
                stopped_early=r.stopped_early,
                diverged=r.diverged is not None,
                batch=where.get(i, ""),
            )
            rows.append(row)
        return pd.DataFrame(rows)

    def __repr__(self) -> str:
        return f"GridResult({len(self.results)} models)\n{self.table().to_string()}"


def _describe(model: torch.nn.Module) -> str:
    name = type(model).__name__
    hidden = getattr(model, "hidden_channels", None)
    layers = getattr(model, "num_layers", None)
    if hidden is not None and layers is not None:
        return f"{name}(hidden={hidden}, layers={layers})"
    return name
