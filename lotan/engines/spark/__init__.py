"""The Spark engine and everything of it that touches Spark: the session
(:mod:`~lotan.engines.spark.session`), preparation in Spark
(:mod:`~lotan.engines.spark.prepare`), layout files (:mod:`~lotan.engines.spark.store`), the
runner that chains a run's stages (:mod:`~lotan.engines.spark.runner`), messages as Arrow rows
(:mod:`~lotan.engines.spark.codec`), stage-level scheduling
(:mod:`~lotan.engines.spark.scheduling`) and what each Python worker does first
(:mod:`~lotan.engines.spark.worker`). The engine itself is
:class:`~lotan.engines.spark.engine.SparkEngine`."""
