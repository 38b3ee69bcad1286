"""Graph preparation as stages: what runs in each partition's task to turn the edges and
vertices it owns into its :class:`~lotan.graph_engine.layout.PartitionLayout`.

The global work is relational — give each vertex an owner and a local row (its rank by id
within the owner), and annotate each edge with the owner and local row of both ends; the
engines do it (:mod:`lotan.engines.local`, :mod:`lotan.engines.spark.prepare`) and call
:func:`~lotan.graph_engine.layout.build_in_structure` per partition, whose result
:func:`in_structure_messages` sends on. Then two stages, on the same runners as training:
:func:`send_lists_stage` (at each source owner: the send lists, and ``deg^-1/2`` of the rows
others need) and :func:`normalize_stage` (at each target owner: the final edge weights).
"""

from __future__ import annotations

import numpy as np

from lotan.graph_engine.exchange import assemble, forward_messages
from lotan.graph_engine.layout import (
    PartitionLayout,
    attach_send_lists,
    inverse_sqrt_degree,
    normalize_weights,
)
from lotan.ir.norm import NormSpec
from lotan.runtime.message import OUTPUT, Message, by_source
from lotan.runtime.tags import DEGREES, INV_SQRT_DEGREES, LAYOUT, REQUEST

__all__ = ["PREPARE_STAGES", "in_structure_messages", "normalize_stage", "send_lists_stage"]


def in_structure_messages(
    layout: PartitionLayout, deg: np.ndarray, requests: dict[int, np.ndarray]
) -> list[Message]:
    p = layout.part
    out = [
        Message(0, p, p, LAYOUT.of(), layout.to_arrays()),
        Message(0, p, p, DEGREES.of(), {"rows": deg}),
    ]
    out += [Message(0, q, p, REQUEST.of(), {"rows": rows}) for q, rows in requests.items()]
    return out


def send_lists_stage(
    part: int, _layout: PartitionLayout | None, inbox: list[Message], norms: tuple[NormSpec, ...]
) -> list[Message]:
    """At each owner: record who needs which rows, then send ``deg^-1/2`` of those rows."""
    layout = PartitionLayout.from_arrays(next(m.payload for m in inbox if m.tag == LAYOUT.of()))
    layout = attach_send_lists(layout, by_source(inbox, REQUEST.of()))
    deg = by_source(inbox, DEGREES.of())[part]
    dis = inverse_sqrt_degree(deg)
    out = [Message(1, part, part, LAYOUT.of(), layout.to_arrays())]
    out += [
        Message(1, q, part, INV_SQRT_DEGREES.of(), {"rows": rows})
        for q, rows in forward_messages(layout, dis)
    ]
    return out


def normalize_stage(
    part: int, _layout: PartitionLayout | None, inbox: list[Message], norms: tuple[NormSpec, ...]
) -> list[Message]:
    """At each owner: the final edge weights from ``deg^-1/2`` of own and halo rows."""
    layout = PartitionLayout.from_arrays(next(m.payload for m in inbox if m.tag == LAYOUT.of()))
    dis_full = assemble(layout, by_source(inbox, INV_SQRT_DEGREES.of()))
    layout = normalize_weights(layout, dis_full, norms)
    return [Message(OUTPUT, part, part, LAYOUT.of(), layout.to_arrays())]


PREPARE_STAGES = (send_lists_stage, normalize_stage)
