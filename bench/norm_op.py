"""BatchNorm's dense op forward and backward at the arxiv-shaped size: Lotan's fused op
(:mod:`lotan.nn_engine.norms`) against the same formula as separate torch ops.

``python -m bench.norm_op`` prints the median of 5 runs of each (after one warm-up).
"""

from __future__ import annotations

import statistics
import time

import torch

from lotan.nn_engine.norms import normalize

ROWS, COLS = 169_343, 256


def main() -> None:
    torch.manual_seed(0)
    x, g, w = torch.randn(ROWS, COLS), torch.randn(ROWS, COLS), torch.randn(COLS)
    m = torch.stack([x.mean(0), x.var(0, unbiased=False)])

    def fused() -> float:
        xs, ms, ws = (t.clone().requires_grad_(True) for t in (x, m, w))
        start = time.perf_counter()
        normalize("batch_norm", xs, ms, ws, 1e-5).backward(g)
        return time.perf_counter() - start

    def separate() -> float:
        xs, ms, ws = (t.clone().requires_grad_(True) for t in (x, m, w))
        start = time.perf_counter()
        ((xs - ms[0]) * torch.rsqrt(ms[1] + 1e-5) * ws).backward(g)
        return time.perf_counter() - start

    for name, fn in (("fused", fused), ("separate ops", separate)):
        fn()
        secs = statistics.median(fn() for _ in range(5))
        print(f"{name}: {secs:.3f} s forward + backward at {ROWS:,} x {COLS}")


if __name__ == "__main__":
    main()
