"""The layout store: files written atomically, memory-mapped back, constants merged."""

from __future__ import annotations

import os

import numpy as np
import pytest

from lotan.engines.local import prepare_local
from lotan.engines.spark.store import LayoutStore, write_constants, write_layout
from lotan.errors import EngineError
from lotan.ir.norm import NormSpec
from tests.graph_cases import CASES


def test_layouts_round_trip_through_files_with_constants(tmp_path) -> None:
    a = CASES["weighted"]().arrays()
    layouts = prepare_local(a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, 3, (NormSpec(),))
    base, extra = str(tmp_path / "base"), str(tmp_path / "consts")
    for lay in layouts.values():
        write_layout(base, lay)
        write_constants(extra, lay.part, {"7": np.full((lay.num_own, 2), lay.part, np.float32)})
    assert sorted(os.listdir(base)) == [f"part-{p:05d}.ltn" for p in sorted(layouts)]
    store = LayoutStore(base).with_constants(extra)
    for p, lay in layouts.items():
        got = store.load(p)
        assert got is not None
        for name, value in lay.to_arrays().items():
            np.testing.assert_array_equal(got.to_arrays()[name], value, err_msg=name)
        np.testing.assert_array_equal(got.constants["7"], np.full((lay.num_own, 2), p))
        assert not got.x.flags.writeable  # a view of the mapped file, not a copy
    assert store.load(99) is None  # a partition without vertices has no file
    store.remove()
    assert not os.path.exists(base) and not os.path.exists(extra)


def test_missing_constants_are_a_clear_error(tmp_path) -> None:
    a = CASES["weighted"]().arrays()
    (lay,) = prepare_local(
        a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, 1, (NormSpec(),)
    ).values()
    write_layout(str(tmp_path / "base"), lay)
    store = LayoutStore(str(tmp_path / "base")).with_constants(str(tmp_path / "gone"))
    with pytest.raises(EngineError, match="cached aggregations of partition 0 are missing"):
        store.load(0)


def test_spark_preparation_with_layouts_over_the_chunk_size(spark) -> None:
    """Layout messages above CHUNK_BYTES cross Spark in chunks and train like the local
    engine."""
    import copy

    import torch
    from torch_geometric.nn.models import GCN

    import lotan
    from lotan.engines.spark.codec import CHUNK_BYTES

    graph = lotan.datasets.sbm(30_000, num_classes=4, num_features=256, avg_degree=3, seed=1)
    assert graph.num_vertices // 2 * 256 * 4 > CHUNK_BYTES  # each layout is chunked
    torch.manual_seed(0)
    model = GCN(256, 8, 2, 4)
    losses = []
    for engine in ("local", "spark"):
        res = lotan.fit(
            copy.deepcopy(model),
            graph,
            epochs=2,
            engine=engine,
            num_partitions=2,
            spark=spark,
            progress=False,
        )
        losses.append([r.loss for r in res.history])
    assert losses[0] == pytest.approx(losses[1], rel=1e-5)
