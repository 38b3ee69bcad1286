"""Model batching: K models that read the graph the same way train as one plan.

Each model is lowered and optimized on its own (so it keeps the plan it has when trained
alone); then the plans are **merged** into one :class:`~lotan.ir.plan.LogicalPlan`
with one output per model:

- one input ``X``; constants are shared — the layer-0 aggregation ``ÂX`` of every GCN/SGC
  model is one cached value, computed once;
- every other node is renumbered; model ``k``'s parameters are named ``m{k}.<name>``; each
  node keeps the id it has in its own plan as the key of its dropout mask, and a model with a
  seed of its own (``Trial.seed``) carries it on its nodes, so every model draws exactly the
  masks it draws when trained alone with its seed (:class:`lotan.nn_engine.dense.MaskSeed`).

In the merged plan the aggregations of all models' ``l``-th layers fall in the same stage
with the same weighting, so the physical plan groups them into one
:class:`~lotan.planner.physical.Exchange`: their hidden states travel side by side as the
arrays of one tile per pair of partitions, each aggregated by its own sparse product, and
their gradients go back the same way. Dense work and losses stay per model.

Models batch together only when their plans have the same **structure** — the same number of
stages and the same exchanges (stage, source stage, weighting); hidden sizes and dropout may
differ. :func:`batches` groups the rest into separate batches.

**Memory.** A batch widens every tile and every stage's dense values by the sum of the
models' widths. :func:`lotan.planner.estimates.working_set_bytes` estimates the largest
stage's working set on the largest partition; :func:`split_by_budget` cuts a batch into
sub-batches that each fit a budget (a model that alone exceeds it runs alone).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from lotan.ir.nodes import Node
from lotan.ir.plan import LogicalPlan
from lotan.planner.estimates import working_set_bytes
from lotan.planner.physical import PhysicalPlan

__all__ = [
    "BatchPlan",
    "MergedPlan",
    "batches",
    "merge",
    "split_by_budget",
    "structure",
    "working_set_bytes",
]


@dataclass(frozen=True)
class MergedPlan:
    """A batch of models as one plan.

    Attributes
    ----------
    plan : the merged logical plan; ``plan.outputs[i]`` is the logits of member ``i``.
    members : indices of the batch's models (in the caller's list).
    names : per member, ``{parameter name in the plan: parameter name in the module}`` (and
        the same for its buffers, BatchNorm's running statistics).
    """

    plan: LogicalPlan
    members: tuple[int, ...]
    names: tuple[Mapping[str, str], ...]

    def subset(self, keep: Sequence[int]) -> MergedPlan:
        """The plan of the members at positions ``keep`` (node ids unchanged, so values
        cached for the whole batch serve every subset)."""
        plan = replace(self.plan, outputs=tuple(self.plan.outputs[i] for i in keep))
        plan = plan.with_nodes(list(self.plan.nodes))
        return MergedPlan(
            plan, tuple(self.members[i] for i in keep), tuple(self.names[i] for i in keep)
        )


@dataclass(frozen=True)
class BatchPlan:
    """How ``fit_many`` runs a list of models: batches of the same structure, each cut into
    sub-batches that fit the memory budget."""

    structure: str
    merged: MergedPlan
    sub_batches: tuple[tuple[tuple[int, ...], int], ...]  # (model indices, est. bytes)

    @property
    def members(self) -> tuple[int, ...]:
        return self.merged.members


def _signature(n: Node, inputs: tuple[int, ...]) -> tuple[Any, ...]:
    return (
        n.op,
        inputs,
        n.width,
        n.norm,
        n.reduce,
        n.heads,
        n.factor,
        n.cached,
        n.act,
        n.negative_slope,
        n.eps,
        n.p,
    )


def merge(
    plans: Sequence[LogicalPlan],
    members: Sequence[int] | None = None,
    seeds: Sequence[int | None] | None = None,
) -> MergedPlan:
    """One plan computing every plan of ``plans`` (already optimized, same planner flags).
    ``seeds[k]``: the seed of plan ``k``'s dropout masks (``None``: the run's).

    A single plan keeps its node ids and parameter names (those of its module).
    """
    members = tuple(members if members is not None else range(len(plans)))
    own = list(seeds) if seeds is not None else [None] * len(plans)
    if len(own) != len(plans):
        raise ValueError(f"merge: {len(plans)} plans, {len(own)} seeds")
    if len(plans) == 1:
        (single,) = plans
        if own[0] is not None:
            single = single.with_nodes([replace(n, seed=own[0]) for n in single.nodes])
        same = {p: p for p in single.param_names + single.buffer_names}
        return MergedPlan(single, members, (same,))
    nodes: list[Node] = [Node(0, "input", (), plans[0].node(0).width, origin="x")]
    shared: dict[tuple[Any, ...], int] = {}
    outputs: list[int] = []
    all_names: list[dict[str, str]] = []
    for k, plan in enumerate(plans):
        ids: dict[int, int] = {}
        names: dict[str, str] = {}
        for n in plan.nodes:
            if n.op == "input":
                ids[n.id] = 0
                continue
            inputs = tuple(ids[i] for i in n.inputs)
            if n.id in plan.constant:
                sig = _signature(n, inputs)
                if sig in shared:
                    ids[n.id] = shared[sig]
                    continue
            new_id = len(nodes)
            param = None
            if n.param is not None:
                param = f"m{k}.{n.param}"
                names[param] = n.param
            for p in n.params + n.buffers:
                names[f"m{k}.{p}"] = p
            nodes.append(
                replace(
                    n,
                    id=new_id,
                    inputs=inputs,
                    param=param,
                    params=tuple(f"m{k}.{p}" for p in n.params),
                    buffers=tuple(f"m{k}.{b}" for b in n.buffers),
                    key=n.id if n.key is None else n.key,
                    seed=own[k],
                    origin=f"model {k}: {n.origin}" if n.origin else f"model {k}",
                )
            )
            ids[n.id] = new_id
            if n.id in plan.constant:
                shared[_signature(n, inputs)] = new_id
        outputs.append(ids[plan.output])
        all_names.append(names)
    merged = replace(plans[0], nodes=tuple(nodes), outputs=tuple(outputs))
    return MergedPlan(merged, members, tuple(all_names))


def structure(plan: LogicalPlan) -> tuple[Any, ...]:
    """What must be equal for plans to share one physical plan: the number of stages and
    the exchanges (consumer stage, source stage, weighting, reduction)."""
    physical = PhysicalPlan.build(plan)
    exchanges = sorted(
        {(x.stage, x.source, x.norm, x.reduce) for x in physical.exchanges}, key=repr
    )
    return (physical.num_stages, tuple(exchanges))


def describe_structure(key: tuple[Any, ...]) -> str:
    stages, exchanges = key
    if not exchanges:
        return f"{stages} stage(s), no exchange"
    ex = ", ".join(
        f"stage {source}->{stage} {norm.describe() if reduce == 'sum' else reduce}"
        for stage, source, norm, reduce in exchanges
    )
    return f"{stages} stages, exchanges {ex}"


def batches(plans: Sequence[LogicalPlan]) -> list[tuple[tuple[Any, ...], list[int]]]:
    """Indices of ``plans`` grouped by :func:`structure`, in order of first appearance."""
    groups: dict[tuple[Any, ...], list[int]] = {}
    for i, plan in enumerate(plans):
        groups.setdefault(structure(plan), []).append(i)
    return list(groups.items())


def split_by_budget(
    merged: MergedPlan, max_own: int, max_rows: int, budget: int | None
) -> list[tuple[list[int], int]]:
    """Positions of ``merged``'s members cut into consecutive sub-batches whose estimated
    working set (:func:`lotan.planner.estimates.working_set_bytes`) fits ``budget`` bytes,
    each with its estimate. ``budget=None`` keeps the batch whole."""
    count = len(merged.members)

    def cost(keep: list[int]) -> int:
        return working_set_bytes(PhysicalPlan.build(merged.subset(keep).plan), max_own, max_rows)

    everything = list(range(count))
    if budget is None:
        return [(everything, cost(everything))]
    out: list[tuple[list[int], int]] = []
    current: list[int] = []
    current_cost = 0
    for i in everything:
        trial = [*current, i]
        c = cost(trial)
        if current and c > budget:
            out.append((current, current_cost))
            current, current_cost = [i], cost([i])
        else:
            current, current_cost = trial, c
    out.append((current, current_cost))
    return out
