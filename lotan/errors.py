"""The errors Lotan raises.

Every message says what was expected, what was found (with the value) and what to do.
"""

from __future__ import annotations

__all__ = [
    "DatasetNotFoundError",
    "EngineError",
    "GraphInputError",
    "LotanError",
    "TrainingDivergedError",
    "UnsupportedModelError",
]


class LotanError(Exception):
    """Base class of every error Lotan raises on purpose."""


class GraphInputError(LotanError, ValueError):
    """The graph (vertices, edges, features, labels, splits) is not what Lotan needs."""


class UnsupportedModelError(LotanError, TypeError):
    """The model contains a module, layer option or call Lotan cannot plan."""


class EngineError(LotanError, RuntimeError):
    """The engine (Spark, Java, the Python workers) failed or is misconfigured."""


class DatasetNotFoundError(LotanError, FileNotFoundError):
    """A named dataset is not on disk and could not be downloaded."""


class TrainingDivergedError(LotanError, ArithmeticError):
    """The loss or a gradient became NaN or infinite; training stopped before the weights
    took the bad step."""
