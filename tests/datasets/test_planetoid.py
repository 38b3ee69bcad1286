from __future__ import annotations

import pickle
import shutil

import numpy as np
import pytest
import torch

import lotan
from lotan.errors import DatasetNotFoundError, GraphInputError


@pytest.mark.parametrize("name", ["Cora", "CiteSeer"])
def test_same_graph_as_pyg_reader(data_dir, name: str) -> None:
    from torch_geometric.io import read_planetoid_data

    ours = lotan.datasets.planetoid(name, root=data_dir).to_pyg()
    ref = read_planetoid_data(str(data_dir / "planetoid" / name / "raw"), name)
    assert ours.num_nodes == ref.num_nodes
    torch.testing.assert_close(ours.x, ref.x)
    assert torch.equal(ours.y, ref.y)
    for mask in ("train_mask", "val_mask", "test_mask"):
        assert torch.equal(ours[mask], ref[mask]), mask
    ours_edges = set(map(tuple, ours.edge_index.t().tolist()))
    assert ours_edges == set(map(tuple, ref.edge_index.t().tolist()))
    assert ours.edge_index.shape == ref.edge_index.shape


def test_default_root_is_lotan_data_dir(data_dir, monkeypatch) -> None:
    monkeypatch.setenv("LOTAN_DATA_DIR", str(data_dir))
    assert lotan.datasets.planetoid("cora").num_vertices == 2708


def _copy_raw(data_dir, tmp_path):
    dst = tmp_path / "planetoid" / "Cora" / "raw"
    shutil.copytree(data_dir / "planetoid" / "Cora" / "raw", dst)
    return dst


class _Evil:
    def __reduce__(self):
        return (shutil.rmtree, ("/definitely/not/here",))


def test_crafted_pickle_is_rejected_without_running_code(data_dir, tmp_path) -> None:
    raw = _copy_raw(data_dir, tmp_path)
    marker = tmp_path / "pwned"

    class Touch:
        def __reduce__(self):
            return (open, (str(marker), "w"))

    (raw / "ind.cora.x").write_bytes(pickle.dumps(Touch()))
    with pytest.raises(GraphInputError, match=r"refusing to load io\.open"):
        lotan.datasets.planetoid("Cora", root=tmp_path)
    assert not marker.exists()
    shutil.copy(data_dir / "planetoid" / "Cora" / "raw" / "ind.cora.x", raw / "ind.cora.x")
    (raw / "ind.cora.graph").write_bytes(pickle.dumps(_Evil()))
    with pytest.raises(GraphInputError, match=r"refusing to load shutil\.rmtree"):
        lotan.datasets.read_planetoid_raw(raw, "Cora")


def test_missing_files_offline_gives_a_clear_error(tmp_path, monkeypatch) -> None:
    # No network here: PyG's download fails and the error says where to put the files.
    monkeypatch.setattr("torch_geometric.datasets.planetoid.Planetoid.url", "http://127.0.0.1:9/")
    with pytest.raises(DatasetNotFoundError, match=r"copy the raw files ind\.citeseer\.\* there"):
        lotan.datasets.planetoid("CiteSeer", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"unknown Planetoid dataset 'Reddit'"):
        lotan.datasets.planetoid("Reddit", root=tmp_path)


def test_cora_statistics(data_dir) -> None:
    g = lotan.datasets.planetoid("Cora", root=data_dir)
    assert (g.num_vertices, g.num_edges, g.num_features, g.num_classes, g.num_train) == (
        2708,
        10556,
        1433,
        7,
        140,
    )
    a = g.arrays()
    assert np.bincount(a.split).tolist() == [2708 - 140 - 500 - 1000, 140, 500, 1000]
