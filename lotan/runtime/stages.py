"""A plan's pieces grouped into Spark stages: fused, the pieces between two exchanges
run as one :class:`StageRun` (messages between them pass in memory); split, each is its
own. :func:`training_stages` and :func:`inference_stages` are what the engines run."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from lotan.graph_engine.layout import PartitionLayout
from lotan.planner.physical import PhysicalPlan, Schedule
from lotan.planner.placement import DEFAULT_PLACEMENT, Placement
from lotan.runtime.backward import Backward
from lotan.runtime.forward import Forward
from lotan.runtime.graph_pieces import Aggregate, Transpose
from lotan.runtime.message import Message
from lotan.runtime.pieces import Piece


@dataclass(frozen=True)
class StageRun:
    """One Spark stage: its pieces in order; messages a piece sends to this stage at this
    partition go to the next pieces in memory."""

    index: int
    pieces: tuple[Piece, ...]
    placement: Placement

    @property
    def kind(self) -> str:
        """``graph``, ``dense`` or ``fused`` (both: :meth:`Schedule.stage_kind`)."""
        return self.pieces[0].sched.stage_kind([(p.name, p.j) for p in self.pieces])

    @property
    def resources(self) -> dict[str, float]:
        """What each task asks Spark for beyond the defaults (``{}``: the default profile)."""
        return self.placement.task_request(self.kind)

    @property
    def label(self) -> str:
        """How the Spark UI names this stage (the function of its grouped map)."""
        return self.pieces[0].sched.stage_label([(p.name, p.j) for p in self.pieces])

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        out: list[Message] = []
        inbox = list(inbox)
        for piece in self.pieces:
            for m in piece(part, layout, inbox, value):
                if m.stage == self.index and m.dest == part:
                    inbox.append(m)
                else:
                    out.append(m)
        return out


_PIECES: dict[str, type[Piece]] = {
    "aggregate": Aggregate,
    "forward": Forward,
    "backward": Backward,
    "transpose": Transpose,
}


def _options_of(piece: str, options: Mapping[str, Any]) -> dict[str, Any]:
    if piece == "forward":
        return dict(options)
    if piece == "aggregate":
        return {"train": options["train"], "evals": options["evals"], "seed": options["seed"]}
    return {"seed": options["seed"]} if piece in ("backward", "transpose") else {}


def training_stages(
    plan: PhysicalPlan,
    *,
    seed: int,
    num_train: int,
    placement: Placement = DEFAULT_PLACEMENT,
    exchange_dtype: str = "float32",
    measure: bool = True,
) -> list[StageRun]:
    """One training epoch's stages of ``plan``; ``exchange_dtype`` is how forward exchanges
    carry rows (:mod:`lotan.graph_engine.exchange`). With ``measure``, the forward pass also
    measures the accuracies with dropout off (the evaluation stream, where the model has
    dropout); without it, they are not measured and no evaluation stream runs."""
    return runs(
        plan,
        plan.schedule(train=True, placement=placement),
        train=True,
        evals=plan.logical.has_eval_stream and measure,
        seed=seed,
        num_train=num_train,
        exchange_dtype=exchange_dtype,
        measure=measure,
    )


def inference_stages(
    plan: PhysicalPlan,
    *,
    emit_outputs: bool,
    placement: Placement = DEFAULT_PLACEMENT,
    exchange_dtype: str = "float32",
) -> list[StageRun]:
    """The stages of one forward pass of ``plan`` (evaluation mode); with ``emit_outputs``
    the stages that compute the plan's outputs send their rows to the driver."""
    return runs(
        plan,
        plan.schedule(train=False, placement=placement),
        train=False,
        evals=False,
        seed=0,
        num_train=1,
        emit_outputs=emit_outputs,
        exchange_dtype=exchange_dtype,
    )


def runs(plan: PhysicalPlan, sched: Schedule, **options: Any) -> list[StageRun]:
    """One stage function per Spark stage of ``sched``, running its pieces in order."""
    grouped: dict[int, list[Piece]] = {}
    for piece, j in sched.pieces:
        fn = _PIECES[piece](plan, j, sched, **_options_of(piece, options))
        grouped.setdefault(sched.of(piece, j), []).append(fn)
    return [StageRun(k, tuple(grouped[k]), sched.placement) for k in sorted(grouped)]
