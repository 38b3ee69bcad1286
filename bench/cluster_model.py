"""The cluster on paper: a model of a Lotan epoch on a cluster of ``machines`` machines of
``cores`` cores with a network of ``gbps``, fitted to runs on this machine, checked against
runs it was not fitted to, and projected to graphs shaped like ogbn-products and
ogbn-papers100M.

    python -m bench.cluster_model [--scale 0.02] [--json out.json]

The model. An epoch of a model on a graph of ``n`` vertices and ``E`` directed edges, cut
into ``P`` partitions, exchanges ``B(P)`` bytes (forward rows and backward partial sums:
what ``lotan.explain`` reports, ``n`` times the replication factor's halo times the widths)
and costs

    T = α + (d·n + s·E + c·B) / (machines · cores) + β·B / machines + B·(1 - 1/machines) / bw

- ``d``, ``s``, ``c``: task seconds per vertex (dense work), per edge (the sparse products,
  forward and backward) and per exchanged byte (encode, decode, assembling rows), each from
  the Lotan tasks' own phase timers (summed over tasks) of the fitting runs;
- ``α`` (per epoch: the driver's step, scheduling the epoch's stages) and ``β`` (Spark's
  shuffle per byte, outside the tasks: the JVM writing, reading and moving shuffle blocks):
  the least-squares line through the rest of each fitting run's epoch (its wall time less
  the task time over the tasks that ran at once) against its bytes;
- the network: each machine sends and receives its ``1/machines`` share of the bytes, of
  which ``1 - 1/machines`` leaves the machine (partitions placed at random), at ``gbps``.

Assumptions, stated as the model makes them: one partition per machine (``P =
machines``, each task using the machine's cores: work divides by ``machines · cores`` with
no loss to threading or skew — optimistic); the per-row, per-edge and per-byte costs of this
CPU; the shuffle's per-byte cost divides over the machines' disks; the network term is a
full-bisection network at ``gbps`` per machine, no overlap of communication and compute (so
pessimistic there). Replication factors are what ``lotan.explain`` measures on the graph
shape at ``P`` partitions, at a scale that fits here (``--scale`` of the vertices; the
degree distribution is the same at every scale, so the halo per vertex is too), and bytes and
work scale linearly in ``n`` to the full graph.

Validation: the fit uses Spark ``local[2]`` runs at 2 and 8 partitions; the model then
predicts runs at 4 and 16 partitions, at a larger scale, and on a standalone cluster of two
one-core workers on 127.0.0.1 (``machines=2, cores=1``, loopback network), and the report
gives each prediction's error.

Anchors (published, not run here): SAR, full-batch GraphSAGE 3 × 256 on ogbn-papers100M,
3.8 s/epoch on 128 two-socket Icelake machines with 200 Gbps InfiniBand; DistDGL,
mini-batch, 13 s/epoch on 16 machines for a 100M-vertex / 3B-edge graph.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from bench.graphs import products_kwargs, shape_kwargs
from bench.products import SAGE

__all__ = [
    "PAPERS",
    "Costs",
    "distinct_degrees",
    "fit",
    "halo_rows",
    "papers_kwargs",
    "predict",
    "render",
]

#: ``ogbn-papers100M``: vertices, edges (as OGB stores them, one way; made undirected as the
#: examples do, twice as many directed), features, classes. The degree law is this
#: benchmark's choice.
PAPERS: dict[str, Any] = {
    "vertices": 111_059_956,
    "undirected_edges": 1_615_685_872,
    "features": 128,
    "classes": 172,
    "split": (0.011, 0.001),  # ~1.1 % of its vertices train, ~0.1 % validate
    "degree_exponent": 2.5,
    "max_degree": 50_000,
}
#: The published anchors: (system, graph, machines, seconds per epoch, what it runs).
ANCHORS = [
    ("SAR", "papers100M", 128, 3.8, "full-batch GraphSAGE 3 × 256, 200 Gbps InfiniBand"),
    ("DistDGL", "100M vertices / 3B edges", 16, 13.0, "mini-batch GraphSAGE"),
]
MODELS = {"sage": "GraphSAGE", "gcn": "GCN"}
CONCURRENT = 2  # tasks at once in local[2]


def papers_kwargs(scale: float) -> dict[str, Any]:
    """A papers100M-shaped graph at ``scale`` (:func:`bench.graphs.shape_kwargs`)."""
    return shape_kwargs(PAPERS, scale)


@dataclass(frozen=True)
class Costs:
    """The fitted unit costs (see the module): ``d``, ``s``, ``c`` task seconds per vertex,
    edge and byte; ``alpha`` seconds per epoch, ``beta`` seconds per byte outside tasks."""

    d: float
    s: float
    c: float
    alpha: float
    beta: float

    def as_dict(self) -> dict[str, float]:
        return asdict(self)


def _bytes(run: dict[str, Any]) -> float:
    return (run["plan"]["fwd_mb"] + run["plan"]["bwd_mb"]) * 1e6


def fit(runs: list[dict[str, Any]]) -> Costs:
    """Unit costs from measured runs (each: ``n``, ``edges``, ``plan``, ``phases``,
    ``epoch``, ``concurrent``)."""
    n = sum(r["n"] for r in runs)
    e = sum(r["edges"] for r in runs)
    b = sum(_bytes(r) for r in runs)
    ph = {k: sum(r["phases"].get(k, 0.0) for r in runs) for k in ("dense", "spmm")}
    codec = sum(
        sum(r["phases"].get(k, 0.0) for k in ("load", "decode", "encode", "exchange")) for r in runs
    )
    rest = [r["epoch"] - r["phases"].get("task", 0.0) / r["concurrent"] for r in runs]
    x = np.array([_bytes(r) for r in runs])
    if len(runs) > 1 and np.ptp(x) > 0:
        beta, alpha = np.polyfit(x, np.array(rest), 1)
    else:
        beta, alpha = 0.0, float(np.mean(rest))
    return Costs(ph["dense"] / n, ph["spmm"] / e, codec / b, float(alpha), max(0.0, float(beta)))


def predict(
    costs: Costs,
    n: float,
    edges: float,
    nbytes: float,
    machines: int,
    cores: int,
    gbps: float | None,
    tasks: int | None = None,
) -> dict[str, float]:
    """Seconds per epoch and its terms (``gbps=None``: no network). ``tasks``: the tasks
    of a stage that run at once (default ``machines · cores``, one partition per core;
    ``machines`` for one partition per machine whose task uses every core): the shuffle's
    per-byte cost, fitted with :data:`CONCURRENT` tasks at once, divides over them."""
    tasks = machines * cores if tasks is None else tasks
    work = (costs.d * n + costs.s * edges + costs.c * nbytes) / (machines * cores)
    shuffle = costs.beta * nbytes * CONCURRENT / tasks
    net = 0.0
    if gbps and machines > 1:
        net = nbytes * (1 - 1 / machines) / machines / (gbps * 1e9 / 8)
    total = costs.alpha + work + shuffle + net
    return {"epoch": total, "fixed": costs.alpha, "work": work, "shuffle": shuffle, "net": net}


def distinct_degrees(src: np.ndarray, dst: np.ndarray, n: int) -> np.ndarray:
    """Each vertex's number of distinct in-neighbours (a repeated edge adds no partition)."""
    key = np.unique(src.astype(np.int64) * n + dst)
    return np.bincount(key % n, minlength=n)


def halo_rows(degrees: np.ndarray, parts: int) -> float:
    """Expected halo rows of hash partitioning into ``parts``: a vertex's row goes to each
    other partition that holds one of its neighbours, ``(P - 1)(1 - (1 - 1/P)^deg)``."""
    q = float(parts)
    return float(np.sum((q - 1) * (1 - (1 - 1 / q) ** degrees.astype(np.float64))))


def _spec(model: str, kwargs: dict[str, Any], parts: int, epochs: int) -> dict[str, Any]:
    """OGB's products protocol (:data:`bench.products.SAGE`) with ``model``, on the graph
    generated inside Spark."""
    return {
        **SAGE,
        "system": "lotan-spark",
        "graph": "generated",
        "generate": kwargs,
        "model": model,
        "epochs": epochs,
        "partitions": parts,
        "plan": True,
        "timeout": 3600,
    }


def _measure(
    model: str, kwargs: dict[str, Any], parts: int, epochs: int, concurrent: int, log: Any
) -> dict[str, Any]:
    from bench.suite import measure

    res = measure(_spec(model, kwargs, parts, epochs), None)
    if not res.get("ok"):
        raise SystemExit(f"{model} P={parts}: {res.get('error')}")
    n = kwargs["num_vertices"]
    run = {
        "model": model,
        "n": n,
        "edges": res["plan"]["edges"],
        "parts": parts,
        "concurrent": concurrent,
        "epoch": res["epoch"],
        "phases": res["phases"],
        "plan": res["plan"],
    }
    log(
        f"{model} n={n:,} P={parts} x{concurrent}: epoch {res['epoch']:.2f} s, "
        f"exchanged {_bytes(run) / 1e6:,.0f} MB"
    )
    return run


def _edges(kwargs: dict[str, Any]) -> float:
    return kwargs["num_vertices"] * kwargs["avg_degree"]


def _cluster_run(model: str, kwargs: dict[str, Any], epochs: int, log: Any) -> dict[str, Any]:
    """The same run on a standalone cluster of two one-core workers on 127.0.0.1."""
    from tests.cluster.standalone import StandaloneCluster

    with tempfile.TemporaryDirectory() as tmp:
        cluster = StandaloneCluster(Path(tmp), workers=2, cores=1, memory="4g").start()
        env = {"LOTAN_SPARK_MASTER": cluster.url, "LOTAN_CACHE_DIR": str(Path(tmp) / "cache")}
        old = {k: os.environ.get(k) for k in env}
        os.environ.update(env)
        try:
            run = _measure(model, kwargs, 2, epochs, 2, log)
        finally:
            cluster.stop()
            for k, v in old.items():
                if v is None:
                    os.environ.pop(k, None)
                else:
                    os.environ[k] = v
    return run


def _halo(model: str, kwargs: dict[str, Any], parts: list[int]) -> dict[str, Any]:
    """What ``lotan.explain`` (local engine, hash) measures at each partition count of the
    graph shape at this scale — halo rows and bytes per epoch — next to :func:`halo_rows`
    from the degrees; and the bytes one halo row costs per epoch."""
    import torch
    from torch_geometric.nn.models import GCN, GraphSAGE

    import lotan
    from bench.systems import plan_stats

    g = lotan.datasets.sbm(**kwargs)
    a = g.arrays()
    deg = distinct_degrees(a.src, a.dst, kwargs["num_vertices"])
    torch.manual_seed(0)
    cls = {"sage": GraphSAGE, "gcn": GCN}[model]
    net = cls(g.num_features, 256, 3, g.num_classes, dropout=0.5)
    rows = []
    for p in parts:
        st = plan_stats(lotan.explain(net, g, engine="local", num_partitions=p, print_=False))
        nbytes = (st["fwd_mb"] + st["bwd_mb"]) * 1e6
        rows.append(
            {"parts": p, "halo": st["halo"], "model_halo": halo_rows(deg, p), "bytes": nbytes}
        )
    per_row = float(np.median([r["bytes"] / r["halo"] for r in rows]))
    return {
        "n": kwargs["num_vertices"],
        "rows": rows,
        "bytes_per_halo_row": per_row,
        "degree_hist": np.bincount(deg).tolist(),
    }


def _project(model: str, costs: Costs, halo: dict[str, dict[str, Any]], log: Any) -> list[dict]:
    """Epochs of the full graphs on 16, 64 and 128 machines of 64 cores, one partition per
    machine and one per core, at 25 and 200 Gbps."""
    shapes = {
        "products": (products_kwargs(1.0)["num_vertices"], _edges(products_kwargs(1.0))),
        "papers100M": (PAPERS["vertices"], 2 * PAPERS["undirected_edges"]),
    }
    out = []
    for graph, (n, e) in shapes.items():
        h = halo[graph]
        hist = np.array(h["degree_hist"], dtype=np.float64)
        degrees = np.repeat(np.arange(hist.shape[0]), hist.astype(np.int64))
        for machines in (16, 64, 128):
            for per, parts, tasks in (
                ("machine", machines, machines),
                ("core", machines * 64, None),
            ):
                # halo per vertex from the degree law, scaled to the full graph's vertices
                nbytes = halo_rows(degrees, parts) / h["n"] * n * h["bytes_per_halo_row"]
                for gbps in (25.0, 200.0):
                    pred = predict(costs, n, e, nbytes, machines, 64, gbps, tasks)
                    out.append(
                        {
                            "graph": graph,
                            "machines": machines,
                            "cores": 64,
                            "per": per,
                            "partitions": parts,
                            "gbps": gbps,
                            "bytes": nbytes,
                            **pred,
                        }
                    )
                    log(
                        f"{model} {graph} {machines} × 64, a partition per {per} ({parts}), "
                        f"{gbps:g} Gbps: {pred['epoch']:.1f} s/epoch (work {pred['work']:.1f}, "
                        f"shuffle {pred['shuffle']:.1f}, net {pred['net']:.1f}, "
                        f"fixed {pred['fixed']:.1f})"
                    )
    return out


def render(report: dict[str, Any]) -> list[str]:
    """The validation and the projection as Markdown tables."""
    lines = [
        "| model | run | vertices | measured (s) | predicted (s) | error |",
        "|---|---|---|---|---|---|",
    ]
    for model, m in report["models"].items():
        for r in m["checks"]:
            lines.append(
                f"| {MODELS[model]} | {r['where']} | {r['n']:,} | {r['measured']:.2f} | "
                f"{r['predicted']:.2f} | {r['error']:+.0%} |"
            )
    lines += [
        "",
        "| model | graph | machines × cores | a partition per | Gbps | GB exchanged / epoch | "
        "epoch (s) | work | shuffle | network | fixed |",
        "|---|---|---|---|---|---|---|---|---|---|---|",
    ]
    for model, m in report["models"].items():
        for r in m["projections"]:
            lines.append(
                f"| {MODELS[model]} | {r['graph']} | {r['machines']} × {r['cores']} | "
                f"{r['per']} ({r['partitions']}) | {r['gbps']:g} | {r['bytes'] / 1e9:,.0f} | "
                f"{r['epoch']:.1f} | {r['work']:.1f} | {r['shuffle']:.1f} | {r['net']:.1f} | "
                f"{r['fixed']:.1f} |"
            )
    lines += ["", "| anchor | graph | machines | s / epoch | what |", "|---|---|---|---|---|"]
    lines += [f"| {a} | {g} | {m} | {s:g} | {w} |" for a, g, m, s, w in ANCHORS]
    return lines


def _measure_all(args: argparse.Namespace, model: str, log: Any) -> dict[str, Any]:
    """The fitting runs and the runs the fit does not see."""
    small, big = products_kwargs(args.scale), products_kwargs(args.check_scale)
    fitted = [_measure(model, small, p, args.epochs, CONCURRENT, log) for p in (2, 8)]
    checks = [_measure(model, small, p, args.epochs, CONCURRENT, log) for p in (4, 16)]
    checks.append(_measure(model, big, 4, args.epochs, CONCURRENT, log))
    if not args.no_cluster:
        checks.append({**_cluster_run(model, small, args.epochs, log), "cluster": True})
    return {"fitted": fitted, "runs": checks}


def _check(model: str, costs: Costs, m: dict[str, Any], log: Any) -> list[dict[str, Any]]:
    """Each run the fit did not see, measured and predicted."""
    rows = []
    for r in m["runs"]:
        cluster = bool(r.get("cluster"))
        machines, cores = (2, 1) if cluster else (1, CONCURRENT)
        pred = predict(costs, r["n"], r["edges"], _bytes(r), machines, cores, None)
        err = (pred["epoch"] - r["epoch"]) / r["epoch"]
        where = "standalone, 2 workers × 1 core" if cluster else f"local[2], P={r['parts']}"
        rows.append(
            {
                "where": where,
                "n": r["n"],
                "measured": r["epoch"],
                "predicted": pred["epoch"],
                "error": err,
            }
        )
        log(
            f"{model} {where} n={r['n']:,}: measured {r['epoch']:.2f} s, predicted "
            f"{pred['epoch']:.2f} s ({err:+.0%})"
        )
    return rows


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.cluster_model")
    ap.add_argument("--scale", type=float, default=0.02, help="products shape, fitting runs")
    ap.add_argument("--check-scale", type=float, default=0.05)
    ap.add_argument("--papers-scale", type=float, default=0.001)
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--models", default="sage,gcn")
    ap.add_argument("--no-cluster", action="store_true")
    ap.add_argument("--from-json", default=None, help="reuse the runs measured into this file")
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {msg}", flush=True)

    before = json.loads(Path(args.from_json).read_text()) if args.from_json else {"models": {}}
    report: dict[str, Any] = {"models": {}}
    for model in args.models.split(","):
        m = before["models"].get(model) or _measure_all(args, model, log)
        costs = fit(m["fitted"])
        m["costs"] = costs.as_dict()
        m["checks"] = _check(model, costs, m, log)
        m["halo"] = {
            "products": _halo(model, products_kwargs(args.scale), [8, 16, 64, 128]),
            "papers100M": _halo(model, papers_kwargs(args.papers_scale), [8, 16, 64, 128]),
        }
        for graph, h in m["halo"].items():
            for r in h["rows"]:
                log(
                    f"{model} {graph} P={r['parts']}: halo {r['halo']:,} rows (explain), "
                    f"{r['model_halo']:,.0f} (degrees), {h['bytes_per_halo_row']:,.0f} B/row"
                )
        m["projections"] = _project(model, costs, m["halo"], log)
        report["models"][model] = m
    report["anchors"] = ANCHORS
    if args.json:
        Path(args.json).write_text(json.dumps(report, indent=1, default=float))
    print("\n".join(render(report)))


if __name__ == "__main__":
    main()
