"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

from dataclasses import dataclass

from lotan.errors import LotanError
from lotan.graph_engine.partition import check_partitioner
from lotan.nn_engine.optim import OPTIMIZERS

__all__ = ["DEFAULT_EPOCHS", "DEFAULT_LR", "FitConfig"]

#: Kipf & Welling's GCN protocol: 200 epochs of Adam at lr 0.01.
DEFAULT_EPOCHS = 200
DEFAULT_LR = 0.01


@dataclass(frozen=True)
class FitConfig:
    """Everything ``lotan.fit`` needs besides the model and the graph.

    Attributes
    ----------
    epochs : full-batch epochs, one optimizer step each.
    optimizer : ``adam``, ``adamw`` or ``sgd``.
    lr, weight_decay, momentum : optimizer settings (``momentum`` for SGD).
    engine : ``spark`` (default) or ``local``.
    num_partitions : graph partitions; ``None`` means the engine's default (Spark: the
        session's default parallelism; local: 1).
    partitioner : ``hash`` or ``label_propagation`` (which partition owns each vertex).
    seed : seeds dropout masks (per epoch, layer and partition).
    progress : print one line per epoch.
    """

    epochs: int = DEFAULT_EPOCHS
    optimizer: str = "adam"
    lr: float = DEFAULT_LR
    weight_decay: float = 0.0
    momentum: float = 0.0
    engine: str = "spark"
    num_partitions: int | None = None
    partitioner: str = "hash"
    seed: int = 0
    progress: bool = True

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise LotanError(f"epochs must be a positive integer, found {self.epochs!r}")
        if self.optimizer.lower() not in OPTIMIZERS:
            raise LotanError(
                f"optimizer={self.optimizer!r} is not supported; expected one of {list(OPTIMIZERS)}"
            )
        if not self.lr > 0:
            raise LotanError(f"lr must be > 0, found {self.lr!r}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise LotanError(
                f"weight_decay and momentum must be >= 0, found {self.weight_decay!r}, "
                f"{self.momentum!r}"
            )
        if self.engine not in ("spark", "local"):
            raise LotanError(f"engine={self.engine!r} is not one of ['spark', 'local']")
        check_partitioner(self.partitioner)
        if self.num_partitions is not None and (
            not isinstance(self.num_partitions, int) or self.num_partitions < 1
        ):
            raise LotanError(
                f"num_partitions must be a positive integer or None, found {self.num_partitions!r}"
            )
