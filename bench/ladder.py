"""The ladder: from the naive in-Spark GCN to Lotan, one optimization at a time, on one graph
in one run — the Lotan paper's ablation (its 76×), measured here.

Steps (each in a fresh process through :func:`bench.suite.measure`, same model, loss and
optimizer): the naive GCN of :mod:`bench.naive` (Spark SQL joins + ``groupBy``, and
``GraphFrame.aggregateMessages`` when GraphFrames is there) → Lotan's Spark engine with every
planner rule off and hash partitioning → + the planner's rules → + label-propagation
partitioning → + model batching (``fit_many`` of K models; the epoch per model). Each step
reports its median epoch and its factor over the naive SQL epoch.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.graphs import write_graph

__all__ = ["STEPS", "render", "run"]

#: (step, spec overrides). ``planner``: :class:`lotan.PlannerFlags` fields.
NO_RULES = {"reorder": False, "cache_constants": False, "prune_constant_gradients": False}
STEPS: list[tuple[str, dict[str, Any]]] = [
    ("naive: SQL join + groupBy", {"system": "naive-spark"}),
    ("naive: GraphFrame.aggregateMessages", {"system": "naive-graphframes"}),
    ("Lotan, rules off, hash", {"planner": {**NO_RULES, "fuse": False}}),
    ("+ planner rules", {}),
    ("+ label propagation", {"partitioner": "label_propagation"}),
    ("+ model batching", {"partitioner": "label_propagation", "models": None}),
]
BASE = STEPS[0][0]


def run(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """Every step of the ladder on ``cfg["graph"]``."""
    from bench.naive import GRAPHFRAMES_MISSING
    from bench.suite import TIMING, measure

    path = write_graph(cfg["graph"], data)
    out = []
    for step, overrides in STEPS:
        spec = {
            "system": "lotan-spark",
            **TIMING,
            "graph": str(path),
            "model": "gcn",
            "hidden": cfg["hidden"],
            "layers": cfg["layers"],
            "epochs": cfg["epochs"],
            "partitions": cfg["partitions"],
            **overrides,
        }
        if spec["system"].startswith("naive"):
            spec["epochs"] = cfg["naive_epochs"]
        if "models" in spec:
            spec["models"] = cfg["models"]
        res = measure(spec, dgl)
        why = str(res.get("error", "")).partition(GRAPHFRAMES_MISSING)[2]
        if why:  # no GraphFrames in this environment: say so, not as a failure
            res = {"ok": False, "error": f"not run:{why}"}
        epoch = f"epoch {res['epoch']:.3f}s" if res.get("ok") else res.get("error")
        log(f"ladder {step}: {epoch}")
        out.append({"experiment": "ladder", "step": step, "system": spec["system"], **res})
    return out


def render(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """The ladder's section of ``report.md``."""
    rows = [r for r in records if r["experiment"] == "ladder"]
    if not rows:
        return []
    cfg = config.get("ladder", {})
    lines = [
        "## The ladder: naive in-Spark GCN → Lotan",
        "",
        f"`GCN(128, {cfg.get('hidden')}, {cfg.get('layers')}, 16)` on `{cfg.get('graph')}`, "
        f"Spark `local[2]`, {cfg.get('partitions')} partitions, one step at a time (the Lotan "
        "paper's ablation). The naive GCN (`bench/naive.py`) does every aggregation, forward "
        "and backward, as one Spark SQL job — the edges joined with a vertex table of one "
        "column per feature, then `groupBy` and `sum`, which is what GraphFrames' "
        "`aggregateMessages` compiles to — and the dense work in torch; its loss and "
        "gradients equal PyG's, with SQL and with `aggregateMessages` (`tests/bench/"
        "test_naive.py`). Median of epochs "
        f"2..{cfg.get('naive_epochs')} for the naive rows, 2..{cfg.get('epochs')} for Lotan; "
        f"model batching is `fit_many` of K = {cfg.get('models')} models, its epoch divided "
        "by K. Factor = naive SQL epoch ÷ the step's epoch, same run.",
        "",
        "| step | epoch (s) | factor over naive | first epoch (s) |",
        "|---|---|---|---|",
    ]
    base = next((r["epoch"] for r in rows if r["step"] == BASE and r.get("ok")), None)
    for r in rows:
        if not r.get("ok"):
            lines.append(f"| {r['step']} | {r.get('error')} | | |")
            continue
        factor = f"{base / r['epoch']:.1f}×" if base else ""
        lines.append(f"| {r['step']} | {r['epoch']:.3f} | {factor} | {r['first_epoch']:.2f} |")
    return [*lines, ""]
