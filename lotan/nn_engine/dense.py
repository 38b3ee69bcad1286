"""Dense graphs: the per-vertex work between two exchanges, run in PyTorch.

A :class:`DenseGraph` is data — :class:`DenseNode` descriptors in topological order — so that
the planner can build, fuse and ship it, and any task can run it. Forward runs without
autograd; backward *recomputes* the forward from the saved inputs with autograd on and
back-propagates the incoming output gradients, returning the gradients of the inputs asked
for and of every parameter used. Dropout masks are drawn from a seed and the node id, so the
recomputation sees the same masks as the forward pass.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Literal

import numpy as np
import torch
import torch.nn.functional as F

__all__ = ["ACTIVATIONS", "DenseGraph", "DenseNode", "mix_seed"]

#: Activations a dense node can apply: name -> function of (tensor, negative_slope).
ACTIVATIONS = {
    "relu": lambda x, _: F.relu(x),
    "leaky_relu": lambda x, slope: F.leaky_relu(x, slope),
    "elu": lambda x, _: F.elu(x),
    "gelu": lambda x, _: F.gelu(x),
    "tanh": lambda x, _: torch.tanh(x),
}


def mix_seed(*parts: int) -> int:
    """A 63-bit seed from integers (e.g. base seed, epoch, node, partition), stable across
    processes and platforms."""
    state = np.random.SeedSequence([int(p) & 0xFFFFFFFF for p in parts]).generate_state(2)
    return int((int(state[0]) << 31) ^ int(state[1])) & 0x7FFFFFFFFFFFFFFF


@dataclass(frozen=True)
class DenseNode:
    """One dense operation on the values of earlier nodes.

    Attributes
    ----------
    id : node id (unique within a plan).
    op : ``linear`` (``x @ Wᵀ``), ``bias`` (``x + b``), ``act``, ``dropout``, ``add``,
        ``concat`` (along features), ``scale_eps`` (``(1 + eps) · x``).
    inputs : ids of the input values.
    param : parameter name for ``linear`` / ``bias`` / ``scale_eps`` (``None``: ``eps`` fixed).
    act, negative_slope : for ``act``.
    p : dropout probability.
    eps : fixed ``eps`` of ``scale_eps`` when it is not a parameter.
    key : seeds this node's dropout mask with the stage seed (default: ``id``).
    """

    id: int
    op: Literal["linear", "bias", "act", "dropout", "add", "concat", "scale_eps"]
    inputs: tuple[int, ...]
    param: str | None = None
    act: str | None = None
    negative_slope: float = 0.01
    p: float = 0.0
    eps: float = 0.0
    key: int | None = None


def _eval(
    node: DenseNode,
    args: list[torch.Tensor],
    params: Mapping[str, torch.Tensor],
    train: bool,
    seed: int,
) -> torch.Tensor:
    op = node.op
    if op == "linear":
        return args[0] @ params[str(node.param)].t()
    if op == "bias":
        return args[0] + params[str(node.param)]
    if op == "act":
        return ACTIVATIONS[str(node.act)](args[0], node.negative_slope)
    if op == "dropout":
        x = args[0]
        if not train or node.p <= 0:
            return x
        # NumPy's PCG64 draws float32 uniforms 2x faster than torch's CPU generator; the
        # uniforms become the scaled mask in place (elementwise passes are what cost here).
        rng = np.random.default_rng(mix_seed(seed, node.id if node.key is None else node.key))
        scale = torch.from_numpy(rng.random(tuple(x.shape), dtype=np.float32))
        scale.ge_(node.p).mul_(1.0 / (1.0 - node.p))
        return x * scale.to(x.dtype)
    if op == "add":
        out = args[0]
        for a in args[1:]:
            out = out + a
        return out
    if op == "concat":
        return torch.cat(args, dim=1)
    if op == "scale_eps":
        eps = params[str(node.param)] if node.param is not None else node.eps
        return (1 + eps) * args[0]
    raise ValueError(f"unknown dense op {op!r}")  # pragma: no cover - closed set


@dataclass(frozen=True)
class DenseGraph:
    """Dense nodes in topological order; values not produced here are inputs."""

    nodes: tuple[DenseNode, ...] = ()

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.param for n in self.nodes if n.param is not None))

    def _run(
        self,
        params: Mapping[str, torch.Tensor],
        values: dict[int, torch.Tensor],
        train: bool,
        seed: int,
        only: Collection[int] | None = None,
    ) -> dict[int, torch.Tensor]:
        for node in self.nodes:
            if only is None or node.id in only:
                args = [values[i] for i in node.inputs]
                values[node.id] = _eval(node, args, params, train, seed)
        return values

    def forward(
        self,
        params: Mapping[str, torch.Tensor],
        inputs: Mapping[int, torch.Tensor],
        *,
        train: bool,
        seed: int = 0,
        only: Collection[int] | None = None,
    ) -> dict[int, torch.Tensor]:
        """All values (inputs and computed), without autograd. With ``only``, compute just
        those nodes; ``inputs`` must then hold the values of the others."""
        with torch.no_grad():
            return self._run(params, dict(inputs), train, seed, only)

    def backward(
        self,
        params: Mapping[str, torch.Tensor],
        inputs: Mapping[int, torch.Tensor],
        grad_outputs: Mapping[int, torch.Tensor],
        *,
        train: bool,
        seed: int = 0,
        input_grads: Collection[int] = (),
    ) -> tuple[dict[int, torch.Tensor], dict[str, torch.Tensor]]:
        """Gradients of ``Σ <grad_outputs[v], value v>`` w.r.t. the inputs in
        ``input_grads`` and every parameter used (zeros where a value does not depend)."""
        names = self.param_names
        leaves = {n: params[n].detach().requires_grad_(True) for n in names}
        merged: dict[str, torch.Tensor] = {**params, **leaves}
        xs = {i: v.detach().requires_grad_(i in input_grads) for i, v in inputs.items()}
        with torch.enable_grad():
            values = self._run(merged, dict(xs), train, seed)
            outs = [values[i] for i in grad_outputs if values[i].requires_grad]
            grads_in = [grad_outputs[i] for i in grad_outputs if values[i].requires_grad]
            wrt = [xs[i] for i in input_grads] + [leaves[n] for n in names]
            grads: tuple[torch.Tensor | None, ...] = (
                torch.autograd.grad(outs, wrt, grads_in, allow_unused=True)
                if outs and wrt
                else (None,) * len(wrt)
            )
        gi = {
            i: (g if g is not None else torch.zeros_like(xs[i]))
            for i, g in zip(input_grads, grads[: len(input_grads)], strict=True)
        }
        gp = {
            n: (g if g is not None else torch.zeros_like(leaves[n]))
            for n, g in zip(names, grads[len(input_grads) :], strict=True)
        }
        return gi, gp
