"""PyTorch Geometric ``Data`` into and out of :class:`lotan.Graph`.

A ``Data`` is read as strictly as a Spark DataFrame is: every field Lotan reads has its
dtype, shape and range checked against what PyG itself requires, and a malformed one raises
:class:`~lotan.errors.GraphInputError` naming the field, what was found and what to do —
never a silent conversion (a float ``edge_index`` truncated to other vertices, a transposed
one read as a different graph, an index list taken for a mask).

Fields read: ``x`` ``[N, F]``; ``edge_index`` ``[2, E]`` integer, entries in ``0..N-1``;
``edge_weight`` ``[E]``; ``y`` ``[N]`` or ``[N, 1]`` integer class ids (``-1`` unknown);
``train_mask`` / ``val_mask`` / ``test_mask`` ``[N]`` boolean; ``edge_attr`` ``[E, D]`` (or
``[E]``) real and finite, the edge features that ``GINEConv`` and ``GATConv(edge_dim=...)``
read.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.errors import GraphInputError
from lotan.ir.splits import SPLIT_CODES

if TYPE_CHECKING:
    from lotan.graph.schema import GraphArrays

__all__ = ["pyg_arrays", "pyg_data"]


def _field(data: Any, key: str) -> np.ndarray | None:
    """``data.<key>`` as a NumPy array (from a tensor on any device, or an array)."""
    value = getattr(data, key, None)
    if value is None:
        return None
    if hasattr(value, "detach"):
        return np.asarray(value.detach().cpu().numpy())
    if isinstance(value, np.ndarray):
        return value
    raise GraphInputError(
        f"data.{key} must be a torch.Tensor (or NumPy array), found {type(value).__name__}"
    )


def _dtype(a: np.ndarray) -> str:
    """The dtype as a PyG user knows it (``torch.float32``)."""
    return "torch.bool" if a.dtype == np.bool_ else f"torch.{a.dtype.name}"


def _shape(shape: tuple[int, ...]) -> str:
    return "[" + ", ".join(str(s) for s in shape) + "]"


def _edge_index(data: Any, n: int) -> np.ndarray:
    ei = _field(data, "edge_index")
    assert ei is not None
    if not np.issubdtype(ei.dtype, np.integer):
        raise GraphInputError(
            f"data.edge_index must be an integer tensor (torch.long) of vertex indices, found "
            f"{_dtype(ei)}; PyG requires integer indices (a float would be truncated to "
            "another vertex) — build it with dtype=torch.long"
        )
    if ei.ndim != 2 or ei.shape[0] != 2:
        hint = (
            "; it looks transposed — pass edge_index.t().contiguous()"
            if ei.ndim == 2 and ei.shape[1] == 2
            else ""
        )
        raise GraphInputError(
            f"data.edge_index has shape {_shape(ei.shape)}; PyG expects [2, num_edges] "
            f"(row 0 sources, row 1 targets){hint}"
        )
    bad = (ei < 0) | (ei >= n)
    if bad.any():
        cols = bad.any(axis=0)
        raise GraphInputError(
            f"data.edge_index must hold vertex indices 0..{n - 1} (x has {n} rows); "
            f"{int(cols.sum())} edges have others, e.g. {np.unique(ei[bad])[:5].tolist()}; "
            "drop those edges or add their vertices to x"
        )
    return ei.astype(np.int64, copy=False)


def _labels(data: Any, n: int) -> np.ndarray | None:
    y = _field(data, "y")
    if y is None:
        return None
    if y.ndim == 2 and y.shape == (n, 1):  # OGB's layout
        y = y[:, 0]
    if not np.issubdtype(y.dtype, np.integer) or y.shape != (n,):
        raise GraphInputError(
            f"data.y must hold one integer class id per vertex (torch.long, shape [{n}] or "
            f"[{n}, 1]; -1 for unknown), found {_dtype(y)} of shape {_shape(y.shape)}; Lotan "
            "trains single-label vertex classification — convert class ids with .long()"
        )
    return y


def _split(data: Any, n: int) -> np.ndarray:
    split = np.zeros(n, dtype=np.int8)
    for name, code in SPLIT_CODES.items():
        mask = _field(data, f"{name}_mask")
        if mask is None:
            continue
        if mask.dtype != np.bool_ or mask.shape != (n,):
            if mask.ndim == 2 and mask.shape[0] == n:
                hint = f"it holds {mask.shape[1]} splits; pick one, e.g. data.{name}_mask[:, 0]"
            elif mask.ndim == 1 and np.issubdtype(mask.dtype, np.integer):
                hint = (
                    "it looks like a list of vertex indices; make it a mask with "
                    f"torch_geometric.utils.index_to_mask(idx, size={n})"
                )
            else:
                hint = "make it a boolean tensor with one entry per vertex"
            raise GraphInputError(
                f"data.{name}_mask must be a boolean tensor of shape [{n}] (one entry per "
                f"vertex), found {_dtype(mask)} of shape {_shape(mask.shape)}; {hint}"
            )
        overlap = mask & (split != 0)
        if overlap.any():
            raise GraphInputError(
                f"{name}_mask overlaps an earlier split on {int(overlap.sum())} vertices; "
                "a vertex may be in at most one of train/val/test"
            )
        split[mask] = code
    return split


def _edge_weight(data: Any, num_edges: int) -> np.ndarray | None:
    ew = _field(data, "edge_weight")
    if ew is None:
        return None
    if ew.dtype == np.bool_ or not np.issubdtype(ew.dtype, np.number) or ew.shape != (num_edges,):
        flat = "; flatten it with edge_weight.view(-1)" if ew.size == num_edges else ""
        raise GraphInputError(
            f"data.edge_weight must be a float tensor of shape [{num_edges}] (one weight per "
            f"edge of edge_index), found {_dtype(ew)} of shape {_shape(ew.shape)}{flat}"
        )
    return ew


def _edge_attr(data: Any, num_edges: int) -> np.ndarray | None:
    ea = _field(data, "edge_attr")
    if ea is None:
        return None
    shaped = ea.ndim in (1, 2) and ea.shape[0] == num_edges
    if ea.dtype == np.bool_ or not np.issubdtype(ea.dtype, np.number) or not shaped:
        raise GraphInputError(
            f"data.edge_attr must be a float tensor of shape [{num_edges}, num_edge_features] "
            f"(one row per edge of edge_index), found {_dtype(ea)} of shape {_shape(ea.shape)}"
        )
    return ea


def pyg_arrays(data: Any) -> dict[str, Any]:
    """The :meth:`~lotan.Graph.from_arrays` arguments of a ``torch_geometric.data.Data``
    (vertex ``i`` of the Data is vertex id ``i``); see the module docstring for the fields
    and their checks."""
    if getattr(data, "x", None) is None or getattr(data, "edge_index", None) is None:
        adj = " (it has `adj_t`, a SparseTensor: build the Data without T.ToSparseTensor)"
        raise GraphInputError(
            "a PyG Data needs `x` (vertex features) and `edge_index`"
            + (adj if getattr(data, "adj_t", None) is not None else "")
            + f"; found keys {sorted(data.keys()) if hasattr(data, 'keys') else type(data)}"
        )
    x = _field(data, "x")
    assert x is not None
    if x.ndim != 2:
        raise GraphInputError(
            f"data.x must be a 2-D tensor [num_vertices, num_features], found shape "
            f"{_shape(x.shape)}; a single feature per vertex is x.view(-1, 1)"
        )
    n = int(x.shape[0])
    ei = _edge_index(data, n)
    return {
        "x": x,
        "src": ei[0],
        "dst": ei[1],
        "y": _labels(data, n),
        "split": _split(data, n),
        "weight": _edge_weight(data, int(ei.shape[1])),
        "edge_attr": _edge_attr(data, int(ei.shape[1])),
    }


def pyg_data(a: GraphArrays) -> Any:
    """A graph's arrays as a ``torch_geometric.data.Data``: vertices in id order (vertex
    ``i`` is the ``i``-th smallest id, kept in ``data.ids``), masks for the splits."""
    import torch
    from torch_geometric.data import Data

    order = np.argsort(a.ids)
    ids = a.ids[order]
    pos = np.searchsorted(ids, np.stack([a.src, a.dst]))
    data = Data(
        x=torch.from_numpy(a.x[order]),
        edge_index=torch.from_numpy(pos),
        y=torch.from_numpy(a.y[order]),
    )
    for name, code in SPLIT_CODES.items():
        data[f"{name}_mask"] = torch.from_numpy(a.split[order] == code)
    if a.weight is not None:
        data.edge_weight = torch.from_numpy(a.weight)
    if a.edge_attr is not None:
        data.edge_attr = torch.from_numpy(a.edge_attr)
    data.ids = torch.from_numpy(ids)
    return data
