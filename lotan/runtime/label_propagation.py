"""Partitioners: which partition owns each vertex.

- ``hash`` — ``pmod(xxhash64(id), P)``: no preparation, perfectly oblivious to structure.
- ``label_propagation`` — balanced label propagation (after Ugander & Backstrom, WSDM 2013):
  start from the hash assignment; in each round every vertex finds the partition label most
  common among its in- and out-neighbours, and vertices move toward it in *balanced swaps*:
  for every pair of labels ``(l, m)`` as many vertices move ``l → m`` as ``m → l`` (plus a
  share of the room left under the capacity ``(1 + ε) N / P``), the ones with the largest
  gain first. Fewer cut edges means a smaller halo, so fewer rows exchanged each epoch.

Label propagation runs *inside the engines*, as stages over a structural layout of the
graph (hash-partitioned, no features), with the same exchange plan as training: a round is
three stages — labels go forward to the partitions whose vertices have them as
in-neighbours; counts of out-neighbours' labels come back as partials (the transposed
direction); then demands are exchanged all-to-all and each partition moves its share. The
two engines run the same stage functions, so they compute the same assignment. No vertex
data reaches the driver: the result is an ``(id, partition)`` table (a Spark DataFrame on
the Spark engine).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from lotan.graph_engine.exchange import assemble
from lotan.graph_engine.layout import PartitionLayout
from lotan.ir.norm import NormSpec
from lotan.runtime.message import OUTPUT, Message, StageFn, by_source
from lotan.runtime.tags import (
    CANDIDATES,
    DEMAND,
    LABEL_COUNTS,
    LABELS,
    NEIGHBOUR_LABELS,
    OWNER,
)

__all__ = ["STRUCTURE", "LabelPropagation"]

#: The weighting of the structural layout label propagation runs on (edge counts).
STRUCTURE = NormSpec(kind="sum")


def _pair_counts(rows: np.ndarray, labels: np.ndarray, weights: np.ndarray, num: int) -> Any:
    """Sum ``weights`` per distinct (row, label); returns (rows, labels, sums) sorted."""
    key = rows.astype(np.int64) * num + labels.astype(np.int64)
    uniq, inv = np.unique(key, return_inverse=True)
    sums = np.bincount(inv, weights=weights, minlength=uniq.shape[0])
    return uniq // num, uniq % num, sums


@dataclass(frozen=True)
class LabelPropagation:
    """The stages of balanced label propagation for ``num_partitions`` labels.

    Attributes
    ----------
    num_partitions : labels (the partition count being prepared).
    num_vertices : vertices in the graph (for the capacity).
    rounds : propagation rounds (three stages each).
    epsilon : allowed imbalance: no label grows beyond ``(1 + epsilon) N / P`` vertices.
    """

    num_partitions: int
    num_vertices: int
    rounds: int = 8
    epsilon: float = 0.05

    def stages(self) -> list[StageFn]:
        out: list[StageFn] = [_Send(self, 0)]
        for r in range(self.rounds):
            out += [_Count(self, 3 * r + 1), _Demand(self, 3 * r + 2)]
            out.append(_Send(self, 3 * r + 3, last=r == self.rounds - 1))
        return out

    @property
    def capacity(self) -> int:
        return int(np.ceil((1 + self.epsilon) * self.num_vertices / self.num_partitions))


def _own_labels(part: int, layout: PartitionLayout, inbox: Sequence[Message]) -> np.ndarray:
    carried = by_source(inbox, LABELS.of())
    if part in carried:
        return np.asarray(carried[part], dtype=np.int64)
    return np.full(layout.num_own, part, dtype=np.int64)  # start: the hash assignment


@dataclass(frozen=True)
class _Send:
    """Apply the moves decided last round (if any), then send labels forward."""

    lp: LabelPropagation
    k: int
    last: bool = False

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        labels = _own_labels(part, layout, inbox)
        cands = [m.payload for m in inbox if m.tag == CANDIDATES.of()]
        if cands:
            labels = _apply_moves(self.lp, labels, cands[0], inbox)
        if self.last:
            return [Message(OUTPUT, part, part, OWNER.of(), {"ids": layout.ids, "rows": labels})]
        out = [Message(self.k + 1, part, part, LABELS.of(), {"rows": labels})]
        rows = labels[:, None]
        out.append(Message(self.k + 1, part, part, NEIGHBOUR_LABELS.of(), {"rows": rows}))
        for j, q in enumerate(layout.send_parts.tolist()):
            out.append(
                Message(
                    self.k + 1, q, part, NEIGHBOUR_LABELS.of(), {"rows": rows[layout.send_list(j)]}
                )
            )
        return out


@dataclass(frozen=True)
class _Count:
    """Count neighbours' labels: in-neighbours here; out-neighbours as partials for their
    owners (an edge ``u -> v`` stored here tells ``u`` that ``v`` has label ``l``)."""

    lp: LabelPropagation
    k: int

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        labels = _own_labels(part, layout, inbox)
        full = assemble(layout, by_source(inbox, NEIGHBOUR_LABELS.of()))[:, 0].astype(np.int64)
        w = np.asarray(layout.weights[0], dtype=np.float64)
        rows = np.repeat(np.arange(layout.num_own), np.diff(layout.indptr))
        cols = np.asarray(layout.indices, dtype=np.int64)
        real = w > 0  # candidate self loops carry weight 0
        rows, cols, w = rows[real], cols[real], w[real]
        n = self.lp.num_partitions
        out = [Message(self.k + 1, part, part, LABELS.of(), {"rows": labels})]
        # in-neighbours of own rows, and out-neighbours of own sources
        own_src = cols < layout.num_own
        local_rows = np.concatenate([rows, cols[own_src]])
        local_labels = np.concatenate([full[cols], labels[rows[own_src]]])
        local_w = np.concatenate([w, w[own_src]])
        r, lab, c = _pair_counts(local_rows, local_labels, local_w, n)
        out.append(Message(self.k + 1, part, part, LABEL_COUNTS.of(), {"r": r, "l": lab, "c": c}))
        # out-neighbours of halo sources: partial counts for their owners
        halo = ~own_src
        if halo.any():
            hr, hl, hc = _pair_counts(cols[halo] - layout.num_own, labels[rows[halo]], w[halo], n)
            bounds = np.concatenate([[0], np.cumsum(layout.halo_counts)])
            for j, q in enumerate(layout.halo_parts.tolist()):
                sel = (hr >= bounds[j]) & (hr < bounds[j + 1])
                owner_rows = layout.halo_locals[hr[sel]]
                payload = {"r": owner_rows, "l": hl[sel], "c": hc[sel]}
                out.append(Message(self.k + 1, q, part, LABEL_COUNTS.of(), payload))
        return out


@dataclass(frozen=True)
class _Demand:
    """Each vertex's best label and gain; candidates stay here, demands go to everyone."""

    lp: LabelPropagation
    k: int

    def __call__(
        self, part: int, layout: PartitionLayout | None, inbox: list[Message], value: Any
    ) -> list[Message]:
        assert layout is not None
        n = self.lp.num_partitions
        labels = _own_labels(part, layout, inbox)
        pairs = [m.payload for m in inbox if m.tag == LABEL_COUNTS.of()]
        rows = np.concatenate([np.asarray(p["r"], dtype=np.int64) for p in pairs])
        labs = np.concatenate([np.asarray(p["l"], dtype=np.int64) for p in pairs])
        cnts = np.concatenate([np.asarray(p["c"], dtype=np.float64) for p in pairs])
        r, lab, c = _pair_counts(rows, labs, cnts, n)
        current = np.zeros(layout.num_own)
        is_cur = lab == labels[r]
        np.add.at(current, r[is_cur], c[is_cur])
        # best other label per row: the largest count, ties to the smaller label
        other = ~is_cur
        r, lab, c = r[other], lab[other], c[other]
        order = np.lexsort((lab, -c, r))
        r, lab, c = r[order], lab[order], c[order]
        first = np.ones(r.shape[0], dtype=bool)
        first[1:] = r[1:] != r[:-1]
        r, lab, c = r[first], lab[first], c[first]
        gain = c - current[r]
        move = gain > 0
        cand = {"row": r[move], "to": lab[move], "gain": gain[move]}
        demand = np.zeros((n, n))
        np.add.at(demand, (labels[cand["row"]], cand["to"]), 1.0)
        sizes = np.bincount(labels, minlength=n).astype(np.float64)
        out = [
            Message(self.k + 1, part, part, LABELS.of(), {"rows": labels}),
            Message(self.k + 1, part, part, CANDIDATES.of(), cand),
        ]
        out += [
            Message(self.k + 1, q, part, DEMAND.of(), {"d": demand, "s": sizes}) for q in range(n)
        ]
        return out


def _apply_moves(
    lp: LabelPropagation,
    labels: np.ndarray,
    cand: Mapping[str, np.ndarray],
    inbox: Sequence[Message],
) -> np.ndarray:
    """Move this partition's share of the balanced moves, largest gains first."""
    demands = sorted((m.src, m.payload) for m in inbox if m.tag == DEMAND.of())
    n = lp.num_partitions
    total = np.zeros((n, n))
    sizes = np.zeros(n)
    for _, p in demands:
        total += p["d"]
        sizes += p["s"]
    room = np.maximum(lp.capacity - sizes, 0) // n  # a share of the room under the cap
    allowed = np.minimum(total, total.T + room[None, :])
    rows, to, gain = cand["row"], cand["to"], cand["gain"]
    if rows.shape[0] == 0:
        return labels
    frm = labels[rows]
    mine = np.zeros((n, n))
    np.add.at(mine, (frm, to), 1.0)
    with np.errstate(divide="ignore", invalid="ignore"):
        share = np.where(total > 0, np.floor(allowed * mine / total), 0)
    # within each (from, to) class, the largest gains (ties: the smaller row) move first
    order = np.lexsort((rows, -gain, to, frm))
    rows, frm, to = rows[order], frm[order], to[order]
    cls = frm * n + to
    start = np.searchsorted(cls, cls, side="left")
    rank = np.arange(cls.shape[0]) - start
    go = rank < share[frm, to]
    new = labels.copy()
    new[rows[go]] = to[go]
    return new
