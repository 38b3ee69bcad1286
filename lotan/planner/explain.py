"""``explain``: the logical plan, the optimized plan (rules that fired) and the physical plan
with the bytes exchanged per epoch."""

from __future__ import annotations

from collections.abc import Mapping

from lotan.ir.ops import EDGE_REDUCES
from lotan.ir.plan import LogicalPlan
from lotan.planner.estimates import edge_bytes, exchange_bytes, statistics_bytes
from lotan.planner.physical import PhysicalPlan
from lotan.planner.placement import DEFAULT_PLACEMENT, DENSE, GRAPH, Placement

__all__ = ["render", "render_physical", "render_placement"]


def _mb(b: float) -> str:
    return f"{b / 1e6:,.1f} MB"


def render(
    logical: LogicalPlan,
    optimized: LogicalPlan,
    fired: list[tuple[str, list[str]]],
    physical: PhysicalPlan,
    stats: Mapping[str, int],
    partitioner: str = "hash",
    placement: Placement = DEFAULT_PLACEMENT,
) -> str:
    """Text of the three plan levels; ``stats`` has ``parts``, ``own``, ``halo``, ``edges``
    (totals over partitions) and ``max_own`` / ``max_edges``."""
    lines = ["== Logical plan ==", logical.describe(), "", "== Optimized plan =="]
    lines.append(optimized.describe())
    lines.append("rules:")
    for name, what in fired:
        lines.append(f"  {name}: " + ("; ".join(what) if what else "did not fire"))
    lines += ["", "== Physical plan =="]
    lines += render_physical(optimized, physical, stats, partitioner, placement)
    return "\n".join(lines)


def render_physical(
    optimized: LogicalPlan,
    physical: PhysicalPlan,
    stats: Mapping[str, int],
    partitioner: str = "hash",
    placement: Placement = DEFAULT_PLACEMENT,
) -> list[str]:
    """The physical plan's lines: partitioning, stages with their exchanges (bytes per
    epoch), totals, and the Spark stages of a training epoch under ``placement``."""
    lines: list[str] = []
    halo, own = stats["halo"], stats["own"]
    lines.append(
        f"partitions {stats['parts']} ({partitioner}): {own:,} vertices, "
        f"{stats['edges']:,} edges, halo {halo:,} rows, "
        f"replication factor {halo / max(own, 1):.3f}, vertex skew "
        f"{stats['max_own'] * stats['parts'] / max(own, 1):.2f}, edge skew "
        f"{stats['max_edges'] * stats['parts'] / max(stats['edges'], 1):.2f}"
    )
    fwd = bwd = 0
    for j in range(physical.num_stages):
        ops = []
        for x in physical.exchanges_into(j):
            evals = optimized.has_eval_stream
            width = x.width(x.inputs) + (x.width(x.stochastic) if evals else 0)
            f, b = exchange_bytes(x, halo, evals)
            fwd += f
            bwd += b
            ins = ", ".join(f"%{u}" for u in x.inputs)
            aggs = ", ".join(f"%{a}" for a in x.aggs)
            how = "" if x.reduce == "sum" else f"{x.reduce}, "
            if x.reduce in EDGE_REDUCES:
                # per-edge tensors of one node at a time (coefficients, gradients, the edge
                # features' projection): the largest node's, on the largest partition
                edge = max(edge_bytes(optimized.node(a), stats["max_edges"]) for a in x.aggs)
                budget = optimized.edge_block_bytes
                blocks = (
                    f" in ~{-(-edge // budget)} blocks of {_mb(budget)}" if edge > budget else ""
                )
                how += f"edge values {_mb(edge)} on the largest partition{blocks}, "
            ops.append(f"exchange {ins} ({how}{width} cols, fwd {_mb(f)}, bwd {_mb(b)}) -> {aggs}")
        for m in physical.moments_at(j):
            node = optimized.node(m)
            streams = 2 if (m in optimized.stochastic and not node.buffers) else 1
            backward = m in physical.requires_grad
            f, b = statistics_bytes(node, stats["parts"], streams, backward)
            fwd += f
            bwd += b
            ops.append(
                f"statistics %{node.inputs[0]} (all to all, {2 * node.width} cols, "
                f"fwd {f / 1e3:,.1f} kB, bwd {b / 1e3:,.1f} kB) -> %{m}"
            )
        for i in physical.nodes_at(j):
            n = optimized.node(i)
            if n.op not in ("aggregate", "moments"):
                ops.append(f"%{i} {n.op}")
        cached = sorted(physical.layout_values - {0})
        head = f"stage {j}"
        if j == 0 and cached:
            head += f" (cached: {', '.join('%' + str(c) for c in cached)})"
        lines.append(f"{head}: " + ", ".join(ops) if ops else f"{head}: -")
    lines.append(
        f"per epoch: {physical.num_stages} forward + {physical.num_stages - 1} backward stages; "
        f"exchanged forward {_mb(fwd)}, backward {_mb(bwd)}"
    )
    return lines + render_placement(physical, placement)


def render_placement(physical: PhysicalPlan, placement: Placement) -> list[str]:
    """The Spark stages of one training epoch: what each does (graph, dense or fused work)
    and what its tasks ask Spark for."""
    sched = physical.schedule(train=True, placement=placement)
    runs = sched.spark_stages
    if placement.split:
        head = (
            f"placement split: {len(runs)} Spark stages per epoch; graph stages ask for "
            f"{placement.describe_request(GRAPH)}, dense stages for "
            f"{placement.describe_request(DENSE)} per task"
        )
    else:
        head = (
            f"placement fused: {len(runs)} Spark stages per epoch, graph and dense work "
            f"together; tasks ask for {placement.describe_request(GRAPH)}"
        )
    lines = [head]
    width = max(len(str(len(runs) - 1)), 1)
    for k, pieces in enumerate(runs):
        lines.append(f"  {k:>{width}}  {sched.stage_kind(pieces):<5}  {sched.stage_label(pieces)}")
    return lines
