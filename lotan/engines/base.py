"""What every engine is: prepare a graph once, run stage functions over it.

An :class:`Engine` turns a graph (anything with the :class:`GraphSource` shape: engines do not
import :mod:`lotan.graph`, which builds on them) into a :class:`Prepared` handle — partition
layouts and the means to run stages over them — and runs the stages a run's physical plan
makes (:mod:`lotan.runtime.stages`). A graph keeps its preparations in a public
:class:`Preparations` cache, so a second run on the same graph (another ``fit``, ``predict``
after ``fit``, the batches of ``fit_many``) reuses them; ``graph.unpersist()`` releases them.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable, Iterable, Iterator, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

import numpy as np

from lotan.planner.estimates import GraphSize
from lotan.planner.placement import Placement
from lotan.runtime.message import Message, StageFn
from lotan.runtime.value import EpochValue

if TYPE_CHECKING:
    from lotan.ir.norm import NormSpec

__all__ = [
    "Engine",
    "GraphSource",
    "Preparations",
    "Prepared",
    "partition_stats",
    "predictions_frame",
    "with_parts",
]


class Prepared(Protocol):
    """A graph prepared on one engine for a number of partitions and weightings."""

    @property
    def num_partitions(self) -> int: ...

    def stats(self) -> dict[str, int]:
        """Totals and maxima of own vertices, halo rows and edges (:func:`partition_stats`)."""
        ...

    def release(self) -> None:
        """Free what it holds (layout files, cached DataFrames); it cannot run afterwards."""
        ...


P = TypeVar("P", bound=Prepared)


class Preparations:
    """The preparations of one graph, by key: made once, reused by every later run on the
    graph, released together by :meth:`release` (``graph.unpersist()``)."""

    def __init__(self) -> None:
        self._items: dict[Hashable, Prepared] = {}

    def get(self, key: Hashable, make: Callable[[], P]) -> P:
        """The preparation under ``key``, made by ``make`` the first time."""
        if key not in self._items:
            self._items[key] = make()
        out: P = self._items[key]  # type: ignore[assignment]
        return out

    def values(self) -> list[Prepared]:
        return list(self._items.values())

    def __len__(self) -> int:
        return len(self._items)

    def __iter__(self) -> Iterator[Hashable]:
        return iter(self._items)

    def release(self) -> None:
        for prepared in self._items.values():
            prepared.release()
        self._items.clear()


class GraphSource(GraphSize, Protocol):
    """What an engine reads of a graph (:class:`lotan.Graph` has this shape): its sizes, its
    preparations, and its data as arrays or DataFrames."""

    name: str
    preparations: Preparations

    @property
    def in_memory(self) -> bool: ...

    def arrays(self) -> Any:
        """The graph as NumPy arrays (``ids, x, y, split, src, dst, weight, edge_attr``)."""
        ...

    def dataframes(self, spark: Any) -> tuple[Any, Any]:
        """The vertices and edges as Spark DataFrames of ``spark``."""
        ...


class Engine(Protocol[P]):
    """Prepares graphs and runs stages over them."""

    name: str

    def default_partitions(self) -> int: ...

    def check_placement(self, placement: Placement) -> None:
        """Fail now, before any preparation, when this engine cannot run ``placement``."""
        ...

    def prepare(
        self,
        graph: GraphSource,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> P:
        """``graph``'s layouts for ``num_partitions`` partitions and the weightings ``norms``
        (cached on the graph)."""
        ...

    def with_constants(
        self, graph: GraphSource, prepared: P, key: Hashable, stages: Sequence[StageFn]
    ) -> P:
        """``prepared`` with the outputs of ``stages`` (a plan's constant aggregations, which
        depend on no parameter) stored beside each layout, computed once per ``key``."""
        ...

    def run(self, prepared: P, stages: Sequence[StageFn], value: Any, label: str) -> list[Message]:
        """Run ``stages`` with ``value``; the messages for the driver."""
        ...

    def predictions(self, prepared: P, stages: Sequence[StageFn], value: Any) -> Any:
        """Every vertex's prediction, probabilities and logits from an inference run."""
        ...


def partition_stats(sizes: Iterable[tuple[int, int, int]]) -> dict[str, int]:
    """Totals and maxima of (own vertices, halo rows, edges) over partitions."""
    sizes = list(sizes)
    return {
        "parts": len(sizes),
        "own": sum(s[0] for s in sizes),
        "halo": sum(s[1] for s in sizes),
        "edges": sum(s[2] for s in sizes),
        "max_own": max((s[0] for s in sizes), default=0),
        "max_edges": max((s[2] for s in sizes), default=0),
        "max_halo": max((s[1] for s in sizes), default=0),
        "max_rows": max((s[0] + s[1] for s in sizes), default=0),
    }


def predictions_frame(ids: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """The columns of ``predict``'s output for the vertices ``ids`` with ``logits``."""
    import torch

    probs = torch.softmax(torch.from_numpy(np.asarray(logits)), dim=1).numpy()
    return {
        "id": ids.astype(np.int64),
        "prediction": logits.argmax(axis=1).astype(np.int64),
        "probability": list(probs.astype(np.float32)),
        "logits": list(np.asarray(logits, dtype=np.float32)),
    }


def with_parts(value: Any, parts: Iterable[int]) -> Any:
    """``value`` with the partitions that own vertices (what a reduction across partitions
    sends its partials to), when it is an :class:`EpochValue`."""
    if isinstance(value, EpochValue):
        return replace(value, parts=tuple(sorted(int(p) for p in parts)))
    return value
