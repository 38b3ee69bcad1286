"""Full-batch GCN epochs at scale: PyG (two configurations), Lotan local, Lotan Spark with
each partitioner — one run, each system in a fresh process — plus an out-of-core run.

    python -m bench.scale [--graphs sbm100k,sbm1m] [--epochs 5] [--partitions 2]
    python -m bench.scale --ooc [--limit-gb 3] [--ooc-graph sbm1m] [--ooc-partitions 8]

Model: ``GCN(128, 128, 2, 16)`` (dropout 0.5), Adam; epoch = forward + backward + step.
Systems:

- ``pyg``: ``GCNConv`` on ``edge_index`` (scatter-based message passing);
- ``pyg-best``: ``GCNConv(cached=True)`` on a ``torch.sparse`` CSR ``adj_t`` (the
  normalized adjacency computed once) — the fastest PyG configuration on CPU;
- ``lotan-local``: Lotan's local engine, one partition;
- ``lotan-spark[P,hash]`` / ``lotan-spark[P,label_propagation]``: the Spark engine,
  ``local[*]``, graph generated inside Spark.

Reported per system: first epoch (with preparation) and the median of the others, the ratio
to ``pyg-best``, peak RSS of every process (driver, JVM, Python workers: ``VmHWM``), and
for Lotan the task time by phase summed over tasks (``load``/``decode``/``encode``: moving
data in and out of Python; ``exchange``: assembling/splitting rows; ``spmm``; ``dense``),
with the rest of the epoch's wall time (Spark scheduling, shuffle, driver) as ``other``;
for Spark, the replication factor and skew of the partitioning.

``--ooc``: the same model on a larger graph with every Python process limited to
``--limit-gb`` of address space (``RLIMIT_AS``; on Spark through
``spark.executor.pyspark.memory``, which Spark applies the same way): PyG-best in one process
vs Lotan's Spark engine with more partitions. The JVM keeps its own heap limit
(``spark.driver.memory``) and spills shuffle data to disk.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import statistics
import subprocess
import sys
import time
from typing import Any

GRAPHS = {
    "sbm100k": {"num_vertices": 100_000, "avg_degree": 20.0},
    "sbm1m": {"num_vertices": 1_000_000, "avg_degree": 20.0},
    "sbm2m": {"num_vertices": 2_000_000, "avg_degree": 20.0},
}
FEATURES, HIDDEN, CLASSES = 128, 128, 16


def _peak_rss() -> dict[str, float]:
    """Peak RSS (GiB) of this process and every descendant still alive, by kind."""
    import psutil

    out: dict[str, float] = {}
    me = psutil.Process()
    for proc in [me, *me.children(recursive=True)]:
        try:
            with open(f"/proc/{proc.pid}/status") as fh:
                hwm = next(ln for ln in fh if ln.startswith("VmHWM:"))
            gib = int(hwm.split()[1]) / 2**20
            cmd = " ".join(proc.cmdline())
        except (OSError, StopIteration, psutil.Error):
            continue
        if proc.pid == me.pid:
            kind = "driver"
        elif "java" in cmd:
            kind = "jvm"
        elif "pyspark.daemon" in cmd or "pyspark/daemon" in cmd:  # forked workers too
            kind = "py-workers"
        else:
            kind = "py-worker"
        out[kind] = max(out.get(kind, 0.0), gib)
    return out


def _model() -> Any:
    import torch
    from torch_geometric.nn.models import GCN

    torch.manual_seed(0)
    return GCN(FEATURES, HIDDEN, 2, CLASSES, dropout=0.5)


def _graph(name: str, spark: Any = None) -> Any:
    import lotan

    spec = GRAPHS[name]
    return lotan.datasets.sbm(
        spec["num_vertices"],
        num_classes=CLASSES,
        num_features=FEATURES,
        avg_degree=spec["avg_degree"],
        seed=0,
        spark=spark,
    )


def _pyg(graph_name: str, epochs: int, best: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    import torch_geometric.transforms as T
    from torch_geometric.nn.models import GCN

    data = _graph(graph_name).to_pyg()
    torch.manual_seed(0)
    if best:
        data = T.ToSparseTensor(layout=torch.sparse_csr)(data)
        model = GCN(FEATURES, HIDDEN, 2, CLASSES, dropout=0.5, cached=True)
        adj = data.adj_t
    else:
        model = GCN(FEATURES, HIDDEN, 2, CLASSES, dropout=0.5)
        adj = data.edge_index
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        out = model(data.x, adj)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return {"times": times, "loss": loss.item()}


def _lotan(graph_name: str, epochs: int, engine: str, parts: int, partitioner: str) -> Any:
    import lotan

    spark = None
    if engine == "spark":
        from lotan.engines.spark.session import get_spark

        spark = get_spark()
    graph = _graph(graph_name, spark)
    start = time.perf_counter()
    result = lotan.fit(
        _model(),
        graph,
        epochs=epochs,
        lr=0.01,
        weight_decay=5e-4,
        engine=engine,
        num_partitions=parts,
        partitioner=partitioner,
        progress=False,
    )
    times = [r.seconds for r in result.history]
    times[0] = time.perf_counter() - start - sum(times[1:])  # preparation counts in epoch 1
    rest = result.history[1:] or result.history
    phases = {
        k: statistics.median(r.phases.get(k, 0.0) for r in rest)
        for k in ("load", "decode", "exchange", "spmm", "dense", "encode", "task")
    }
    out: dict[str, Any] = {"times": times, "loss": result.history[-1].loss, "phases": phases}
    text = lotan.explain(
        _model(),
        graph,
        engine=engine,
        num_partitions=parts,
        partitioner=partitioner,
        spark=spark,
        print_=False,
    )
    out["partitioning"] = next(ln for ln in text.splitlines() if ln.startswith("partitions "))
    out["exchanged"] = next(ln for ln in text.splitlines() if ln.startswith("per epoch"))
    return out


def _worker(args: argparse.Namespace) -> None:
    if args.limit_gb:
        limit = int(args.limit_gb * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    system = args.worker
    try:
        if system.startswith("pyg"):
            res = _pyg(args.graph, args.epochs, best=system == "pyg-best")
        elif system == "lotan-local":
            res = _lotan(args.graph, args.epochs, "local", 1, "hash")
        else:
            res = _lotan(args.graph, args.epochs, "spark", args.partitions, args.partitioner)
        res["ok"] = True
    except (MemoryError, RuntimeError) as exc:  # torch reports OOM as RuntimeError
        res = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:160]}"}
    res["rss_gib"] = _peak_rss()
    print("RESULT " + json.dumps(res), flush=True)


def _run(system: str, graph: str, args: argparse.Namespace, **extra: Any) -> dict[str, Any]:
    cmd = [sys.executable, "-m", "bench.scale", "--worker", system, "--graph", graph]
    cmd += ["--epochs", str(args.epochs), "--partitions", str(extra.get("parts", args.partitions))]
    cmd += ["--partitioner", extra.get("partitioner", "hash")]
    env = dict(os.environ)
    if extra.get("limit_gb"):
        if system.startswith("lotan-spark"):
            gb = extra["limit_gb"]
            env["PYSPARK_SUBMIT_ARGS"] = (
                f"--conf spark.executor.pyspark.memory={int(gb * 1024)}m pyspark-shell"
            )
        else:
            cmd += ["--limit-gb", str(extra["limit_gb"])]
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[len("RESULT ") :])
            return res
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"ok": False, "error": f"exit {proc.returncode}: {' | '.join(tail)[:300]}"}


def _report(system: str, res: dict[str, Any], base: float | None) -> None:
    rss = ", ".join(f"{k} {v:.2f}" for k, v in sorted(res.get("rss_gib", {}).items()))
    if not res.get("ok"):
        print(f"  {system:34s} FAILED: {res.get('error')}   peak RSS GiB: {rss}")
        return
    times = res["times"]
    med = statistics.median(times[1:]) if len(times) > 1 else times[0]
    ratio = f"x{med / base:5.2f} vs pyg-best" if base else ""
    print(
        f"  {system:34s} first {times[0]:8.2f}s  median {med:7.3f}s  {ratio}  "
        f"loss {res['loss']:.4f}   peak RSS GiB: {rss}"
    )
    if "phases" in res:
        ph = res["phases"]
        cores = 1
        if system.startswith("lotan-spark"):
            cores = min(os.cpu_count() or 1, int(system.split("[")[1].split(",")[0]))
        other = med - ph["task"] / cores
        parts = "  ".join(f"{k} {ph[k]:.3f}" for k in ("load", "decode", "exchange"))
        parts += "  " + "  ".join(f"{k} {ph[k]:.3f}" for k in ("spmm", "dense", "encode"))
        print(f"      task seconds by phase: {parts}  | other (per epoch) {other:.3f}")
        print(f"      {res['partitioning']}")
        print(f"      {res['exchanged']}")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", default="sbm100k,sbm1m")
    ap.add_argument("--epochs", type=int, default=5)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--partitioners", default="hash,label_propagation")
    ap.add_argument("--systems", default="pyg,pyg-best,lotan-local,lotan-spark")
    ap.add_argument("--ooc", action="store_true", help="run the out-of-core comparison")
    ap.add_argument("--ooc-graph", default="sbm1m")
    ap.add_argument("--ooc-partitions", type=int, default=8)
    ap.add_argument("--limit-gb", type=float, default=None)
    ap.add_argument("--json", default=None)
    # internal: run one system in this process
    ap.add_argument("--worker", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--graph", default=None, help=argparse.SUPPRESS)
    ap.add_argument("--partitioner", default="hash", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.worker:
        _worker(args)
        return
    import torch

    print(
        f"machine: {platform.machine()}, {os.cpu_count()} cores, "
        f"{os.sysconf('SC_PAGE_SIZE') * os.sysconf('SC_PHYS_PAGES') / 2**30:.0f} GiB; "
        f"torch {torch.__version__}; model GCN({FEATURES}, {HIDDEN}, 2, {CLASSES}), Adam"
    )
    results: list[dict[str, Any]] = []
    if args.ooc:
        limit = args.limit_gb or 3.0
        print(f"\nout-of-core: {args.ooc_graph}, every Python process limited to {limit} GiB")
        for system, extra in (
            ("pyg-best", {}),
            (f"lotan-spark[{args.ooc_partitions},hash]", {"parts": args.ooc_partitions}),
        ):
            res = _run(system, args.ooc_graph, args, limit_gb=limit, **extra)
            _report(system, res, None)
            results.append({"graph": args.ooc_graph, "system": system, "limit_gb": limit, **res})
    else:
        wanted = args.systems.split(",")
        for graph in args.graphs.split(","):
            print(f"\n{graph}: {GRAPHS[graph]}")
            base = None
            runs: list[tuple[str, dict[str, Any]]] = []
            if "pyg" in wanted:
                runs.append(("pyg", {}))
            if "pyg-best" in wanted:
                runs.append(("pyg-best", {}))
            if "lotan-local" in wanted:
                runs.append(("lotan-local", {}))
            if "lotan-spark" in wanted:
                for p in args.partitioners.split(","):
                    runs.append((f"lotan-spark[{args.partitions},{p}]", {"partitioner": p}))
            for system, extra in runs:
                res = _run(system, graph, args, **extra)
                if system == "pyg-best" and res.get("ok"):
                    base = statistics.median(res["times"][1:])
                _report(system, res, base)
                results.append({"graph": graph, "system": system, **res})
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(results, fh, indent=2)


if __name__ == "__main__":
    main()
