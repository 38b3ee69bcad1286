"""Model batching for model selection: ``fit_many`` trains a grid of models in one pass over
the graph per epoch, ``grid`` builds the grid, :class:`GridResult` compares the models.

The models are planned one by one, grouped by structure (:mod:`lotan.planner.batching`),
each group is merged into one plan and cut into sub-batches that fit the memory budget; every
sub-batch trains as one plan — one exchange per layer and direction for all its models —
with each model's own optimizer, learning rate, weight decay and dropout. Each model ends
with exactly the parameters and history a separate ``lotan.fit`` with the same seed gives.
"""

from __future__ import annotations

import copy
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import torch

from lotan.errors import LotanError
from lotan.graph import Graph
from lotan.options import (
    DEFAULT_EPOCHS,
    OPTIMIZER_KEYS,
    EngineOptions,
    FitConfig,
    OptimizerConfig,
    parse_bytes,
)
from lotan.planner.batching import BatchPlan
from lotan.planner.explain import render_physical
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags
from lotan.run import Run
from lotan.training.records import FitResult, GridResult
from lotan.training.trainer import Trainer

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "BatchPlan",
    "GridResult",
    "Trial",
    "fit_many",
    "grid",
    "parse_bytes",
]

#: Default working-set budget per partition for a batch of models (see
#: :func:`lotan.planner.estimates.working_set_bytes`).
DEFAULT_MEMORY_BUDGET = "4g"


#: The grid key of replicates: the seed of each model's weights and dropout masks.
SEED_KEY = "seed"


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


@dataclass
class Trial:
    """One model of a grid: the module, its optimizer, the grid values it came from, and
    the seed of its dropout masks (``None``: ``fit_many``'s ``seed``). A trial with seed
    ``s`` ends as ``lotan.fit(model, graph, seed=s, ...)`` does."""

    model: torch.nn.Module
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    params: dict[str, Any] = field(default_factory=dict)
    seed: int | None = None

    def __post_init__(self) -> None:
        if self.seed is not None and not _is_int(self.seed):
            raise LotanError(f"Trial seed must be an int or None, found {self.seed!r}")


def grid(
    build: Callable[..., torch.nn.Module],
    space: Mapping[str, Sequence[Any]],
    *,
    seed: int = 0,
) -> list[Trial]:
    """Every combination of ``space``'s values, as :class:`Trial` s for :func:`fit_many`.

    Keys ``optimizer``, ``lr``, ``weight_decay`` and ``momentum`` set the optimizer; key
    ``seed`` makes replicates: each of its values builds the model after
    ``torch.manual_seed(value)`` and seeds that trial's dropout masks (:attr:`Trial.seed`),
    so trial ``i`` is what ``lotan.fit`` trains with that seed; every other key is passed to
    ``build`` by name. Without a ``seed`` key each model is built after
    ``torch.manual_seed(seed)``, so models of the same shape start from the same weights.

    >>> trials = lotan.grid(
    ...     lambda hidden, dropout: GCN(f, hidden, 2, c, dropout=dropout),
    ...     {"hidden": [16, 64], "dropout": [0.0, 0.5], "lr": [0.01, 0.05]},
    ... )   # 8 trials
    >>> replicates = lotan.grid(lambda: GCN(f, 16, 2, c, dropout=0.5), {"seed": range(10)})
    """
    if not isinstance(space, Mapping) or not space:
        raise LotanError("grid() needs a non-empty dict of {name: list of values}")
    for key, options in space.items():
        if isinstance(options, str | bytes) or not isinstance(options, Sequence) or not options:
            raise LotanError(
                f"grid value {key!r} must be a non-empty list of values, found {options!r}"
            )
    keys = list(space)
    for s in space.get(SEED_KEY, ()):
        if not _is_int(s):
            raise LotanError(f"grid value 'seed' must be a list of ints, found {s!r}")
    model_keys = [k for k in keys if k not in OPTIMIZER_KEYS and k != SEED_KEY]
    out = []
    for combo in itertools.product(*(space[k] for k in keys)):
        values = dict(zip(keys, combo, strict=True))
        opt = {k: v for k, v in values.items() if k in OPTIMIZER_KEYS}
        kwargs = {k: values[k] for k in model_keys}
        own = values.get(SEED_KEY)
        torch.manual_seed(seed if own is None else own)
        try:
            model = build(**kwargs)
        except TypeError as e:
            raise LotanError(
                f"grid: build(**{kwargs}) failed ({e}); its parameters must be the grid's "
                f"model keys {model_keys}"
            ) from e
        out.append(Trial(model, OptimizerConfig.of(opt), values, own))
    return out


def _trials(
    models: Sequence[torch.nn.Module | Trial],
    optimizers: OptimizerConfig | Mapping[str, Any] | Sequence[Any] | None,
    pairing: str,
) -> list[Trial]:
    if isinstance(models, torch.nn.Module) or not isinstance(models, Sequence) or not models:
        raise LotanError("fit_many needs a non-empty list of models (or lotan.grid trials)")
    if pairing not in ("product", "zip"):
        raise LotanError(f"pairing={pairing!r} is not one of ['product', 'zip']")
    trials = []
    for m in models:
        if isinstance(m, Trial):
            if optimizers is not None:
                raise LotanError(
                    "these models are trials that carry their own optimizer; "
                    "do not pass optimizers= as well"
                )
            trials.append(m)
        elif isinstance(m, torch.nn.Module):
            trials.append(Trial(m))
        else:
            raise LotanError(f"fit_many expects torch.nn.Module or lotan.Trial items, found {m!r}")
    if optimizers is None:
        return trials
    if isinstance(optimizers, OptimizerConfig | Mapping | str):
        opts = [OptimizerConfig.of(optimizers)]
    else:
        opts = [OptimizerConfig.of(o) for o in optimizers]
        if not opts:
            raise LotanError("optimizers= is an empty list")
    if pairing == "zip" or len(opts) == 1:
        if len(opts) == 1:
            opts = opts * len(trials)
        if len(opts) != len(trials):
            raise LotanError(
                f"pairing='zip' needs one optimizer per model: {len(trials)} models, "
                f"{len(opts)} optimizers"
            )
        return [Trial(t.model, o, t.params, t.seed) for t, o in zip(trials, opts, strict=True)]
    out = []
    for t in trials:
        for k, o in enumerate(opts):
            # Every optimizer trains its own copy of the model, from the same weights.
            model = t.model if k == 0 else copy.deepcopy(t.model)
            out.append(Trial(model, o, dict(t.params), t.seed))
    return out


def fit_many(
    models: Sequence[torch.nn.Module | Trial],
    graph: Graph,
    *,
    optimizers: OptimizerConfig | Mapping[str, Any] | Sequence[Any] | None = None,
    pairing: str = "product",
    epochs: int = DEFAULT_EPOCHS,
    engine: str | EngineOptions = "auto",
    num_partitions: int | None = None,
    partitioner: str = "hash",
    seed: int = 0,
    patience: int | None = None,
    monitor: str = "val_acc",
    memory_budget: int | str | None = DEFAULT_MEMORY_BUDGET,
    progress: bool = True,
    placement: str = "fused",
    dense_gpus: float = 1.0,
    dense_cpus: int = 1,
    eval_every: int = 1,
    exchange_dtype: str = "float32",
    spark: SparkSession | None = None,
    planner: PlannerFlags = DEFAULT_FLAGS,
) -> GridResult:
    """Train many models on ``graph`` together: one pass over the graph per epoch for a
    batch of models, each with its own optimizer, learning rate, weight decay and dropout.

    Parameters
    ----------
    models : sequence of torch.nn.Module or Trial
        PyG models (as for :func:`lotan.fit`) or :class:`Trial` s from :func:`grid`. Models
        may differ in hidden sizes and dropout; models whose layers differ (depth,
        convolution type) train in separate batches.
    graph : Graph
        The graph to train on.
    optimizers : OptimizerConfig, mapping or sequence, optional
        One optimizer for all (``{"name": "adam", "lr": 0.01, "weight_decay": 0,
        "momentum": 0}``), or a list: with ``pairing="product"`` (default) every model is
        trained with every optimizer (copies of the model, same initial weights), with
        ``pairing="zip"`` model ``i`` with optimizer ``i``. Default: each trial's own, else
        Adam at lr 0.01.
    memory_budget : int or str, optional
        Estimated working set allowed per partition (bytes, or ``"4g"``, ``"512m"``;
        ``None``: no limit); a batch that would exceed it is split into sub-batches that run
        one after the other.
    patience, monitor : optional
        Early stopping per model (see :func:`lotan.fit`); a model that stops leaves the
        batch and the others go on.
    seed : int
        Seeds the dropout masks of every model without a seed of its own
        (:attr:`Trial.seed`; ``lotan.grid(..., {"seed": range(10)})`` makes replicates).

    Returns
    -------
    GridResult
        One :class:`~lotan.FitResult` per model, and the batches they trained in.

    Notes
    -----
    The other settings are those of :func:`lotan.fit` and apply to every model. Model ``i``
    ends with the parameters and history of ``lotan.fit(models[i], graph, ...)`` with the
    same settings and its seed.
    """
    keywords = {k: v for k, v in locals().items() if k not in _NOT_FIT_SETTINGS}
    base = FitConfig.from_keywords(**keywords)
    trials = _trials(models, optimizers, pairing)
    seen: dict[int, int] = {}
    for i, t in enumerate(trials):
        if id(t.model) in seen:
            raise LotanError(
                f"models {seen[id(t.model)]} and {i} are the same module object; each model "
                "trains in place, so pass separate modules (copy.deepcopy)"
            )
        seen[id(t.model)] = i
    budget = parse_bytes(memory_budget)
    training = base.training
    run = Run.start(
        [t.model for t in trials],
        graph,
        base.engine,
        base.planner,
        training=training,
        progress=training.progress,
    )
    configs = [
        base.with_optimizer(t.optimizer).with_seed(training.seed if t.seed is None else t.seed)
        for t in trials
    ]
    results = [
        FitResult(
            model=t.model,
            config=configs[i],
            num_partitions=run.partitions,
            optimizer=t.optimizer,
            params=dict(t.params),
            engine=run.choice,
        )
        for i, t in enumerate(trials)
    ]
    done: list[BatchPlan] = []
    for bp, prepared, _ in run.batches([t.seed for t in trials], budget):
        done.append(bp)
        position = {i: k for k, i in enumerate(bp.merged.members)}
        for members, _ in bp.sub_batches:
            sub = bp.merged.subset([position[i] for i in members])
            trainers = [
                Trainer(
                    trials[i].model,
                    dict(sub.names[k]),
                    configs[i],
                    trials[i].optimizer,
                    results[i],
                )
                for k, i in enumerate(sub.members)
            ]
            run.train(
                prepared,
                sub,
                trainers,
                base,
                norms=bp.merged.plan.norms,
                label=f"lotan batch {len(done) - 1}",
                on_divergence="stop",
            )
    return GridResult(results, done)


#: fit_many's parameters that are not fit's settings.
_NOT_FIT_SETTINGS = ("models", "graph", "optimizers", "pairing", "memory_budget")


def _gib(b: int) -> str:
    return f"{b / 2**30:.2f} GiB" if b >= 2**30 else f"{b / 2**20:.1f} MiB"


def _ids(members: Sequence[int]) -> str:
    return ", ".join(str(i) for i in members)


def explain_many(
    models: Sequence[torch.nn.Module | Trial],
    graph: Graph,
    config: FitConfig,
    memory_budget: int | str | None,
) -> str:
    """How :func:`fit_many` would run ``models`` with ``config``'s engine and planner: the
    batches (and why models are apart), the sub-batches the memory budget makes with their
    estimates, each batch's merged plan and the physical plan of each sub-batch."""
    trials = _trials(models, None, "product")
    budget = parse_bytes(memory_budget)
    run = Run.start(
        [t.model for t in trials], graph, config.engine, config.planner, placement=False
    )
    scheduled = list(run.batches([t.seed for t in trials], budget))
    placement = config.engine.placement_config()
    partitioner = config.engine.partitioner
    limit = "no memory budget" if budget is None else f"memory budget {_gib(budget)}"
    lines = [
        "== Engine ==",
        run.choice.describe(),
        "",
        "== Model batches ==",
        f"{len(trials)} models in {len(scheduled)} batch(es); models share a batch when "
        "their plans have the same stages and exchanges",
    ]
    for b, (bp, _, _) in enumerate(scheduled):
        lines.append(f"batch {b}: models {_ids(bp.members)} ({bp.structure})")
        subs = bp.sub_batches
        what = "1 sub-batch" if len(subs) == 1 else f"{len(subs)} sub-batches, run in turn"
        lines.append(f"  {limit} per partition: {what}")
        for s, (members, cost) in enumerate(subs):
            over = " (over the budget: one model alone)" if budget and cost > budget else ""
            lines.append(
                f"    sub-batch {s}: models {_ids(members)}, est. working set {_gib(cost)} "
                f"per partition{over}"
            )
    for b, (bp, _, stats) in enumerate(scheduled):
        lines += ["", f"== Batch {b}: merged plan ==", bp.merged.plan.describe()]
        position = {i: k for k, i in enumerate(bp.members)}
        for s, (members, _) in enumerate(bp.sub_batches):
            sub = bp.merged.subset([position[i] for i in members])
            physical = run.physical(sub.plan, bp.merged.plan.norms)
            head = "physical plan" if len(bp.sub_batches) == 1 else f"sub-batch {s} physical plan"
            lines += ["", f"== Batch {b}: {head} =="]
            lines += render_physical(sub.plan, physical, stats, partitioner, placement)
    return "\n".join(lines)
