"""What Lotan can lower, declared once: one :class:`Lowering` per supported PyG (or torch)
class, keyed by its type. The lowering functions register themselves with :func:`lowering`;
:func:`find` looks a module up by type (its class or a base class), :func:`supported` is the
list error messages give, and the docs' model table is :func:`table` — so adding a layer is
one registered function, and every list of what is supported follows."""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Literal, TypeVar

__all__ = ["LOWERINGS", "Family", "Lowering", "find", "lowering", "supported", "table"]

#: What a registered class is: a whole PyG model (``BasicGNN``), a convolution (called with
#: ``edge_index``), or a module applied to vertex rows (linear layers, normalizations,
#: activations, dropout).
Family = Literal["model", "convolution", "module"]

F = TypeVar("F", bound=Callable[..., int])


@dataclass(frozen=True)
class Lowering:
    """One supported class.

    Attributes
    ----------
    name : the class, as a user writes it (``GCNConv``).
    package : where it is imported from (``torch_geometric.nn``, ``torch.nn``).
    family : see :data:`Family`.
    computes : what it lowers to, in PyG's order of operations.
    options : which of its options are supported (and which not).
    lower : the lowering function (its signature depends on the family).
    alone : a convolution that may be the whole model, called as ``model(x, edge_index,
        edge_weight)`` or ``model(x, edge_index, edge_attr)``.
    """

    name: str
    package: str
    family: Family
    computes: str
    options: str
    lower: Callable[..., int]
    alone: bool = True

    @property
    def cls(self) -> type:
        """The class itself (imported on first use: PyG loads only when a model is planned)."""
        out: type = getattr(importlib.import_module(self.package), self.name)
        return out


#: Every registered class, in registration (and documentation) order.
LOWERINGS: list[Lowering] = []


def lowering(
    name: str,
    family: Family,
    computes: str,
    options: str = "",
    package: str = "",
    alone: bool = True,
) -> Callable[[F], F]:
    """Register the decorated function as the lowering of class ``name`` (of ``package``,
    default ``torch_geometric.nn``; ``torch_geometric.nn.models`` for a model)."""
    default = "torch_geometric.nn.models" if family == "model" else "torch_geometric.nn"

    def register(fn: F) -> F:
        entry = Lowering(name, package or default, family, computes, options, fn, alone)
        # Stacked decorators run bottom-up: keep the classes of one function in the order
        # they are written.
        at = len(LOWERINGS)
        while at and LOWERINGS[at - 1].lower is fn:
            at -= 1
        LOWERINGS.insert(at, entry)
        return fn

    return register


def find(obj: Any, family: Family) -> Lowering | None:
    """The lowering of ``obj``'s class (or of its nearest registered base class) in
    ``family``, else None."""
    by_type = {entry.cls: entry for entry in LOWERINGS if entry.family == family}
    for cls in type(obj).__mro__:
        if cls in by_type:
            return by_type[cls]
    return None


def supported() -> str:
    """What can be lowered, in a line (error messages end with it)."""
    models = [e for e in LOWERINGS if e.family == "model"]
    convs = [e for e in LOWERINGS if e.family == "convolution"]
    mods = [e for e in LOWERINGS if e.family == "module"]
    return (
        f"torch_geometric.nn.models {', '.join(e.name for e in models)} "
        f"({models[0].options if models else ''}); "
        + ", ".join(f"{e.name} ({e.options})" if e.options else e.name for e in convs)
        + "; "
        + ", ".join(f"{e.package}.{e.name}" for e in mods)
        + "; dropout, + and torch.cat in a forward(x, edge_index) or forward(x, edge_index, "
        "edge_attr) that torch.fx can trace"
    )


def table() -> str:
    """The supported classes as a Markdown table (the docs' model list)."""
    lines = ["| class | kind | computes | options |", "|---|---|---|---|"]
    order: list[Family] = ["model", "convolution", "module"]
    for e in sorted(LOWERINGS, key=lambda e: order.index(e.family)):
        lines.append(f"| `{e.package}.{e.name}` | {e.family} | {e.computes} | {e.options} |")
    return "\n".join(lines)
