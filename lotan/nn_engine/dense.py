"""Dense graphs: the per-vertex work between two exchanges, run in PyTorch.

A :class:`DenseGraph` is data — the dense nodes of a logical plan
(:class:`lotan.ir.nodes.Node`, descriptors of the ops :mod:`lotan.ir.ops` declares) in
topological order — so that the planner can build, fuse and ship it, and any task can run
it; :data:`EVALUATORS` says how each op is computed. Forward runs without
autograd; backward *recomputes* the forward from the saved inputs with autograd on and
back-propagates the incoming output gradients, returning the gradients of the inputs asked
for and of every parameter used.

Dropout masks are a function of (seed, epoch, node, vertex id, column) — a counter-based hash, not a
stream (:mod:`lotan.nn_engine.masks`) — so a vertex gets the same mask whichever partition,
engine or process computes it: the recomputation in the backward pass sees the forward
pass's masks, and a run gives the same result (up to float rounding of sums) with any number
of partitions.
"""

from __future__ import annotations

from collections.abc import Callable, Collection, Mapping
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

from lotan.ir.nodes import Node
from lotan.nn_engine.device import to_device, to_host
from lotan.nn_engine.masks import dropout_scale
from lotan.nn_engine.norms import normalize

__all__ = [
    "ACTIVATIONS",
    "EVALUATORS",
    "DenseGraph",
    "MaskSeed",
    "mix_seed",
]

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
class MaskSeed:
    """What seeds the dropout masks of one epoch: the run's ``seed`` and the ``epoch``.

    A node's mask key (:meth:`key`) mixes the node's own seed, where it has one (a model of
    a ``fit_many`` batch with a seed of its own), else the run's, with the epoch and the
    node's key (its id in the plan it has alone): so a batched model draws exactly the masks
    ``lotan.fit`` draws for it with that seed."""

    seed: int
    epoch: int = 0

    @classmethod
    def of(cls, seed: MaskSeed | int) -> MaskSeed:
        return seed if isinstance(seed, MaskSeed) else cls(seed)

    def key(self, node: Node) -> int:
        """The mask key of plan node ``node``."""
        own = self.seed if node.seed is None else node.seed
        return mix_seed(mix_seed(own, self.epoch), node.mask_key)


@dataclass(frozen=True)
class _Context:
    """What a dense op may read besides its node, inputs and parameters."""

    train: bool
    seed: MaskSeed
    rows: np.ndarray | None  # the rows' vertex ids (dropout masks are keyed by them)


Args = list[torch.Tensor]
Params = Mapping[str, torch.Tensor]
Evaluator = Callable[[Node, Args, Params, _Context], torch.Tensor]


def _linear(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return args[0] @ params[str(node.param)].t()


def _matmul(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return args[0] @ params[str(node.param)]


def _bias(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return args[0] + params[str(node.param)]


def _act(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return ACTIVATIONS[str(node.act)](args[0], node.negative_slope)


def _dropout(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    x = args[0]
    if not ctx.train or node.p <= 0:
        return x
    key = ctx.seed.key(node)
    rows = ctx.rows
    if rows is None:  # rows without vertex ids: row positions
        rows = np.arange(x.shape[0], dtype=np.int64)
    if len(rows) != x.shape[0]:
        raise ValueError(f"dropout over {x.shape[0]} rows given {len(rows)} vertex ids")
    scale = dropout_scale(rows, x.shape[1], node.p, key)
    return x * scale.to(device=x.device, dtype=x.dtype)


def _add(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    out = args[0]
    for a in args[1:]:
        out = out + a
    return out


def _concat(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return torch.cat(args, dim=1)


def _scale_eps(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    eps = params[str(node.param)] if node.param is not None else node.eps
    return (1 + eps) * args[0]


def _head_dot(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    x = args[0]
    return (x.view(x.shape[0], node.heads, -1) * params[str(node.param)]).sum(dim=-1)


def _head_mean(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    x = args[0]
    return x.view(x.shape[0], node.heads, -1).mean(dim=1)


def _scale(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    return args[0] * node.factor


def _layer_norm(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    x = args[0]
    weight = params[str(node.param)] if node.param is not None else None
    return F.layer_norm(x, (x.shape[1],), weight, None, node.eps)


def _maximum(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    # as PyG's JumpingKnowledge("max"): stack, then max over the stack
    return torch.stack(args, dim=-1).max(dim=-1)[0]


def _by_statistics(node: Node, args: Args, params: Params, ctx: _Context) -> torch.Tensor:
    weight = params[str(node.param)] if node.param is not None else None
    return normalize(node.op, args[0], args[1], weight, node.eps, node.factor)


#: How the neural engine computes each dense op of :data:`lotan.ir.ops.DENSE_OPS` (what
#: each one means is declared there; a test checks that every one has its evaluator).
EVALUATORS: dict[str, Evaluator] = {
    "linear": _linear,
    "matmul": _matmul,
    "bias": _bias,
    "act": _act,
    "dropout": _dropout,
    "add": _add,
    "concat": _concat,
    "scale_eps": _scale_eps,
    "head_dot": _head_dot,
    "head_mean": _head_mean,
    "scale": _scale,
    "layer_norm": _layer_norm,
    "maximum": _maximum,
    "batch_norm": _by_statistics,
    "graph_norm": _by_statistics,
    "pair_norm": _by_statistics,
    "pair_norm_rows": _by_statistics,
}


def _on_cpu(device: torch.device | None) -> bool:
    return device is None or device.type == "cpu"


@dataclass(frozen=True)
class DenseGraph:
    """Dense nodes (plan nodes of dense ops) in topological order; values not produced here
    are inputs."""

    nodes: tuple[Node, ...] = ()

    def __post_init__(self) -> None:
        for node in self.nodes:
            if node.op not in EVALUATORS:
                raise ValueError(f"node {node.id} ({node.op}) is not a dense op")

    @property
    def param_names(self) -> tuple[str, ...]:
        return tuple(dict.fromkeys(n.param for n in self.nodes if n.param is not None))

    def _run(
        self,
        params: Mapping[str, torch.Tensor],
        values: dict[int, torch.Tensor],
        train: bool,
        seed: MaskSeed,
        rows: np.ndarray | None,
        only: Collection[int] | None = None,
    ) -> dict[int, torch.Tensor]:
        ctx = _Context(train, seed, rows)
        for node in self.nodes:
            if only is None or node.id in only:
                args = [values[i] for i in node.inputs]
                values[node.id] = EVALUATORS[node.op](node, args, params, ctx)
        return values

    def forward(
        self,
        params: Mapping[str, torch.Tensor],
        inputs: Mapping[int, torch.Tensor],
        *,
        train: bool,
        seed: MaskSeed | int = 0,
        rows: np.ndarray | None = None,
        only: Collection[int] | None = None,
        device: torch.device | None = None,
    ) -> dict[int, torch.Tensor]:
        """All values (inputs and computed), without autograd. With ``only``, compute just
        those nodes; ``inputs`` must then hold the values of the others. ``rows``: the
        global vertex ids of the rows (dropout masks are keyed by them). ``device``: run
        there (inputs and weights are moved; the values come back on the CPU). ``seed``:
        the epoch's :class:`MaskSeed` (an int: that seed, epoch 0)."""
        seed = MaskSeed.of(seed)
        with torch.no_grad():
            if _on_cpu(device):
                return self._run(params, dict(inputs), train, seed, rows, only)
            assert device is not None
            moved = self._run(
                self._params_on(params, device),
                to_device(inputs, device),
                train,
                seed,
                rows,
                only,
            )
            return to_host(moved)

    def _params_on(
        self, params: Mapping[str, torch.Tensor], device: torch.device
    ) -> dict[str, torch.Tensor]:
        return to_device({n: params[n] for n in self.param_names if n in params}, device)

    def backward(
        self,
        params: Mapping[str, torch.Tensor],
        inputs: Mapping[int, torch.Tensor],
        grad_outputs: Mapping[int, torch.Tensor],
        *,
        train: bool,
        seed: MaskSeed | int = 0,
        rows: np.ndarray | None = None,
        input_grads: Collection[int] = (),
        affine_grads: Mapping[int, tuple[torch.Tensor, torch.Tensor]] | None = None,
        device: torch.device | None = None,
    ) -> tuple[dict[int, torch.Tensor], dict[str, torch.Tensor]]:
        """Gradients of ``Σ <grad_outputs[v], value v>`` w.r.t. the inputs in
        ``input_grads`` and every parameter used (zeros where a value does not depend);
        computed on ``device``, returned on the CPU. ``affine_grads[v] = (a, b)`` adds the
        gradient ``a + b · value v`` (per column) to value ``v``'s: what a reduction across
        partitions gives back (:mod:`lotan.graph_engine.reductions`)."""
        seed = MaskSeed.of(seed)
        if not _on_cpu(device):
            assert device is not None
            gi, gp = self.backward(
                self._params_on(params, device),
                to_device(inputs, device),
                to_device(grad_outputs, device),
                train=train,
                seed=seed,
                rows=rows,
                input_grads=input_grads,
                affine_grads={
                    v: (a.to(device), b.to(device)) for v, (a, b) in (affine_grads or {}).items()
                },
            )
            return to_host(gi), to_host(gp)
        names = self.param_names
        leaves = {n: params[n].detach().requires_grad_(True) for n in names}
        merged: dict[str, torch.Tensor] = {**params, **leaves}
        xs = {i: v.detach().requires_grad_(i in input_grads) for i, v in inputs.items()}
        with torch.enable_grad():
            values = self._run(merged, dict(xs), train, seed, rows)
            grad_outputs = dict(grad_outputs)
            for v, (a, b) in (affine_grads or {}).items():
                x = values[v].detach()
                if v in grad_outputs:
                    grad_outputs[v] = torch.addcmul(grad_outputs[v], b, x).add_(a)
                else:
                    grad_outputs[v] = torch.addcmul(a, b, x)
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
