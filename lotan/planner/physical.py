"""The physical plan: per-partition stages that alternate exchanges and fused local work.

For a model of ``L`` graph layers, a training epoch is ``2L + 1`` stages and ``2L`` exchanges::

    stage 0        pre_0(X)                                   ─fwd─▶
    stage k        Â·  ─▶ post_{k-1} ∘ pre_k   (k = 1..L-1)   ─fwd─▶   (saves its input)
    stage L        Â·  ─▶ post_{L-1} ─▶ loss, metrics, ∂L/∂S ─▶ Âᵀ·    ─bwd─▶
    stage 2L - m   Σ partials ─▶ backward of post_{m-1} ∘ pre_m from the saved input ─▶ Âᵀ·
                   (m = L-1..1)                                                     ─bwd─▶
    stage 2L       Σ partials ─▶ backward of pre_0 (no gradient into X)

Each stage is the fused graph + dense work between two exchanges; weight-gradient partials
and metrics go to the driver. When the model has dropout, the forward pass also carries an
*evaluation stream* (dropout off) beside the training stream in the same messages, so that
accuracies need no extra pass.
"""

from __future__ import annotations

import warnings
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch

from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
    forward_messages,
    reduce_partials,
)
from lotan.graph_engine.kernels import spmm, spmm_t
from lotan.graph_engine.layout import SPLIT_CODES, PartitionLayout
from lotan.graph_engine.runner import DRIVER, OUTPUT, Message, StageFn, by_source
from lotan.nn_engine.dense import DenseProgram, mix_seed
from lotan.nn_engine.loss import masked_cross_entropy
from lotan.planner.model_plan import ModelPlan

__all__ = ["METRIC_FIELDS", "EpochValue", "inference_stages", "training_stages"]

# Tiles decode to read-only views of Arrow buffers; the stages never write into them.
warnings.filterwarnings("ignore", message="The given NumPy array is not writable")

#: Layout of the per-partition ``metrics`` vector sent to the driver.
METRIC_FIELDS = (
    "loss",
    "train_correct",
    "train_count",
    "val_correct",
    "val_count",
    "test_correct",
    "test_count",
)


@dataclass(frozen=True)
class EpochValue:
    """What the driver broadcasts to every task of one run."""

    params: dict[str, np.ndarray]
    epoch: int

    def tensors(self) -> dict[str, torch.Tensor]:
        return {k: torch.from_numpy(v) for k, v in self.params.items()}


@dataclass(frozen=True)
class _Spec:
    plan: ModelPlan
    seed: int
    num_train: int
    train: bool
    streams: int
    output: bool

    def program(self, k: int) -> DenseProgram:
        """The dense work of forward stage ``k``."""
        layers = self.plan.layers
        if k == 0:
            return layers[0].pre
        if k == len(layers):
            return layers[-1].post
        return layers[k - 1].post.then(layers[k].pre)

    def seed_for(self, epoch: int, k: int, part: int) -> int:
        return mix_seed(self.seed, epoch, k, part)


def _t(a: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(a)


def _grads_message(part: int, grads: dict[str, torch.Tensor]) -> Message:
    return Message(DRIVER, -1, part, "grad", {k: v.numpy() for k, v in grads.items()})


def _metrics(layout: PartitionLayout, logits: torch.Tensor, loss: float) -> Message:
    pred = logits.argmax(dim=1).numpy()
    correct = pred == layout.y
    vec = [loss]
    for name in ("train", "val", "test"):
        mask = layout.split == SPLIT_CODES[name]
        vec += [float(correct[mask].sum()), float(mask.sum())]
    return Message(DRIVER, -1, layout.part, "metrics", {"metrics": np.array(vec)})


@dataclass(frozen=True)
class _InputStage:
    spec: _Spec

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        s = self.spec
        params = value.tensors()
        prog = s.program(0)
        x = _t(layout.x)
        m = prog.forward(params, x, train=s.train, seed=s.seed_for(value.epoch, 0, part))
        if s.streams == 2:
            m = torch.cat([m, prog.forward(params, x, train=False)], dim=1)
        rows = m.numpy()
        return [Message(1, q, part, "fwd", {"rows": r}) for q, r in forward_messages(layout, rows)]


@dataclass(frozen=True)
class _HiddenStage:
    spec: _Spec
    k: int

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        s, k = self.spec, self.k
        params = value.tensors()
        prog = s.program(k)
        full = _t(assemble(layout, by_source(inbox, "fwd")))
        agg = spmm(layout.indptr, layout.indices, layout.weights, full)
        d = agg.shape[1] // s.streams
        agg_train = agg[:, :d].contiguous()
        m = prog.forward(params, agg_train, train=s.train, seed=s.seed_for(value.epoch, k, part))
        if s.streams == 2:
            m = torch.cat([m, prog.forward(params, agg[:, d:].contiguous(), train=False)], dim=1)
        out = [
            Message(k + 1, q, part, "fwd", {"rows": r})
            for q, r in forward_messages(layout, m.numpy())
        ]
        if s.train:
            back = 2 * s.plan.num_layers - k
            out.append(Message(back, part, part, "saved", {"rows": agg_train.numpy()}))
        return out


@dataclass(frozen=True)
class _HeadStage:
    spec: _Spec

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        s = self.spec
        L = s.plan.num_layers
        params = value.tensors()
        prog = s.program(L)
        seed = s.seed_for(value.epoch, L, part)
        full = _t(assemble(layout, by_source(inbox, "fwd")))
        agg = spmm(layout.indptr, layout.indices, layout.weights, full)
        d = agg.shape[1] // s.streams
        agg_train = agg[:, :d].contiguous()
        logits = prog.forward(params, agg_train, train=s.train, seed=seed)
        out: list[Message] = []
        loss = 0.0
        if s.train:
            mask = _t(layout.split == SPLIT_CODES["train"])
            loss, dlogits = masked_cross_entropy(logits, _t(layout.y), mask, s.num_train)
            dagg, grads = prog.backward(params, agg_train, dlogits, train=True, seed=seed)
            out.append(_grads_message(part, grads))
            assert dagg is not None
            partial = spmm_t(layout.indptr, layout.indices, layout.weights, dagg, full.shape[0])
            out += [
                Message(L + 1, q, part, "bwd", {"rows": r})
                for q, r in backward_messages(layout, partial.numpy())
            ]
        eval_logits = (
            prog.forward(params, agg[:, d:].contiguous(), train=False) if s.streams == 2 else logits
        )
        out.append(_metrics(layout, eval_logits, loss))
        if s.output:
            out.append(
                Message(
                    OUTPUT, part, part, "logits", {"ids": layout.ids, "logits": eval_logits.numpy()}
                )
            )
        return out


@dataclass(frozen=True)
class _BackwardStage:
    """Reduces ``∂L/∂M_m`` and back-propagates the dense work that produced ``M_m``."""

    spec: _Spec
    m: int

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        s, m = self.spec, self.m
        L = s.plan.num_layers
        params = value.tensors()
        grad_m = _t(reduce_partials(layout, by_source(inbox, "bwd")))
        prog = s.program(m)
        seed = s.seed_for(value.epoch, m, part)
        if m == 0:
            _, grads = prog.backward(
                params, _t(layout.x), grad_m, train=True, seed=seed, input_grad=False
            )
            return [_grads_message(part, grads)]
        saved = _t(by_source(inbox, "saved")[part])
        dagg, grads = prog.backward(params, saved, grad_m, train=True, seed=seed)
        assert dagg is not None
        num_full = layout.num_own + layout.num_halo
        partial = spmm_t(layout.indptr, layout.indices, layout.weights, dagg, num_full)
        nxt = 2 * L - m + 1
        return [_grads_message(part, grads)] + [
            Message(nxt, q, part, "bwd", {"rows": r})
            for q, r in backward_messages(layout, partial.numpy())
        ]


def training_stages(plan: ModelPlan, *, seed: int, num_train: int) -> list[StageFn]:
    """The stages of one training epoch (forward, loss, backward), see the module docstring."""
    spec = _Spec(plan, seed, num_train, True, 2 if plan.has_dropout else 1, False)
    L = plan.num_layers
    stages: list[StageFn] = [_InputStage(spec)]
    stages += [_HiddenStage(spec, k) for k in range(1, L)]
    stages.append(_HeadStage(spec))
    stages += [_BackwardStage(spec, m) for m in range(L - 1, -1, -1)]
    return stages


def inference_stages(plan: ModelPlan, *, output: bool) -> list[StageFn]:
    """Forward stages with dropout off; metrics to the driver, logits to the output."""
    spec = _Spec(plan, 0, 1, False, 1, output)
    L = plan.num_layers
    return [_InputStage(spec), *[_HiddenStage(spec, k) for k in range(1, L)], _HeadStage(spec)]
