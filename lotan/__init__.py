"""Lotan: full-batch GNN training with Apache Spark as the graph engine and PyTorch as the
neural engine."""

from lotan import datasets
from lotan.api import EpochRecord, FitResult, explain, fit, predict
from lotan.errors import (
    DatasetNotFoundError,
    EngineError,
    GraphInputError,
    LotanError,
    TrainingDivergedError,
    UnsupportedModelError,
)
from lotan.graph import Graph
from lotan.options import (
    Checkpoints,
    EngineOptions,
    FitConfig,
    Local,
    OptimizerConfig,
    Spark,
    Training,
)
from lotan.planner.flags import PlannerFlags
from lotan.selection import GridResult, Trial, fit_many, grid
from lotan.training.checkpoint import CheckpointError

__all__ = [
    "CheckpointError",
    "Checkpoints",
    "DatasetNotFoundError",
    "EngineError",
    "EngineOptions",
    "EpochRecord",
    "FitConfig",
    "FitResult",
    "GNNEstimator",
    "GNNModel",
    "Graph",
    "GraphInputError",
    "GridResult",
    "Local",
    "LotanError",
    "OptimizerConfig",
    "PlannerFlags",
    "Spark",
    "Training",
    "TrainingDivergedError",
    "Trial",
    "UnsupportedModelError",
    "datasets",
    "explain",
    "fit",
    "fit_many",
    "grid",
    "predict",
]

__version__ = "0.1.0"


def __getattr__(name: str) -> object:
    # Spark ML classes load pyspark.ml, which plain training does not need.
    if name in ("GNNEstimator", "GNNModel"):
        from lotan import ml

        return getattr(ml, name)
    raise AttributeError(f"module 'lotan' has no attribute {name!r}")
