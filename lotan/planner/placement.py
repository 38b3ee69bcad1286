"""Placement: whether a stage's graph work and dense work share a Spark stage.

Every stage of the physical plan is graph work (aggregating the exchanged rows with ``Â``;
backward, the products with ``Âᵀ`` whose partial sums go back to their owners) around dense
work (the layers, the loss and their backward pass, in PyTorch). Its *pieces*:

- ``aggregate`` (graph): ``Â`` of the exchanged inputs of stage ``j``;
- ``forward`` (dense): stage ``j``'s dense graph; at the last stage also the loss and its
  backward pass;
- ``backward`` (dense): the backward pass of stage ``j``'s dense graph (the partial sums it
  receives are added up first);
- ``transpose`` (graph): ``Âᵀ`` of the gradients of stage ``j``'s aggregations, sent back to
  the partitions that own their rows.

``fused`` runs the pieces between two exchanges in one Spark stage (fewest shuffles; each
task's dense work runs on the GPU Spark gave the task, if any). ``split`` runs every piece as
a Spark stage of its own: the graph stages ask Spark for CPUs only (the default resource
profile), the dense stages for ``gpus`` GPUs and ``cpus`` CPUs per task (a stage-level
:class:`pyspark.resource.ResourceProfile`), so that graph work runs on many CPU executors and
dense work on a few GPU executors, each scaled on its own. The two give the same numbers
(the pieces are the same code; split passes their values through Spark instead of in memory).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from lotan.errors import LotanError

__all__ = [
    "DEFAULT_PLACEMENT",
    "DENSE",
    "FUSED",
    "GRAPH",
    "MODES",
    "PIECES",
    "Placement",
    "describe_request",
]

MODES = ("fused", "split")
#: What a Spark stage of a plan does: graph work, dense work, or both (``fused``).
GRAPH, DENSE, FUSED = "graph", "dense", "fused"
#: The pieces of a stage and the kind of work each is.
PIECES = {"aggregate": GRAPH, "forward": DENSE, "backward": DENSE, "transpose": GRAPH}


def describe_request(request: Mapping[str, float]) -> str:
    """What a task asks Spark for, in words (``1 cpu, 0.5 gpu``)."""
    parts = [f"{int(request['cpus'])} cpu"]
    if request.get("gpu"):
        parts.append(f"{request['gpu']:g} gpu")
    return ", ".join(parts)


@dataclass(frozen=True)
class Placement:
    """Where dense work runs (see the module docstring).

    Attributes
    ----------
    mode : ``fused`` (default) or ``split``.
    gpus : GPUs each dense task asks for under ``split`` (``0``: none; a fraction such as
        ``0.25`` lets four tasks share one GPU; above 1, a whole number).
    cpus : CPUs each dense task asks for under ``split``.
    """

    mode: str = "fused"
    gpus: float = 1.0
    cpus: int = 1

    def __post_init__(self) -> None:
        if self.mode not in MODES:
            raise LotanError(f"placement={self.mode!r} is not one of {list(MODES)}")
        g = self.gpus
        if isinstance(g, bool) or not isinstance(g, int | float) or not g >= 0:
            raise LotanError(f"dense_gpus must be a number >= 0, found {g!r}")
        if g > 1 and g != int(g):
            raise LotanError(
                f"dense_gpus={g!r}: Spark takes a fraction of one GPU (e.g. 0.5) or a whole "
                "number of GPUs per task, not a fraction above 1"
            )
        c = self.cpus
        if isinstance(c, bool) or not isinstance(c, int) or c < 1:
            raise LotanError(f"dense_cpus must be a positive integer, found {c!r}")

    @property
    def split(self) -> bool:
        return self.mode == "split"

    def task_request(self, kind: str) -> dict[str, float]:
        """What a task of a ``kind`` (:data:`GRAPH`, :data:`DENSE`, :data:`FUSED`) Spark stage
        asks for beyond the session's defaults: ``{}`` for the default resource profile,
        else ``{"cpus": n, "gpu": g}`` (``gpu`` left out when 0)."""
        if not self.split or kind != DENSE:
            return {}
        out: dict[str, float] = {"cpus": self.cpus}
        if self.gpus:
            out["gpu"] = self.gpus
        return out

    def describe_request(self, kind: str) -> str:
        req = self.task_request(kind)
        if not req:
            return "the default profile (spark.task.cpus, spark.task.resource.*)"
        return describe_request(req)


#: Fused, the default.
DEFAULT_PLACEMENT = Placement()
