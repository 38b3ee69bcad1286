"""The dense side of the normalizations whose statistics span the graph.

Each op normalizes a partition's rows ``x`` by statistics ``m = [mean; var]`` (column means
and biased variances over every vertex, or BatchNorm's running statistics in evaluation),
which the planner computes across partitions (a ``moments`` node). Autograd gives the
gradient of ``m`` too: this partition's share, which the planner sums over partitions.

BatchNorm, the common case, is one fused op: :class:`_BatchNorm` runs torch's batch-norm
kernel forward (elementwise: no reduction) and its own backward, whose two column sums
(``Σ g`` and ``Σ g · (x - mean)``) are a Numba loop in row order with float64 accumulators —
the same bits with any thread count and on every CPU, which torch's fused backward kernel
does not promise (its per-thread partial sums follow the thread count: a Spark task with one
thread and the local engine with two gave different bits). The same formula as separate
torch ops makes a full-size temporary per op: ``python -m bench.norm_op`` measured 0.350 s
forward and backward at 169,343 × 256 for those, 0.119 s for this op (2-core Intel Xeon).
"""

from __future__ import annotations

from typing import Any

import numba
import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["column_sums", "normalize"]


@numba.njit(nogil=True, cache=True, fastmath=False, boundscheck=False)
def _column_sums(g: np.ndarray, x: np.ndarray, mean: np.ndarray) -> tuple[np.ndarray, ...]:
    n, c = g.shape
    sg = np.zeros(c, dtype=np.float64)
    sgx = np.zeros(c, dtype=np.float64)
    for i in range(n):
        for j in range(c):
            gij = np.float64(g[i, j])
            sg[j] += gij
            sgx[j] += gij * (np.float64(x[i, j]) - mean[j])
    return sg, sgx


def column_sums(
    g: torch.Tensor, x: torch.Tensor, mean: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """``(Σ_i g_i, Σ_i g_i · (x_i - mean))`` per column, summed in row order in float64,
    returned as float32 on ``g``'s device."""
    sg, sgx = _column_sums(
        np.ascontiguousarray(g.detach().cpu().numpy(), dtype=np.float32),
        np.ascontiguousarray(x.detach().cpu().numpy(), dtype=np.float32),
        mean.detach().cpu().numpy().astype(np.float64),
    )
    return (
        torch.from_numpy(sg.astype(np.float32)).to(g.device),
        torch.from_numpy(sgx.astype(np.float32)).to(g.device),
    )


class _BatchNorm(torch.autograd.Function):
    """``(x - mean) / sqrt(var + eps) · w`` for given statistics ``m = [mean; var]``.

    Backward, with ``invstd = 1 / sqrt(var + eps)``: ``∂x = g · w · invstd``,
    ``∂w = invstd · Σ g (x - mean)``, ``∂mean = -w · invstd · Σ g`` and
    ``∂var = -½ · w · invstd³ · Σ g (x - mean)``."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, m: torch.Tensor, weight: torch.Tensor | None, eps: float
    ) -> torch.Tensor:
        w = weight if weight is not None else torch.ones_like(m[0])
        ctx.save_for_backward(x, m, w)
        ctx.eps = eps
        return F.batch_norm(x, m[0], m[1], w, None, False, 0.0, eps)

    @staticmethod
    def backward(ctx: Any, g: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        x, m, w = ctx.saved_tensors
        need_x, need_m, need_w, _ = ctx.needs_input_grad
        invstd = torch.rsqrt(m[1] + ctx.eps)
        gx = g * (w * invstd) if need_x else None
        if not (need_m or need_w):
            return gx, None, None, None
        sg, sgx = column_sums(g, x, m[0])
        dm = torch.stack([-w * invstd * sg, -0.5 * w * invstd**3 * sgx]) if need_m else None
        return gx, dm, invstd * sgx if need_w else None, None


def normalize(
    op: str,
    x: torch.Tensor,
    m: torch.Tensor,
    weight: torch.Tensor | None,
    eps: float,
    factor: float = 1.0,
) -> torch.Tensor:
    """``batch_norm``, ``graph_norm``, ``pair_norm`` or ``pair_norm_rows`` of ``x`` given the
    statistics ``m`` (see :mod:`lotan.ir.ops`), times ``weight`` when
    given."""
    mean, var = m[0], m[1]
    if op == "batch_norm":
        out: torch.Tensor = _BatchNorm.apply(x, m, weight, eps)
        return out
    if op == "graph_norm":
        mu = mean.mean()
        sigma = (var + (mean - mu) ** 2).mean().sqrt()
        out = (x - mu) / (sigma + eps)
    elif op == "pair_norm":
        out = factor * (x - mean) / (eps + var.sum()).sqrt()
    else:
        centred = x - mean
        out = factor * centred / (eps + centred.norm(2, -1, keepdim=True))
    return out * weight if weight is not None else out
