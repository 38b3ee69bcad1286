"""The public entry points: ``fit`` and ``predict``."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from lotan.config import FitConfig
from lotan.engines import Engine, make_engine
from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.graph_engine.partition import check_partitioner
from lotan.graph_engine.runner import PHASES, Message
from lotan.nn_engine.optim import build_optimizer
from lotan.planner.explain import render
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.planner.logical import LogicalPlan
from lotan.planner.lowering import lower_model
from lotan.planner.optimize import optimize
from lotan.planner.physical import METRIC_FIELDS, EpochValue, PhysicalPlan

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EpochRecord", "FitResult", "explain", "fit", "predict"]


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
    #: :data:`lotan.graph_engine.runner.PHASES`), summed over partitions and stages.
    phases: dict[str, float] = field(default_factory=dict, compare=False)


@dataclass
class FitResult:
    """What ``fit`` returns: the trained model (the same module object) and its history."""

    model: torch.nn.Module
    history: list[EpochRecord] = field(default_factory=list)
    config: FitConfig | None = None
    num_partitions: int = 0

    @property
    def final(self) -> EpochRecord:
        return self.history[-1]


def _plan_for(
    model: torch.nn.Module, graph: Graph, flags: PlannerFlags
) -> tuple[LogicalPlan, LogicalPlan, list[tuple[str, list[str]]]]:
    """(logical plan, optimized plan, rules fired) of ``model`` on ``graph``."""
    logical = lower_model(model, graph.num_features, graph.has_edge_weight)
    optimized, fired = optimize(logical, flags)
    return logical, optimized, fired


def _check_labels(plan: LogicalPlan, graph: Graph) -> None:
    if graph.num_train == 0:
        raise GraphInputError(
            "the train split is empty; mark some vertices split='train' (PyG: train_mask)"
        )
    if graph.num_classes > plan.out_width:
        raise GraphInputError(
            f"labels go up to {graph.num_classes - 1} but the model has only "
            f"{plan.out_width} outputs; build it with out_channels >= {graph.num_classes}"
        )


def _engine(
    engine: str, spark: SparkSession | None, num_partitions: int | None, graph: Graph
) -> tuple[Engine, int]:
    """The engine and the number of partitions (the engine's default when not given)."""
    eng = make_engine(engine, spark)
    parts = num_partitions or eng.default_partitions()
    if parts > graph.num_vertices:
        raise GraphInputError(
            f"num_partitions={parts} is more than the graph's {graph.num_vertices} vertices; "
            "use fewer partitions"
        )
    return eng, parts


def _prepared(
    eng: Engine,
    graph: Graph,
    parts: int,
    model: torch.nn.Module,
    plan: LogicalPlan,
    partitioner: str,
) -> tuple[Any, PhysicalPlan]:
    """The graph prepared for ``plan`` (cached aggregations computed once) and the plan's
    physical form."""
    norms = plan.norms
    prepared = eng.prepare(graph, parts, norms, partitioner)
    physical = PhysicalPlan.build(plan)
    cached = tuple(sorted(physical.layout_values - {0}))
    if cached:
        const_plan = PhysicalPlan.build(plan, outputs=cached, use_cache=False)
        key = tuple(plan.node(i).describe() for i in sorted(const_plan.stage_of))
        prepared = eng.with_constants(
            graph,
            prepared,
            (norms, key),
            const_plan.inference_stages(emit_outputs=True),
            _value(model, 0),
        )
    return prepared, physical


def _value(model: torch.nn.Module, epoch: int) -> EpochValue:
    params = {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
    return EpochValue(params=params, epoch=epoch)


def _reduce(msgs: list[Message]) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Sum gradient partials and metrics in a fixed order (by partition), so that a run is
    deterministic whatever order Spark returns them in."""
    grads: dict[str, np.ndarray] = {}
    metrics = np.zeros(len(METRIC_FIELDS))
    for m in sorted(msgs, key=lambda m: (m.tag, m.src)):
        if m.tag == "grad":
            for k, v in m.payload.items():
                grads[k] = grads[k] + v if k in grads else np.array(v, copy=True)
        elif m.tag == "metrics":
            metrics += m.payload["metrics"]
    return grads, metrics


def _phases(msgs: list[Message]) -> dict[str, float]:
    """Task seconds by phase, summed over the run's tasks."""
    out = dict.fromkeys(PHASES, 0.0)
    for m in msgs:
        if m.tag == "timing":
            for name in PHASES:
                out[name] += float(m.payload[name][0])
    return out


def _acc(metrics: np.ndarray, split: str) -> float:
    i = METRIC_FIELDS.index(f"{split}_correct")
    count = metrics[i + 1]
    return float(metrics[i] / count) if count else float("nan")


def fit(
    model: torch.nn.Module,
    graph: Graph,
    *,
    epochs: int = FitConfig.epochs,
    optimizer: str = FitConfig.optimizer,
    lr: float = FitConfig.lr,
    weight_decay: float = FitConfig.weight_decay,
    momentum: float = FitConfig.momentum,
    engine: str = FitConfig.engine,
    num_partitions: int | None = None,
    partitioner: str = FitConfig.partitioner,
    seed: int = FitConfig.seed,
    progress: bool = FitConfig.progress,
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> FitResult:
    """Train ``model`` full-batch on ``graph``: every vertex and edge, every epoch.

    One optimizer step per epoch on the exact full-batch gradient of the masked
    cross-entropy over the train vertices. The model's parameters are updated in place and
    the module is returned in :attr:`FitResult.model`, usable with PyG as it is.

    Parameters
    ----------
    model : a supported PyTorch Geometric model (see :mod:`lotan.planner.lowering`).
    graph : a :class:`lotan.Graph`.
    engine : ``"spark"`` (default; the active SparkSession, ``spark=``, or a new local one)
        or ``"local"`` (in-process, same plan and kernels).
    num_partitions : graph partitions (default: the engine's).
    partitioner : ``"hash"`` (default) or ``"label_propagation"`` (see
        :mod:`lotan.graph_engine.partition`); the result does not depend on it.
    spark : the SparkSession to use with ``engine="spark"``.
    planner : which rewrite rules run (all by default); the result does not depend on it.

    Raises
    ------
    UnsupportedModelError, GraphInputError, LotanError
        For an unsupported model, a graph that does not fit it, or bad settings.
    """
    config = FitConfig(
        epochs=epochs,
        optimizer=optimizer,
        lr=lr,
        weight_decay=weight_decay,
        momentum=momentum,
        engine=engine,
        num_partitions=num_partitions,
        partitioner=partitioner,
        seed=seed,
        progress=progress,
    )
    _, plan, _ = _plan_for(model, graph, planner)
    _check_labels(plan, graph)
    eng, parts = _engine(config.engine, spark, config.num_partitions, graph)
    prepared, physical = _prepared(eng, graph, parts, model, plan, config.partitioner)
    opt = build_optimizer(
        config.optimizer,
        model.parameters(),
        lr=config.lr,
        weight_decay=config.weight_decay,
        momentum=config.momentum,
    )
    train = physical.training_stages(seed=config.seed, num_train=graph.num_train)
    evaluate = physical.inference_stages(emit_outputs=False)
    named = dict(model.named_parameters())
    result = FitResult(model=model, config=config, num_partitions=parts)
    # epoch, loss, seconds, phases of the epoch whose accuracies the next run measures
    pending: tuple[int, float, float, dict[str, float]] | None = None

    def record(metrics: np.ndarray) -> None:
        assert pending is not None
        e, loss, secs, phases = pending
        accs = (_acc(metrics, "train"), _acc(metrics, "val"), _acc(metrics, "test"))
        rec = EpochRecord(e, loss, *accs, secs, phases)
        result.history.append(rec)
        if config.progress:
            print(
                f"epoch {rec.epoch:4d}/{config.epochs}  loss {rec.loss:.4f}  "
                f"train {rec.train_acc:.4f}  val {rec.val_acc:.4f}  test {rec.test_acc:.4f}  "
                f"{rec.seconds:.2f}s",
                flush=True,
            )

    for epoch in range(1, config.epochs + 1):
        start = time.perf_counter()
        msgs = eng.run(prepared, train, _value(model, epoch), f"lotan epoch {epoch}")
        grads, metrics = _reduce(msgs)
        if pending is not None:
            # This forward pass evaluated the weights that the previous epoch's step made.
            record(metrics)
        opt.zero_grad(set_to_none=True)
        for name, grad in grads.items():
            named[name].grad = torch.from_numpy(grad).to(named[name].dtype)
        opt.step()
        pending = (epoch, float(metrics[0]), time.perf_counter() - start, _phases(msgs))
    _, metrics = _reduce(eng.run(prepared, evaluate, _value(model, 0), "lotan evaluate"))
    record(metrics)
    return result


def predict(
    model: torch.nn.Module,
    graph: Graph,
    *,
    engine: str = "spark",
    num_partitions: int | None = None,
    partitioner: str = FitConfig.partitioner,
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> Any:
    """Predicted class, class probabilities and logits of every vertex, with dropout off.

    Returns
    -------
    With ``engine="spark"`` a Spark DataFrame ``(id long, prediction long,
    probability array<float>, logits array<float>)`` keyed by the graph's original vertex ids
    (checkpointed in Spark's block managers: computed once, no lineage); with
    ``engine="local"`` a pandas DataFrame with the same columns, sorted by id.
    """
    _, plan, _ = _plan_for(model, graph, planner)
    eng, parts = _engine(engine, spark, num_partitions, graph)
    prepared, physical = _prepared(eng, graph, parts, model, plan, check_partitioner(partitioner))
    return eng.predictions(prepared, physical.inference_stages(emit_outputs=True), _value(model, 0))


def explain(
    model: torch.nn.Module,
    graph: Graph,
    *,
    engine: str = "local",
    num_partitions: int | None = None,
    partitioner: str = FitConfig.partitioner,
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
    print_: bool = True,
) -> str:
    """The logical plan, the optimized plan (which rules fired) and the physical plan with
    the bytes exchanged per epoch and the partitioning's halo replication factor.

    Prepares the graph (cached, as for ``fit``) to measure the halo; printed unless
    ``print_=False``, and returned.
    """
    logical, plan, fired = _plan_for(model, graph, planner)
    eng, parts = _engine(engine, spark, num_partitions, graph)
    prepared = eng.prepare(graph, parts, plan.norms, check_partitioner(partitioner))
    stats = eng.stats(prepared)
    text = render(logical, plan, fired, PhysicalPlan.build(plan), stats, partitioner)
    if print_:
        print(text)
    return text
