"""The public entry points: ``fit``, ``predict`` and ``explain`` (``fit_many`` and ``grid``
are in :mod:`lotan.selection`).

Each builds its settings from its keywords (:class:`lotan.options.FitConfig`: an engine or
optimizer may be passed as an object instead) and runs through one
:class:`lotan.run.Run`."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import torch

from lotan.graph import Graph
from lotan.options import DEFAULT_EPOCHS, DEFAULT_LR, EngineOptions, FitConfig, OptimizerConfig
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.run import Run, checkpointer
from lotan.selection import DEFAULT_MEMORY_BUDGET, explain_many
from lotan.training.records import EpochRecord, FitResult

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["EpochRecord", "FitResult", "explain", "fit", "predict"]


def settings(given: dict[str, Any], *, besides: Sequence[str]) -> dict[str, Any]:
    """A face's keyword arguments (its ``locals()`` at entry) without its other parameters
    ``besides``: the settings :class:`~lotan.options.FitConfig` builds from."""
    return {k: v for k, v in given.items() if k not in besides}


def fit(
    model: torch.nn.Module,
    graph: Graph,
    *,
    epochs: int = DEFAULT_EPOCHS,
    optimizer: str | OptimizerConfig = "adam",
    lr: float = DEFAULT_LR,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
    engine: str | EngineOptions = "auto",
    num_partitions: int | None = None,
    partitioner: str = "hash",
    seed: int = 0,
    patience: int | None = None,
    monitor: str = "val_acc",
    progress: bool = True,
    checkpoint_dir: str | None = None,
    checkpoint_every: int = 10,
    resume: bool = False,
    placement: str = "fused",
    dense_gpus: float = 1.0,
    dense_cpus: int = 1,
    eval_every: int = 1,
    exchange_dtype: str = "float32",
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> FitResult:
    """Train ``model`` full-batch on ``graph``: every vertex and edge, every epoch.

    One optimizer step per epoch on the exact full-batch gradient of the masked
    cross-entropy over the train vertices. The model's parameters are updated in place and
    the module is returned in :attr:`FitResult.model`, usable with PyG as it is.

    Parameters
    ----------
    model : torch.nn.Module
        A supported PyTorch Geometric model (see :mod:`lotan.planner.lowering`).
    graph : Graph
        The graph to train on.
    engine : str or EngineOptions
        ``"auto"`` (default), ``"spark"`` (the active SparkSession, ``spark=``, or a new
        local one) or ``"local"`` (in-process, same plan and kernels, same results); or an
        engine object, ``lotan.Spark(partitions=8, placement="split")`` /
        ``lotan.Local(...)``, instead of the engine keywords below. ``"auto"`` takes Spark
        when the graph is in Spark DataFrames, ``placement="split"``, or the session
        (``spark=`` or the active one) runs on a cluster, and otherwise the local engine if
        the estimated working set fits ``LOTAN_LOCAL_MEMORY`` (default: half the machine's
        memory), else Spark (:func:`lotan.engines.choice.choose_engine`); the choice and why
        are in :attr:`FitResult.engine` and the progress display.
    num_partitions : int, optional
        Graph partitions (default: the engine's).
    partitioner : str
        ``"hash"`` (default) or ``"label_propagation"``
        (:mod:`lotan.runtime.label_propagation`); the result does not depend on it.
    spark : SparkSession, optional
        The SparkSession the Spark engine uses.
    planner : PlannerFlags
        Which rewrite rules run (all by default); the result does not depend on them.
    patience : int, optional
        Stop when ``monitor`` (``"val_acc"`` by default, see :data:`lotan.options.MONITORS`)
        has not improved for this many epochs and restore the weights of the best epoch;
        ``None`` (default) trains every epoch.
    checkpoint_dir : str, optional
        Write a checkpoint there after every ``checkpoint_every`` epochs and at the end
        (atomically; :mod:`lotan.training.checkpoint`). With ``resume=True``, continue from
        the newest one: the run ends with the weights an uninterrupted run ends with.
    placement : str
        ``"fused"`` (default) runs each stage's graph and dense work in one Spark stage;
        ``"split"`` runs dense work in Spark stages of its own whose tasks ask for
        ``dense_gpus`` GPUs and ``dense_cpus`` CPUs (stage-level scheduling:
        :mod:`lotan.planner.placement`). The result does not depend on it.
    eval_every : int
        Measure the accuracies (dropout off) after every this many epochs and after the last
        (default 1); the others record NaN, and their runs skip the evaluation stream. The
        weights do not depend on it (early stopping's epoch can: patience counts epochs,
        improvements are seen when measured).
    exchange_dtype : str
        ``"float32"`` (default) or ``"bfloat16"``: forward exchanges send every row rounded
        to bfloat16, half their bytes (backward stays float32). Not exact: the result
        differs slightly from float32's, but not between engines or partitionings.

    Returns
    -------
    FitResult
        The trained model, its history, the engine chosen and the settings.

    Raises
    ------
    UnsupportedModelError, GraphInputError, LotanError
        For an unsupported model, a graph that does not fit it, or bad settings.

    Notes
    -----
    The other settings (``epochs``, ``optimizer``, ``lr``, ``weight_decay``, ``momentum``,
    ``seed``, ``progress``, ``monitor``, ``checkpoint_every``, ``resume``, ``dense_gpus``,
    ``dense_cpus``) are documented with their option objects in :mod:`lotan.options`.
    """
    config = FitConfig.from_keywords(**settings(locals(), besides=("model", "graph")))
    checkpoints = checkpointer(model, graph, config)
    training = config.training
    run = Run.start(
        [model], graph, config.engine, config.planner, training=training, progress=training.progress
    )
    result = FitResult(
        model=model,
        config=config,
        num_partitions=run.partitions,
        optimizer=config.optimizer,
        engine=run.choice,
    )
    run.fit(model, config, result, checkpoints)
    return result


def predict(
    model: torch.nn.Module,
    graph: Graph,
    *,
    engine: str | EngineOptions = "auto",
    num_partitions: int | None = None,
    partitioner: str = "hash",
    placement: str = "fused",
    dense_gpus: float = 1.0,
    dense_cpus: int = 1,
    exchange_dtype: str = "float32",
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> Any:
    """Predicted class, class probabilities and logits of every vertex, with dropout off.

    The settings are :func:`fit`'s engine settings (``"auto"``, ``"float32"`` by default).

    Returns
    -------
    DataFrame
        On the Spark engine a Spark DataFrame ``(id long, prediction long, probability
        array<float>, logits array<float>)`` keyed by the graph's original vertex ids
        (checkpointed in Spark's block managers: computed once, no lineage); on the local
        engine a pandas DataFrame with the same columns, sorted by id. Under ``"auto"`` the
        type follows the engine chosen: pass ``engine="spark"`` to always get a Spark
        DataFrame.
    """
    config = FitConfig.from_keywords(**settings(locals(), besides=("model", "graph")))
    run = Run.start([model], graph, config.engine, config.planner)
    return run.predictions(model)


def explain(
    model: torch.nn.Module | Sequence[Any],
    graph: Graph,
    *,
    engine: str | EngineOptions = "auto",
    num_partitions: int | None = None,
    partitioner: str = "hash",
    placement: str = "fused",
    dense_gpus: float = 1.0,
    dense_cpus: int = 1,
    exchange_dtype: str = "float32",
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
    memory_budget: int | str | None = DEFAULT_MEMORY_BUDGET,
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
    keywords = settings(locals(), besides=("model", "graph", "memory_budget", "print_"))
    config = FitConfig.from_keywords(**keywords)
    if not isinstance(model, torch.nn.Module):
        text = explain_many(model, graph, config, memory_budget)
    else:
        text = Run.start([model], graph, config.engine, config.planner, placement=False).explain()
    if print_:
        print(text)
    return text
