"""The quickstart job: Kipf & Welling's GCN on a Planetoid graph, through Spark local mode.

``python -m lotan.quickstart`` trains a 2-layer GCN (16 hidden, dropout 0.5, Adam lr 0.01,
weight decay 5e-4, 200 epochs) on Cora, prints one line per epoch and the final test accuracy.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Sequence

import torch

import lotan

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m lotan.quickstart", description=__doc__)
    p.add_argument("--dataset", default="Cora", help="Cora, CiteSeer or PubMed")
    p.add_argument("--root", default=None, help="data folder (default: $LOTAN_DATA_DIR)")
    p.add_argument("--engine", default="spark", choices=["spark", "local"])
    p.add_argument("--epochs", type=int, default=200)
    p.add_argument("--hidden", type=int, default=16)
    p.add_argument("--dropout", type=float, default=0.5)
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--weight-decay", type=float, default=5e-4)
    p.add_argument("--partitions", type=int, default=None)
    p.add_argument("--seed", type=int, default=0)
    return p


def main(argv: Sequence[str] | None = None) -> lotan.FitResult:
    from torch_geometric.nn.models import GCN

    args = _parser().parse_args(argv)
    graph = lotan.datasets.planetoid(args.dataset, root=args.root)
    print(graph, flush=True)
    torch.manual_seed(args.seed)
    model = GCN(graph.num_features, args.hidden, 2, graph.num_classes, dropout=args.dropout)
    start = time.perf_counter()
    result = lotan.fit(
        model,
        graph,
        epochs=args.epochs,
        optimizer="adam",
        lr=args.lr,
        weight_decay=args.weight_decay,
        engine=args.engine,
        num_partitions=args.partitions,
        seed=args.seed,
    )
    seconds = time.perf_counter() - start
    epoch_times = sorted(r.seconds for r in result.history)
    print(
        f"{args.dataset} ({args.engine} engine, {result.num_partitions} partitions): "
        f"{seconds:.1f}s in all, median epoch {epoch_times[len(epoch_times) // 2]:.3f}s"
    )
    print(f"final test accuracy: {result.final.test_acc:.4f}", flush=True)
    return result


if __name__ == "__main__":
    main()
