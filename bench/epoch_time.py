"""Seconds per full-batch GCN epoch: plain PyG vs Lotan's local and Spark engines, one run.

    python -m bench.epoch_time [--graphs cora,sbm100k] [--epochs 6] [--partitions 2]

Each system trains the same model from the same weights; the first epoch (warm-up, and for
Lotan the graph preparation, which is cached) is reported apart, the rest as a median.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import platform
import statistics
import time
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch_geometric.nn.models import GCN

import lotan


def _graph(name: str) -> tuple[lotan.Graph, int, int]:
    """The graph, hidden width and output width."""
    if name == "cora":
        g = lotan.datasets.planetoid("Cora")
        return g, 16, g.num_classes
    if name == "sbm100k":
        g = lotan.datasets.sbm(100_000, num_classes=16, num_features=128, avg_degree=20, seed=0)
        return g, 128, 16
    raise SystemExit(f"unknown graph {name!r}")


def _pyg(model: torch.nn.Module, graph: lotan.Graph, epochs: int) -> list[float]:
    data = graph.to_pyg()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=5e-4)
    times = []
    for _ in range(epochs):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    return times


def _lotan(engine: str, parts: int) -> Callable[[torch.nn.Module, lotan.Graph, int], list[float]]:
    def run(model: torch.nn.Module, graph: lotan.Graph, epochs: int) -> list[float]:
        start = time.perf_counter()
        result = lotan.fit(
            model,
            graph,
            epochs=epochs,
            lr=0.01,
            weight_decay=5e-4,
            engine=engine,
            num_partitions=parts,
            progress=False,
        )
        times = [r.seconds for r in result.history]
        # The first epoch's record excludes preparation; report it inside epoch 1.
        times[0] = time.perf_counter() - start - sum(times[1:])
        return times

    return run


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--graphs", default="cora,sbm100k")
    ap.add_argument("--epochs", type=int, default=6)
    ap.add_argument("--partitions", type=int, default=2)
    ap.add_argument("--json", default=None, help="write the results here too")
    args = ap.parse_args()
    print(
        f"machine: {platform.processor() or platform.machine()}, {os.cpu_count()} cores; "
        f"torch {torch.__version__}, lotan {lotan.__version__}"
    )
    rows = []
    for name in args.graphs.split(","):
        graph, hidden, out = _graph(name)
        torch.manual_seed(0)
        model = GCN(graph.num_features, hidden, 2, out, dropout=0.5)
        print(f"\n{graph}")
        systems = {
            "pyg": _pyg,
            "lotan-local": _lotan("local", 1),
            f"lotan-spark[{args.partitions}]": _lotan("spark", args.partitions),
        }
        base = None
        for system, fn in systems.items():
            times = fn(copy.deepcopy(model), graph, args.epochs)
            med = statistics.median(times[1:])
            base = base or med
            rows.append(
                {
                    "graph": name,
                    "system": system,
                    "first_epoch_s": times[0],
                    "median_epoch_s": med,
                    "ratio_vs_pyg": med / base,
                }
            )
            print(
                f"  {system:18s} first epoch {times[0]:8.3f}s   median epoch {med:8.3f}s   "
                f"x{med / base:6.1f} vs PyG"
            )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
