"""The public entry points: ``fit``, ``predict`` and ``explain`` (``fit_many`` and ``grid``
are in :mod:`lotan.grid`)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lotan.checkpoint import Checkpointer, fingerprint
from lotan.config import FitConfig, check_exchange_dtype
from lotan.engines import Engine, EngineChoice, choose_engine, make_engine
from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.graph_engine.partition import check_partitioner
from lotan.grid import DEFAULT_MEMORY_BUDGET, explain_many
from lotan.planner.batching import merge
from lotan.planner.explain import render
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.planner.logical import LogicalPlan
from lotan.planner.lowering import lower_model
from lotan.planner.optimize import optimize
from lotan.planner.physical import EpochValue, PhysicalPlan
from lotan.planner.placement import Placement
from lotan.progress import announce
from lotan.training import EpochRecord, FitResult, Trainer, run_batch

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EpochRecord", "FitResult", "explain", "fit", "predict"]


def _plan_for(
    model: torch.nn.Module, graph: Graph, flags: PlannerFlags
) -> tuple[LogicalPlan, LogicalPlan, list[tuple[str, list[str]]]]:
    """(logical plan, optimized plan, rules fired) of ``model`` on ``graph``."""
    logical = lower_model(model, graph.num_features, graph.has_edge_weight, graph.num_edge_features)
    optimized, fired = optimize(logical, flags)
    check_weights(optimized, graph)
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


def check_weights(plan: LogicalPlan, graph: Graph) -> None:
    """GCN normalization takes ``deg^-1/2`` of weighted degrees: negative weights make it
    undefined (PyG computes NaN)."""
    if graph.min_edge_weight >= 0:
        return
    for norm in plan.norms:
        if norm.kind == "gcn" and norm.weighted:
            raise GraphInputError(
                f"the graph has negative edge weights (smallest {graph.min_edge_weight:g}) and "
                "the model normalizes by weighted degree (GCNConv/SGConv), which needs weights "
                ">= 0; fix the weights, or use GCNConv(normalize=False), or drop the weights"
            )


def _check_monitor(config: FitConfig, graph: Graph) -> None:
    if config.patience is None:
        return
    split = config.monitor.split("_")[0]
    if split in ("val", "test") and graph.split_counts().get(split, 0) == 0:
        raise GraphInputError(
            f"early stopping watches {config.monitor} but the graph has no {split!r} "
            f"vertices; mark some vertices split={split!r} or use monitor='train_acc'/'loss'"
        )


def _engine(
    choice: EngineChoice,
    spark: SparkSession | None,
    num_partitions: int | None,
    graph: Graph,
    placement: Placement | None = None,
) -> tuple[Engine, int]:
    """The engine ``choice`` names and the number of partitions (the engine's default when
    not given); with ``placement``, checked that the engine can run it (see
    :meth:`SparkEngine.check_placement`)."""
    eng = make_engine(choice.name, spark)
    parts = num_partitions or eng.default_partitions()
    if parts > graph.num_vertices:
        raise GraphInputError(
            f"num_partitions={parts} is more than the graph's {graph.num_vertices} vertices; "
            "use fewer partitions"
        )
    if placement is not None:
        eng.check_placement(placement)
    return eng, parts


def _prepared(
    eng: Engine,
    graph: Graph,
    parts: int,
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
            # Constants depend on no parameter.
            EpochValue(params={}, epoch=0),
        )
    return prepared, physical


def _value(model: torch.nn.Module, epoch: int) -> EpochValue:
    params = {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
    buffers = {n: b.detach().cpu().numpy().copy() for n, b in model.named_buffers()}
    return EpochValue(params=params, epoch=epoch, buffers=buffers)


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
        the machine's memory), else Spark (see :func:`lotan.engines.choose_engine`); the
        choice and why are in :attr:`FitResult.engine` and the progress display.
    num_partitions : graph partitions (default: the engine's).
    partitioner : ``"hash"`` (default) or ``"label_propagation"`` (see
        :mod:`lotan.graph_engine.partition`); the result does not depend on it.
    spark : the SparkSession the Spark engine uses.
    planner : which rewrite rules run (all by default); the result does not depend on it.
    patience : stop when ``monitor`` (``"val_acc"`` by default, see
        :data:`lotan.config.MONITORS`) has not improved for this many epochs and restore the
        weights of the best epoch; ``None`` (default) trains every epoch.
    checkpoint_dir : write a checkpoint there after every ``checkpoint_every`` epochs and at
        the end (atomically; see :mod:`lotan.checkpoint`). With ``resume=True``, continue
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
    _, plan, _ = _plan_for(model, graph, planner)
    _check_labels(plan, graph)
    _check_monitor(config, graph)
    checkpoints = _checkpointer(model, graph, config)
    where = config.placement_config()
    choice = choose_engine(config.engine, graph, [plan], spark, where)
    announce(choice.describe(), enabled=config.progress)
    eng, parts = _engine(choice, spark, config.num_partitions, graph, where)
    prepared, _ = _prepared(eng, graph, parts, plan, config.partitioner)
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
    _, plan, _ = _plan_for(model, graph, planner)
    choice = choose_engine(engine, graph, [plan], spark, where)
    eng, parts = _engine(choice, spark, num_partitions, graph, where)
    prepared, physical = _prepared(eng, graph, parts, plan, check_partitioner(partitioner))
    stages = physical.inference_stages(
        emit_outputs=True, placement=where, exchange_dtype=exchange_dtype
    )
    return eng.predictions(prepared, stages, _value(model, 0))


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
        logical, plan, fired = _plan_for(model, graph, planner)
        choice = choose_engine(engine, graph, [plan], spark, where)
        eng, parts = _engine(choice, spark, num_partitions, graph)
        prepared = eng.prepare(graph, parts, plan.norms, partitioner)
        stats = eng.stats(prepared)
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
