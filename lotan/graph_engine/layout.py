"""Per-partition graph layout and the kernels that build it.

A partition owns a set of vertices (its *own* rows, in ascending id order) and all of their
in-edges. The sources of those edges that live on other partitions form the *halo*. Rows of
the dense matrix a partition aggregates are ordered ``[own | halo]``; the halo is ordered by
``(owner partition, owner-local row)``, so each remote owner sends one contiguous block.

The same kernels build the layout on both engines: the local engine calls them over NumPy
groups, the Spark engine over Arrow groups inside ``applyInArrow``. Preparation has three
steps, each local to one partition, with two exchanges between them:

1. :func:`build_in_structure` (at the owner of the edge targets): self loops, raw in-edge
   CSR, halo, in-degrees; emits to each remote owner the rows it must send here.
2. :func:`attach_send_lists` (at each source owner): the send lists from those requests.
3. :func:`normalize_weights` (at the target owner, after a forward exchange of the
   ``deg^-1/2`` of halo rows): the GCN edge weights ``w_uv / sqrt(deg_u deg_v)``.

This reproduces PyTorch Geometric's ``gcn_norm`` (``add_remaining_self_loops``, symmetric
normalization by the weighted in-degree at the target, ``flow="source_to_target"``,
duplicate edges counted).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field, fields, replace
from functools import cached_property

import numpy as np

from lotan.graph_engine.kernels import index_dtype, transpose_csr
from lotan.graph_engine.tiles import decode_tile, encode_tile
from lotan.ir.norm import NormSpec

__all__ = [
    "PartitionLayout",
    "attach_send_lists",
    "build_in_structure",
    "inverse_sqrt_degree",
    "normalize_weights",
]

_CONST = "const:"


@dataclass(frozen=True)
class PartitionLayout:
    """Everything one partition needs, fixed for the whole training run.

    Attributes
    ----------
    part : partition id.
    ids : ``(n_own,)`` int64 original vertex ids, ascending; row ``i`` is vertex ``ids[i]``.
    x : ``(n_own, F)`` float32 features.
    y : ``(n_own,)`` int64 labels, ``-1`` where unknown.
    split : ``(n_own,)`` int8, codes from :data:`lotan.ir.splits.SPLIT_CODES`, 0 for none.
    indptr, indices : CSR of in-edges (every input edge, self loops included, plus one
        candidate self loop per vertex); ``indices`` index ``[own | halo]`` rows.
    weights : ``(K, nnz)``, one row per :class:`NormSpec` the layout was prepared for (an
        edge a normalization does not use has weight 0).
    t_indptr, t_indices, t_weights : the same edges indexed the other way — CSR of ``Âᵀ``
        (``[own | halo]`` rows by own columns) — for the backward aggregation; set by
        :func:`normalize_weights` (empty before).
    t_perm : ``(nnz,)`` the CSR edge of each transposed edge (``t_weights`` is
        ``weights[:, t_perm]``; per-edge values of the forward pass, e.g. attention
        coefficients, are read through it).
    constants : ``(n_own, d)`` arrays computed once per plan (cached aggregations), by name.
    halo_parts, halo_counts : one block per remote owner, ascending by partition.
    halo_locals : ``(n_halo,)`` owner-local row of each halo row.
    halo_ids : ``(n_halo,)`` vertex id of each halo row (edge keys need both ends' ids).
    send_parts, send_offsets, send_index : for each partition that needs rows of this one,
        the own rows it needs, in the order of its halo.
    edge_attr : ``(nnz, D)`` float32 features of each CSR edge (``D = 0`` without edge
        features); an added self loop gets the mean of the vertex's other in-edges' features
        (0 without any) — PyG's ``add_self_loops(fill_value="mean")`` after
        ``remove_self_loops``, what ``GATConv`` does by default.
    """

    part: int
    ids: np.ndarray
    x: np.ndarray
    y: np.ndarray
    split: np.ndarray
    indptr: np.ndarray
    indices: np.ndarray
    weights: np.ndarray
    t_indptr: np.ndarray
    t_indices: np.ndarray
    t_weights: np.ndarray
    t_perm: np.ndarray
    halo_parts: np.ndarray
    halo_counts: np.ndarray
    halo_locals: np.ndarray
    halo_ids: np.ndarray
    send_parts: np.ndarray
    send_offsets: np.ndarray
    send_index: np.ndarray
    edge_attr: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), np.float32))
    constants: Mapping[str, np.ndarray] = field(default_factory=dict)

    @property
    def num_own(self) -> int:
        return int(self.ids.shape[0])

    @property
    def num_halo(self) -> int:
        return int(self.halo_locals.shape[0])

    @property
    def num_edges(self) -> int:
        return int(self.indices.shape[0])

    @cached_property
    def edge_keys(self) -> np.ndarray:
        """``(nnz,)`` uint64 key of every CSR edge, the same wherever the edge is prepared:
        a hash of (source id, target id, rank among the edges with both ends equal) — what
        per-edge random masks (attention dropout) are drawn from, so that they do not
        depend on the partitioning. Duplicate edges get distinct keys; which duplicate gets
        which does not matter, they are the same edge. Computed once per layout."""
        rows = np.repeat(np.arange(self.num_own), np.diff(self.indptr))
        cols = self.indices.astype(np.int64)
        e = np.arange(cols.shape[0])
        new_run = np.ones(cols.shape[0], dtype=bool)
        new_run[1:] = (rows[1:] != rows[:-1]) | (cols[1:] != cols[:-1])
        rank = e - np.maximum.accumulate(np.where(new_run, e, 0))
        ids = np.concatenate([self.ids, self.halo_ids]).astype(np.uint64)
        key = _mix64(ids[cols] ^ np.uint64(0x243F6A8885A308D3))
        key = _mix64(key ^ ids[rows])
        return _mix64(key ^ rank.astype(np.uint64))

    def send_list(self, k: int) -> np.ndarray:
        """Own rows to send to partition ``send_parts[k]``."""
        return self.send_index[self.send_offsets[k] : self.send_offsets[k + 1]]

    def halo_block(self, k: int) -> slice:
        """Rows of the ``[own | halo]`` matrix that come from partition ``halo_parts[k]``."""
        start = self.num_own + int(self.halo_counts[:k].sum())
        return slice(start, start + int(self.halo_counts[k]))

    def to_arrays(self) -> dict[str, np.ndarray]:
        skip = ("part", "constants")
        arrays = {f.name: getattr(self, f.name) for f in fields(self) if f.name not in skip}
        arrays["part"] = np.array([self.part], dtype=np.int64)
        arrays.update({_CONST + k: v for k, v in self.constants.items()})
        return arrays

    @classmethod
    def from_arrays(cls, arrays: Mapping[str, np.ndarray]) -> PartitionLayout:
        rest = {k: v for k, v in arrays.items() if k != "part" and not k.startswith(_CONST)}
        consts = {k[len(_CONST) :]: v for k, v in arrays.items() if k.startswith(_CONST)}
        return cls(part=int(arrays["part"][0]), constants=consts, **rest)

    def to_bytes(self) -> bytes:
        return encode_tile(self.to_arrays())

    @classmethod
    def from_bytes(cls, buf: bytes | memoryview) -> PartitionLayout:
        return cls.from_arrays(decode_tile(buf))


def _mix64(x: np.ndarray) -> np.ndarray:
    """splitmix64's finalizer, elementwise on uint64 (wrapping arithmetic)."""
    with np.errstate(over="ignore"):
        x = (x ^ (x >> np.uint64(30))) * np.uint64(0xBF58476D1CE4E5B9)
        x = (x ^ (x >> np.uint64(27))) * np.uint64(0x94D049BB133111EB)
        return x ^ (x >> np.uint64(31))


def _empty(dtype: type) -> np.ndarray:
    return np.zeros(0, dtype=dtype)


def build_in_structure(
    part: int,
    ids: np.ndarray,
    x: np.ndarray,
    y: np.ndarray,
    split: np.ndarray,
    src_part: np.ndarray,
    src_local: np.ndarray,
    dst_local: np.ndarray,
    weight: np.ndarray,
    norms: tuple[NormSpec, ...],
    src_id: np.ndarray,
    edge_attr: np.ndarray | None = None,
) -> tuple[PartitionLayout, np.ndarray, dict[int, np.ndarray]]:
    """Step 1 of preparation, at the owner of the edge targets.

    Parameters
    ----------
    part : this partition.
    ids, x, y, split : own vertices, sorted by id (row ``i`` is local row ``i``).
    src_part, src_local, dst_local, weight : this partition's in-edges.
    norms : the normalizations to prepare weights for.
    src_id : the vertex id of each in-edge's source.
    edge_attr : ``(m, D)`` features of the in-edges (none: ``D = 0``).

    Returns
    -------
    layout : with raw weights (``gcn`` rows not yet normalized) and no send lists yet.
    deg : ``(n_own, K)`` float64 weighted in-degree per normalization.
    requests : ``{owner q: q-local rows this partition needs from q}``, in halo order.
    """
    n_own = int(ids.shape[0])
    own_rows = np.arange(n_own, dtype=np.int64)
    src_part = np.concatenate([np.asarray(src_part, np.int64), np.full(n_own, part, np.int64)])
    src_local = np.concatenate([np.asarray(src_local, np.int64), own_rows])
    dst_local = np.concatenate([np.asarray(dst_local, np.int64), own_rows])
    raw = np.asarray(weight, dtype=np.float64)
    m = raw.shape[0]
    added = np.zeros(m + n_own, dtype=bool)
    added[m:] = True
    is_loop = ~added & (src_part == part) & (src_local == dst_local)

    weights = np.zeros((len(norms), m + n_own), dtype=np.float64)
    deg = np.zeros((n_own, len(norms)), dtype=np.float64)
    for k, norm in enumerate(norms):
        w = weights[k]
        if norm.kind in ("sum", "mean", "loops") or not norm.weighted:
            w[:m] = 1.0  # GINConv / SAGEConv / GATConv ignore edge weights
        else:
            w[:m] = raw
        if norm.kind == "loops":
            w[is_loop] = 0.0
            w[m:] = 1.0
        if norm.kind == "gcn" and norm.add_self_loops:
            loop_weight = np.full(n_own, norm.fill_value, dtype=np.float64)
            if is_loop.any():
                # PyG keeps an existing self loop's weight; several loops on one vertex are
                # ambiguous there (scatter with duplicates), Lotan takes the largest.
                loops = dst_local[is_loop]
                best = np.full(n_own, -np.inf)
                np.maximum.at(best, loops, w[:m][is_loop[:m]])
                has = np.isfinite(best)
                loop_weight[has] = best[has]
            w[is_loop] = 0.0
            w[m:] = loop_weight
        deg[:, k] = np.bincount(dst_local, weights=w, minlength=n_own)
        if norm.kind == "mean":
            with np.errstate(divide="ignore"):
                inv = np.where(deg[:, k] > 0, 1.0 / deg[:, k], 0.0)
            w *= inv[dst_local]

    remote = src_part != part
    # Halo: distinct remote (owner, local) pairs, ordered by owner then local row.
    key_parts = src_part[remote]
    key_locals = src_local[remote]
    if key_parts.size:
        pairs = np.unique(np.stack([key_parts, key_locals], axis=1), axis=0)
        halo_parts_all, halo_locals = pairs[:, 0], pairs[:, 1]
        pos = _pair_positions(halo_parts_all, halo_locals, key_parts, key_locals)
        halo_ids = np.empty(halo_locals.shape[0], dtype=np.int64)
        halo_ids[pos] = np.asarray(src_id, np.int64)[remote[:m]]
        halo_parts, halo_counts = np.unique(halo_parts_all, return_counts=True)
    else:
        halo_locals = _empty(np.int64)
        halo_ids = _empty(np.int64)
        pos = _empty(np.int64)
        halo_parts, halo_counts = _empty(np.int64), _empty(np.int64)

    col = src_local.copy()
    col[remote] = n_own + pos
    order = np.lexsort((col, dst_local))
    row_sorted = dst_local[order]
    idx = index_dtype(col.shape[0], n_own + int(halo_locals.shape[0]))
    indptr: np.ndarray = np.zeros(n_own + 1, dtype=idx)
    np.cumsum(np.bincount(row_sorted, minlength=n_own), out=indptr[1:])

    requests: dict[int, np.ndarray] = {}
    start = 0
    for q, c in zip(halo_parts.tolist(), halo_counts.tolist(), strict=True):
        requests[int(q)] = halo_locals[start : start + c]
        start += c

    layout = PartitionLayout(
        part=part,
        ids=np.asarray(ids, dtype=np.int64),
        x=np.ascontiguousarray(x, dtype=np.float32),
        y=np.asarray(y, dtype=np.int64),
        split=np.asarray(split, dtype=np.int8),
        indptr=indptr,
        indices=col[order].astype(idx),
        weights=np.ascontiguousarray(weights[:, order]),
        t_indptr=_empty(idx),
        t_indices=_empty(idx),
        t_weights=np.zeros((len(norms), 0), dtype=np.float32),
        t_perm=_empty(idx),
        halo_parts=halo_parts.astype(np.int64),
        halo_counts=halo_counts.astype(np.int64),
        halo_locals=halo_locals.astype(np.int64),
        halo_ids=halo_ids,
        send_parts=_empty(np.int64),
        send_offsets=np.zeros(1, dtype=np.int64),
        send_index=_empty(np.int64),
        edge_attr=_edge_features(edge_attr, dst_local[:m], is_loop[:m], n_own)[order],
    )
    return layout, deg, requests


def _edge_features(
    attr: np.ndarray | None, dst: np.ndarray, is_loop: np.ndarray, n_own: int
) -> np.ndarray:
    """``(m + n_own, D)``: the in-edges' features, then one row per added self loop: the mean
    over the vertex's in-edges that are not self loops (0 for none)."""
    m = dst.shape[0]
    if attr is None:
        return np.zeros((m + n_own, 0), np.float32)
    attr = np.asarray(attr, np.float32)
    keep = ~is_loop
    sums = np.zeros((n_own, attr.shape[1]), np.float64)
    np.add.at(sums, dst[keep], attr[keep])
    count = np.bincount(dst[keep], minlength=n_own)
    loops = (sums / np.maximum(count, 1)[:, None]).astype(np.float32)
    return np.ascontiguousarray(np.concatenate([attr, loops]))


def _pair_positions(
    sorted_parts: np.ndarray, sorted_locals: np.ndarray, parts: np.ndarray, locals_: np.ndarray
) -> np.ndarray:
    """Position of each (part, local) query in the lexicographically sorted unique pairs."""
    shift = int(sorted_locals.max(initial=0)) + 1
    keys = sorted_parts * shift + sorted_locals
    return np.searchsorted(keys, parts * shift + locals_)


def attach_send_lists(layout: PartitionLayout, requests: dict[int, np.ndarray]) -> PartitionLayout:
    """Step 2 of preparation: record, for each requesting partition, the rows it needs."""
    parts = sorted(p for p in requests if p != layout.part)
    counts = [len(requests[p]) for p in parts]
    offsets = np.zeros(len(parts) + 1, dtype=np.int64)
    np.cumsum(counts, out=offsets[1:])
    index = (
        np.concatenate([np.asarray(requests[p], dtype=np.int64) for p in parts])
        if parts
        else _empty(np.int64)
    )
    return replace(
        layout,
        send_parts=np.asarray(parts, dtype=np.int64),
        send_offsets=offsets,
        send_index=index,
    )


def inverse_sqrt_degree(deg: np.ndarray) -> np.ndarray:
    """``deg^-1/2`` with ``0`` where the degree is 0 (PyG's ``inf -> 0``)."""
    with np.errstate(divide="ignore"):
        out = np.power(deg, -0.5)
    out[np.isinf(out)] = 0.0
    return out


def normalize_weights(
    layout: PartitionLayout, dis_full: np.ndarray, norms: tuple[NormSpec, ...]
) -> PartitionLayout:
    """Step 3 of preparation: final edge weights (float32) and the transposed index.

    Parameters
    ----------
    dis_full : ``(n_own + n_halo, K)`` ``deg^-1/2`` of the ``[own | halo]`` rows.
    """
    w = np.array(layout.weights, dtype=np.float64, copy=True)
    rows = np.repeat(np.arange(layout.num_own), np.diff(layout.indptr))
    for k, norm in enumerate(norms):
        if norm.kind == "gcn":
            w[k] = dis_full[layout.indices, k] * w[k] * dis_full[rows, k]
    weights = w.astype(np.float32)
    t_indptr, t_indices, perm = transpose_csr(
        layout.indptr, layout.indices, layout.num_own + layout.num_halo
    )
    return replace(
        layout,
        weights=weights,
        t_indptr=t_indptr,
        t_indices=t_indices,
        t_weights=np.ascontiguousarray(weights[:, perm]),
        t_perm=perm.astype(t_indices.dtype),
    )
