"""The option objects: :class:`Training`, :class:`OptimizerConfig`, :class:`Checkpoints`,
and the engine's — :class:`EngineOptions` (``engine="auto"``), :class:`Spark`,
:class:`Local`."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from os import PathLike
from typing import TYPE_CHECKING, Any, ClassVar

from lotan.errors import LotanError
from lotan.graph_engine.exchange import EXCHANGE_DTYPES
from lotan.nn_engine.optim import OPTIMIZERS
from lotan.options.declare import (
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    ENGINES,
    MONITORS,
    PARTITIONERS,
    check_partitioner,
    declared,
    positive_int,
    setting,
)
from lotan.planner.placement import MODES, Placement

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = [
    "OPTIMIZER_KEYS",
    "Checkpoints",
    "EngineOptions",
    "Local",
    "OptimizerConfig",
    "Spark",
    "Training",
]


@dataclass(frozen=True)
class Training:
    """How long and how a model trains, and what is reported."""

    epochs: int = setting(DEFAULT_EPOCHS, "full-batch epochs, one optimizer step each")
    seed: int = setting(0, "seeds the dropout masks (a hash of seed, epoch, layer, vertex)")
    patience: int | None = setting(
        None,
        "stop when monitor has not improved for this many epochs and keep the best epoch's "
        "weights (None: train every epoch)",
    )
    monitor: str = setting("val_acc", f"the metric patience watches: one of {list(MONITORS)}")
    eval_every: int = setting(
        1,
        "measure the accuracies (dropout off) after every this many epochs and after the last "
        "(the others record NaN and skip the evaluation stream)",
    )
    progress: bool = setting(True, "print one line per epoch")

    def __post_init__(self) -> None:
        positive_int("epochs", self.epochs)
        positive_int("patience", self.patience, none=True)
        if self.monitor not in MONITORS:
            raise LotanError(f"monitor={self.monitor!r} is not one of {list(MONITORS)}")
        positive_int("eval_every", self.eval_every)
        if not isinstance(self.seed, int) or isinstance(self.seed, bool):
            raise LotanError(f"seed must be an integer, found {self.seed!r}")


@dataclass(frozen=True)
class OptimizerConfig:
    """One model's optimizer: ``name`` (``adam``, ``adamw``, ``sgd``), ``lr``,
    ``weight_decay`` and ``momentum`` (SGD)."""

    name: str = setting("adam", f"one of {list(OPTIMIZERS)}", keyword="optimizer")
    lr: float = setting(DEFAULT_LR, "learning rate")
    weight_decay: float = setting(0.0, "weight decay (L2, or decoupled for adamw)")
    momentum: float = setting(0.0, "SGD momentum")

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


#: ``lotan.grid`` keys that configure the optimizer rather than the model.
OPTIMIZER_KEYS = tuple(k for k, _, _ in declared(OptimizerConfig))


@dataclass(frozen=True)
class Checkpoints:
    """Checkpoints of a run (see :mod:`lotan.training.checkpoint`)."""

    directory: str | None = setting(
        None, "write checkpoints into this directory (None: none)", keyword="checkpoint_dir"
    )
    every: int = setting(
        10, "write one after every this many epochs (and at the end)", keyword="checkpoint_every"
    )
    resume: bool = setting(False, "continue from the newest checkpoint in checkpoint_dir")

    def __post_init__(self) -> None:
        if self.directory is not None:
            if not isinstance(self.directory, str | PathLike):
                raise LotanError(f"checkpoint_dir must be a path, found {self.directory!r}")
            object.__setattr__(self, "directory", str(self.directory))
        positive_int("checkpoint_every", self.every)
        if not isinstance(self.resume, bool):
            raise LotanError(f"resume must be true or false, found {self.resume!r}")
        if self.resume and self.directory is None:
            raise LotanError("resume=True needs checkpoint_dir: the directory to resume from")


@dataclass(frozen=True)
class EngineOptions:
    """Where a run runs and how its graph is cut; ``engine="auto"``'s settings (it picks the
    local engine or Spark, :func:`lotan.engines.choice.choose_engine`). :class:`Spark` and
    :class:`Local` name the engine."""

    kind: ClassVar[str] = "auto"

    partitions: int | None = setting(
        None,
        "graph partitions (None: the engine's default: Spark's default parallelism, or 1)",
        keyword="num_partitions",
    )
    partitioner: str = setting(
        "hash", f"which partition owns each vertex: one of {list(PARTITIONERS)}"
    )
    placement: str = setting(
        "fused",
        f"one of {list(MODES)}: dense work in the graph stages' Spark stages, or in stages of "
        "its own that ask for GPUs",
    )
    dense_gpus: float = setting(1.0, "GPUs each dense task asks for under placement='split'")
    dense_cpus: int = setting(1, "CPUs each dense task asks for under placement='split'")
    exchange_dtype: str = setting(
        "float32",
        f"how forward exchanges carry rows: one of {list(EXCHANGE_DTYPES)} (bfloat16: half "
        "the bytes, not exact)",
    )
    session: SparkSession | None = setting(
        None,
        "the SparkSession to run on (default: the active one, else a new local one)",
        keyword="spark",
        python_only="a live SparkSession; a job sets its session with `spark:` settings, "
        "the estimator uses the session of the DataFrame it is given",
    )

    def __post_init__(self) -> None:
        positive_int("num_partitions", self.partitions, none=True)
        check_partitioner(self.partitioner)
        if self.exchange_dtype not in EXCHANGE_DTYPES:
            raise LotanError(
                f"exchange_dtype={self.exchange_dtype!r} is not one of {list(EXCHANGE_DTYPES)}"
            )
        self.placement_config()  # validates

    def placement_config(self) -> Placement:
        """Where dense work runs (:class:`~lotan.planner.placement.Placement`)."""
        return Placement(self.placement, self.dense_gpus, self.dense_cpus)

    @staticmethod
    def named(kind: str, **settings: Any) -> EngineOptions:
        """The options of the engine ``kind`` (``auto``, ``spark`` or ``local``)."""
        classes: dict[str, type[EngineOptions]] = {"auto": EngineOptions, "spark": Spark}
        classes["local"] = Local
        if kind not in classes:
            raise LotanError(f"engine={kind!r} is not one of {list(ENGINES)}")
        return classes[kind](**settings)


@dataclass(frozen=True)
class Spark(EngineOptions):
    """The Spark engine (``engine="spark"``): the ``session`` given, else the active one,
    else a new local one."""

    kind: ClassVar[str] = "spark"


@dataclass(frozen=True)
class Local(EngineOptions):
    """The local engine (``engine="local"``): the same plan and kernels in this process (a
    ``session`` is not used)."""

    kind: ClassVar[str] = "local"
