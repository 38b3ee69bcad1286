"""The products-scale run: the OGB full-batch GraphSAGE on a graph of ``ogbn-products``'
shape (:data:`bench.graphs.PRODUCTS`: 2.45M vertices, ~124M directed edges), on this one
machine, next to PyG and DGL in the same run.

Model: OGB's ``examples/nodeproppred/products`` full-batch ``SAGE`` — 3 ``SAGEConv`` layers
(mean), hidden 256, ReLU, dropout 0.5, Adam lr 0.01 — as PyG's ``GraphSAGE(100, 256, 3,
47)``. Each system runs in a fresh process (:func:`bench.suite.measure`):

- ``pyg-csr`` (PyG's best configuration on CPU: ``SAGEConv`` on a cached ``torch.sparse``
  CSR ``adj_t``, no per-edge messages) and ``dgl`` (``SAGEConv('mean')``, DGL's fused
  SpMM), each under the same address-space limit (``limit_gb``): completed, or out of memory
  with the peak RSS it reached;
- ``lotan-spark``: the graph generated inside Spark (:func:`lotan.datasets.sbm` with
  ``spark=``; the driver never holds it), ``partitions`` partitions, ``epochs`` epochs; the
  peak RSS of each process kind (the driver, the JVM, the Python workers), the GiB Spark
  wrote to shuffle files and spilled (:func:`bench.systems.spark_io`), preparation and
  epoch time. Like the peers' timing loops, its epochs measure no accuracies (no
  evaluation stream); the accuracies are measured once, after the last epoch.

    python -m bench run --suite full --only products       # the full shape, in the suite
    python -m bench.products --scale 0.05 --partitions 4    # the same shape at 5 %, alone
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench.graphs import PRODUCTS, products_kwargs, write_graph

__all__ = ["SAGE", "render", "run"]

#: OGB's products full-batch GraphSAGE.
SAGE = {
    "model": "sage",
    "hidden": 256,
    "layers": 3,
    "dropout": 0.5,
    "lr": 0.01,
    "weight_decay": 0.0,
    "task": "epochs",
}


def _graph_name(scale: float) -> str:
    return "products_like" if scale == 1 else f"products_like@{scale:g}"


def run(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """The peers on the ``.npz`` graph, then Lotan's Spark engine on the same graph
    generated inside Spark."""
    from bench.suite import measure

    scale = cfg.get("scale", 1.0)
    name = _graph_name(scale)
    out = []
    for system in cfg["systems"]:
        spec: dict[str, Any] = {"system": system, **SAGE, "epochs": cfg["epochs"]}
        spec["timeout"] = cfg.get("timeout", 3 * 3600)
        if system == "lotan-spark":
            spec["generate"] = products_kwargs(scale)
            spec["graph"] = name
            spec["partitions"] = cfg["partitions"]
            spec["partitioner"] = cfg.get("partitioner", "hash")
            spec["spark_conf"] = cfg.get("spark_conf", {})
            spec["spark_io"] = True
            spec["measure"] = False  # as the peers' timing loops: accuracies at the end only
        else:
            spec["graph"] = str(write_graph(name, data))
            spec["limit_gb"] = cfg["limit_gb"]
        res = measure(spec, dgl)
        log(f"products {name} {system}: {_outcome(res)}")
        out.append({"experiment": "products", "graph": name, "system": system, **res})
    return out


def _outcome(res: dict[str, Any]) -> str:
    rss = res.get("rss_gib", {})
    mem = ", ".join(f"{k} {v:.1f} GiB" for k, v in sorted(rss.items()))
    if not res.get("ok"):
        return f"did not complete ({res.get('error')}); peak RSS {mem}"
    return f"completed, epoch {res['epoch']:.1f} s; peak RSS {mem}"


def _tasks(cfg: dict[str, Any]) -> str:
    cpus = int(cfg.get("spark_conf", {}).get("spark.task.cpus", 1))
    if cpus == 1:
        return "a task per core"
    return f"{cpus} cores per task (`spark.task.cpus={cpus}`: fewer tasks at once, less memory)"


def render(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    """The products-scale section of ``report.md``."""
    rows = [r for r in records if r["experiment"] == "products"]
    if not rows:
        return []
    cfg = config.get("products", {})
    kw = products_kwargs(cfg.get("scale", 1.0))
    lines = [
        "## Products scale: OGB GraphSAGE on an ogbn-products-shaped graph",
        "",
        f"`{rows[0]['graph']}`: {kw['num_vertices']:,} vertices, a mean of "
        f"{kw['avg_degree']:.1f} neighbours (~{kw['num_vertices'] * kw['avg_degree'] / 1e6:.0f}M "
        f"directed edges), {PRODUCTS['features']} features, {PRODUCTS['classes']} classes; "
        f"degree-corrected SBM, power-law expected degrees (exponent "
        f"{kw['degree_exponent']}, largest {kw['max_degree']:,.0f}). OGB's full-batch "
        f"GraphSAGE: 3 × 256, dropout 0.5, Adam. Peers under a {cfg.get('limit_gb')} GiB "
        f"address-space limit; Lotan on Spark `local[*]` with {cfg.get('partitions')} "
        f"partitions ({cfg.get('partitioner', 'hash')}), {_tasks(cfg)}, the graph generated "
        "inside Spark; its epochs measure no accuracies (as the peers' timing loops). "
        f"{cfg.get('epochs')} epochs; epoch = median of epochs 2.., preparation = first "
        "epoch's wall time less its training (graph generation, partitioning, the cached "
        "first-layer aggregation).",
        "",
        "| system | outcome | epoch (s) | preparation (s) | peak RSS (GiB) | shuffle written / "
        "spilled to disk (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    for r in rows:
        rss = ", ".join(f"{k} {v:.1f}" for k, v in sorted(r.get("rss_gib", {}).items()))
        io = r.get("spark_io") or {}
        disk = f"{io['shuffle_write_gib']:.1f} / {io['disk_spill_gib']:.1f}" if io else ""
        if not r.get("ok"):
            lines.append(f"| {r['system']} | did not complete: {r.get('error')} | | | {rss} | |")
            continue
        prep = f"{r['preparation_s']:.0f}" if "preparation_s" in r else ""
        lines.append(f"| {r['system']} | completed | {r['epoch']:.1f} | {prep} | {rss} | {disk} |")
    return [*lines, ""]


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench.products")
    ap.add_argument("--scale", type=float, default=1.0, help="fraction of the vertices")
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--partitioner", default="hash")
    ap.add_argument("--epochs", type=int, default=3)
    ap.add_argument("--task-cpus", type=int, default=1, help="spark.task.cpus of Lotan's run")
    ap.add_argument("--limit-gb", type=float, default=20)
    ap.add_argument("--systems", default="pyg-csr,dgl,lotan-spark")
    ap.add_argument("--data", default="/tmp/lotan-bench-data")
    ap.add_argument("--json", default=None, help="write the records here")
    args = ap.parse_args()
    from bench.dgl_env import dgl_python

    systems = args.systems.split(",")
    cfg = {
        "systems": systems,
        "epochs": args.epochs,
        "partitions": args.partitions,
        "partitioner": args.partitioner,
        "limit_gb": args.limit_gb,
        "scale": args.scale,
        "spark_conf": {"spark.task.cpus": str(args.task_cpus)},
    }
    dgl = dgl_python() if "dgl" in systems and dgl_python().exists() else None
    start = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - start:6.0f} s] {msg}", flush=True)

    records = run(cfg, Path(args.data), dgl, log)
    if args.json:
        Path(args.json).write_text(json.dumps(records, indent=1))
    print("\n".join(render(records, {"products": cfg})))


if __name__ == "__main__":
    main()
