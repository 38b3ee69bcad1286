"""The epoch loop shared by ``fit`` (one model) and ``fit_many`` (a batch of models).

Every epoch is one run of the training stages of the batch's plan: it returns each model's
loss, its accuracies for the weights of the previous step (the evaluation stream) and the
weight gradients; then each model's optimizer steps on its own parameters. A model whose
monitored metric has not improved for ``patience`` epochs stops (its weights go back to its
best epoch) and leaves the batch; the others go on with a plan without it.
"""

from __future__ import annotations

import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lotan.config import FitConfig, OptimizerConfig
from lotan.errors import LotanError, TrainingDivergedError
from lotan.graph_engine.reductions import combine_moments
from lotan.graph_engine.runner import DEVICE_COUNTS, PHASES, Message
from lotan.nn_engine.optim import build_optimizer
from lotan.planner.batching import MergedPlan
from lotan.planner.physical import METRIC_FIELDS, EpochValue, PhysicalPlan
from lotan.planner.placement import DEFAULT_PLACEMENT, Placement
from lotan.progress import Progress

if TYPE_CHECKING:
    from lotan.checkpoint import Checkpointer
    from lotan.engines import Engine, EngineChoice
    from lotan.graph_engine.layout import NormSpec
    from lotan.planner.logical import LogicalPlan

__all__ = ["EpochRecord", "FitResult", "Trainer", "run_batch"]


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
    #: :data:`lotan.graph_engine.runner.PHASES`), summed over partitions and stages. In a
    #: batch of models, the whole batch's run.
    phases: dict[str, float] = field(default_factory=dict, compare=False)


def _better(metric: str, a: float, b: float) -> bool:
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
    stopped_early : early stopping ended its training before ``config.epochs``.
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
        metric = metric or (self.config.monitor if self.config else "val_acc")
        best = self.history[0]
        for rec in self.history[1:]:
            if _better(metric, getattr(rec, metric), getattr(best, metric)):
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
        metric = self.config.monitor if self.config else "val_acc"
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


def reduce_messages(msgs: list[Message]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum gradient partials and metrics in a fixed order (by partition), so that a run is
    deterministic whatever order Spark returns them in. Metrics: one row per model."""
    grads: dict[str, np.ndarray] = {}
    metrics: np.ndarray | None = None
    for m in sorted(msgs, key=lambda m: (m.tag, m.src)):
        if m.tag == "grad":
            for k, v in m.payload.items():
                grads[k] = grads[k] + v if k in grads else np.array(v, copy=True)
        elif m.tag == "metrics":
            rows = np.asarray(m.payload["metrics"])
            metrics = np.array(rows, copy=True) if metrics is None else metrics + rows
    return grads, metrics if metrics is not None else np.zeros((0, len(METRIC_FIELDS)))


def _timing_sums(msgs: list[Message], names: tuple[str, ...]) -> dict[str, float]:
    """The fields ``names`` of the run's ``timing`` messages, summed over its tasks."""
    out = dict.fromkeys(names, 0.0)
    for m in msgs:
        if m.tag == "timing":
            for name in names:
                out[name] += float(m.payload[name][0])
    return out


def phase_seconds(msgs: list[Message]) -> dict[str, float]:
    """Task seconds by phase, summed over the run's tasks."""
    return _timing_sums(msgs, PHASES)


def device_counts(msgs: list[Message]) -> dict[str, int]:
    """:data:`~lotan.graph_engine.runner.DEVICE_COUNTS`, summed over the run's tasks."""
    return {k: int(v) for k, v in _timing_sums(msgs, DEVICE_COUNTS).items()}


def _acc(metrics: np.ndarray, split: str) -> float:
    """Accuracy on ``split`` from one model's row of :data:`METRIC_FIELDS`."""
    i = METRIC_FIELDS.index(f"{split}_correct")
    count = metrics[i + 1]
    return float(metrics[i] / count) if count else float("nan")


class Trainer:
    """One model in training: its optimizer, its parameters under their names in the plan,
    its history, and early stopping."""

    def __init__(
        self,
        model: torch.nn.Module,
        names: dict[str, str],
        config: FitConfig,
        optimizer: OptimizerConfig,
        result: FitResult,
    ) -> None:
        self.model = model
        by_name = dict(model.named_parameters())
        buffers = dict(model.named_buffers())
        self.params = {plan: by_name[name] for plan, name in names.items() if name in by_name}
        #: BatchNorm's running statistics, under their names in the plan (updated in place:
        #: checkpoints, early stopping and the trained module see them in ``state_dict``).
        self.buffers = {plan: buffers[name] for plan, name in names.items() if name in buffers}
        self.config = config
        self.result = result
        self.opt = build_optimizer(
            optimizer.name,
            model.parameters(),
            lr=optimizer.lr,
            weight_decay=optimizer.weight_decay,
            momentum=optimizer.momentum,
        )
        # (epoch, loss, seconds, phases) of the step whose accuracies the next run measures
        self.pending: tuple[int, float, float, dict[str, float]] | None = None
        self.best_value = float("nan")
        self.best_epoch = 0
        self.best_state: dict[str, torch.Tensor] | None = None
        self.stopped = False

    def values(self) -> dict[str, np.ndarray]:
        return {k: p.detach().cpu().numpy().copy() for k, p in self.params.items()}

    def buffer_values(self) -> dict[str, np.ndarray]:
        return {k: b.detach().cpu().numpy().copy() for k, b in self.buffers.items()}

    def update_statistics(
        self, plan: LogicalPlan, stats: dict[int, tuple[int, np.ndarray, np.ndarray]]
    ) -> None:
        """Update the running statistics of this model's BatchNorms from the epoch's batch
        statistics ``stats`` (``{moments node: (N, mean, M2)}``), as ``BatchNorm1d`` does in
        training mode: ``num_batches_tracked += 1``, then each running value moves by the
        momentum (``None``: ``1 / num_batches_tracked``) toward the batch mean and the
        unbiased variance ``M2 / (N - 1)``."""
        for node in plan.nodes:
            if not node.buffers or node.buffers[0] not in self.buffers:
                continue
            n, mean, m2 = stats[node.id]
            if n < 2:
                raise LotanError(
                    f"{node.origin}: BatchNorm in training needs more than one vertex (the "
                    f"graph has {n}), as torch's BatchNorm1d does"
                )
            rm, rv, count = (self.buffers[b] for b in node.buffers)
            with torch.no_grad():
                count.add_(1)
                f = 1.0 / float(count) if node.momentum is None else node.momentum
                new_mean = f * mean + (1 - f) * rm.double().numpy()
                new_var = f * (m2 / (n - 1)) + (1 - f) * rv.double().numpy()
                rm.copy_(torch.from_numpy(new_mean))
                rv.copy_(torch.from_numpy(new_var))

    def record(self, metrics: np.ndarray) -> None:
        """Append the pending epoch with its accuracies; track the best; maybe stop."""
        assert self.pending is not None
        e, loss, secs, phases = self.pending
        self.pending = None
        accs = (_acc(metrics, "train"), _acc(metrics, "val"), _acc(metrics, "test"))
        rec = EpochRecord(e, loss, *accs, secs, phases)
        self.result.history.append(rec)
        cfg = self.config
        value = getattr(rec, cfg.monitor)
        if self.best_epoch == 0 or _better(cfg.monitor, value, self.best_value):
            self.best_value, self.best_epoch = value, e
            if cfg.patience is not None:
                self.best_state = {
                    k: v.detach().clone() for k, v in self.model.state_dict().items()
                }
        elif cfg.patience is not None and e - self.best_epoch >= cfg.patience:
            self.stopped = True
            self.result.stopped_early = e < cfg.epochs

    def check_finite(self, epoch: int, loss: float, grads: dict[str, np.ndarray]) -> str | None:
        """Why this epoch's loss or gradients must not be stepped on (None when finite)."""
        bad = [n for n in self.params if n in grads and not np.isfinite(grads[n]).all()]
        if math.isfinite(loss) and not bad:
            return None
        what = f"the training loss is {loss}" if not math.isfinite(loss) else "the loss is finite"
        if bad:
            what += f", and the gradients of {len(bad)} parameters are not finite"
        last: tuple[int, float] | None = None
        if self.pending is not None:
            last = (self.pending[0], self.pending[1])
        elif self.result.history:
            last = (self.result.history[-1].epoch, self.result.history[-1].loss)
        since = (
            f"the last finite loss was {last[1]:.6g} at epoch {last[0]}"
            if last is not None and math.isfinite(last[1])
            else "no earlier epoch had a finite loss"
        )
        return (
            f"epoch {epoch}: {what} ({since}); the weights were not updated. Lower the "
            "learning rate, scale the features, or check edge weights for huge values"
        )

    def diverge(self, why: str) -> None:
        """Stop this model: its weights stay those of the last finite step."""
        self.stopped = True
        self.result.diverged = why

    def step(self, grads: dict[str, np.ndarray]) -> None:
        self.opt.zero_grad(set_to_none=True)
        for name, p in self.params.items():
            if name in grads:
                p.grad = torch.from_numpy(grads[name]).to(p.dtype)
        self.opt.step()

    def state(self) -> dict[str, Any]:
        """Everything a checkpoint needs to continue this model's training (tensors, numbers,
        strings, lists and dicts only: loadable with ``torch.load(weights_only=True)``)."""
        return {
            "model": self.model.state_dict(),
            "optimizer": self.opt.state_dict(),
            "history": [asdict(r) for r in self.result.history],
            "pending": list(self.pending) if self.pending is not None else None,
            "best_value": self.best_value,
            "best_epoch": self.best_epoch,
            "best_state": self.best_state,
            "stopped": self.stopped,
            "stopped_early": self.result.stopped_early,
        }

    def load_state(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state`'s output."""
        self.model.load_state_dict(state["model"])
        self.opt.load_state_dict(state["optimizer"])
        self.result.history[:] = [EpochRecord(**r) for r in state["history"]]
        pending = state["pending"]
        self.pending = (
            (int(pending[0]), float(pending[1]), float(pending[2]), dict(pending[3]))
            if pending is not None
            else None
        )
        self.best_value = float(state["best_value"])
        self.best_epoch = int(state["best_epoch"])
        self.best_state = state["best_state"]
        self.stopped = bool(state["stopped"])
        self.result.stopped_early = bool(state["stopped_early"])

    def finish(self) -> None:
        """With early stopping, go back to the best epoch's weights."""
        if self.config.patience is not None and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def reduce_statistics(msgs: list[Message]) -> dict[int, tuple[int, np.ndarray, np.ndarray]]:
    """The batch statistics of the run's ``moments`` nodes (``{node: (N, mean, M2)}``) from
    the partials the partitions sent, combined in partition order as every task does."""
    partials: dict[int, dict[int, Any]] = {}
    for m in msgs:
        if m.tag[0] == "m" and m.tag[1:].isdigit():
            partials.setdefault(int(m.tag[1:]), {})[m.src] = m.payload
    return {node: combine_moments(p) for node, p in partials.items()}


def _value(trainers: Sequence[Trainer], epoch: int) -> EpochValue:
    params: dict[str, np.ndarray] = {}
    buffers: dict[str, np.ndarray] = {}
    for t in trainers:
        params.update(t.values())
        buffers.update(t.buffer_values())
    return EpochValue(params=params, epoch=epoch, buffers=buffers)


def run_batch(
    engine: Engine,
    prepared: Any,
    merged: MergedPlan,
    trainers: Sequence[Trainer],
    *,
    epochs: int,
    seed: int,
    num_train: int,
    norms: tuple[NormSpec, ...],
    progress: bool,
    label: str = "lotan",
    checkpoints: Checkpointer | None = None,
    on_divergence: str = "raise",
    placement: Placement = DEFAULT_PLACEMENT,
    exchange_dtype: str = "float32",
    eval_every: int = 1,
) -> None:
    """Train ``trainers`` (member ``i`` of ``merged`` is ``trainers[i]``) for ``epochs``;
    with ``checkpoints``, resume from its checkpoint and write new ones as it goes.

    A NaN/inf loss or gradient raises :class:`TrainingDivergedError` before any weight moves
    (``on_divergence="raise"``; the newest checkpoint stays the last good one) or stops that
    model alone (``"stop"``: the others go on).

    Epoch ``e``'s accuracies are measured in the forward pass of epoch ``e + 1`` (the
    weights of ``e``'s step, dropout off), for ``e`` a multiple of ``eval_every``; the last
    epoch's by a final evaluation run. Other epochs record NaN and their runs skip the
    evaluation stream."""
    first = 1
    if checkpoints is not None and checkpoints.state is not None:
        checkpoints.restore(trainers)
        first = checkpoints.resumed_epoch + 1
        for t in trainers:
            t.result.resumed_from = checkpoints.resumed_epoch
    active = [i for i, t in enumerate(trainers) if not t.stopped]
    if first > epochs or not active:  # a finished run, not extended
        for t in trainers:
            t.finish()
        return
    bar = Progress(epochs, enabled=progress)
    plans: dict[tuple[int, ...], PhysicalPlan] = {}

    def physical(keep: list[int]) -> PhysicalPlan:
        key = tuple(keep)
        if key not in plans:
            plans[key] = PhysicalPlan.build(merged.subset(keep).plan, norms=norms)
        return plans[key]

    for epoch in range(first, epochs + 1):
        if not active:
            break
        start = time.perf_counter()
        measure = epoch > 1 and (epoch - 1) % eval_every == 0
        train = physical(active).training_stages(
            seed=seed,
            num_train=num_train,
            placement=placement,
            exchange_dtype=exchange_dtype,
            measure=measure,
        )
        batch = [trainers[i] for i in active]
        msgs = engine.run(
            prepared, train, _value(batch, epoch), f"{label} · epoch {epoch}/{epochs}"
        )
        grads, metrics = reduce_messages(msgs)
        stepped: dict[int, float] = {}  # model -> its loss this epoch
        for i, t, row in zip(active, batch, metrics, strict=True):
            if t.pending is not None:
                # This forward pass evaluated the weights that the previous step made.
                t.record(row)
            if not t.stopped:
                why = t.check_finite(epoch, float(row[0]), grads)
                if why is None:
                    t.step(grads)
                    stepped[i] = float(row[0])
                elif on_divergence == "raise":
                    bar.close()
                    if checkpoints is not None:
                        where = checkpoints.directory
                        why += f"; the newest checkpoint in {where} is the last good state"
                    raise TrainingDivergedError(why)
                else:
                    t.diverge(why)
        stats = reduce_statistics(msgs)
        for i in stepped:
            trainers[i].update_statistics(merged.plan, stats)
        seconds = time.perf_counter() - start
        phases = phase_seconds(msgs)
        _count_devices(batch, msgs)
        for i, loss in stepped.items():
            trainers[i].pending = (epoch, loss, seconds, phases)
        bar.update(_records([trainers[i] for i in active], epoch - 1))
        active = list(stepped)
        if checkpoints is not None and checkpoints.due(epoch, epochs):
            checkpoints.save(epoch, trainers)
    if active:
        keep = active
        evaluate = physical(keep).inference_stages(
            emit_outputs=False, placement=placement, exchange_dtype=exchange_dtype
        )
        msgs = engine.run(
            prepared, evaluate, _value([trainers[i] for i in keep], 0), f"{label} · evaluate"
        )
        _, metrics = reduce_messages(msgs)
        _count_devices([trainers[i] for i in keep], msgs)
        for i, row in zip(keep, metrics, strict=True):
            trainers[i].record(row)
        bar.update(_records([trainers[i] for i in keep], epochs))
    bar.close()
    # The last checkpoint holds the state before early stopping's best weights go back (so
    # that a later run with more epochs continues exactly) and the final weights.
    states = [t.state() for t in trainers]
    for t, st in zip(trainers, states, strict=True):
        t.finish()
        st["final"] = t.model.state_dict()
    if checkpoints is not None:
        last = max((t.result.history[-1].epoch for t in trainers if t.result.history), default=0)
        checkpoints.save(max(last, first - 1), states, complete=True)


def _count_devices(trainers: Sequence[Trainer], msgs: list[Message]) -> None:
    counts = device_counts(msgs)
    for t in trainers:
        for k, v in counts.items():
            t.result.devices[k] += v


def _records(trainers: list[Trainer], epoch: int) -> list[EpochRecord]:
    """The records of ``epoch`` (the one just measured) of ``trainers``."""
    recs = [t.result.history[-1] for t in trainers if t.result.history]
    return [r for r in recs if r.epoch == epoch]
