"""Every setting of a run, declared once, as small typed option objects.

- :class:`Training` — epochs, seed, early stopping, evaluation, progress;
- :class:`OptimizerConfig` — the optimizer and its settings;
- :class:`Checkpoints` — where and how often to checkpoint, and whether to resume;
- the engine: :class:`Spark`, :class:`Local`, or :class:`EngineOptions` for ``"auto"`` —
  partitions, partitioner, placement of dense work, how exchanges carry rows;
- :class:`~lotan.planner.flags.PlannerFlags` — the planner's rules.

Each field is declared with :func:`setting`: its default, its documentation and the keyword
``lotan.fit`` takes it under (``num_partitions`` for :attr:`EngineOptions.partitions`).
Every face derives its parameters from these declarations: :class:`FitConfig` builds the
objects from ``fit``'s keywords (:data:`FIT_KEYWORDS`), the job file takes the same keys, the
``lotan`` command one flag per key, and ``GNNEstimator`` one Spark ML ``Param`` per key; a
test checks that none of them lacks one. A setting with many parts may be passed as its
object instead of its keywords, as Polars takes ``engine="gpu"`` or ``GPUEngine(...)``::

    lotan.fit(model, graph, engine="spark", num_partitions=8, placement="split")
    lotan.fit(model, graph, engine=lotan.Spark(partitions=8, placement="split"))

Objects are validated when they are built: a bad value raises :class:`~lotan.LotanError`
naming the keyword, the value and what is allowed.
"""

from lotan.options.declare import (
    DEFAULT_EPOCHS,
    DEFAULT_LR,
    ENGINES,
    MONITORS,
    PARTITIONERS,
    Setting,
    check_partitioner,
    parse_bytes,
    setting,
)
from lotan.options.fit import (
    BOOLEAN_KEYWORDS,
    FIT_KEYWORDS,
    FitConfig,
    keyword_doc,
    keyword_type,
    keywords_for,
)
from lotan.options.objects import (
    OPTIMIZER_KEYS,
    Checkpoints,
    EngineOptions,
    Local,
    OptimizerConfig,
    Spark,
    Training,
)

__all__ = [
    "BOOLEAN_KEYWORDS",
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "ENGINES",
    "FIT_KEYWORDS",
    "MONITORS",
    "OPTIMIZER_KEYS",
    "PARTITIONERS",
    "Checkpoints",
    "EngineOptions",
    "FitConfig",
    "Local",
    "OptimizerConfig",
    "Setting",
    "Spark",
    "Training",
    "check_partitioner",
    "keyword_doc",
    "keyword_type",
    "keywords_for",
    "parse_bytes",
    "setting",
]
