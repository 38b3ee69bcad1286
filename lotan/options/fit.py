"""A fit's settings as one object (:class:`FitConfig`) built from ``lotan.fit``'s keywords,
and what every face derives from their declarations (:data:`FIT_KEYWORDS`)."""

from __future__ import annotations

import inspect
from collections.abc import Callable, Mapping
from dataclasses import MISSING, Field, dataclass, field, fields, replace
from typing import Any

from lotan.errors import LotanError
from lotan.options.declare import ENGINES, Setting, declared
from lotan.options.objects import Checkpoints, EngineOptions, OptimizerConfig, Training
from lotan.planner.flags import DEFAULT_FLAGS, PlannerFlags

__all__ = [
    "BOOLEAN_KEYWORDS",
    "FIT_KEYWORDS",
    "FitConfig",
    "keyword_doc",
    "keyword_type",
    "keywords_for",
]


#: The option objects of a fit, by :class:`FitConfig` field, with the keywords they take.
_PARTS: dict[str, type] = {
    "training": Training,
    "optimizer": OptimizerConfig,
    "checkpoints": Checkpoints,
    "engine": EngineOptions,
}
#: Every keyword of ``lotan.fit``, in order: ``(keyword, FitConfig part, field, declaration)``;
#: plus ``engine`` (a name or an engine object) and ``planner`` (PlannerFlags).
FIT_KEYWORDS: tuple[tuple[str, str, str, Setting], ...] = tuple(
    (kw, part, f.name, decl) for part, cls in _PARTS.items() for kw, decl, f in declared(cls)
) + (
    ("engine", "engine", "kind", Setting("engine", f"one of {list(ENGINES)}, or lotan.Spark(...) "
     "/ lotan.Local(...)")),
    ("planner", "planner", "", Setting("planner", "which planner rules run (PlannerFlags, or a "
     "mapping of its fields); the result does not depend on them")),
)  # fmt: skip


def _default(f: Field[Any]) -> Any:
    return f.default if f.default is not MISSING else None


@dataclass(frozen=True)
class FitConfig:
    """Every setting of one fit, as option objects; build it from ``fit``'s keywords with
    :meth:`from_keywords`, turn it back into them with :meth:`keywords`."""

    training: Training = field(default_factory=Training)
    optimizer: OptimizerConfig = field(default_factory=OptimizerConfig)
    checkpoints: Checkpoints = field(default_factory=Checkpoints)
    engine: EngineOptions = field(default_factory=EngineOptions)
    planner: PlannerFlags = DEFAULT_FLAGS

    @classmethod
    def from_keywords(cls, **given: Any) -> FitConfig:
        """The config ``lotan.fit(..., **given)`` runs with. ``engine`` may be a name or an
        engine object (then the engine keywords stay at their defaults), ``optimizer`` a name
        or an :class:`OptimizerConfig` (likewise ``lr``, ``weight_decay``, ``momentum``),
        ``planner`` a :class:`PlannerFlags` or a mapping of its fields; unknown keywords are
        an error that lists the known ones."""
        known = {kw for kw, *_ in FIT_KEYWORDS}
        unknown = sorted(set(given) - known)
        if unknown:
            raise LotanError(f"unknown setting(s) {unknown}; lotan.fit takes {sorted(known)}")
        parts: dict[str, Any] = {}
        for part, option_cls in _PARTS.items():
            values = {
                f.name: given[kw]
                for kw, p, name, _ in FIT_KEYWORDS
                for f in fields(option_cls)
                if p == part and f.name == name and kw in given and kw != "engine"
            }
            parts[part] = _build(part, option_cls, values, given)
        parts["planner"] = _planner(given.get("planner", DEFAULT_FLAGS))
        return cls(**parts)

    def keywords(self) -> dict[str, Any]:
        """Every setting by the keyword ``lotan.fit`` takes it under."""
        out: dict[str, Any] = {}
        for kw, part, name, _ in FIT_KEYWORDS:
            if kw == "engine":
                out[kw] = self.engine.kind
            elif kw == "planner":
                out[kw] = self.planner
            else:
                out[kw] = getattr(getattr(self, part), name)
        return out

    def result_fingerprint(self) -> dict[str, Any]:
        """The settings a trained model depends on (a checkpoint resumes only under the same
        ones): not the epochs, engine, partitions, placement, progress or checkpointing."""
        t = self.training
        out: dict[str, Any] = {
            "optimizer": self.optimizer.as_dict(),
            "seed": t.seed,
            "patience": t.patience,
            "monitor": t.monitor,
        }
        # Only when set, so that checkpoints written before these settings keep their hash.
        if self.engine.exchange_dtype != "float32":
            out["exchange_dtype"] = self.engine.exchange_dtype
        if t.eval_every != 1 and t.patience is not None:  # it moves the stopping epoch
            out["eval_every"] = t.eval_every
        return out

    def with_optimizer(self, opt: OptimizerConfig) -> FitConfig:
        return replace(self, optimizer=opt)

    def with_seed(self, seed: int) -> FitConfig:
        return replace(self, training=replace(self.training, seed=seed))


#: The keywords whose value is true or false (``--resume`` / ``--no-resume`` on the command
#: line).
BOOLEAN_KEYWORDS = tuple(k for k, v in FitConfig().keywords().items() if isinstance(v, bool))


def _build(part: str, option_cls: type, values: dict[str, Any], given: Mapping[str, Any]) -> Any:
    """The ``part`` of a FitConfig from its keyword ``values``; the engine and the optimizer
    may come as objects (``given["engine"]``, ``given["optimizer"]``)."""
    obj: Any = None
    if part == "engine":
        engine = given.get("engine", "auto")
        if isinstance(engine, EngineOptions):
            obj = engine
        elif isinstance(engine, str):
            return EngineOptions.named(engine, **values)
        else:
            raise LotanError(
                f"engine must be one of {list(ENGINES)} or lotan.Spark(...) / lotan.Local(...), "
                f"found {engine!r}"
            )
    elif part == "optimizer" and not isinstance(values.get("name", ""), str):
        obj = OptimizerConfig.of(values.pop("name"))
    if obj is None:
        return option_cls(**values)
    owner = "the engine" if part == "engine" else "the optimizer"
    fixed = {f.name: _default(f) for f in fields(option_cls)}
    clash = [k for k, v in values.items() if v != fixed[k]]
    if clash:
        kws = [kw for kw, p, name, _ in FIT_KEYWORDS if p == part and name in clash]
        raise LotanError(
            f"{kws} given next to {owner} object {obj!r}: set them in the object, or pass "
            f"{owner} by name"
        )
    return obj


def _planner(value: Any) -> PlannerFlags:
    if isinstance(value, PlannerFlags):
        return value
    if isinstance(value, Mapping):
        allowed = [f.name for f in fields(PlannerFlags)]
        unknown = sorted(set(value) - set(allowed))
        if unknown:
            raise LotanError(f"unknown planner flag(s) {unknown}; expected some of {allowed}")
        return PlannerFlags(**value)
    raise LotanError(
        f"planner must be lotan.PlannerFlags(...) or a mapping of its fields, found {value!r}"
    )


def keywords_for(face: Callable[..., Any], config: FitConfig, **extra: Any) -> dict[str, Any]:
    """The settings of ``config`` that the function ``face`` (``lotan.fit``, ``fit_many``,
    ``predict``, ``explain``) takes, by keyword, with ``extra`` on top: how the command line
    and the estimator hand a validated config to the Python API."""
    accepted = inspect.signature(face).parameters
    out = {k: v for k, v in config.keywords().items() if k in accepted}
    return {**out, **extra}


def keyword_type(keyword: str) -> str:
    """The declared type of ``lotan.fit``'s ``keyword``, as written (``"int | None"``)."""
    special = {"engine": "str | EngineOptions", "planner": "PlannerFlags"}
    if keyword in special:
        return special[keyword]
    for kw, part, name, _ in FIT_KEYWORDS:
        if kw == keyword:
            (f,) = (f for f in fields(_PARTS[part]) if f.name == name)
            return str(f.type)
    raise KeyError(keyword)


def keyword_doc(keyword: str) -> str:
    """The one-line documentation of ``lotan.fit``'s ``keyword``."""
    for kw, _, _, decl in FIT_KEYWORDS:
        if kw == keyword:
            return decl.doc
    raise KeyError(keyword)
