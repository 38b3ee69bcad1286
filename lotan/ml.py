"""Spark ML: ``GNNEstimator`` / ``GNNModel``, so that full-batch GNN training is one stage of a
``pyspark.ml.Pipeline``.

    est = lotan.GNNEstimator(model=GCN(16, 16, 2, 4), edges=edges, epochs=200, lr=0.01)
    fitted = Pipeline(stages=[VectorAssembler(...), est]).fit(vertices)
    fitted.transform(vertices)   # + prediction (double), probability (vector)

The estimator's input is the vertices DataFrame (``id``, ``features`` as ``array<float>`` or
an ML ``Vector``, ``label``, ``split``; other names through ``idCol``/``featuresCol``/
``labelCol``/``splitCol``) with the edges given to the constructor — or a :class:`lotan.Graph`.
Training is :func:`lotan.fit` on the Spark engine; the model's ``transform`` is
:func:`lotan.predict` on the graph of the DataFrame it is given (the same edges), joined back
by id. ``output="embedding"`` adds the model's output vector instead (``embedding``,
``array<float>``).
"""

from __future__ import annotations

import copy
from typing import TYPE_CHECKING, Any

import torch
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters

from lotan.config import FitConfig
from lotan.errors import GraphInputError, LotanError
from lotan.graph import Graph
from lotan.planner.placement import DEFAULT_PLACEMENT

if TYPE_CHECKING:
    from pyspark.sql import DataFrame

    from lotan.training.records import FitResult

__all__ = ["GNNEstimator", "GNNModel"]

OUTPUTS = ("probability", "embedding")


def _param(name: str, doc: str, conv: Any) -> Param[Any]:
    return Param(Params._dummy(), name, doc, typeConverter=conv)


class _GNNParams(Params):
    """Column names and the output kind, shared by the estimator and its model."""

    idCol = _param("idCol", "vertex id column", TypeConverters.toString)
    featuresCol = _param(
        "featuresCol", "features column (array or vector)", TypeConverters.toString
    )
    labelCol = _param(
        "labelCol", "label column (integer, null when unknown)", TypeConverters.toString
    )
    splitCol = _param(
        "splitCol", "split column ('train'/'val'/'test'/null)", TypeConverters.toString
    )
    predictionCol = _param("predictionCol", "predicted class column", TypeConverters.toString)
    probabilityCol = _param("probabilityCol", "class probabilities column", TypeConverters.toString)
    embeddingCol = _param("embeddingCol", "model output column", TypeConverters.toString)
    output = _param(
        "output", "what transform adds: 'probability' or 'embedding'", TypeConverters.toString
    )

    def __init__(self) -> None:
        super().__init__()
        self._setDefault(
            idCol="id",
            featuresCol="features",
            labelCol="label",
            splitCol="split",
            predictionCol="prediction",
            probabilityCol="probability",
            embeddingCol="embedding",
            output="probability",
        )

    def _vertices(self, df: DataFrame, *, training: bool) -> DataFrame:
        """``df`` with Lotan's vertex columns (``id, features, label, split``)."""
        from pyspark.ml.functions import vector_to_array
        from pyspark.sql import functions as F

        cols = {k: self.getOrDefault(k) for k in ("idCol", "featuresCol", "labelCol", "splitCol")}
        need = [cols["idCol"], cols["featuresCol"]]
        if training:
            need += [cols["labelCol"], cols["splitCol"]]
        missing = [c for c in need if c not in df.columns]
        if missing:
            raise GraphInputError(
                f"the vertices DataFrame has no column(s) {missing} (found {df.columns}); "
                "rename them or set idCol/featuresCol/labelCol/splitCol"
            )
        feats = F.col(cols["featuresCol"])
        if dict(df.dtypes)[cols["featuresCol"]] == "vector":
            feats = vector_to_array(feats, "float32")
        label = F.col(cols["labelCol"]) if cols["labelCol"] in df.columns else F.lit(None)
        split = F.col(cols["splitCol"]) if cols["splitCol"] in df.columns else F.lit(None)
        return df.select(
            F.col(cols["idCol"]).alias("id"),
            feats.cast("array<float>").alias("features"),
            label.cast("long").alias("label"),
            split.cast("string").alias("split"),
        )

    def _check_output(self) -> None:
        if self.getOrDefault("output") not in OUTPUTS:
            raise LotanError(f"output={self.getOrDefault('output')!r} is not one of {OUTPUTS}")


class GNNEstimator(Estimator["GNNModel"], _GNNParams):
    """Trains ``model`` (a PyG model, as for :func:`lotan.fit`) full-batch on the Spark engine.

    Parameters are those of :func:`lotan.fit` (``epochs``, ``optimizer``, ``lr``,
    ``weight_decay``, ``momentum``, ``num_partitions``, ``partitioner``, ``seed``,
    ``patience``, ``monitor``, ``progress``, ``placement``, ``dense_gpus``, ``dense_cpus``),
    plus ``edges`` (the graph's ``src``/``dst``
    DataFrame, needed unless ``fit`` is given a :class:`lotan.Graph`), the column names and
    ``output``. ``model`` is not changed: each ``fit`` trains a copy.
    """

    epochs = _param("epochs", "full-batch epochs", TypeConverters.toInt)
    optimizer = _param("optimizer", "adam, adamw or sgd", TypeConverters.toString)
    lr = _param("lr", "learning rate", TypeConverters.toFloat)
    weight_decay = _param("weight_decay", "weight decay", TypeConverters.toFloat)
    momentum = _param("momentum", "SGD momentum", TypeConverters.toFloat)
    num_partitions = _param(
        "num_partitions", "graph partitions (0: Spark's default)", TypeConverters.toInt
    )
    partitioner = _param("partitioner", "hash or label_propagation", TypeConverters.toString)
    seed = _param("seed", "dropout seed", TypeConverters.toInt)
    patience = _param("patience", "early stopping patience (0: off)", TypeConverters.toInt)
    monitor = _param("monitor", "early stopping metric", TypeConverters.toString)
    progress = _param("progress", "print one line per epoch", TypeConverters.toBoolean)
    placement = _param(
        "placement", "fused or split (dense stages of their own)", TypeConverters.toString
    )
    dense_gpus = _param("dense_gpus", "GPUs per dense task under split", TypeConverters.toFloat)
    dense_cpus = _param("dense_cpus", "CPUs per dense task under split", TypeConverters.toInt)

    @keyword_only
    def __init__(
        self,
        *,
        model: torch.nn.Module | None = None,
        edges: DataFrame | None = None,
        epochs: int = FitConfig.epochs,
        optimizer: str = FitConfig.optimizer,
        lr: float = FitConfig.lr,
        weight_decay: float = FitConfig.weight_decay,
        momentum: float = FitConfig.momentum,
        num_partitions: int = 0,
        partitioner: str = FitConfig.partitioner,
        seed: int = FitConfig.seed,
        patience: int = 0,
        monitor: str = FitConfig.monitor,
        progress: bool = False,
        placement: str = FitConfig.placement,
        dense_gpus: float = FitConfig.dense_gpus,
        dense_cpus: int = FitConfig.dense_cpus,
        output: str = "probability",
        idCol: str = "id",
        featuresCol: str = "features",
        labelCol: str = "label",
        splitCol: str = "split",
        predictionCol: str = "prediction",
        probabilityCol: str = "probability",
        embeddingCol: str = "embedding",
    ) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise LotanError(f"GNNEstimator needs model=a torch.nn.Module, found {model!r}")
        self.model = model
        self.edges = edges
        self._setDefault(
            epochs=FitConfig.epochs,
            optimizer=FitConfig.optimizer,
            lr=FitConfig.lr,
            weight_decay=FitConfig.weight_decay,
            momentum=FitConfig.momentum,
            num_partitions=0,
            partitioner=FitConfig.partitioner,
            seed=FitConfig.seed,
            patience=0,
            monitor=FitConfig.monitor,
            progress=False,
            placement=FitConfig.placement,
            dense_gpus=FitConfig.dense_gpus,
            dense_cpus=FitConfig.dense_cpus,
        )
        given: dict[str, Any] = self._input_kwargs  # type: ignore[attr-defined]
        kwargs = {k: v for k, v in given.items() if k not in ("model", "edges")}
        self._set(**kwargs)
        self.fit_config()  # validates now, not at fit time
        self._check_output()

    def fit_config(self) -> FitConfig:
        """The :class:`lotan.FitConfig` these parameters make (validated)."""
        get = self.getOrDefault
        return FitConfig(
            epochs=get("epochs"),
            optimizer=get("optimizer"),
            lr=get("lr"),
            weight_decay=get("weight_decay"),
            momentum=get("momentum"),
            engine="spark",
            num_partitions=get("num_partitions") or None,
            partitioner=get("partitioner"),
            seed=get("seed"),
            progress=get("progress"),
            patience=get("patience") or None,
            monitor=get("monitor"),
            placement=get("placement"),
            dense_gpus=get("dense_gpus"),
            dense_cpus=get("dense_cpus"),
        )

    def _graph(self, dataset: DataFrame | Graph) -> Graph:
        if isinstance(dataset, Graph):
            return dataset
        if self.edges is None:
            raise GraphInputError(
                "GNNEstimator needs the graph's edges: GNNEstimator(..., edges=edges_df) "
                "(columns src, dst), or fit(a lotan.Graph)"
            )
        return Graph.from_dataframes(self._vertices(dataset, training=True), self.edges)

    def _fit(self, dataset: DataFrame | Graph) -> GNNModel:
        from lotan import api

        cfg = self.fit_config()
        graph = self._graph(dataset)
        model = copy.deepcopy(self.model)
        spark = None if isinstance(dataset, Graph) else dataset.sparkSession
        result = api.fit(model, graph, spark=spark, **cfg.as_kwargs())
        fitted = GNNModel(model, self.edges, result, num_partitions=cfg.num_partitions)
        fitted.placement = cfg.placement_config()
        fitted.graph = graph
        return self._copyValues(fitted)


class GNNModel(Model, _GNNParams):
    """A trained GNN: ``transform(vertices)`` adds ``prediction`` and ``probability`` (or
    ``embedding``) for every vertex of the graph those vertices and the edges make."""

    def __init__(
        self,
        model: torch.nn.Module,
        edges: DataFrame | None,
        result: FitResult,
        *,
        num_partitions: int | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.edges = edges
        self.result = result
        self.num_partitions = num_partitions
        self.graph: Graph | None = None
        self.placement = DEFAULT_PLACEMENT

    def _transform(self, dataset: DataFrame) -> DataFrame:
        from pyspark.ml.functions import array_to_vector
        from pyspark.sql import functions as F

        from lotan import api

        self._check_output()
        id_col = self.getOrDefault("idCol")
        if self.edges is not None:
            graph = Graph.from_dataframes(self._vertices(dataset, training=False), self.edges)
        elif self.graph is not None:
            graph = self.graph  # trained on a lotan.Graph: predict on that graph
        else:
            raise GraphInputError("this GNNModel has no edges to build a graph with")
        where = self.placement
        preds = api.predict(
            self.model,
            graph,
            engine="spark",
            num_partitions=self.num_partitions,
            placement=where.mode,
            dense_gpus=where.gpus,
            dense_cpus=where.cpus,
            spark=dataset.sparkSession,  # classic or Spark Connect, as the data is
        )
        if self.getOrDefault("output") == "embedding":
            added = preds.select(
                F.col("id").alias(id_col), F.col("logits").alias(self.getOrDefault("embeddingCol"))
            )
        else:
            added = preds.select(
                F.col("id").alias(id_col),
                F.col("prediction").cast("double").alias(self.getOrDefault("predictionCol")),
                array_to_vector(F.col("probability")).alias(self.getOrDefault("probabilityCol")),
            )
        return dataset.join(added, on=id_col, how="left")
