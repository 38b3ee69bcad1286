"""One model in training (:class:`Trainer`: its optimizer, parameters, history and early
stopping), and how the driver reduces what the tasks of one epoch sent back."""

from __future__ import annotations

import math
from dataclasses import asdict
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lotan.errors import LotanError
from lotan.graph_engine.reductions import combine_moments
from lotan.nn_engine.optim import build_optimizer
from lotan.options import FitConfig, OptimizerConfig
from lotan.runtime.message import Message
from lotan.runtime.pieces import METRIC_FIELDS
from lotan.runtime.tags import METRICS, PARAM_GRADS, STATISTICS, TIMING
from lotan.runtime.task import DEVICE_COUNTS, PHASES

if TYPE_CHECKING:
    from lotan.ir.plan import LogicalPlan

from lotan.training.records import EpochRecord, FitResult, better

__all__ = ["Trainer", "device_counts", "phase_seconds", "reduce_messages", "reduce_statistics"]


def reduce_messages(msgs: list[Message]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum gradient partials and metrics in a fixed order (by partition), so that a run is
    deterministic whatever order Spark returns them in. Metrics: one row per model."""
    grads: dict[str, np.ndarray] = {}
    metrics: np.ndarray | None = None
    for m in sorted(msgs, key=lambda m: (m.tag, m.src)):
        if m.tag == PARAM_GRADS.of():
            for k, v in m.payload.items():
                grads[k] = grads[k] + v if k in grads else np.array(v, copy=True)
        elif m.tag == METRICS.of():
            rows = np.asarray(m.payload["metrics"])
            metrics = np.array(rows, copy=True) if metrics is None else metrics + rows
    return grads, metrics if metrics is not None else np.zeros((0, len(METRIC_FIELDS)))


def _timing_sums(msgs: list[Message], names: tuple[str, ...]) -> dict[str, float]:
    """The fields ``names`` of the run's ``timing`` messages, summed over its tasks."""
    out = dict.fromkeys(names, 0.0)
    for m in msgs:
        if m.tag == TIMING.of():
            for name in names:
                out[name] += float(m.payload[name][0])
    return out


def phase_seconds(msgs: list[Message]) -> dict[str, float]:
    """Task seconds by phase, summed over the run's tasks."""
    return _timing_sums(msgs, PHASES)


def device_counts(msgs: list[Message]) -> dict[str, int]:
    """:data:`~lotan.runtime.task.DEVICE_COUNTS`, summed over the run's tasks."""
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
        cfg = self.config.training
        value = getattr(rec, cfg.monitor)
        if self.best_epoch == 0 or better(cfg.monitor, value, self.best_value):
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
        if self.config.training.patience is not None and self.best_state is not None:
            self.model.load_state_dict(self.best_state)


def reduce_statistics(msgs: list[Message]) -> dict[int, tuple[int, np.ndarray, np.ndarray]]:
    """The batch statistics of the run's ``moments`` nodes (``{node: (N, mean, M2)}``) from
    the partials the partitions sent, combined in partition order as every task does."""
    partials: dict[int, dict[int, Any]] = {}
    for m in msgs:
        node = STATISTICS.index_of(m.tag)
        if node is not None:
            partials.setdefault(node, {})[m.src] = m.payload
    return {node: combine_moments(p) for node, p in partials.items()}
