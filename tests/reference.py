"""The PyTorch Geometric reference: the same module trained by a plain full-batch PyG loop."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import lotan


@dataclass
class Reference:
    logits: torch.Tensor  # vertices in ascending id order
    loss: float
    grads: dict[str, torch.Tensor]
    params_after: dict[str, torch.Tensor]


def pyg_reference(
    model: torch.nn.Module, graph: lotan.Graph, *, epochs: int, optimizer: str, **opt: float
) -> Reference:
    """Logits, loss and gradients of the first epoch, and the parameters after ``epochs``."""
    model = copy.deepcopy(model)
    data = graph.to_pyg()
    ew = getattr(data, "edge_weight", None)
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    optim = opt_cls[optimizer](model.parameters(), **opt)
    first: tuple[torch.Tensor, float, dict[str, torch.Tensor]] | None = None
    model.train()
    for _ in range(epochs):
        optim.zero_grad()
        takes_weight = len(inspect.signature(model.forward).parameters) > 2
        if ew is not None and takes_weight:
            out = model(data.x, data.edge_index, ew)
        else:
            out = model(data.x, data.edge_index)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        if first is None:
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            first = (out.detach().clone(), float(loss), grads)
        optim.step()
    assert first is not None
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return Reference(first[0], first[1], first[2], params)
