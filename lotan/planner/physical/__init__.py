"""The physical plan: per-partition stages between exchanges, run by both engines.

Every node of the (optimized) logical plan gets a forward stage. Fused (the default), an
aggregation starts a new stage and dense ops join the stage of their latest input, so all
local work between two exchanges runs in one stage; unfused, every op is a stage. A value
used in a later stage travels as a message: the rows other partitions need (exchange) when
an aggregation consumes it, its own rows (to itself) when dense work does. ``X`` and cached
aggregations are read from the partition layout wherever they are needed.

Aggregations of one stage with the same weighting whose inputs come from the same stage form
one :class:`Exchange`: their inputs travel side by side, as the arrays of one tile per pair
of partitions (forward, and their gradients backward). This is how a batch of models
(:mod:`lotan.planner.batching`) shares one exchange per layer.

Backward, stage ``j`` of ``S`` runs at index ``2S - j`` (the last forward stage also runs its
own backward): it sums the gradients of the values it produced (partials from the
transposed aggregations of later stages, gradients of carried values), recomputes its dense
graph from the inputs it saved (same dropout masks) and back-propagates: parameter gradients
go to the driver, gradients of aggregation outputs go through ``Âᵀ`` back to the stage that
produced the aggregated value, gradients of carried values go to their producer.

With dropout (or BatchNorm's running statistics), the forward pass also carries an
evaluation stream (dropout off, running statistics) for the values that differ in evaluation
mode, so accuracies need no extra pass.

A ``moments`` node (column statistics over every vertex, for BatchNorm, graph LayerNorm and
PairNorm; :mod:`lotan.graph_engine.reductions`) starts a stage like an aggregation: the stage
that computes its input sends this partition's partial to **every** partition (and, in
training, to the driver, which updates the running statistics), and the consuming stage
combines them in partition order before its dense work. Backward, the consumer's share of
the statistics' gradient goes to the producer's ``backward`` piece on every partition as the
coefficients of an affine term ``a + b · x``, summed there in partition order and added to
the gradient of the input ``x`` while its dense graph is recomputed.

Each stage's work is written as *pieces* (:mod:`lotan.planner.placement`): ``aggregate``
(graph: ``Â`` of the exchanged rows), ``forward`` (dense), ``backward`` (dense), ``transpose``
(graph: ``Âᵀ`` of the aggregations' gradients, sent to the owners). A :class:`Schedule` gives
every piece the index of the Spark stage it runs in — fused, the pieces between two
exchanges share one (a :class:`StageRun` passes their messages on in memory); split, each has
its own, and dense ones ask Spark for GPUs. The pieces address their messages through the
schedule, so the same code runs either way and gives the same numbers.

The package, by concern:

- :mod:`~lotan.planner.physical.plan`: the stages and exchanges of a logical plan
  (:class:`PhysicalPlan`, :class:`Exchange`) and the order of a run's pieces
  (:class:`Schedule`); data only, nothing runs.
- :mod:`~lotan.planner.physical.pieces`: what every piece shares (the base class, layout
  values, the metrics row).
- :mod:`~lotan.planner.physical.graph_pieces`: the graph pieces, ``aggregate`` (``Â``) and
  ``transpose`` (``Âᵀ`` of the gradients).
- :mod:`~lotan.planner.physical.forward`: the dense forward piece (statistics across
  partitions, the loss).
- :mod:`~lotan.planner.physical.backward`: the dense backward piece and the back-propagation
  of a stage's dense graph.
- :mod:`~lotan.planner.physical.stages`: a plan's pieces grouped into Spark stages
  (:class:`StageRun`): :func:`training_stages` and :func:`inference_stages`, what the engines
  run.
"""

from lotan.planner.physical.pieces import METRIC_FIELDS
from lotan.planner.physical.plan import EpochValue, Exchange, PhysicalPlan, Schedule
from lotan.planner.physical.stages import StageRun, inference_stages, training_stages

__all__ = [
    "METRIC_FIELDS",
    "EpochValue",
    "Exchange",
    "PhysicalPlan",
    "Schedule",
    "StageRun",
    "inference_stages",
    "training_stages",
]
