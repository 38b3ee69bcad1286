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
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

import torch
from pyspark import keyword_only
from pyspark.ml import Estimator, Model
from pyspark.ml.param import Param, Params, TypeConverters

from lotan.errors import GraphInputError, LotanError
from lotan.graph import Graph
from lotan.options import FIT_KEYWORDS, FitConfig, keyword_doc, keyword_type, keywords_for
from lotan.planner.flags import PlannerFlags
from lotan.planner.placement import Placement

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


def _or_none(convert: Callable[[Any], Any]) -> Callable[[Any], Any]:
    return lambda v: None if v is None else convert(v)


def _planner_flags(v: Any) -> PlannerFlags:
    return FitConfig.from_keywords(planner=v).planner


#: Spark ML type converters by the declared type of a setting.
_CONVERTERS: dict[str, Callable[[Any], Any]] = {
    "int": TypeConverters.toInt,
    "float": TypeConverters.toFloat,
    "bool": TypeConverters.toBoolean,
    "str": TypeConverters.toString,
    "int | None": _or_none(TypeConverters.toInt),
    "str | None": _or_none(TypeConverters.toString),
    "str | EngineOptions": TypeConverters.toString,
    "PlannerFlags": _planner_flags,
}
#: The estimator's settings: every setting of ``lotan.fit`` a face other than Python can
#: take (:data:`lotan.options.FIT_KEYWORDS`), each a Spark ML ``Param`` of the same name.
SETTINGS = tuple(kw for kw, _, _, decl in FIT_KEYWORDS if decl.python_only is None)
#: Where the estimator's defaults differ from ``fit``'s: it trains on Spark, quietly.
_DEFAULTS = {**FitConfig().keywords(), "engine": "spark", "progress": False}


class GNNEstimator(Estimator["GNNModel"], _GNNParams):
    """Trains ``model`` (a PyG model, as for :func:`lotan.fit`) full-batch, on the Spark
    engine by default.

    Its settings are those of :func:`lotan.fit` — every one, as a Spark ML ``Param`` of the
    same name (``epochs``, ``lr``, ``num_partitions``, ``placement``, ``eval_every``,
    ``exchange_dtype``, ``checkpoint_dir``, ``planner``, ...; :mod:`lotan.options` declares
    them), with ``engine="spark"`` and ``progress=False`` by default — plus ``edges`` (the
    graph's ``src``/``dst`` DataFrame, needed unless ``fit`` is given a :class:`lotan.Graph`),
    the column names and ``output``. The session is the one of the DataFrame ``fit`` is
    given. ``model`` is not changed: each ``fit`` trains a copy.
    """

    @keyword_only
    def __init__(
        self,
        *,
        model: torch.nn.Module | None = None,
        edges: DataFrame | None = None,
        output: str = "probability",
        idCol: str = "id",
        featuresCol: str = "features",
        labelCol: str = "label",
        splitCol: str = "split",
        predictionCol: str = "prediction",
        probabilityCol: str = "probability",
        embeddingCol: str = "embedding",
        **settings: Any,
    ) -> None:
        super().__init__()
        if not isinstance(model, torch.nn.Module):
            raise LotanError(f"GNNEstimator needs model=a torch.nn.Module, found {model!r}")
        unknown = sorted(set(settings) - set(SETTINGS))
        if unknown:
            raise LotanError(
                f"GNNEstimator got unknown setting(s) {unknown}; it takes lotan.fit's "
                f"{list(SETTINGS)}, the column names and output"
            )
        self.model = model
        self.edges = edges
        self._setDefault(**{k: _DEFAULTS[k] for k in SETTINGS})
        given: dict[str, Any] = self._input_kwargs  # type: ignore[attr-defined]
        self._set(**{k: v for k, v in given.items() if k not in ("model", "edges")})
        self.fit_config()  # validates now, not at fit time
        self._check_output()

    def fit_config(self) -> FitConfig:
        """The :class:`lotan.FitConfig` these parameters make (validated)."""
        return FitConfig.from_keywords(**{k: self.getOrDefault(k) for k in SETTINGS})

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
        result = api.fit(model, graph, **keywords_for(api.fit, cfg, spark=spark))
        fitted = GNNModel(model, self.edges, result, config=cfg)
        fitted.graph = graph
        return self._copyValues(fitted)


for _key in SETTINGS:
    setattr(
        GNNEstimator,
        _key,
        Param(
            Params._dummy(),
            _key,
            keyword_doc(_key),
            typeConverter=_CONVERTERS[keyword_type(_key)],
        ),
    )


class GNNModel(Model, _GNNParams):
    """A trained GNN: ``transform(vertices)`` adds ``prediction`` and ``probability`` (or
    ``embedding``) for every vertex of the graph those vertices and the edges make."""

    def __init__(
        self,
        model: torch.nn.Module,
        edges: DataFrame | None,
        result: FitResult,
        *,
        config: FitConfig | None = None,
    ) -> None:
        super().__init__()
        self.model = model
        self.edges = edges
        self.result = result
        #: The settings it was trained with (its predictions use their engine settings).
        self.config = config or FitConfig()
        self.graph: Graph | None = None

    @property
    def placement(self) -> Placement:
        """Where its dense work runs."""
        return self.config.engine.placement_config()

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
        # On Spark whatever the engine it trained on (the predictions are joined back to
        # the DataFrame), in the session of the data (classic or Spark Connect).
        settings = keywords_for(api.predict, self.config, spark=dataset.sparkSession)
        preds = api.predict(self.model, graph, **{**settings, "engine": "spark"})
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
