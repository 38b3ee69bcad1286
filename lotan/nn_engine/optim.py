"""Optimizers: ``torch.optim`` on the driver, one step per epoch."""

from __future__ import annotations

from collections.abc import Iterable

import torch

from lotan.errors import LotanError

__all__ = ["OPTIMIZERS", "build_optimizer"]

OPTIMIZERS = ("adam", "adamw", "sgd")


def build_optimizer(
    name: str,
    params: Iterable[torch.nn.Parameter],
    *,
    lr: float,
    weight_decay: float = 0.0,
    momentum: float = 0.0,
) -> torch.optim.Optimizer:
    """A ``torch.optim`` optimizer by name (``adam``, ``adamw``, ``sgd``)."""
    key = name.lower()
    if key == "adam":
        return torch.optim.Adam(params, lr=lr, weight_decay=weight_decay)
    if key == "adamw":
        return torch.optim.AdamW(params, lr=lr, weight_decay=weight_decay)
    if key == "sgd":
        return torch.optim.SGD(params, lr=lr, weight_decay=weight_decay, momentum=momentum)
    raise LotanError(f"optimizer={name!r} is not supported; expected one of {list(OPTIMIZERS)}")
