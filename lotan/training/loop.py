"""The epoch loop shared by ``fit`` (one model) and ``fit_many`` (a batch of models).

Every epoch is one run of the training stages of the batch's plan: it returns each model's
loss, its accuracies for the weights of the previous step (the evaluation stream) and the
weight gradients; then each model's optimizer steps on its own parameters. A model whose
monitored metric has not improved for ``patience`` epochs stops (its weights go back to its
best epoch) and leaves the batch; the others go on with a plan without it.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.errors import TrainingDivergedError
from lotan.ir.plan import LogicalPlan
from lotan.options import Training
from lotan.planner.batching import MergedPlan
from lotan.planner.physical import PhysicalPlan
from lotan.planner.placement import DEFAULT_PLACEMENT, Placement
from lotan.runtime.message import Message
from lotan.runtime.stages import inference_stages, training_stages
from lotan.runtime.value import EpochValue
from lotan.training.progress import Progress
from lotan.training.records import EpochRecord
from lotan.training.trainer import (
    Trainer,
    device_counts,
    phase_seconds,
    reduce_messages,
    reduce_statistics,
)

if TYPE_CHECKING:
    from lotan.engines import Engine
    from lotan.training.checkpoint import Checkpointer

__all__ = ["run_batch"]


def _value(trainers: Sequence[Trainer], epoch: int) -> EpochValue:
    params: dict[str, np.ndarray] = {}
    buffers: dict[str, np.ndarray] = {}
    for t in trainers:
        params.update(t.values())
        buffers.update(t.buffer_values())
    return EpochValue(params=params, epoch=epoch, buffers=buffers)


def run_batch(
    engine: Engine[Any],
    prepared: Any,
    merged: MergedPlan,
    trainers: Sequence[Trainer],
    *,
    physical: Callable[[LogicalPlan], PhysicalPlan],
    training: Training,
    num_train: int,
    label: str = "lotan",
    checkpoints: Checkpointer | None = None,
    on_divergence: str = "raise",
    placement: Placement = DEFAULT_PLACEMENT,
    exchange_dtype: str = "float32",
) -> None:
    """Train ``trainers`` (member ``i`` of ``merged`` is ``trainers[i]``) for
    ``training.epochs`` with the run seed ``training.seed``; ``physical`` gives the physical
    plan of a (sub-)plan of ``merged``. With ``checkpoints``, resume from its checkpoint and
    write new ones as it goes.

    A NaN/inf loss or gradient raises :class:`TrainingDivergedError` before any weight moves
    (``on_divergence="raise"``; the newest checkpoint stays the last good one) or stops that
    model alone (``"stop"``: the others go on).

    Epoch ``e``'s accuracies are measured in the forward pass of epoch ``e + 1`` (the
    weights of ``e``'s step, dropout off), for ``e`` a multiple of ``eval_every``; the last
    epoch's by a final evaluation run. Other epochs record NaN and their runs skip the
    evaluation stream."""
    epochs, seed, eval_every = training.epochs, training.seed, training.eval_every
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
    bar = Progress(epochs, enabled=training.progress)
    subsets: dict[tuple[int, ...], MergedPlan] = {}

    def plan_of(keep: list[int]) -> PhysicalPlan:
        """The physical plan of the models ``keep`` (those still training)."""
        key = tuple(keep)
        if key not in subsets:
            subsets[key] = merged.subset(keep)
        return physical(subsets[key].plan)

    for epoch in range(first, epochs + 1):
        if not active:
            break
        start = time.perf_counter()
        measure = epoch > 1 and (epoch - 1) % eval_every == 0
        train = training_stages(
            plan_of(active),
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
        evaluate = inference_stages(
            plan_of(keep), emit_outputs=False, placement=placement, exchange_dtype=exchange_dtype
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
