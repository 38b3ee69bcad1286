"""The training loss: masked cross-entropy over train vertices, over the global train count."""

from __future__ import annotations

import torch
import torch.nn.functional as F

__all__ = ["masked_cross_entropy"]


def masked_cross_entropy(
    logits: torch.Tensor, y: torch.Tensor, mask: torch.Tensor, total: int
) -> tuple[float, torch.Tensor]:
    """Partial loss of one partition and its gradient w.r.t. ``logits``.

    ``sum over masked rows of CE(logits, y) / total``; summing the partials of all partitions
    gives PyG's ``F.cross_entropy(out[train_mask], y[train_mask])``.

    Shapes: ``logits`` ``(n, C)``, ``y`` ``(n,)``, ``mask`` ``(n,)`` bool → ``(float, (n, C))``.
    """
    leaf = logits.detach().requires_grad_(True)
    with torch.enable_grad():
        if bool(mask.any()):
            loss = F.cross_entropy(leaf[mask], y[mask], reduction="sum") / float(total)
        else:
            loss = leaf.sum() * 0.0
        (grad,) = torch.autograd.grad(loss, leaf)
    return float(loss.detach()), grad
