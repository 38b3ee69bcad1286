"""``lotan.Graph`` and what it is made of: the graph itself and its constructors
(:mod:`.graph`), the shapes of its data (:mod:`.schema`), the input checks its constructors
share (:mod:`.checks`) and PyTorch Geometric ``Data`` in and out (:mod:`.pyg`)."""

from lotan.graph.graph import Graph
from lotan.graph.schema import GraphArrays

__all__ = ["Graph", "GraphArrays"]
