"""Preparation reproduces PyG's gcn_norm exactly, on both engines, for every partition count."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch_geometric.nn.conv.gcn_conv import gcn_norm

from lotan.engines.local import prepare_local
from lotan.engines.spark.prepare import prepare_spark
from lotan.engines.spark.store import LayoutStore
from lotan.graph_engine.layout import PartitionLayout
from lotan.ir.norm import NormSpec
from tests.graph_cases import CASES


def _dense_from_layouts(layouts: dict[int, PartitionLayout], ids: np.ndarray) -> np.ndarray:
    """``Â`` as a dense matrix over vertices in ascending id order."""
    order = np.sort(ids)
    n = order.shape[0]
    out = np.zeros((n, n))
    for lay in layouts.values():
        full = list(lay.ids)
        for k, q in enumerate(lay.halo_parts.tolist()):
            blk = lay.halo_block(k)
            locals_ = lay.halo_locals[blk.start - lay.num_own : blk.stop - lay.num_own]
            full += list(layouts[q].ids[locals_])
        full_pos = np.searchsorted(order, np.array(full, dtype=np.int64))
        own_pos = np.searchsorted(order, lay.ids)
        rows = np.repeat(np.arange(lay.num_own), np.diff(lay.indptr))
        np.add.at(out, (own_pos[rows], full_pos[lay.indices]), lay.weights[0])
    return out


def _pyg_dense(graph, norm: NormSpec) -> np.ndarray:
    data = graph.to_pyg()
    n = data.num_nodes
    ei, w = data.edge_index, getattr(data, "edge_weight", None)
    if w is None or norm.kind in ("sum", "mean"):
        # explicit ones: PyG applies fill_value only to edge attributes; GIN/SAGE ignore weights
        w = torch.ones(ei.shape[1])
    if norm.kind == "gcn":
        ei, w = gcn_norm(
            ei, w, n, improved=norm.fill_value == 2.0, add_self_loops=norm.add_self_loops
        )
    out = np.zeros((n, n))
    np.add.at(out, (ei[1].numpy(), ei[0].numpy()), w.double().numpy())
    if norm.kind == "mean":
        deg = out.sum(axis=1, keepdims=True)
        out = np.divide(out, deg, out=np.zeros_like(out), where=deg > 0)
    return out


NORMS = [
    NormSpec(),
    NormSpec(fill_value=2.0),
    NormSpec(add_self_loops=False),
    NormSpec(kind="weighted_sum", add_self_loops=False),
    NormSpec(kind="sum"),
    NormSpec(kind="mean"),
]


@pytest.mark.parametrize("name", sorted(CASES))
@pytest.mark.parametrize("parts", [1, 3, 7])
@pytest.mark.parametrize("norm", NORMS, ids=["gcn", "improved", "no_loops", "wsum", "sum", "mean"])
def test_local_preparation_matches_pyg(name: str, parts: int, norm: NormSpec) -> None:
    graph = CASES[name]()
    a = graph.arrays()
    layouts = prepare_local(a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, parts, (norm,))
    np.testing.assert_allclose(
        _dense_from_layouts(layouts, a.ids), _pyg_dense(graph, norm), atol=1e-6
    )
    for lay in layouts.values():  # the transposed index holds the same edges, transposed
        n_full = lay.num_own + lay.num_halo
        fwd = np.zeros((lay.num_own, n_full))
        rows = np.repeat(np.arange(lay.num_own), np.diff(lay.indptr))
        np.add.at(fwd, (rows, lay.indices), lay.weights[0])
        bwd = np.zeros((n_full, lay.num_own))
        t_rows = np.repeat(np.arange(n_full), np.diff(lay.t_indptr))
        np.add.at(bwd, (t_rows, lay.t_indices), lay.t_weights[0])
        np.testing.assert_array_equal(bwd, fwd.T)
    for lay in layouts.values():  # send lists mirror the receivers' halos
        for k, q in enumerate(lay.send_parts.tolist()):
            other = layouts[q]
            j = other.halo_parts.tolist().index(lay.part)
            blk = other.halo_block(j)
            np.testing.assert_array_equal(
                other.halo_locals[blk.start - other.num_own : blk.stop - other.num_own],
                lay.send_list(k),
            )


@pytest.mark.parametrize("parts", [1, 4])
def test_spark_preparation_equals_local(spark, tmp_path, parts: int) -> None:
    graph = CASES["weighted"]()
    a = graph.arrays()
    norms = (NormSpec(), NormSpec(kind="mean"))
    local = prepare_local(a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, parts, norms)
    vertices, edges = graph.dataframes(spark)
    directory = str(tmp_path / "layouts")
    sizes = prepare_spark(spark, vertices, edges, parts, norms, directory)
    store = LayoutStore(directory)
    remote = {p: store.load(p) for p, *_ in sizes}
    assert sorted(remote) == sorted(local)
    assert store.load(parts + 5) is None
    for p, lay in local.items():
        for field, value in lay.to_arrays().items():
            np.testing.assert_allclose(
                remote[p].to_arrays()[field], value, rtol=1e-6, err_msg=field
            )


def test_edge_keys_do_not_depend_on_the_partitioning() -> None:
    """Every edge (duplicates apart) keeps its key whatever partition prepares it."""
    from lotan.engines.local import prepare_local
    from lotan.ir.norm import NormSpec
    from tests.graph_cases import CASES

    a = CASES["directed_multi"]().arrays()

    def keys(parts: int) -> list[tuple[int, int, int]]:
        layouts = prepare_local(
            a.ids, a.x, a.y, a.split, a.src, a.dst, None, parts, (NormSpec(kind="loops"),)
        )
        out = []
        for lay in layouts.values():
            ids = np.concatenate([lay.ids, lay.halo_ids])
            rows = np.repeat(np.arange(lay.num_own), np.diff(lay.indptr))
            ends = zip(ids[lay.indices].tolist(), lay.ids[rows].tolist(), strict=True)
            out += [(*e, k) for e, k in zip(ends, lay.edge_keys.tolist(), strict=True)]
        return sorted(out)

    one = keys(1)
    assert len({k for *_, k in one}) == len(one)  # distinct, duplicates included
    assert keys(3) == one == keys(5)
