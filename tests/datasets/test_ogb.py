"""lotan.datasets.ogb on small datasets written in OGB's own layout: the same graph from
NumPy and from Spark, the same as OGB's loader on the same files, clear errors otherwise."""

from __future__ import annotations

import gzip
import http.server
import importlib
import shutil
import threading
import zipfile
from pathlib import Path

import numpy as np
import pytest

import lotan
from lotan.errors import DatasetNotFoundError, GraphInputError

ogb_module = importlib.import_module("lotan.datasets.ogb")  # the module, not the function


def _csv(path: Path, rows: np.ndarray, fmt: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt") as f:
        np.savetxt(f, rows, fmt=fmt, delimiter=",")


def write_ogb(root: Path, name: str, n: int = 300, m: int = 1200, f: int = 7) -> dict:
    """``name``'s files for a random graph in OGB's layout under ``root``; the arrays."""
    meta = lotan.datasets.OGB_DATASETS[name]
    rng = np.random.default_rng(len(name))
    src = rng.integers(0, n, m)
    dst = rng.integers(0, n, m)
    src = np.r_[src, dst[:20], src[:5], 3]  # reverse pairs, duplicates, a self loop
    dst = np.r_[dst, src[:20], dst[:5], 3]
    x = rng.standard_normal((n, f)).astype(np.float32)
    y = rng.integers(0, meta.num_classes, n).astype(np.float64)
    perm = rng.permutation(n)
    splits = {"train": perm[: n // 2], "valid": perm[n // 2 : 2 * n // 3], "test": perm[-50:]}
    y[perm[2 * n // 3 : -50][::2]] = np.nan  # unknown labels, outside the splits as in OGB
    path = root / name.replace("-", "_")
    raw = path / "raw"
    raw.mkdir(parents=True)
    if meta.binary:
        np.savez_compressed(
            raw / "data.npz",
            edge_index=np.stack([src, dst]).astype(np.int64),
            node_feat=x,
            num_nodes_list=np.array([n]),
            num_edges_list=np.array([src.size]),
            node_year=rng.integers(1990, 2020, (n, 1)),  # OGB's extra vertex data, unused
        )
        np.savez_compressed(raw / "node-label.npz", node_label=y[:, None])
    else:
        _csv(raw / "edge.csv.gz", np.stack([src, dst], 1), "%d")
        _csv(raw / "node-feat.csv.gz", x, "%.9g")
        _csv(raw / "node-label.csv.gz", y[:, None], "%.0f")
        _csv(raw / "num-node-list.csv.gz", np.array([[n]]), "%d")
        _csv(raw / "num-edge-list.csv.gz", np.array([[src.size]]), "%d")
        if name == "ogbn-arxiv":  # OGB's extra vertex data, unused
            _csv(raw / "node_year.csv.gz", rng.integers(1990, 2020, (n, 1)), "%d")
    for split, idx in splits.items():
        _csv(path / "split" / meta.split / f"{split}.csv.gz", idx[:, None], "%d")
    (path / "RELEASE_v1.txt").write_text("")  # OGB's zip holds these; its loader needs them
    (path / "processed").mkdir()
    return {"src": src, "dst": dst, "x": x, "y": y, "splits": splits}


def _expected_edges(name: str, src: np.ndarray, dst: np.ndarray) -> list[tuple[int, int]]:
    if lotan.datasets.OGB_DATASETS[name].edges == "symmetric":
        return sorted(set(zip(src, dst, strict=True)) | set(zip(dst, src, strict=True)))
    return sorted([*zip(src, dst, strict=True), *zip(dst, src, strict=True)])


def _check(graph: lotan.Graph, name: str, data: dict) -> None:
    a = graph.arrays()
    order = np.argsort(a.ids)
    assert a.ids[order].tolist() == list(range(data["x"].shape[0]))
    np.testing.assert_array_equal(a.x[order], data["x"])
    y = np.nan_to_num(data["y"], nan=-1).astype(np.int64)
    np.testing.assert_array_equal(a.y[order], y)
    codes = np.zeros(y.shape[0], np.int8)
    for split, code in (("train", 1), ("valid", 2), ("test", 3)):
        codes[data["splits"][split]] = code
    np.testing.assert_array_equal(a.split[order], codes)
    ours = sorted(zip(a.src.tolist(), a.dst.tolist(), strict=True))
    assert ours == _expected_edges(name, data["src"].tolist(), data["dst"].tolist())
    assert graph.name == name and graph.num_classes <= lotan.datasets.OGB_DATASETS[name].num_classes


@pytest.mark.parametrize("name", ["ogbn-arxiv", "ogbn-products", "ogbn-papers100M"])
def test_reads_ogb_layout_in_numpy_and_in_spark(spark, tmp_path: Path, name: str) -> None:
    data = write_ogb(tmp_path, name)
    _check(lotan.datasets.ogb(name, root=tmp_path, download=False), name, data)
    graph = lotan.datasets.ogb(name, root=tmp_path, spark=spark, download=False)
    assert not graph.in_memory
    _check(graph, name, data)


def test_reads_in_blocks_across_block_boundaries(tmp_path: Path, monkeypatch) -> None:
    data = write_ogb(tmp_path, "ogbn-papers100M", n=1000, m=3000)
    monkeypatch.setattr(ogb_module, "BLOCK_ROWS", 64)  # many blocks, a short last one
    _check(lotan.datasets.ogb("ogbn-papers100M", root=tmp_path), "ogbn-papers100M", data)


@pytest.mark.parametrize("name", ["ogbn-arxiv", "ogbn-products", "ogbn-papers100M"])
def test_same_graph_as_ogbs_loader(tmp_path: Path, name: str) -> None:
    pytest.importorskip("ogb")
    from ogb.nodeproppred import NodePropPredDataset

    write_ogb(tmp_path, name)
    ours = lotan.datasets.ogb(name, root=tmp_path, download=False).arrays()
    ref = NodePropPredDataset(name, root=str(tmp_path))  # writes processed/ next to raw/
    g, labels = ref[0]
    np.testing.assert_array_equal(ours.x, g["node_feat"].astype(np.float32))
    np.testing.assert_array_equal(ours.y, np.nan_to_num(labels[:, 0], nan=-1).astype(np.int64))
    idx = ref.get_idx_split()
    for split, code in (("train", 1), ("valid", 2), ("test", 3)):
        np.testing.assert_array_equal(np.flatnonzero(ours.split == code), np.sort(idx[split]))
    src, dst = g["edge_index"]
    if lotan.datasets.OGB_DATASETS[name].edges == "symmetric":  # OGB's examples: to_symmetric
        src, dst = np.r_[src, dst], np.r_[dst, src]
        want = sorted(set(zip(src.tolist(), dst.tolist(), strict=True)))
    else:  # add_inverse_edge: OGB's loader already holds both directions
        want = sorted(zip(src.tolist(), dst.tolist(), strict=True))
    assert sorted(zip(ours.src.tolist(), ours.dst.tolist(), strict=True)) == want


def test_accuracy_is_ogbs_evaluator_accuracy(tmp_path: Path) -> None:
    pytest.importorskip("sklearn")
    pytest.importorskip("ogb")
    from ogb.nodeproppred import Evaluator
    from torch_geometric.nn.models import GCN

    write_ogb(tmp_path, "ogbn-arxiv")
    graph = lotan.datasets.ogb("ogbn-arxiv", root=tmp_path, download=False)
    model = GCN(graph.num_features, 8, 2, 40)
    res = lotan.fit(model, graph, epochs=3, engine="local")
    pred = lotan.predict(res.model, graph, engine="local")["prediction"].to_numpy()
    a = graph.arrays()
    test = a.split == 3
    ref = Evaluator("ogbn-arxiv").eval(
        {"y_true": a.y[test][:, None], "y_pred": pred[test][:, None]}
    )
    assert res.history[-1].test_acc == pytest.approx(ref["acc"])


def test_missing_files_are_named(tmp_path: Path) -> None:
    write_ogb(tmp_path, "ogbn-arxiv")
    (tmp_path / "ogbn_arxiv" / "raw" / "node-feat.csv.gz").unlink()
    with pytest.raises(DatasetNotFoundError, match=r"missing \['raw/node-feat.csv.gz'\].*root="):
        lotan.datasets.ogb("ogbn-arxiv", root=tmp_path, download=False)


def test_unknown_and_unsupported_names(tmp_path: Path) -> None:
    with pytest.raises(DatasetNotFoundError, match=r"unknown OGB dataset 'ogbn-arxv'.*ogbn-arxiv"):
        lotan.datasets.ogb("ogbn-arxv", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"ogbn-mag is not supported: .*heterogeneous"):
        lotan.datasets.ogb("ogbn-mag", root=tmp_path)
    with pytest.raises(DatasetNotFoundError, match=r"ogbn-proteins is not supported: .*112"):
        lotan.datasets.ogb("ogbn-proteins", root=tmp_path)


def test_files_that_disagree_are_explained(spark, tmp_path: Path) -> None:
    write_ogb(tmp_path, "ogbn-arxiv", n=300)
    raw = tmp_path / "ogbn_arxiv" / "raw"
    _csv(raw / "num-node-list.csv.gz", np.array([[400]]), "%d")
    for kwargs in ({}, {"spark": spark}):
        with pytest.raises(GraphInputError, match=r"400 vertices .* end at row 300"):
            lotan.datasets.ogb("ogbn-arxiv", root=tmp_path, download=False, **kwargs)
    _csv(raw / "num-node-list.csv.gz", np.array([[200]]), "%d")
    with pytest.raises(GraphInputError, match=r"outside 0\.\.199"):
        lotan.datasets.ogb("ogbn-arxiv", root=tmp_path, download=False)


def test_downloads_ogbs_zip_when_missing(tmp_path: Path) -> None:
    """The real download code against an HTTP server on 127.0.0.1 serving OGB's zip shape."""
    made = tmp_path / "made"
    data = write_ogb(made, "ogbn-arxiv")
    served = tmp_path / "served"
    served.mkdir()
    with zipfile.ZipFile(served / "arxiv.zip", "w") as z:
        for p in (made / "ogbn_arxiv").rglob("*"):
            z.write(p, "arxiv/" + str(p.relative_to(made / "ogbn_arxiv")))
    handler = lambda *a: http.server.SimpleHTTPRequestHandler(*a, directory=str(served))  # noqa: E731
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        root = tmp_path / "root"
        path = root / "ogbn_arxiv"
        url = f"http://127.0.0.1:{server.server_address[1]}/arxiv.zip"
        ogb_module._download(url, root, "arxiv", path)
        _check(lotan.datasets.ogb("ogbn-arxiv", root=root, download=False), "ogbn-arxiv", data)
        assert sorted(p.name for p in root.iterdir()) == ["ogbn_arxiv"]  # no zip, no temp
        shutil.rmtree(path)
        with pytest.raises(DatasetNotFoundError, match=r"downloading .*/nothing.zip failed"):
            ogb_module._download(url.replace("arxiv", "nothing"), root, "arxiv", path)
        assert not path.exists() and sorted(root.iterdir()) == []
    finally:
        server.shutdown()


def test_a_job_reads_an_ogb_graph(tmp_path: Path, capsys) -> None:
    import yaml

    from lotan.cli import main

    write_ogb(tmp_path, "ogbn-products")
    job = tmp_path / "job.yaml"
    job.write_text(
        yaml.safe_dump(
            {
                "graph": {"ogb": "ogbn-products", "root": str(tmp_path)},
                "model": {"name": "GraphSAGE", "hidden_channels": 8, "num_layers": 2},
                "engine": "local",
                "epochs": 2,
                "progress": False,
            }
        )
    )
    assert main(["fit", "--config", str(job)]) == 0
    assert "ogbn-products" in capsys.readouterr().out
