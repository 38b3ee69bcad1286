"""Dense programs: the per-vertex work between two aggregations, run in PyTorch.

A :class:`DenseProgram` is data — a tuple of :class:`DenseOp` descriptors — so that the
planner can build, fuse and ship it, and any task can run it. Forward runs without autograd;
backward *recomputes* the forward from the saved input with autograd on and back-propagates
the incoming gradient, returning the gradient of the input and of every parameter used. The
dropout mask is drawn from a seed, so the recomputation sees the same mask as the forward pass.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "DenseOp", "DenseProgram", "mix_seed"]

#: Activations a dense op can apply: name -> function of (tensor, negative_slope).
ACTIVATIONS = {
    "relu": lambda x, _: F.relu(x),
    "leaky_relu": lambda x, slope: F.leaky_relu(x, slope),
    "elu": lambda x, _: F.elu(x),
    "gelu": lambda x, _: F.gelu(x),
    "tanh": lambda x, _: torch.tanh(x),
    "identity": lambda x, _: x,
}


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. base seed, epoch, layer, partition), stable across
    processes and platforms."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True)
class DenseOp:
    """One dense operation.

    Attributes
    ----------
    kind : ``linear`` (``x @ Wᵀ``), ``bias`` (``x + b``), ``act`` or ``dropout``.
    param : parameter name for ``linear`` / ``bias``.
    act : activation name for ``act`` (a key of :data:`ACTIVATIONS`).
    negative_slope : for ``leaky_relu``.
    p : dropout probability for ``dropout``.
    """

    kind: Literal["linear", "bias", "act", "dropout"]
    param: str | None = None
    act: str | None = None
    negative_slope: float = 0.01
    p: float = 0.0


@dataclass(frozen=True)
class DenseProgram:
    """A sequence of dense ops applied row-wise to a ``(rows, in_width)`` tensor."""

    ops: tuple[DenseOp, ...] = ()

    def then(self, other: DenseProgram) -> DenseProgram:
        """This program followed by ``other`` (fusion of adjacent dense work)."""
        return DenseProgram(self.ops + other.ops)

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(op.param for op in self.ops if op.param is not None)

    @property
    def has_dropout(self) -> bool:
        return any(op.kind == "dropout" and op.p > 0 for op in self.ops)

    def _apply(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, train: bool, seed: int
    ) -> torch.Tensor:
        for i, op in enumerate(self.ops):
            if op.kind == "linear":
                x = x @ params[str(op.param)].t()
            elif op.kind == "bias":
                x = x + params[str(op.param)]
            elif op.kind == "act":
                x = ACTIVATIONS[str(op.act)](x, op.negative_slope)
            elif op.kind == "dropout":
                if train and op.p > 0:
                    gen = torch.Generator().manual_seed(mix_seed(seed, i))
                    keep = torch.rand(x.shape, generator=gen, dtype=torch.float32) >= op.p
                    x = x * keep.to(x.dtype) / (1.0 - op.p)
            else:  # pragma: no cover - DenseOp.kind is a closed set
                raise ValueError(f"unknown dense op {op.kind!r}")
        return x

    def forward(
        self, params: Mapping[str, torch.Tensor], x: torch.Tensor, *, train: bool, seed: int = 0
    ) -> torch.Tensor:
        """Apply the program (no autograd)."""
        with torch.no_grad():
            return self._apply(params, x, train, seed)

    def backward(
        self,
        params: Mapping[str, torch.Tensor],
        x: torch.Tensor,
        grad_out: torch.Tensor,
        *,
        train: bool,
        seed: int = 0,
        input_grad: bool = True,
    ) -> tuple[torch.Tensor | None, dict[str, torch.Tensor]]:
        """Gradients of ``<grad_out, program(x)>`` w.r.t. ``x`` and the parameters used."""
        names = list(dict.fromkeys(self.param_names))
        leaves = {n: params[n].detach().requires_grad_(True) for n in names}
        xin = x.detach().requires_grad_(input_grad)
        with torch.enable_grad():
            out = self._apply(leaves, xin, train, seed)
            inputs = ([xin] if input_grad else []) + [leaves[n] for n in names]
            if not inputs:
                return None, {}
            grads = torch.autograd.grad(out, inputs, grad_out, allow_unused=True)
        gx = grads[0] if input_grad else None
        pg = grads[1:] if input_grad else grads
        param_grads = {
            n: (g if g is not None else torch.zeros_like(leaves[n]))
            for n, g in zip(names, pg, strict=True)
        }
        if gx is None and input_grad:
            gx = torch.zeros_like(xin)
        return gx, param_grads
