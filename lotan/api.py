"""The public entry points: ``fit``, ``predict`` and ``explain`` (``fit_many`` and ``grid``
are in :mod:`lotan.grid`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lotan.config import FitConfig, check_exchange_dtype
from lotan.engines.choice import choose_engine
from lotan.graph import Graph
from lotan.grid import DEFAULT_MEMORY_BUDGET, explain_many
from lotan.planner.batching import merge
from lotan.planner.explain import render
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.planner.physical import PhysicalPlan
from lotan.planner.placement import Placement
from lotan.preparation import (
    check_labels,
    check_monitor,
    engine_for,
    epoch_value,
    plan_for,
    prepare,
)
from lotan.runtime.label_propagation import check_partitioner
from lotan.runtime.stages import inference_stages
from lotan.training.checkpoint import Checkpointer, fingerprint
from lotan.training.loop import run_batch
from lotan.training.progress import announce
from lotan.training.records import EpochRecord, FitResult
from lotan.training.trainer import Trainer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EpochRecord", "FitResult", "explain", "fit", "predict"]


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
    patience: int | None = FitConfig.patience,
    monitor: str = FitConfig.monitor,
    progress: bool = FitConfig.progress,
    checkpoint_dir: str | None = FitConfig.checkpoint_dir,
    checkpoint_every: int = FitConfig.checkpoint_every,
    resume: bool = FitConfig.resume,
    placement: str = FitConfig.placement,
    dense_gpus: float = FitConfig.dense_gpus,
    dense_cpus: int = FitConfig.dense_cpus,
    eval_every: int = FitConfig.eval_every,
    exchange_dtype: str = FitConfig.exchange_dtype,
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
    engine : ``"auto"`` (default), ``"spark"`` (the active SparkSession, ``spark=``, or a
        new local one) or ``"local"`` (in-process, same plan and kernels, same results).
        ``"auto"`` takes Spark when the graph is in Spark DataFrames, ``placement="split"``,
        or the session (``spark=`` or the active one) runs on a cluster, and otherwise the
        local engine if the estimated working set fits ``LOTAN_LOCAL_MEMORY`` (default: half
        the machine's memory), else Spark (see :func:`lotan.engines.choice.choose_engine`); the
        choice and why are in :attr:`FitResult.engine` and the progress display.
    num_partitions : graph partitions (default: the engine's).
    partitioner : ``"hash"`` (default) or ``"label_propagation"`` (see
        :mod:`lotan.runtime.label_propagation`); the result does not depend on it.
    spark : the SparkSession the Spark engine uses.
    planner : which rewrite rules run (all by default); the result does not depend on it.
    patience : stop when ``monitor`` (``"val_acc"`` by default, see
        :data:`lotan.config.MONITORS`) has not improved for this many epochs and restore the
        weights of the best epoch; ``None`` (default) trains every epoch.
    checkpoint_dir : write a checkpoint there after every ``checkpoint_every`` epochs and at
        the end (atomically; see :mod:`lotan.training.checkpoint`). With ``resume=True``, continue
        from the newest one: the run ends with the weights an uninterrupted run ends with.
    placement : ``"fused"`` (default) runs each stage's graph and dense work in one Spark
        stage; ``"split"`` runs dense work in Spark stages of its own whose tasks ask for
        ``dense_gpus`` GPUs and ``dense_cpus`` CPUs (stage-level scheduling: graph stages
        on CPU executors, dense stages on GPU executors; see
        :mod:`lotan.planner.placement`). The result does not depend on it.
    eval_every : measure the accuracies (dropout off) after every this many epochs and after
        the last (default 1: every epoch); the others record NaN, and their runs skip the
        evaluation stream — fewer bytes for a model with dropout. The weights do not depend
        on it (early stopping's epoch can: patience counts epochs, improvements are seen
        when measured).
    exchange_dtype : ``"float32"`` (default) or ``"bfloat16"``: forward exchanges send every
        row rounded to bfloat16, half their bytes (backward stays float32). Not exact: the
        result differs slightly from float32's, but not between engines or partitionings.

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
        patience=patience,
        monitor=monitor,
        checkpoint_dir=None if checkpoint_dir is None else str(checkpoint_dir),
        checkpoint_every=checkpoint_every,
        resume=resume,
        placement=placement,
        dense_gpus=dense_gpus,
        dense_cpus=dense_cpus,
        eval_every=eval_every,
        exchange_dtype=exchange_dtype,
    )
    _, plan, _ = plan_for(model, graph, planner)
    check_labels(plan, graph)
    check_monitor(config, graph)
    checkpoints = _checkpointer(model, graph, config)
    where = config.placement_config()
    choice = choose_engine(config.engine, graph, [plan], spark, where)
    announce(choice.describe(), enabled=config.progress)
    eng, parts = engine_for(choice, spark, config.num_partitions, graph, where)
    prepared, _ = prepare(eng, graph, parts, plan, config.partitioner)
    merged = merge([plan])
    result = FitResult(
        model=model,
        config=config,
        num_partitions=parts,
        optimizer=config.optimizer_config(),
        engine=choice,
    )
    trainer = Trainer(model, dict(merged.names[0]), config, config.optimizer_config(), result)
    run_batch(
        eng,
        prepared,
        merged,
        [trainer],
        epochs=config.epochs,
        seed=config.seed,
        num_train=graph.num_train,
        norms=plan.norms,
        progress=config.progress,
        checkpoints=checkpoints,
        placement=where,
        exchange_dtype=config.exchange_dtype,
        eval_every=config.eval_every,
    )
    return result


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """The architecture of ``model``: its modules and parameter shapes (not their values)."""
    return {
        "modules": repr(model),
        "params": [(n, list(p.shape)) for n, p in model.named_parameters()],
    }


def _checkpointer(model: torch.nn.Module, graph: Graph, config: FitConfig) -> Checkpointer | None:
    if config.checkpoint_dir is None:
        return None
    return Checkpointer(
        config.checkpoint_dir,
        every=config.checkpoint_every,
        resume=config.resume,
        config_hash=fingerprint(
            {"model": model_fingerprint(model), "fit": config.result_fingerprint()}
        ),
        graph_hash=graph.fingerprint(),
    )


def predict(
    model: torch.nn.Module,
    graph: Graph,
    *,
    engine: str = FitConfig.engine,
    num_partitions: int | None = None,
    partitioner: str = FitConfig.partitioner,
    placement: str = FitConfig.placement,
    dense_gpus: float = FitConfig.dense_gpus,
    dense_cpus: int = FitConfig.dense_cpus,
    exchange_dtype: str = FitConfig.exchange_dtype,
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> Any:
    """Predicted class, class probabilities and logits of every vertex, with dropout off.

    ``engine`` and ``exchange_dtype`` as for :func:`fit` (``"auto"``, ``"float32"`` by
    default).

    Returns
    -------
    On the Spark engine a Spark DataFrame ``(id long, prediction long,
    probability array<float>, logits array<float>)`` keyed by the graph's original vertex ids
    (checkpointed in Spark's block managers: computed once, no lineage); on the local engine
    a pandas DataFrame with the same columns, sorted by id. Under ``"auto"`` the type follows
    the engine chosen: pass ``engine="spark"`` to always get a Spark DataFrame.
    """
    where = Placement(placement, dense_gpus, dense_cpus)
    check_exchange_dtype(exchange_dtype)
    _, plan, _ = plan_for(model, graph, planner)
    choice = choose_engine(engine, graph, [plan], spark, where)
    eng, parts = engine_for(choice, spark, num_partitions, graph, where)
    prepared, physical = prepare(eng, graph, parts, plan, check_partitioner(partitioner))
    stages = inference_stages(
        physical, emit_outputs=True, placement=where, exchange_dtype=exchange_dtype
    )
    return eng.predictions(prepared, stages, epoch_value(model, 0))


def explain(
    model: torch.nn.Module | Sequence[Any],
    graph: Graph,
    *,
    engine: str = FitConfig.engine,
    num_partitions: int | None = None,
    partitioner: str = FitConfig.partitioner,
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
    memory_budget: int | str | None = DEFAULT_MEMORY_BUDGET,
    placement: str = FitConfig.placement,
    dense_gpus: float = FitConfig.dense_gpus,
    dense_cpus: int = FitConfig.dense_cpus,
    print_: bool = True,
) -> str:
    """The logical plan, the optimized plan (which rules fired) and the physical plan with
    the bytes exchanged per epoch and the partitioning's halo replication factor.

    Given a list of models (or ``lotan.grid`` trials), how ``fit_many`` runs them: the
    batches, the sub-batches that ``memory_budget`` makes (with the estimated working set
    per partition), each batch's merged plan and its physical plans.

    With ``placement`` (and ``dense_gpus``, ``dense_cpus``), the Spark stages of one training
    epoch: graph, dense or fused, and what each task asks Spark for.

    Starts with the engine ``engine`` picks and why (as :func:`fit` would). Prepares the
    graph (cached, as for ``fit``) to measure the halo; printed unless ``print_=False``, and
    returned.
    """
    check_partitioner(partitioner)
    where = Placement(placement, dense_gpus, dense_cpus)
    if not isinstance(model, torch.nn.Module):
        text = explain_many(
            model,
            graph,
            engine=engine,
            num_partitions=num_partitions,
            partitioner=partitioner,
            spark=spark,
            planner=planner,
            memory_budget=memory_budget,
            placement=where,
        )
    else:
        logical, plan, fired = plan_for(model, graph, planner)
        choice = choose_engine(engine, graph, [plan], spark, where)
        eng, parts = engine_for(choice, spark, num_partitions, graph)
        prepared = eng.prepare(graph, parts, plan.norms, partitioner)
        stats = prepared.stats()
        physical = PhysicalPlan.build(plan)
        text = "\n".join(
            [
                "== Engine ==",
                choice.describe(),
                "",
                render(logical, plan, fired, physical, stats, partitioner, where),
            ]
        )
    if print_:
        print(text)
    return text
