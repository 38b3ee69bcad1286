"""Lotan's aggregation kernel against MKL's CSR × dense product (what ``torch.sparse`` runs),
same matrices, same run.

    python -m bench.kernels [--rows 100000] [--edges 2000000] [--widths 1,16,64,128]

Two graphs — uniform in-degrees, and power-law in-degrees (row ``i`` drawn with probability
``∝ i^-0.9``, one hub holding a few percent of the edges) — at 1 thread (a Spark task) and at
every core (the local engine). MKL runs in blocks of 16 columns past 16, the way Lotan ran it
before it had a kernel of its own (whole wide products were slower). Prints milliseconds per
product (median of 7) and the ratio Lotan ÷ MKL, and whether a column slice of the product
equals the product of the slice, bit for bit, for each kernel.
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time
import warnings
from collections.abc import Callable

import numpy as np
import torch

from lotan.graph_engine.kernels import spmm

warnings.filterwarnings("ignore", message=".*Sparse.*")


def _graph(rows: int, edges: int, kind: str) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(0)
    if kind == "uniform":
        dst = rng.integers(0, rows, edges)
    else:
        p = 1.0 / np.arange(1, rows + 1) ** 0.9
        dst = rng.choice(rows, edges, p=p / p.sum())
    dst.sort()
    indptr = np.zeros(rows + 1, np.int64)
    np.cumsum(np.bincount(dst, minlength=rows), out=indptr[1:])
    return indptr, rng.integers(0, rows, edges).astype(np.int32), rng.random(edges, np.float32)


def _ms(fn: Callable[[], object]) -> float:
    fn()
    times = []
    for _ in range(7):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times) * 1e3


def _mkl(a: torch.Tensor, h: torch.Tensor) -> torch.Tensor:
    if h.shape[1] <= 16:
        return a @ h
    return torch.cat([a @ h[:, lo : lo + 16].contiguous() for lo in range(0, h.shape[1], 16)], 1)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rows", type=int, default=100_000)
    ap.add_argument("--edges", type=int, default=2_000_000)
    ap.add_argument("--widths", default="1,4,16,64,128")
    args = ap.parse_args()
    cores = os.cpu_count() or 1
    print(
        f"machine: {platform.processor() or platform.machine()}, {cores} cores; "
        f"torch {torch.__version__}"
    )
    print(f"{args.rows} rows, {args.edges} edges")
    print(
        f"{'threads':>7} {'graph':>8} {'width':>5} {'mkl ms':>8} {'lotan ms':>9} {'ratio':>6}"
        "  slice exact (mkl, lotan)"
    )
    for threads in sorted({1, cores}):
        torch.set_num_threads(threads)
        for kind in ("uniform", "power"):
            indptr, cols, w = _graph(args.rows, args.edges, kind)
            a = torch.sparse_csr_tensor(
                torch.from_numpy(indptr),
                torch.from_numpy(cols.astype(np.int64)),
                torch.from_numpy(w),
                size=(args.rows, args.rows),
            )
            for width in (int(x) for x in args.widths.split(",")):
                h = torch.randn(args.rows, width)
                mkl = _ms(lambda: _mkl(a, h))  # noqa: B023
                ours = _ms(lambda: spmm(indptr, cols, w, h))  # noqa: B023
                col = h[:, :1].contiguous()
                exact = (
                    torch.equal(_mkl(a, col), _mkl(a, h)[:, :1]),
                    torch.equal(spmm(indptr, cols, w, col), spmm(indptr, cols, w, h)[:, :1]),
                )
                print(
                    f"{threads:>7} {kind:>8} {width:>5} {mkl:8.1f} {ours:9.1f} "
                    f"{ours / mkl:6.2f}  {exact}"
                )


if __name__ == "__main__":
    main()
