"""The shapes of a graph's data: the GraphFrames column names, the arrays of an in-memory
graph (:class:`GraphArrays`) and the numbers every graph knows about itself
(:class:`GraphStats`)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from lotan.ir.splits import SPLIT_CODES

__all__ = ["EDGE_COLUMNS", "SPLIT_NAMES", "VERTEX_COLUMNS", "GraphArrays", "GraphStats"]

SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
VERTEX_COLUMNS = ("id", "features", "label", "split")
EDGE_COLUMNS = ("src", "dst")


@dataclass(frozen=True)
class GraphArrays:
    """A graph held in memory as NumPy arrays (validated by :meth:`Graph.from_arrays`)."""

    ids: np.ndarray  # (N,) int64
    x: np.ndarray  # (N, F) float32
    y: np.ndarray  # (N,) int64, -1 where unknown
    split: np.ndarray  # (N,) int8 codes of SPLIT_CODES, 0 for none
    src: np.ndarray  # (E,) int64 vertex ids
    dst: np.ndarray  # (E,) int64 vertex ids
    weight: np.ndarray | None  # (E,) float32
    edge_attr: np.ndarray | None = None  # (E, D) float32


@dataclass(frozen=True)
class GraphStats:
    num_vertices: int
    num_edges: int
    num_features: int
    num_classes: int
    num_train: int
    has_weight: bool
    num_val: int = 0
    num_test: int = 0
    #: The smallest edge weight (1.0 without weights).
    min_weight: float = 1.0
    #: Features per edge (0: the graph has none).
    num_edge_features: int = 0
