"""What ``exchange_dtype="bfloat16"`` does to accuracy: the same runs with float32 and with
bfloat16 exchanges, side by side.

    python -m bench.exchange_dtype [--datasets Cora,CiteSeer,sbm100k] [--seeds 0,1,2]
                                   [--epochs 200]

Per dataset and model (PyG's ``GCN`` and ``GraphSAGE``, 2 layers, hidden 16 on Planetoid and
128 on the SBM graph, dropout 0.5, Adam at lr 0.01 with weight decay 5e-4): the test accuracy
of the last epoch and at the best validation epoch, the mean over seeds (the seed sets the
initial weights and the dropout masks), for both dtypes, and the largest change over seeds.
On the local engine: an exchange's rounding is the same on both engines and every
partitioning (``tests/test_numerics.py``), so one engine says it all; 2 partitions, so that
rows do cross. Planetoid needs ``LOTAN_DATA_DIR`` (or the raw files in the cache).
"""

from __future__ import annotations

import argparse
import statistics
from typing import Any

import torch
from torch_geometric.nn.models import GCN, GraphSAGE

import lotan

MODELS = {"GCN": GCN, "GraphSAGE": GraphSAGE}


def _graph(name: str) -> lotan.Graph:
    if name == "sbm100k":
        return lotan.datasets.sbm(100_000, num_classes=16, num_features=128, avg_degree=20)
    return lotan.datasets.planetoid(name)


def _run(graph: lotan.Graph, model: str, seed: int, dtype: str, epochs: int) -> dict[str, float]:
    hidden = 128 if graph.num_vertices > 50_000 else 16
    torch.manual_seed(seed)
    net = MODELS[model](graph.num_features, hidden, 2, graph.num_classes, dropout=0.5)
    res = lotan.fit(
        net, graph, epochs=epochs, lr=0.01, weight_decay=5e-4, engine="local",
        num_partitions=2, seed=seed, exchange_dtype=dtype, progress=False,
    )  # fmt: skip
    return {"final": res.final.test_acc, "at_best_val": res.best("val_acc").test_acc}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--datasets", default="Cora,CiteSeer,sbm100k")
    ap.add_argument("--seeds", default="0,1,2")
    ap.add_argument("--epochs", type=int, default=200)
    args = ap.parse_args()
    seeds = [int(s) for s in args.seeds.split(",")]
    print(
        "| dataset | model | float32 final | bfloat16 final | float32 at best val | "
        "bfloat16 at best val | largest change |"
    )
    print("|---|---|---|---|---|---|---|")
    for name in args.datasets.split(","):
        graph = _graph(name)
        for model in MODELS:
            runs: dict[str, list[dict[str, Any]]] = {"float32": [], "bfloat16": []}
            for seed in seeds:
                for dtype in runs:
                    runs[dtype].append(_run(graph, model, seed, dtype, args.epochs))

            def mean(dtype: str, key: str, runs: dict[str, list[dict[str, Any]]] = runs) -> float:
                return statistics.mean(r[key] for r in runs[dtype])

            change = max(
                abs(a[k] - b[k])
                for a, b in zip(runs["float32"], runs["bfloat16"], strict=True)
                for k in ("final", "at_best_val")
            )
            print(
                f"| {name} | {model} | {mean('float32', 'final'):.4f} | "
                f"{mean('bfloat16', 'final'):.4f} | {mean('float32', 'at_best_val'):.4f} | "
                f"{mean('bfloat16', 'at_best_val'):.4f} | {change:.4f} |",
                flush=True,
            )


if __name__ == "__main__":
    main()
