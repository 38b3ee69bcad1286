"""Getting a run ready, for ``fit``, ``fit_many``, ``predict`` and ``explain`` alike: the
model's plans for a graph, the checks that need both, the engine and its partition count,
and the graph prepared for a plan (its constants computed once)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import torch

from lotan.config import FitConfig
from lotan.engines import Engine, make_engine
from lotan.engines.choice import EngineChoice
from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.ir.plan import LogicalPlan
from lotan.planner.flags import PlannerFlags
from lotan.planner.lowering import lower_model
from lotan.planner.optimize import optimize
from lotan.planner.physical import PhysicalPlan
from lotan.planner.placement import Placement
from lotan.runtime.stages import inference_stages
from lotan.runtime.value import EpochValue

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "check_labels",
    "check_monitor",
    "check_weights",
    "engine_for",
    "epoch_value",
    "plan_for",
    "prepare",
]


def plan_for(
    model: torch.nn.Module, graph: Graph, flags: PlannerFlags
) -> tuple[LogicalPlan, LogicalPlan, list[tuple[str, list[str]]]]:
    """(logical plan, optimized plan, rules fired) of ``model`` on ``graph``."""
    logical = lower_model(model, graph.num_features, graph.has_edge_weight, graph.num_edge_features)
    optimized, fired = optimize(logical, flags)
    check_weights(optimized, graph)
    return logical, optimized, fired


def check_labels(plan: LogicalPlan, graph: Graph) -> None:
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


def check_monitor(config: FitConfig, graph: Graph) -> None:
    if config.patience is None:
        return
    split = config.monitor.split("_")[0]
    if split in ("val", "test") and graph.split_counts().get(split, 0) == 0:
        raise GraphInputError(
            f"early stopping watches {config.monitor} but the graph has no {split!r} "
            f"vertices; mark some vertices split={split!r} or use monitor='train_acc'/'loss'"
        )


def engine_for(
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


def prepare(
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
            graph, prepared, (norms, key), inference_stages(const_plan, emit_outputs=True)
        )
    return prepared, physical


def epoch_value(model: torch.nn.Module, epoch: int) -> EpochValue:
    params = {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
    buffers = {n: b.detach().cpu().numpy().copy() for n, b in model.named_buffers()}
    return EpochValue(params=params, epoch=epoch, buffers=buffers)
