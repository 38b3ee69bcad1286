"""The bad-input table of the docs, as code: each case builds one wrong input and names the
error it must give. ``tests/test_bad_input.py`` runs every case; the docs' table is
:func:`table` (generated when the site is built, ``docs/hooks.py``)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
import yaml
from torch_geometric.nn.models import GAT, GCN

import lotan
from lotan.errors import (
    EngineError,
    GraphInputError,
    LotanError,
    UnsupportedModelError,
)


@dataclass(frozen=True)
class Case:
    name: str
    what: str  # the wrong input, as the docs' table says it
    error: type[LotanError]
    message: str  # a fragment of the error's text
    run: Callable[[Any, Path], Any]  # (spark session, tmp dir) -> raises
    spark: bool = False


CASES: list[Case] = []


def case(name: str, what: str, error: type[LotanError], message: str, *, spark: bool = False):
    def register(fn: Callable[[Any, Path], Any]) -> Callable[[Any, Path], Any]:
        CASES.append(Case(name, what, error, message, fn, spark))
        return fn

    return register


def _arrays(**over: Any) -> dict[str, Any]:
    rng = np.random.default_rng(0)
    base: dict[str, Any] = {
        "x": rng.standard_normal((6, 3)).astype(np.float32),
        "src": np.array([0, 1, 2, 3, 4, 5]),
        "dst": np.array([1, 2, 3, 4, 5, 0]),
        "y": np.array([0, 1, 0, 1, 0, 1]),
        "split": np.array(["train", "train", "val", "val", "test", "test"], dtype=object),
    }
    base.update(over)
    return base


def _graph(**over: Any) -> lotan.Graph:
    return lotan.Graph.from_arrays(**_arrays(**over))


def _fit(model: torch.nn.Module, graph: lotan.Graph, **kw: Any) -> Any:
    args = {"epochs": 1, "engine": "local", "progress": False, **kw}
    return lotan.fit(model, graph, **args)


def _frames(spark: Any) -> tuple[Any, Any]:
    return _graph().dataframes(spark)


# ------------------------------------------------------------------ columns and types
@case(
    "missing-column",
    "vertices DataFrame without a `features` column",
    GraphInputError,
    "needs columns ['id', 'features', 'label', 'split']; missing ['features'], found",
    spark=True,
)
def _missing_column(spark: Any, tmp: Path) -> Any:
    v, e = _frames(spark)
    return lotan.Graph.from_dataframes(v.drop("features"), e)


@case(
    "misnamed-column",
    "edges named `source`/`target` instead of `src`/`dst`",
    GraphInputError,
    "missing ['src', 'dst'], found ['source', 'target', 'weight']",
    spark=True,
)
def _misnamed(spark: Any, tmp: Path) -> Any:
    v, e = _frames(spark)
    return lotan.Graph.from_dataframes(
        v, e.withColumnRenamed("src", "source").withColumnRenamed("dst", "target")
    )


@case(
    "features-not-array",
    "`features` as a string column",
    GraphInputError,
    "vertices.features must be array<float>, found string",
    spark=True,
)
def _features_type(spark: Any, tmp: Path) -> Any:
    v, e = _frames(spark)
    return lotan.Graph.from_dataframes(v.withColumn("features", v["id"].cast("string")), e)


@case(
    "id-not-integer",
    "vertex ids as strings",
    GraphInputError,
    "vertices.id must be an integer column, found string",
    spark=True,
)
def _id_type(spark: Any, tmp: Path) -> Any:
    v, e = _frames(spark)
    return lotan.Graph.from_dataframes(v.withColumn("id", v["id"].cast("string")), e)


@case(
    "features-not-2d",
    "a 1-D feature array",
    GraphInputError,
    "features must be a 2-D array (vertices x features), found shape (6,)",
)
def _x_1d(spark: Any, tmp: Path) -> Any:
    return _graph(x=np.zeros(6, np.float32))


@case(
    "ragged-features",
    "feature arrays of different lengths",
    GraphInputError,
    "every vertex needs the same number of features; found lengths from 2 to 3",
    spark=True,
)
def _ragged(spark: Any, tmp: Path) -> Any:
    from pyspark.sql import functions as F

    v, e = _frames(spark)
    short = F.when(F.col("id") == 0, F.slice("features", 1, 2)).otherwise(F.col("features"))
    return lotan.Graph.from_dataframes(v.withColumn("features", short), e)


# ------------------------------------------------------------------ edge features
@case(
    "edge-attr-shape",
    "edge features with a row count other than the edges'",
    GraphInputError,
    "edge features must be one row per edge, shape (6, D), found shape (5, 2)",
)
def _edge_attr_shape(spark: Any, tmp: Path) -> Any:
    return _graph(edge_attr=np.ones((5, 2), np.float32))


@case(
    "nan-edge-attr",
    "NaN (or inf) in the edge features",
    GraphInputError,
    "edge features must be finite; 1 edges have NaN or inf features, e.g. edges [2]",
)
def _nan_edge_attr(spark: Any, tmp: Path) -> Any:
    attr = np.ones((6, 2), np.float32)
    attr[2, 0] = np.inf
    return _graph(edge_attr=attr)


@case(
    "edge-attr-not-array",
    "an edges `attr` column of strings",
    GraphInputError,
    "edges.attr (edge features) must be array<float>, found string",
    spark=True,
)
def _edge_attr_type(spark: Any, tmp: Path) -> Any:
    v, e = _frames(spark)
    return lotan.Graph.from_dataframes(v, e.withColumn("attr", e["src"].cast("string")))


@case(
    "ragged-edge-attr",
    "edge feature arrays of different lengths",
    GraphInputError,
    "every edge needs the same number of features; edges.attr has lengths from 1 to 2",
    spark=True,
)
def _ragged_edge_attr(spark: Any, tmp: Path) -> Any:
    from pyspark.sql import functions as F

    v, e = _graph(edge_attr=np.ones((6, 2), np.float32)).dataframes(spark)
    short = F.when(F.col("src") == 0, F.slice("attr", 1, 1)).otherwise(F.col("attr"))
    return lotan.Graph.from_dataframes(v, e.withColumn("attr", short))


@case(
    "pyg-edge-attr-shape",
    "PyG `edge_attr` with a row count other than `edge_index`'s",
    GraphInputError,
    "data.edge_attr must be a float tensor of shape [6, num_edge_features] (one row per edge "
    "of edge_index), found torch.float32 of shape [7, 2]",
)
def _pyg_edge_attr(spark: Any, tmp: Path) -> Any:
    return _from_pyg(edge_attr=torch.ones(7, 2))


@case(
    "edge-dim-mismatch",
    "`GATConv(edge_dim=4)` on a graph with 2 edge features",
    UnsupportedModelError,
    "GAT.convs[0]: shape mismatch, the layer expects 4 edge features but the graph has 2; "
    "fix edge_dim",
)
def _edge_dim(spark: Any, tmp: Path) -> Any:
    return _fit(GAT(3, 4, 2, 2, edge_dim=4), _graph(edge_attr=np.ones((6, 2), np.float32)))


@case(
    "no-edge-features",
    "a layer that reads edge features (`GATConv(edge_dim=2)`) on a graph without them",
    UnsupportedModelError,
    "GAT.convs[0] reads edge features, but the graph has none; give the graph edge features",
)
def _no_edge_attr(spark: Any, tmp: Path) -> Any:
    return _fit(GAT(3, 4, 2, 2, edge_dim=2), _graph())


# ------------------------------------------------------------------ vertices and edges
@case(
    "duplicate-ids",
    "two vertices with id 7",
    GraphInputError,
    "vertex ids must be unique; 1 ids occur more than once, e.g. [7]",
)
def _dup(spark: Any, tmp: Path) -> Any:
    return _graph(ids=np.array([7, 7, 1, 2, 3, 4]), src=np.array([7]), dst=np.array([1]))


@case(
    "unknown-endpoint",
    "an edge to a vertex id that does not exist",
    GraphInputError,
    "1 edges have a dst that is not a vertex id, e.g. [99]",
)
def _unknown(spark: Any, tmp: Path) -> Any:
    return _graph(src=np.array([0, 1]), dst=np.array([1, 99]))


@case("no-edges", "an empty edge list", GraphInputError, "the graph has no edges")
def _no_edges(spark: Any, tmp: Path) -> Any:
    return _graph(src=np.array([], np.int64), dst=np.array([], np.int64))


@case(
    "nan-features",
    "NaN (or inf) in the features",
    GraphInputError,
    "features must be finite; 1 vertices have NaN or inf features, e.g. ids [2]",
)
def _nan(spark: Any, tmp: Path) -> Any:
    x = _arrays()["x"].copy()
    x[2, 1] = np.nan
    return _graph(x=x)


@case(
    "inf-weight",
    "an infinite (or NaN) edge weight",
    GraphInputError,
    "edge weights must be finite; 1 are NaN or inf",
)
def _inf_weight(spark: Any, tmp: Path) -> Any:
    return _graph(weight=np.array([1, 1, np.inf, 1, 1, 1], np.float32))


@case(
    "negative-weight-gcn",
    "negative edge weights with `GCNConv` (degree normalization)",
    GraphInputError,
    "the graph has negative edge weights (smallest -2) and the model normalizes by weighted degree",
)
def _negative_weight(spark: Any, tmp: Path) -> Any:
    g = _graph(weight=np.array([1, 1, -2, 1, 1, 1], np.float32))
    return _fit(GCN(3, 4, 2, 2), g)


# ------------------------------------------------------------------ labels and splits
@case(
    "negative-label",
    "a label of -5",
    GraphInputError,
    "labels must be >= 0 (or -1/null for unknown), found -5",
)
def _neg_label(spark: Any, tmp: Path) -> Any:
    return _graph(y=np.array([0, 1, -5, 1, 0, 1]))


@case(
    "unlabeled-train",
    "a train vertex without a label",
    GraphInputError,
    "1 train vertices have no label",
)
def _unlabeled(spark: Any, tmp: Path) -> Any:
    return _graph(y=np.array([0, -1, 0, 1, 0, 1]))


@case(
    "label-beyond-outputs",
    "labels up to 3 for a model with 2 outputs",
    GraphInputError,
    "labels go up to 3 but the model has only 2 outputs; build it with out_channels >= 4",
)
def _labels_wide(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(y=np.array([0, 1, 3, 1, 0, 1])))


@case(
    "empty-train-split",
    "no vertex in the train split",
    GraphInputError,
    "the train split is empty",
)
def _no_train(spark: Any, tmp: Path) -> Any:
    split = np.array(["val", "val", "val", "test", "test", "test"], dtype=object)
    return _fit(GCN(3, 4, 2, 2), _graph(split=split))


@case(
    "unknown-split",
    "a split value `training`",
    GraphInputError,
    "split must be 'train', 'val', 'test' or None, found ['training']",
)
def _bad_split(spark: Any, tmp: Path) -> Any:
    split = np.array(["training", "train", "val", "val", "test", "test"], dtype=object)
    return _graph(split=split)


@case(
    "overlapping-splits",
    "PyG masks with a vertex in both train and test",
    GraphInputError,
    "test_mask overlaps an earlier split on 1 vertices",
)
def _overlap(spark: Any, tmp: Path) -> Any:
    data = _graph().to_pyg()
    data.test_mask[0] = True  # vertex 0 is a train vertex
    return lotan.Graph.from_pyg(data)


# ------------------------------------------------------------------ PyG Data fields
def _from_pyg(**fields: Any) -> Any:
    """``Graph.from_pyg`` of the 6-vertex graph's ``Data`` with ``fields`` replaced."""
    data = _graph().to_pyg()
    for key, value in fields.items():
        data[key] = value
    return lotan.Graph.from_pyg(data)


@case(
    "pyg-float-edge-index",
    "PyG `edge_index` as a float tensor",
    GraphInputError,
    "data.edge_index must be an integer tensor (torch.long) of vertex indices, found torch.float32",
)
def _pyg_float_edges(spark: Any, tmp: Path) -> Any:
    return _from_pyg(edge_index=_graph().to_pyg().edge_index.float() + 0.7)


@case(
    "pyg-transposed-edge-index",
    "PyG `edge_index` of shape `[E, 2]`",
    GraphInputError,
    "data.edge_index has shape [6, 2]; PyG expects [2, num_edges] (row 0 sources, row 1 "
    "targets); it looks transposed — pass edge_index.t().contiguous()",
)
def _pyg_transposed(spark: Any, tmp: Path) -> Any:
    return _from_pyg(edge_index=_graph().to_pyg().edge_index.t().contiguous())


@case(
    "pyg-edge-index-range",
    "PyG `edge_index` with an entry -1 or >= N",
    GraphInputError,
    "data.edge_index must hold vertex indices 0..5 (x has 6 rows); 2 edges have others, "
    "e.g. [-1, 6]",
)
def _pyg_range(spark: Any, tmp: Path) -> Any:
    ei = _graph().to_pyg().edge_index.clone()
    ei[0, 1], ei[1, 3] = -1, 6
    return _from_pyg(edge_index=ei)


@case(
    "pyg-sparse-adjacency",
    "a PyG Data with `adj_t` (`T.ToSparseTensor`) instead of `edge_index`",
    GraphInputError,
    "a PyG Data needs `x` (vertex features) and `edge_index` (it has `adj_t`",
)
def _pyg_adj(spark: Any, tmp: Path) -> Any:
    data = _graph().to_pyg()
    data.adj_t = data.edge_index  # what T.ToSparseTensor leaves: no edge_index
    del data.edge_index
    return lotan.Graph.from_pyg(data)


@case(
    "pyg-edge-weight-shape",
    "PyG `edge_weight` of shape `[E, 1]`",
    GraphInputError,
    "data.edge_weight must be a float tensor of shape [6] (one weight per edge of "
    "edge_index), found torch.float32 of shape [6, 1]; flatten it with edge_weight.view(-1)",
)
def _pyg_weight(spark: Any, tmp: Path) -> Any:
    return _from_pyg(edge_weight=torch.ones(6, 1))


@case(
    "pyg-float-labels",
    "PyG `y` as floats",
    GraphInputError,
    "data.y must hold one integer class id per vertex (torch.long, shape [6] or [6, 1]; -1 "
    "for unknown), found torch.float32 of shape [6]",
)
def _pyg_float_y(spark: Any, tmp: Path) -> Any:
    return _from_pyg(y=torch.tensor([0.0, 1.0, 0.5, 1.0, 0.0, 1.0]))


@case(
    "pyg-label-shape",
    "PyG `y` of shape `[N, 2]` (multi-label targets)",
    GraphInputError,
    "found torch.int64 of shape [6, 2]; Lotan trains single-label vertex classification",
)
def _pyg_y_shape(spark: Any, tmp: Path) -> Any:
    return _from_pyg(y=torch.zeros(6, 2, dtype=torch.long))


@case(
    "pyg-index-mask",
    "PyG `train_mask` as a list of vertex indices",
    GraphInputError,
    "data.train_mask must be a boolean tensor of shape [6] (one entry per vertex), found "
    "torch.int64 of shape [2]; it looks like a list of vertex indices; make it a mask with "
    "torch_geometric.utils.index_to_mask(idx, size=6)",
)
def _pyg_index_mask(spark: Any, tmp: Path) -> Any:
    return _from_pyg(train_mask=torch.tensor([0, 1]))


@case(
    "pyg-mask-length",
    "PyG `val_mask` with a length other than N",
    GraphInputError,
    "data.val_mask must be a boolean tensor of shape [6] (one entry per vertex), found "
    "torch.bool of shape [5]",
)
def _pyg_mask_length(spark: Any, tmp: Path) -> Any:
    return _from_pyg(val_mask=torch.ones(5, dtype=torch.bool))


@case(
    "pyg-split-masks",
    "PyG `train_mask` of shape `[N, 10]` (ten random splits)",
    GraphInputError,
    "found torch.bool of shape [6, 10]; it holds 10 splits; pick one, e.g. data.train_mask[:, 0]",
)
def _pyg_many_splits(spark: Any, tmp: Path) -> Any:
    return _from_pyg(train_mask=torch.zeros(6, 10, dtype=torch.bool))


@case(
    "float-edge-ids",
    "`from_arrays` with float `src` (e.g. 3.7)",
    GraphInputError,
    "src must hold integer vertex ids, found dtype float64; a float id would be truncated",
)
def _float_ids(spark: Any, tmp: Path) -> Any:
    return _graph(src=np.array([0.0, 1.0, 3.7, 3.0, 4.0, 5.0]))


@case(
    "float-labels",
    "`from_arrays` with float labels",
    GraphInputError,
    "labels must be integer class ids (-1 for unknown), found dtype float64",
)
def _float_labels(spark: Any, tmp: Path) -> Any:
    return _graph(y=np.array([0.0, 1.0, 0.0, 1.5, 0.0, 1.0]))


# ------------------------------------------------------------------ model and settings
@case(
    "input-width",
    "a model built for 5 features on a graph with 3",
    UnsupportedModelError,
    "the layer expects 5 input features but gets 3",
)
def _in_width(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(5, 4, 2, 2), _graph())


@case(
    "unsupported-layer",
    "a model Lotan cannot plan (`EdgeCNN`)",
    UnsupportedModelError,
    "EdgeCNN is not supported; supported: torch_geometric.nn.models GCN, GraphSAGE, GIN, GAT",
)
def _unsupported(spark: Any, tmp: Path) -> Any:
    from torch_geometric.nn.models import EdgeCNN

    return _fit(EdgeCNN(3, 4, 2, 2), _graph())


@case(
    "unsupported-norm",
    '`GCN(norm="graph_norm")` (PyG\'s GraphNorm: learnable mean shift, not supported)',
    UnsupportedModelError,
    "GCN.norms[0]: GraphNorm is not supported; supported normalizations: torch.nn.BatchNorm1d",
)
def _graph_norm(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2, norm="graph_norm"), _graph())


@case(
    "batch-norm-one-vertex",
    "BatchNorm in training on a graph of one vertex (torch refuses it too)",
    LotanError,
    "BatchNorm in training needs more than one vertex (the graph has 1)",
)
def _batch_norm_one_vertex(spark: Any, tmp: Path) -> Any:
    graph = lotan.Graph.from_arrays(
        x=np.ones((1, 3), np.float32), y=[0], split=["train"], src=[0], dst=[0]
    )
    return _fit(GCN(3, 4, 2, 2, norm="batch_norm"), graph)


@case(
    "partitions-zero",
    "`num_partitions=0`",
    LotanError,
    "num_partitions must be a positive integer or None, found 0",
)
def _parts_zero(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(), num_partitions=0)


@case(
    "partitions-too-many",
    "more partitions than vertices",
    GraphInputError,
    "num_partitions=9 is more than the graph's 6 vertices",
)
def _parts_many(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(), num_partitions=9)


# ------------------------------------------------------------------ environment
def _cli(tmp: Path, *extra: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    job = tmp / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "graph": {"sbm": {"num_vertices": 50, "num_classes": 2, "num_features": 3}},
                "model": {"name": "GCN", "hidden_channels": 4, "num_layers": 2},
                "epochs": 1,
                "engine": "spark",  # the cases are about starting Spark
            }
        )
    )
    return subprocess.run(
        [sys.executable, "-m", "lotan", "fit", "--config", str(job), *extra],
        capture_output=True,
        text=True,
        env={**os.environ, **(env or {})},
        timeout=120,
    )


class CliFailed(LotanError):
    """What a failed ``lotan`` command printed (for the cases that run it)."""


def _raise_cli(out: subprocess.CompletedProcess) -> None:
    if out.returncode == 2:
        raise CliFailed(out.stderr)
    raise AssertionError(f"exit {out.returncode}: {out.stderr[-2000:]}")


@case(
    "unreachable-master",
    "`spark.master` pointing at a port nobody listens on",
    CliFailed,
    "cannot reach the Spark master spark://127.0.0.1:9",
)
def _master(spark: Any, tmp: Path) -> Any:
    _raise_cli(_cli(tmp, "--set", "spark.master=spark://127.0.0.1:9"))


def _fake_java(tmp: Path, version: str) -> str:
    home = tmp / "jdk"
    (home / "bin").mkdir(parents=True)
    java = home / "bin" / "java"
    java.write_text(f"#!/bin/sh\necho 'openjdk version \"{version}\" 2021-01-19' >&2\n")
    java.chmod(0o755)
    return str(home)


@case(
    "java-too-old",
    "Java 11 (Spark 4 needs 17+)",
    CliFailed,
    "Spark 4 needs Java 17+, found Java 11",
)
def _old_java(spark: Any, tmp: Path) -> Any:
    _raise_cli(_cli(tmp, env={"JAVA_HOME": _fake_java(tmp, "11.0.2")}))


@case(
    "java-missing",
    "no Java at all",
    CliFailed,
    "Java was not found (JAVA_HOME is unset and no `java` on PATH)",
)
def _no_java(spark: Any, tmp: Path) -> Any:
    env = dict(os.environ)
    env.pop("JAVA_HOME", None)
    bin_dir = str(Path(sys.executable).parent)
    out = _cli(tmp, env={"PATH": bin_dir, "JAVA_HOME": ""})
    _raise_cli(out)


@case(
    "corrupted-checkpoint",
    "a checkpoint file that is not one (truncated, overwritten)",
    LotanError,
    "could not read checkpoint",
)
def _corrupt(spark: Any, tmp: Path) -> Any:
    (tmp / "ckpt").mkdir()
    (tmp / "ckpt" / "epoch-000003.pt").write_bytes(b"not a checkpoint")
    return _fit(GCN(3, 4, 2, 2), _graph(), checkpoint_dir=str(tmp / "ckpt"), resume=True)


@case(
    "foreign-checkpoint",
    "resuming a checkpoint of another model or optimizer",
    LotanError,
    "was written by a run with other settings",
)
def _foreign(spark: Any, tmp: Path) -> Any:
    ckpt = str(tmp / "ckpt")
    _fit(GCN(3, 4, 2, 2), _graph(), checkpoint_dir=ckpt)
    return _fit(GCN(3, 8, 2, 2), _graph(), checkpoint_dir=ckpt, resume=True)


@case(
    "config-typo",
    "a job file with `learning_rate:` instead of `lr:`",
    CliFailed,
    "unknown key(s) ['learning_rate']",
)
def _typo(spark: Any, tmp: Path) -> Any:
    _raise_cli(_cli(tmp, "--set", "learning_rate=0.1"))


@case(
    "unknown-optimizer",
    '`optimizer="adagrad"`',
    LotanError,
    "optimizer='adagrad' is not supported",
)
def _optimizer(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(), optimizer="adagrad")


@case(
    "unknown-placement",
    '`placement="gpu"`',
    LotanError,
    "placement='gpu' is not one of ['fused', 'split']",
)
def _placement(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(), placement="gpu")


@case(
    "fractional-gpus",
    "`dense_gpus=1.5` (Spark takes a fraction of one GPU or whole GPUs)",
    LotanError,
    "not a fraction above 1",
)
def _gpus(spark: Any, tmp: Path) -> Any:
    return _fit(GCN(3, 4, 2, 2), _graph(), placement="split", dense_gpus=1.5)


def table() -> str:
    """Every case as a row of the docs' bad-input table."""
    lines = ["| case | input | error | message (excerpt) |", "|---|---|---|---|"]
    for c in CASES:
        error = "`lotan` exits 2" if c.error.__name__ == "CliFailed" else f"`{c.error.__name__}`"
        message = c.message.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.what} | {error} | {message} |")
    return "\n".join(lines)


__all__ = ["CASES", "Case", "CliFailed", "EngineError", "table"]
