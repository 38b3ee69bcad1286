"""A training job as a YAML file: what ``lotan fit|explain|predict --config job.yaml`` runs.

The keys are those of the Python API: ``lotan.fit``'s keyword arguments at the top level
(``epochs``, ``lr``, ``engine``, ``num_partitions``, ``checkpoint_dir``, ...), plus

- ``graph``: one source — ``planetoid: Cora`` or ``ogb: ogbn-arxiv`` (with optional ``root``;
  an ``ogb`` graph is read by Spark when the job has a session), ``sbm: {num_vertices:
  ..., num_classes: ..., num_features: ..., avg_degree: ..., seed: ...}`` (``lotan.datasets.sbm``),
  or ``vertices:`` and ``edges:`` Parquet paths (``lotan.Graph.from_parquet``);
- ``model``: ``name`` — a ``torch_geometric.nn.models`` class (``GCN``, ``GraphSAGE``,
  ``GIN``) or ``package.module:function`` — and its keyword arguments; ``in_channels`` and
  ``out_channels`` come from the graph. The model is built after ``torch.manual_seed(seed)``;
- ``grid`` (optional): lists of values to try, as ``lotan.grid`` takes them — model keys go to
  the model, ``optimizer``/``lr``/``weight_decay``/``momentum`` to the optimizer, ``seed``
  makes replicates (each model built and its dropout seeded with its own) — trained
  together by ``lotan.fit_many`` (with ``memory_budget``);
- ``spark``: Spark settings passed to the session as they are (``spark.executor.memory: 4g``);
- ``planner`` (optional): planner flags, ``{reorder: false, edge_block_mb: 256}``
  (:class:`lotan.PlannerFlags`).

Which keys are ``lotan.fit``'s is declared once, in :mod:`lotan.options` (:data:`FIT_KEYS`):
the job accepts every setting ``fit`` takes but a live SparkSession.

Unknown keys and bad values are errors that name the key. ``--set key=value`` overrides a key
(dotted for nested ones: ``model.hidden_channels=32``; ``spark.*`` keys go to ``spark``);
values are read as YAML (``--set patience=null``, ``--set lr=0.05``).
"""

from __future__ import annotations

import importlib
import os
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from lotan.errors import LotanError
from lotan.options import FIT_KEYWORDS, OPTIMIZER_KEYS, FitConfig, OptimizerConfig
from lotan.selection import SEED_KEY

if TYPE_CHECKING:
    import torch
    from pyspark.sql import SparkSession

    from lotan.graph import Graph

__all__ = ["FIT_KEYS", "JobConfig", "JobError", "load_job", "parse_overrides"]

#: ``torch_geometric.nn.models`` classes a config may name.
PYG_MODELS = ("GCN", "GraphSAGE", "GIN")
#: Keys of the ``graph`` section, by source.
GRAPH_SOURCES = {
    "planetoid": ("planetoid", "root"),
    "ogb": ("ogb", "root"),
    "sbm": ("sbm",),
    "parquet": ("vertices", "edges"),
}
#: The job keys of ``lotan.fit``'s settings: all but those only Python can pass (a live
#: SparkSession: a job configures its session with the ``spark`` section).
FIT_KEYS = tuple(kw for kw, _, _, decl in FIT_KEYWORDS if decl.python_only is None)
_SECTIONS = ("graph", "model", "grid", "spark", "memory_budget")


class JobError(LotanError):
    """A job config that cannot run: its message names the key and what to change."""


@dataclass(frozen=True)
class JobConfig:
    """A validated job: the graph source, the model, ``lotan.fit``'s settings, an optional
    grid, Spark settings. Build one with :func:`load_job`."""

    graph: dict[str, Any]
    model: dict[str, Any]
    fit: FitConfig
    grid: dict[str, list[Any]] | None = None
    memory_budget: str | int = "4g"
    spark: dict[str, str] = field(default_factory=dict)
    source: str = "<dict>"

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> JobConfig:
        if not isinstance(data, Mapping):
            raise JobError(f"{source}: a job config is a mapping of keys to values")
        unknown = sorted(set(data) - set(FIT_KEYS) - set(_SECTIONS))
        if unknown:
            raise JobError(
                f"{source}: unknown key(s) {unknown}; a job has {list(_SECTIONS)} and "
                f"lotan.fit's settings {list(FIT_KEYS)}"
            )
        for key in ("graph", "model"):
            if key not in data:
                raise JobError(f"{source}: the job needs a {key!r} section")
        fit_args = {k: data[k] for k in FIT_KEYS if k in data}
        try:
            fit = FitConfig.from_keywords(**fit_args)
        except LotanError as exc:
            raise JobError(f"{source}: {exc}") from exc
        grid = data.get("grid")
        if grid is not None:
            if not isinstance(grid, Mapping) or not grid:
                raise JobError(f"{source}: grid must map keys to lists of values, found {grid!r}")
            for k, v in grid.items():
                if not isinstance(v, list) or not v:
                    raise JobError(f"{source}: grid.{k} must be a non-empty list, found {v!r}")
                if k in FIT_KEYS and k not in (*OPTIMIZER_KEYS, SEED_KEY):
                    raise JobError(
                        f"{source}: grid.{k}: a grid varies model and optimizer keys "
                        f"({list(OPTIMIZER_KEYS)}) and {SEED_KEY!r} (replicates); {k!r} is "
                        "one setting for every model"
                    )
            if fit.checkpoints.directory is not None:
                raise JobError(
                    f"{source}: checkpoint_dir is not supported with a grid yet; remove one"
                )
            grid = {str(k): list(v) for k, v in grid.items()}
        spark = data.get("spark") or {}
        if not isinstance(spark, Mapping):
            raise JobError(f"{source}: spark must map Spark settings to values, found {spark!r}")
        bad = [k for k in spark if not str(k).startswith("spark.")]
        if bad:
            raise JobError(
                f"{source}: spark settings start with 'spark.', found {bad}; "
                "e.g. spark: {spark.executor.memory: 4g}"
            )
        job = cls(
            graph=_graph_section(data["graph"], source),
            model=_model_section(data["model"], source),
            fit=fit,
            grid=grid,
            memory_budget=data.get("memory_budget", "4g"),
            spark={str(k): _spark_value(v) for k, v in spark.items()},
            source=source,
        )
        return job

    # ------------------------------------------------------------------ building
    def load_graph(self, spark: SparkSession | None = None) -> Graph:
        """The graph the job names."""
        import lotan

        g = self.graph
        if "planetoid" in g:
            return lotan.datasets.planetoid(g["planetoid"], root=g.get("root"))
        if "ogb" in g:
            return lotan.datasets.ogb(g["ogb"], root=g.get("root"), spark=spark)
        if "sbm" in g:
            try:
                return lotan.datasets.sbm(**g["sbm"])
            except TypeError as exc:
                raise JobError(f"{self.source}: graph.sbm: {exc}") from exc
        return lotan.Graph.from_parquet(g["vertices"], g["edges"], spark=spark)

    def build_model(
        self, graph: Graph, *, reseed: bool = True, **overrides: Any
    ) -> torch.nn.Module:
        """The model, built after ``torch.manual_seed(seed)`` (``reseed=False``: as torch is
        seeded now; ``overrides``: grid values)."""
        import torch

        kwargs = {k: v for k, v in self.model.items() if k != "name"}
        kwargs.update(overrides)
        name = self.model["name"]
        factory = _factory(name, self.source)
        if reseed:
            torch.manual_seed(self.fit.training.seed)
        try:
            model = factory(
                in_channels=graph.num_features, out_channels=graph.num_classes, **kwargs
            )
        except TypeError as exc:
            raise JobError(f"{self.source}: model ({name}): {exc}") from exc
        if not isinstance(model, torch.nn.Module):
            raise JobError(f"{self.source}: model.name {name!r} did not return a torch.nn.Module")
        return model

    def trials(self, graph: Graph) -> list[Any]:
        """The grid as ``lotan.grid`` trials (models built in order, each after seeding with
        the job's seed, or with its own under a ``seed`` key: replicates)."""
        import lotan

        assert self.grid is not None
        base = self.fit.optimizer.as_dict()
        space = dict(self.grid)
        try:
            trials = lotan.grid(
                lambda **kw: self.build_model(graph, reseed=False, **kw),
                space,
                seed=self.fit.training.seed,
            )
        except LotanError as exc:
            raise JobError(f"{self.source}: grid: {exc}") from exc
        for t in trials:
            chosen = {k: v for k, v in t.params.items() if k in OPTIMIZER_KEYS}
            if "optimizer" in chosen:
                chosen["name"] = chosen.pop("optimizer")
            t.optimizer = OptimizerConfig.of({**base, **chosen})
        return trials


def _spark_value(v: Any) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    return str(v)


def _graph_section(g: Any, source: str) -> dict[str, Any]:
    if not isinstance(g, Mapping):
        raise JobError(f"{source}: graph must be a mapping, e.g. {{planetoid: Cora}}")
    kinds = [k for k, keys in GRAPH_SOURCES.items() if keys[0] in g]
    if len(kinds) != 1:
        raise JobError(
            f"{source}: graph needs exactly one source: 'planetoid: <name>', 'ogb: <name>', "
            f"'sbm: {{...}}', or 'vertices:' and 'edges:' Parquet paths; found keys {sorted(g)}"
        )
    allowed = GRAPH_SOURCES[kinds[0]]
    unknown = sorted(set(g) - set(allowed))
    if unknown:
        raise JobError(f"{source}: unknown key(s) graph.{unknown} for a {kinds[0]} graph")
    if kinds[0] == "parquet" and not all(isinstance(g.get(k), str) for k in allowed):
        raise JobError(f"{source}: graph.vertices and graph.edges must both be paths")
    if kinds[0] == "sbm" and not isinstance(g["sbm"], Mapping):
        raise JobError(f"{source}: graph.sbm must be a mapping of lotan.datasets.sbm arguments")
    return dict(g)


def _model_section(m: Any, source: str) -> dict[str, Any]:
    if not isinstance(m, Mapping) or "name" not in m:
        raise JobError(
            f"{source}: model needs a name ({', '.join(PYG_MODELS)} or 'package.module:function')"
            f" and its arguments, e.g. {{name: GCN, hidden_channels: 16, num_layers: 2}}"
        )
    for key in ("in_channels", "out_channels"):
        if key in m:
            raise JobError(f"{source}: model.{key} comes from the graph; remove it")
    _factory(m["name"], source)
    return dict(m)


def _factory(name: Any, source: str) -> Any:
    if not isinstance(name, str):
        raise JobError(f"{source}: model.name must be a string, found {name!r}")
    if name in PYG_MODELS:
        from torch_geometric.nn import models

        return getattr(models, name)
    if ":" not in name:
        raise JobError(
            f"{source}: model.name {name!r} is not one of {list(PYG_MODELS)} nor a "
            "'package.module:function' path"
        )
    module, attr = name.split(":", 1)
    try:
        return getattr(importlib.import_module(module), attr)
    except (ImportError, AttributeError) as exc:
        raise JobError(f"{source}: model.name {name!r}: cannot import it: {exc}") from exc


def parse_overrides(items: Sequence[str]) -> list[tuple[list[str], Any]]:
    """``--set`` items (``key=value``) as (key path, value read as YAML)."""
    import yaml

    out = []
    for item in items:
        if "=" not in item:
            raise JobError(f"--set {item!r}: expected key=value, e.g. --set lr=0.05")
        key, text = item.split("=", 1)
        key = key.strip()
        if not key:
            raise JobError(f"--set {item!r}: the key is empty")
        path = ["spark", key] if key.startswith("spark.") else key.split(".")
        try:
            value = yaml.safe_load(text) if text else ""
        except yaml.YAMLError as exc:
            raise JobError(f"--set {item!r}: the value is not valid YAML: {exc}") from exc
        out.append((path, value))
    return out


def load_job(
    path: str | os.PathLike[str] | None,
    overrides: Sequence[str] = (),
    data: Mapping[str, Any] | None = None,
) -> JobConfig:
    """Read the YAML file at ``path`` (or ``data``), apply ``--set`` overrides, validate."""
    import yaml

    source = str(path) if path is not None else "<dict>"
    if data is None:
        if path is None:
            raise JobError("give a config file (--config job.yaml)")
        p = Path(path)
        if not p.is_file():
            raise JobError(f"config file {source!r} does not exist")
        try:
            data = yaml.safe_load(p.read_text()) or {}
        except yaml.YAMLError as exc:
            raise JobError(f"{source} is not valid YAML: {exc}") from exc
    if not isinstance(data, Mapping):
        raise JobError(f"{source}: a job config is a mapping of keys to values")
    merged: dict[str, Any] = _deep_copy(data)
    for keys, value in parse_overrides(overrides):
        node = merged
        for k in keys[:-1]:
            child = node.setdefault(k, {})
            if not isinstance(child, dict):
                raise JobError(f"--set {'.'.join(keys)}: {k!r} is not a section")
            node = child
        node[keys[-1]] = value
    return JobConfig.from_dict(merged, source)


def _deep_copy(data: Mapping[str, Any]) -> dict[str, Any]:
    return {k: _deep_copy(v) if isinstance(v, Mapping) else v for k, v in data.items()}
