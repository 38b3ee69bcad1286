"""Lowering of the modules a model applies to vertex rows: linear layers, MLPs,
normalizations, activations, dropout. Each registers itself
(:mod:`lotan.planner.lowering.registry`); :meth:`Builder.module` finds a module's lowering
by its type."""

from __future__ import annotations

from typing import Any

from lotan.planner.lowering.builder import Builder
from lotan.planner.lowering.registry import lowering

__all__: list[str] = []

_NORM = "normalization by statistics over every vertex (a reduction across partitions)"


@lowering("Linear", "module", "x Wᵀ + b", package="torch.nn")
@lowering("Linear", "module", "x Wᵀ + b")
def linear(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return b.linear(x, mod, prefix, where)


@lowering(
    "MLP",
    "module",
    "its linear layers, norms, activations and dropout in PyG's order",
    "act_first, plain_last, norm (any supported normalization)",
)
@lowering("Sequential", "module", "its modules in order", package="torch.nn")
def mlp(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return b.mlp(x, mod, prefix, where)


@lowering(
    "BatchNorm1d",
    "module",
    _NORM,
    "momentum (or None), affine, track_running_stats",
    package="torch.nn",
)
@lowering("BatchNorm", "module", _NORM, "as torch.nn.BatchNorm1d")
@lowering(
    "LayerNorm",
    "module",
    "each vertex's row normalized over its features",
    "elementwise_affine, bias",
    package="torch.nn",
)
@lowering("LayerNorm", "module", f"mode 'graph': {_NORM}; mode 'node': per vertex", "affine")
@lowering("PairNorm", "module", _NORM, "scale, scale_individually")
def norm(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return b.norm(x, mod, prefix, where)


@lowering("ReLU", "module", "relu", package="torch.nn")
@lowering("LeakyReLU", "module", "leaky_relu", "negative_slope", package="torch.nn")
@lowering("ELU", "module", "elu", "alpha=1", package="torch.nn")
@lowering("GELU", "module", "gelu", "approximate='none'", package="torch.nn")
@lowering("Tanh", "module", "tanh", package="torch.nn")
def activation(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return b.act_module(x, mod, where)


@lowering("Dropout", "module", "dropout with a mask keyed by vertex id", package="torch.nn")
def dropout(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return b.dropout(x, mod.p, where)


@lowering("Identity", "module", "nothing", package="torch.nn")
def identity(b: Builder, x: int, mod: Any, prefix: str, where: str) -> int:
    return x
