"""Training configuration: one frozen dataclass, validated on construction."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields, replace
from os import PathLike
from typing import Any

from lotan.errors import LotanError
from lotan.graph_engine.exchange import EXCHANGE_DTYPES
from lotan.nn_engine.optim import OPTIMIZERS
from lotan.planner.placement import Placement
from lotan.runtime.label_propagation import check_partitioner

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "ENGINES",
    "MONITORS",
    "OPTIMIZER_KEYS",
    "FitConfig",
    "OptimizerConfig",
    "check_exchange_dtype",
    "parse_bytes",
]

#: Kipf & Welling's GCN protocol: 200 epochs of Adam at lr 0.01.
DEFAULT_EPOCHS = 200
DEFAULT_LR = 0.01

#: Metrics early stopping and ``best`` can watch: accuracies (higher is better) and the
#: training loss (lower is better).
MONITORS = ("val_acc", "train_acc", "test_acc", "loss")
#: ``lotan.grid`` keys that configure the optimizer rather than the model.
OPTIMIZER_KEYS = ("optimizer", "lr", "weight_decay", "momentum")

#: ``auto`` picks one of the other two (:func:`lotan.engines.choice.choose_engine`).
ENGINES = ("auto", "spark", "local")


def parse_bytes(value: int | str | None, what: str = "memory_budget") -> int | None:
    """``4g``, ``512m``, ``1.5GiB``, an integer number of bytes, or ``None`` (no limit);
    ``what`` names the setting in the error."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(value).lower())
    if not m or isinstance(value, bool):
        raise LotanError(f"{what} must be bytes or a size like '4g' or '512m', found {value!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)]
    out = int(float(m.group(1)) * scale)
    if out <= 0:
        raise LotanError(f"{what} must be positive, found {value!r}")
    return out


def check_exchange_dtype(dtype: str) -> str:
    if dtype not in EXCHANGE_DTYPES:
        raise LotanError(f"exchange_dtype={dtype!r} is not one of {list(EXCHANGE_DTYPES)}")
    return dtype


@dataclass(frozen=True)
class OptimizerConfig:
    """One model's optimizer: ``name`` (``adam``, ``adamw``, ``sgd``), ``lr``,
    ``weight_decay`` and ``momentum`` (SGD)."""

    name: str = "adam"
    lr: float = DEFAULT_LR
    weight_decay: float = 0.0
    momentum: float = 0.0

    def __post_init__(self) -> None:
        if not isinstance(self.name, str) or self.name.lower() not in OPTIMIZERS:
            raise LotanError(
                f"optimizer={self.name!r} is not supported; expected one of {list(OPTIMIZERS)}"
            )
        for key in ("lr", "weight_decay", "momentum"):
            v = getattr(self, key)
            if isinstance(v, bool) or not isinstance(v, int | float):
                raise LotanError(f"{key} must be a number, found {v!r}")
        if not self.lr > 0:
            raise LotanError(f"lr must be > 0, found {self.lr!r}")
        if self.weight_decay < 0 or self.momentum < 0:
            raise LotanError(
                f"weight_decay and momentum must be >= 0, found {self.weight_decay!r}, "
                f"{self.momentum!r}"
            )

    @classmethod
    def of(cls, spec: OptimizerConfig | Mapping[str, Any] | str) -> OptimizerConfig:
        """From a config, a name, or a dict such as ``{"name": "adam", "lr": 0.05}``
        (``"optimizer"`` is accepted for ``"name"``); unknown keys are an error."""
        if isinstance(spec, OptimizerConfig):
            return spec
        if isinstance(spec, str):
            return cls(name=spec)
        if not isinstance(spec, Mapping):
            raise LotanError(
                f"an optimizer is a dict like {{'name': 'adam', 'lr': 0.01}}, found {spec!r}"
            )
        d = dict(spec)
        if "optimizer" in d:
            if "name" in d:
                raise LotanError("give the optimizer's 'name' or 'optimizer', not both")
            d["name"] = d.pop("optimizer")
        allowed = [f.name for f in fields(cls)]
        unknown = sorted(set(d) - set(allowed))
        if unknown:
            raise LotanError(f"unknown optimizer setting(s) {unknown}; expected some of {allowed}")
        return cls(**d)

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self)}


@dataclass(frozen=True)
class FitConfig:
    """Everything ``lotan.fit`` needs besides the model and the graph.

    Attributes
    ----------
    epochs : full-batch epochs, one optimizer step each.
    optimizer : ``adam``, ``adamw`` or ``sgd``.
    lr, weight_decay, momentum : optimizer settings (``momentum`` for SGD).
    engine : ``auto`` (default: the local engine when no cluster session is active and the
        graph fits the local memory budget, else Spark; :func:`lotan.engines.choice.choose_engine`),
        ``spark`` or ``local``.
    num_partitions : graph partitions; ``None`` means the engine's default (Spark: the
        session's default parallelism; local: 1).
    partitioner : ``hash`` or ``label_propagation`` (which partition owns each vertex).
    seed : seeds dropout masks (a hash of seed, epoch, layer, vertex id and column).
    progress : print one line per epoch.
    patience : stop when ``monitor`` has not improved for this many epochs, and restore the
        weights of its best epoch (``None``: train every epoch, keep the last weights).
    monitor : the metric ``patience`` watches (:data:`MONITORS`).
    checkpoint_dir : write checkpoints here (see :mod:`lotan.training.checkpoint`); ``None``: none.
    checkpoint_every : write one after every this many epochs (and at the end).
    resume : continue from the newest checkpoint in ``checkpoint_dir`` if there is one.
    placement : ``fused`` (default) or ``split``: whether dense work runs in the graph
        stages' Spark stages or in stages of its own that ask for GPUs
        (:mod:`lotan.planner.placement`); the result does not depend on it.
    dense_gpus, dense_cpus : what each dense task asks for under ``split``.
    eval_every : measure the accuracies (dropout off) after every this many epochs and after
        the last; the other epochs record NaN accuracies and skip the evaluation stream
        (fewer bytes for models with dropout). Early stopping's patience still counts epochs.
    exchange_dtype : ``float32`` (default, exact) or ``bfloat16``: forward exchanges carry
        every row rounded to bfloat16, half the bytes; the result changes (slightly) but
        not with the engine or the partitioning (:mod:`lotan.graph_engine.exchange`).
    """

    epochs: int = DEFAULT_EPOCHS
    optimizer: str = "adam"
    lr: float = DEFAULT_LR
    weight_decay: float = 0.0
    momentum: float = 0.0
    engine: str = "auto"
    num_partitions: int | None = None
    partitioner: str = "hash"
    seed: int = 0
    progress: bool = True
    patience: int | None = None
    monitor: str = "val_acc"
    checkpoint_dir: str | None = None
    checkpoint_every: int = 10
    resume: bool = False
    placement: str = "fused"
    dense_gpus: float = 1.0
    dense_cpus: int = 1
    eval_every: int = 1
    exchange_dtype: str = "float32"

    def __post_init__(self) -> None:
        if not isinstance(self.epochs, int) or self.epochs < 1:
            raise LotanError(f"epochs must be a positive integer, found {self.epochs!r}")
        self.optimizer_config()  # validates
        if self.patience is not None and (
            isinstance(self.patience, bool)
            or not isinstance(self.patience, int)
            or self.patience < 1
        ):
            raise LotanError(
                f"patience must be a positive integer or None, found {self.patience!r}"
            )
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, str | PathLike):
            raise LotanError(f"checkpoint_dir must be a path, found {self.checkpoint_dir!r}")
        if (
            isinstance(self.checkpoint_every, bool)
            or not isinstance(self.checkpoint_every, int)
            or self.checkpoint_every < 1
        ):
            raise LotanError(
                f"checkpoint_every must be a positive integer, found {self.checkpoint_every!r}"
            )
        if not isinstance(self.resume, bool):
            raise LotanError(f"resume must be true or false, found {self.resume!r}")
        if self.resume and self.checkpoint_dir is None:
            raise LotanError("resume=True needs checkpoint_dir: the directory to resume from")
        if self.monitor not in MONITORS:
            raise LotanError(f"monitor={self.monitor!r} is not one of {list(MONITORS)}")
        if self.engine not in ENGINES:
            raise LotanError(f"engine={self.engine!r} is not one of {list(ENGINES)}")
        check_partitioner(self.partitioner)
        check_exchange_dtype(self.exchange_dtype)
        if (
            isinstance(self.eval_every, bool)
            or not isinstance(self.eval_every, int)
            or self.eval_every < 1
        ):
            raise LotanError(f"eval_every must be a positive integer, found {self.eval_every!r}")
        self.placement_config()  # validates
        if self.num_partitions is not None and (
            not isinstance(self.num_partitions, int) or self.num_partitions < 1
        ):
            raise LotanError(
                f"num_partitions must be a positive integer or None, found {self.num_partitions!r}"
            )

    def result_fingerprint(self) -> dict[str, Any]:
        """The settings a trained model depends on (a checkpoint resumes only under the same
        ones): not the epochs, engine, partitions, placement, progress or checkpointing."""
        out: dict[str, Any] = {
            "optimizer": self.optimizer_config().as_dict(),
            "seed": self.seed,
            "patience": self.patience,
            "monitor": self.monitor,
        }
        # Only when set, so that checkpoints written before these settings keep their hash.
        if self.exchange_dtype != "float32":
            out["exchange_dtype"] = self.exchange_dtype
        if self.eval_every != 1 and self.patience is not None:  # it moves the stopping epoch
            out["eval_every"] = self.eval_every
        return out

    def as_kwargs(self) -> dict[str, Any]:
        """Every setting, by the name ``lotan.fit`` takes it under."""
        return {f.name: getattr(self, f.name) for f in fields(self)}

    def placement_config(self) -> Placement:
        return Placement(self.placement, self.dense_gpus, self.dense_cpus)

    def optimizer_config(self) -> OptimizerConfig:
        return OptimizerConfig(self.optimizer, self.lr, self.weight_decay, self.momentum)

    def with_optimizer(self, opt: OptimizerConfig) -> FitConfig:
        return replace(
            self,
            optimizer=opt.name,
            lr=opt.lr,
            weight_decay=opt.weight_decay,
            momentum=opt.momentum,
        )
