"""Epoch time with each planner rule on and off, same run.

    python -m bench.planner_rules [--engine local|spark] [--epochs 4] [--partitions 4]

GCN 3x256 (hidden 256, 3 layers, 16 classes) on the synthetic 100k-vertex / ~2M-edge SBM
graph with 128 features. Reports the median epoch (epochs after the first) and its ratio to
all rules on.
"""

from __future__ import annotations

import argparse
import copy
import json
import statistics
import time

import torch
from torch_geometric.nn.models import GCN

import lotan

CONFIGS = {
    "all rules": lotan.PlannerFlags(),
    "no reorder": lotan.PlannerFlags(reorder=False),
    "no cache_constants": lotan.PlannerFlags(cache_constants=False),
    "no cache, no prune": lotan.PlannerFlags(cache_constants=False, prune_constant_gradients=False),
    "no fuse": lotan.PlannerFlags(fuse=False),
    "no rules": lotan.PlannerFlags(False, False, False, False),
}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--engine", default="local")
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--partitions", type=int, default=4)
    ap.add_argument("--vertices", type=int, default=100_000)
    ap.add_argument("--json", default=None)
    args = ap.parse_args()
    graph = lotan.datasets.sbm(args.vertices, num_classes=16, num_features=128, avg_degree=20)
    torch.manual_seed(0)
    model = GCN(128, 256, 3, 16)
    print(graph, f"engine={args.engine} partitions={args.partitions}")
    lotan.explain(model, graph, engine=args.engine, num_partitions=args.partitions)
    rows = []
    base = None
    for name, flags in CONFIGS.items():
        start = time.perf_counter()
        res = lotan.fit(
            copy.deepcopy(model),
            graph,
            epochs=args.epochs,
            engine=args.engine,
            num_partitions=args.partitions,
            progress=False,
            planner=flags,
        )
        total = time.perf_counter() - start
        med = statistics.median(r.seconds for r in res.history[1:])
        base = base or med
        rows.append(
            {
                "config": name,
                "median_epoch_s": med,
                "ratio": med / base,
                "total_s": total,
                "final_loss": res.history[-1].loss,
            }
        )
        print(
            f"  {name:20s} median epoch {med:7.3f}s  x{med / base:5.2f}  "
            f"(run {total:6.1f}s incl. preparation, loss {res.history[-1].loss:.4f})",
            flush=True,
        )
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=2)


if __name__ == "__main__":
    main()
