"""The local engine: the physical plan in-process, without Spark.

It runs the same stage functions as the Spark engine (:mod:`lotan.runtime`) over the same
partition layouts, routing their messages in memory (:class:`LocalRunner`), partition by
partition: the reference the Spark engine is tested against, and the fast path for graphs
that fit one process.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Hashable, Iterable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.engines.base import GraphSource, partition_stats, predictions_frame, with_parts
from lotan.graph_engine.hashing import owner_of
from lotan.graph_engine.layout import PartitionLayout, build_in_structure
from lotan.ir.norm import NormSpec
from lotan.planner.placement import Placement
from lotan.runtime.label_propagation import STRUCTURE, LabelPropagation
from lotan.runtime.message import DRIVER, OUTPUT, Message, StageFn
from lotan.runtime.preparation import PREPARE_STAGES, in_structure_messages
from lotan.runtime.tags import OUTPUT_ROWS
from lotan.runtime.task import timed_stage
from lotan.runtime.value import EpochValue

if TYPE_CHECKING:
    import pandas as pd

__all__ = ["LocalEngine", "LocalRunner", "prepare_local"]


class LocalRunner:
    """Runs stages in-process, partition by partition, routing messages in memory."""

    def __init__(self, layouts: Mapping[int, PartitionLayout] | None = None) -> None:
        self.layouts = dict(layouts or {})

    @property
    def num_partitions(self) -> int:
        return len(self.layouts)

    def stats(self) -> dict[str, int]:
        return partition_stats(
            (lay.num_own, lay.num_halo, lay.num_edges) for lay in self.layouts.values()
        )

    def release(self) -> None:
        """Nothing to free but memory, which goes with the runner."""

    def run(
        self, stages: Sequence[StageFn], value: Any, initial: Iterable[Message] = ()
    ) -> tuple[list[Message], list[Message]]:
        """Run ``stages`` in order; return (driver messages, output messages)."""
        pending: dict[tuple[int, int], list[Message]] = defaultdict(list)
        driver: list[Message] = []
        output: list[Message] = []

        def route(msgs: Iterable[Message]) -> None:
            for m in msgs:
                if m.stage == DRIVER:
                    driver.append(m)
                elif m.stage == OUTPUT:
                    output.append(m)
                else:
                    pending[(m.stage, m.dest)].append(m)

        route(initial)
        for k, stage in enumerate(stages):
            parts = set(self.layouts) | {d for (s, d) in pending if s == k}
            for p in sorted(parts):
                inbox = pending.pop((k, p), [])
                out: list[Message] = []
                with timed_stage(k, p, out):
                    out += stage(p, self.layouts.get(p), inbox, value)
                route(out)
        return driver, output


def prepare_local(
    ids: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    split: np.ndarray,
    src: np.ndarray,
    dst: np.ndarray,
    weight: np.ndarray | None,
    num_partitions: int,
    norms: tuple[NormSpec, ...],
    owner: np.ndarray | None = None,
    edge_attr: np.ndarray | None = None,
) -> dict[int, PartitionLayout]:
    """Prepare in-process. ``split`` holds int8 codes; ``src``/``dst`` name vertex ids that
    exist in ``ids`` (validated by the caller); ``owner`` is each vertex's partition (default:
    the hash partitioner); ``edge_attr`` ``(E, D)`` the edge features, if any."""
    ids = np.asarray(ids, dtype=np.int64)
    n = ids.shape[0]
    part = (owner_of(ids, num_partitions) if owner is None else np.asarray(owner)).astype(np.int64)
    order = np.lexsort((ids, part))  # by owner, then by id
    counts = np.bincount(part, minlength=num_partitions)
    starts = np.zeros(num_partitions + 1, dtype=np.int64)
    np.cumsum(counts, out=starts[1:])
    local = np.empty(n, dtype=np.int64)
    local[order] = np.arange(n) - starts[part[order]]

    by_id = np.argsort(ids, kind="stable")
    src_idx = by_id[np.searchsorted(ids[by_id], np.asarray(src, dtype=np.int64))]
    dst_idx = by_id[np.searchsorted(ids[by_id], np.asarray(dst, dtype=np.int64))]
    w = np.ones(src_idx.shape[0]) if weight is None else np.asarray(weight, dtype=np.float64)
    sp, sl, dp, dl = part[src_idx], local[src_idx], part[dst_idx], local[dst_idx]
    edge_order = np.argsort(dp, kind="stable")
    edge_starts = np.searchsorted(dp[edge_order], np.arange(num_partitions + 1))

    msgs: list[Message] = []
    for p in range(num_partitions):
        if counts[p] == 0:
            continue
        vsel = order[starts[p] : starts[p + 1]]
        esel = edge_order[edge_starts[p] : edge_starts[p + 1]]
        layout, deg, requests = build_in_structure(
            p,
            ids[vsel],
            x[vsel],
            y[vsel],
            split[vsel],
            sp[esel],
            sl[esel],
            dl[esel],
            w[esel],
            norms,
            ids[src_idx[esel]],
            edge_attr[esel] if edge_attr is not None else None,
        )
        msgs += in_structure_messages(layout, deg, requests)
    _, out = LocalRunner().run(PREPARE_STAGES, norms, initial=msgs)
    return {m.src: PartitionLayout.from_arrays(m.payload) for m in out}


class LocalEngine:
    """In-process engine: the physical plan without Spark."""

    name = "local"

    def check_placement(self, placement: Placement) -> None:
        """Any placement runs in-process (split only changes how stages are grouped)."""

    def default_partitions(self) -> int:
        return 1

    def prepare(
        self,
        graph: GraphSource,
        num_partitions: int,
        norms: tuple[NormSpec, ...],
        partitioner: str = "hash",
    ) -> LocalRunner:
        def make() -> LocalRunner:
            a = graph.arrays()
            owner = None
            if partitioner == "label_propagation" and num_partitions > 1:
                owner = self._label_propagation(graph, num_partitions)
            layouts = prepare_local(
                a.ids,
                a.x,
                a.y,
                a.split,
                a.src,
                a.dst,
                a.weight,
                num_partitions,
                norms,
                owner,
                a.edge_attr,
            )
            return LocalRunner(layouts)

        return graph.preparations.get(("local", num_partitions, norms, partitioner), make)

    @staticmethod
    def _label_propagation(graph: GraphSource, num_partitions: int) -> np.ndarray:
        """Each vertex's partition, in the order of ``graph.arrays().ids``."""
        a = graph.arrays()
        n = a.ids.shape[0]
        structure = prepare_local(
            a.ids, np.zeros((n, 0), np.float32), a.y, a.split, a.src, a.dst, None,
            num_partitions, (STRUCTURE,),
        )  # fmt: skip
        _, out = LocalRunner(structure).run(LabelPropagation(num_partitions, n).stages(), None)
        ids = np.concatenate([m.payload["ids"] for m in out])
        parts = np.concatenate([m.payload["rows"] for m in out])
        order = np.argsort(ids)
        return parts[order][np.searchsorted(ids[order], a.ids)]

    def with_constants(
        self, graph: GraphSource, prepared: LocalRunner, key: Hashable, stages: Sequence[StageFn]
    ) -> LocalRunner:
        def make() -> LocalRunner:
            # Constants depend on no parameter.
            _, out = prepared.run(stages, EpochValue(params={}, epoch=0))
            layouts = dict(prepared.layouts)
            for m in out:
                lay = layouts[m.dest]
                node = str(OUTPUT_ROWS.index_of(m.tag))
                consts = {**lay.constants, node: np.asarray(m.payload["rows"])}
                layouts[m.dest] = replace(lay, constants=consts)
            return LocalRunner(layouts)

        return graph.preparations.get(("local-constants", id(prepared), key), make)

    def run(
        self, prepared: LocalRunner, stages: Sequence[StageFn], value: Any, label: str
    ) -> list[Message]:
        driver, _ = prepared.run(stages, with_parts(value, prepared.layouts))
        return driver

    def predictions(
        self, prepared: LocalRunner, stages: Sequence[StageFn], value: Any
    ) -> pd.DataFrame:
        import pandas as pd

        _, out = prepared.run(stages, with_parts(value, prepared.layouts))
        ids = np.concatenate([m.payload["ids"] for m in out])
        logits = np.concatenate([m.payload["rows"] for m in out])
        order = np.argsort(ids)
        return pd.DataFrame(predictions_frame(ids[order], logits[order]))
