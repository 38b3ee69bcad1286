"""One call's run, built once and used by every face (``fit``, ``predict``, ``explain``,
``fit_many``, jobs, the estimator): the models' plans, the checks that need model and
graph, the engine chosen (and why), its partition count, the graph prepared for each plan
(its constant aggregations computed once) and the physical plans, each built once."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lotan.engines import Engine, Prepared, make_engine
from lotan.engines.choice import EngineChoice, choose_engine
from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.ir.norm import NormSpec
from lotan.ir.plan import LogicalPlan
from lotan.options import EngineOptions, FitConfig, Training
from lotan.planner.batching import (
    BatchPlan,
    MergedPlan,
    batches,
    describe_structure,
    merge,
    split_by_budget,
)
from lotan.planner.explain import render
from lotan.planner.flags import PlannerFlags
from lotan.planner.lowering import lower_model
from lotan.planner.optimize import optimize
from lotan.planner.physical import PhysicalPlan
from lotan.runtime.stages import inference_stages
from lotan.runtime.value import EpochValue
from lotan.training.checkpoint import Checkpointer, fingerprint
from lotan.training.loop import run_batch
from lotan.training.progress import announce
from lotan.training.trainer import Trainer

if TYPE_CHECKING:
    from lotan.training.records import FitResult

__all__ = ["ModelPlans", "Run", "checkpointer", "epoch_value", "model_fingerprint"]


@dataclass(frozen=True)
class ModelPlans:
    """One model's plans: as lowered, as optimized, and what each rule did."""

    logical: LogicalPlan
    optimized: LogicalPlan
    fired: list[tuple[str, list[str]]]


def plan_model(model: torch.nn.Module, graph: Graph, flags: PlannerFlags) -> ModelPlans:
    """``model``'s plans on ``graph`` (the graph's widths), checked against its weights."""
    logical = lower_model(model, graph.num_features, graph.has_edge_weight, graph.num_edge_features)
    optimized, fired = optimize(logical, flags)
    check_weights(optimized, graph)
    return ModelPlans(logical, optimized, fired)


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


def check_labels(plan: LogicalPlan, graph: Graph) -> None:
    """Training needs train vertices, and an output for every class."""
    if graph.num_train == 0:
        raise GraphInputError(
            "the train split is empty; mark some vertices split='train' (PyG: train_mask)"
        )
    if graph.num_classes > plan.out_width:
        raise GraphInputError(
            f"labels go up to {graph.num_classes - 1} but the model has only "
            f"{plan.out_width} outputs; build it with out_channels >= {graph.num_classes}"
        )


def check_monitor(training: Training, graph: Graph) -> None:
    """Early stopping watches a split the graph has."""
    if training.patience is None:
        return
    split = training.monitor.split("_")[0]
    if split in ("val", "test") and graph.split_counts().get(split, 0) == 0:
        raise GraphInputError(
            f"early stopping watches {training.monitor} but the graph has no {split!r} "
            f"vertices; mark some vertices split={split!r} or use monitor='train_acc'/'loss'"
        )


def epoch_value(model: torch.nn.Module, epoch: int) -> EpochValue:
    """What the tasks of a run with ``model``'s current weights and buffers receive."""
    params = {n: p.detach().cpu().numpy().copy() for n, p in model.named_parameters()}
    buffers = {n: b.detach().cpu().numpy().copy() for n, b in model.named_buffers()}
    return EpochValue(params=params, epoch=epoch, buffers=buffers)


def model_fingerprint(model: torch.nn.Module) -> dict[str, Any]:
    """The architecture of ``model``: its modules and parameter shapes (not their values)."""
    return {
        "modules": repr(model),
        "params": [(n, list(p.shape)) for n, p in model.named_parameters()],
    }


def checkpointer(model: torch.nn.Module, graph: Graph, config: FitConfig) -> Checkpointer | None:
    """The checkpoints of training ``model`` on ``graph`` with ``config`` (None: none)."""
    ck = config.checkpoints
    if ck.directory is None:
        return None
    return Checkpointer(
        ck.directory,
        every=ck.every,
        resume=ck.resume,
        config_hash=fingerprint(
            {"model": model_fingerprint(model), "fit": config.result_fingerprint()}
        ),
        graph_hash=graph.fingerprint(),
    )


@dataclass
class Run:
    """The run of one call (see the module docstring); build it with :meth:`start`.

    Attributes
    ----------
    graph : the graph.
    models : every model's plans, in the order given.
    choice : the engine ``engine="auto"`` (or the caller) chose, and why.
    engine : that engine.
    partitions : the number of graph partitions.
    options : the engine options (partitioner, placement, exchange dtype, ...).
    """

    graph: Graph
    models: list[ModelPlans]
    choice: EngineChoice
    engine: Engine[Any]
    partitions: int
    options: EngineOptions
    _physical: dict[tuple[LogicalPlan, tuple[NormSpec, ...]], PhysicalPlan] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def start(
        cls,
        models: Sequence[torch.nn.Module],
        graph: Graph,
        options: EngineOptions,
        flags: PlannerFlags,
        *,
        training: Training | None = None,
        progress: bool = False,
        placement: bool = True,
    ) -> Run:
        """Plan ``models`` on ``graph`` (to be trained with ``training``: check the labels
        and the split early stopping watches), choose the engine (saying which and why when
        ``progress``), start it and settle the partition count; with ``placement``, check
        that the engine can run the options' placement before any preparation."""
        plans = [plan_model(m, graph, flags) for m in models]
        if training is not None:
            for p in plans:
                check_labels(p.optimized, graph)
            check_monitor(training, graph)
        where = options.placement_config()
        optimized = [p.optimized for p in plans]
        choice = choose_engine(options.kind, graph, optimized, options.session, where)
        announce(choice.describe(), enabled=progress)
        engine = make_engine(choice.name, options.session)
        parts = options.partitions or engine.default_partitions()
        if parts > graph.num_vertices:
            raise GraphInputError(
                f"num_partitions={parts} is more than the graph's {graph.num_vertices} "
                "vertices; use fewer partitions"
            )
        if placement:
            engine.check_placement(where)
        return cls(graph, plans, choice, engine, parts, options)

    # ------------------------------------------------------------------ plans
    def physical(
        self, plan: LogicalPlan, norms: tuple[NormSpec, ...] | None = None
    ) -> PhysicalPlan:
        """``plan``'s physical plan (``norms``: the weightings the graph was prepared with,
        default the plan's own), built once per run."""
        key = (plan, plan.norms if norms is None else norms)
        if key not in self._physical:
            self._physical[key] = PhysicalPlan.build(plan, norms=norms)
        return self._physical[key]

    def prepare(self, plan: LogicalPlan, *, constants: bool = True) -> Prepared:
        """The graph prepared for ``plan``'s weightings, with the plan's constant
        aggregations computed once and stored beside the layouts (cached on the graph)."""
        norms = plan.norms
        prepared = self.engine.prepare(self.graph, self.partitions, norms, self.options.partitioner)
        physical = self.physical(plan)
        cached = tuple(sorted(physical.layout_values - {0}))
        if constants and cached:
            const_plan = PhysicalPlan.build(plan, outputs=cached, use_cache=False)
            key = tuple(plan.node(i).describe() for i in sorted(const_plan.stage_of))
            stages = inference_stages(const_plan, emit_outputs=True)
            prepared = self.engine.with_constants(self.graph, prepared, (norms, key), stages)
        return prepared

    # ------------------------------------------------------------------ training
    def train(
        self,
        prepared: Prepared,
        merged: MergedPlan,
        trainers: Sequence[Trainer],
        config: FitConfig,
        *,
        norms: tuple[NormSpec, ...] | None = None,
        label: str = "lotan",
        checkpoints: Checkpointer | None = None,
        on_divergence: str = "raise",
    ) -> None:
        """Train ``trainers`` (member ``i`` of ``merged`` is ``trainers[i]``) with the
        run-wide settings of ``config`` (:func:`lotan.training.loop.run_batch`); ``norms``:
        the weightings the graph was prepared with (default: ``merged``'s)."""
        norms = merged.plan.norms if norms is None else norms
        run_batch(
            self.engine,
            prepared,
            merged,
            trainers,
            physical=lambda plan: self.physical(plan, norms),
            training=config.training,
            num_train=self.graph.num_train,
            label=label,
            checkpoints=checkpoints,
            on_divergence=on_divergence,
            placement=self.options.placement_config(),
            exchange_dtype=self.options.exchange_dtype,
        )

    def fit(
        self,
        model: torch.nn.Module,
        config: FitConfig,
        result: FitResult,
        checkpoints: Checkpointer | None = None,
    ) -> None:
        """Train the run's one model in place (``lotan.fit``), its history into ``result``."""
        (plans,) = self.models
        prepared = self.prepare(plans.optimized)
        merged = merge([plans.optimized])
        trainer = Trainer(model, dict(merged.names[0]), config, config.optimizer, result)
        self.train(prepared, merged, [trainer], config, checkpoints=checkpoints)

    def batches(
        self, seeds: Sequence[int | None], budget: int | None
    ) -> Iterator[tuple[BatchPlan, Prepared, dict[str, int]]]:
        """The models grouped by structure and merged (``seeds[i]``: model ``i``'s own mask
        seed), each batch with the graph prepared for it (its weightings and constants,
        shared by its sub-batches) and cut to fit ``budget``: ``(batch, prepared graph,
        partition stats)`` per batch, prepared as they are reached."""
        plans = [m.optimized for m in self.models]
        for key, members in batches(plans):
            merged = merge([plans[i] for i in members], members, [seeds[i] for i in members])
            prepared = self.prepare(merged.plan)
            stats = prepared.stats()
            subs = split_by_budget(merged, stats["max_own"], stats["max_rows"], budget)
            bp = BatchPlan(
                describe_structure(key),
                merged,
                tuple((tuple(merged.members[k] for k in keep), cost) for keep, cost in subs),
            )
            yield bp, prepared, stats

    # ------------------------------------------------------------------ inference, explain
    def predictions(self, model: torch.nn.Module) -> Any:
        """Every vertex's prediction with dropout off (``lotan.predict``)."""
        (plans,) = self.models
        prepared = self.prepare(plans.optimized)
        stages = inference_stages(
            self.physical(plans.optimized),
            emit_outputs=True,
            placement=self.options.placement_config(),
            exchange_dtype=self.options.exchange_dtype,
        )
        return self.engine.predictions(prepared, stages, epoch_value(model, 0))

    def explain(self) -> str:
        """The engine and why, then the run's one model's three plan levels with the
        bytes exchanged per epoch and the partitioning's halo (``lotan.explain``)."""
        (plans,) = self.models
        prepared = self.prepare(plans.optimized, constants=False)
        return "\n".join(
            [
                "== Engine ==",
                self.choice.describe(),
                "",
                render(
                    plans.logical,
                    plans.optimized,
                    plans.fired,
                    self.physical(plans.optimized),
                    prepared.stats(),
                    self.options.partitioner,
                    self.options.placement_config(),
                ),
            ]
        )
