"""The benchmark graphs, written once per run as ``.npz`` files that every system reads.

Planetoid graphs get Kipf & Welling's row-normalized features (PyG's ``NormalizeFeatures``);
synthetic graphs are :func:`lotan.datasets.sbm` (16 classes, 128 features, degree 20), and
``arxiv_like`` has ``ogbn-arxiv``'s shape: 169,343 vertices, 40 classes, 128 features, an SBM
of average out-degree 6.9 made symmetric (as OGB's arxiv example does with ``to_symmetric``,
duplicates merged): about 2.3M directed edges; split 54 / 18 / 28 % like arxiv's years.
``products_like`` has ``ogbn-products``' shape (:data:`PRODUCTS`): 2,449,029 vertices, 100
features, 47 classes, OGB's sales-rank split sizes (8 % / 1.6 % / the rest), and a mean of
50.5 neighbours — 61.9M undirected edges, ~124M directed — drawn from a degree-corrected SBM
whose expected degrees follow a power law (exponent 2.5, the largest 20,000):
:func:`products_kwargs`. ``products_like@0.05`` is the same shape at 5 % of the vertices
(the largest degree scaled by the square root, so hubs meet each other as often).

One file format for all systems (NumPy arrays: ``x``, ``src``, ``dst``, ``y``,
``train``/``val``/``test`` masks) keeps the DGL worker free of Lotan and PyG: it runs in its
own environment and reads the same bytes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

__all__ = [
    "PRODUCTS",
    "SBM_DEGREE",
    "load_npz",
    "products_kwargs",
    "shape_kwargs",
    "write_graph",
]

#: Average degree of the synthetic graphs (SBM, 16 classes, 128 features).
SBM_DEGREE = 20.0
#: ``ogbn-arxiv``'s vertices and classes; the out-degree that gives its ~2.3M directed edges
#: once symmetric.
ARXIV = {"vertices": 169_343, "classes": 40, "out_degree": 6.9, "split": (0.54, 0.18)}
#: ``ogbn-products``: vertices, undirected edges, features, classes, and the split's train
#: and validation sizes (196,615 and 39,323 of 2,449,029). OGB publishes the counts, not the
#: degree distribution: the power law's exponent and largest degree are this benchmark's
#: choice (a co-purchase graph's heavy tail: most products with tens of neighbours, a few
#: with thousands).
PRODUCTS: dict[str, Any] = {
    "vertices": 2_449_029,
    "undirected_edges": 61_859_140,
    "features": 100,
    "classes": 47,
    "split": (196_615 / 2_449_029, 39_323 / 2_449_029),
    "degree_exponent": 2.5,
    "max_degree": 20_000,
}


def shape_kwargs(shape: dict[str, Any], scale: float = 1.0) -> dict[str, Any]:
    """:func:`lotan.datasets.sbm` arguments of a graph ``shape`` (:data:`PRODUCTS`'s keys)
    at ``scale`` of its vertices: undirected, the same mean degree, power-law degrees with
    the largest times ``sqrt(scale)`` (so that hubs meet each other as often)."""
    return {
        "num_vertices": round(shape["vertices"] * scale),
        "num_classes": shape["classes"],
        "num_features": shape["features"],
        "avg_degree": 2 * shape["undirected_edges"] / shape["vertices"],
        "degrees": "power_law",
        "degree_exponent": shape["degree_exponent"],
        "max_degree": shape["max_degree"] * scale**0.5,
        "undirected": True,
        "train_fraction": shape["split"][0],
        "val_fraction": shape["split"][1],
        "seed": 0,
    }


def products_kwargs(scale: float = 1.0) -> dict[str, Any]:
    """The ``products_like`` graph at ``scale`` (:func:`shape_kwargs`)."""
    return shape_kwargs(PRODUCTS, scale)


def write_graph(name: str, folder: Path) -> Path:
    """Write graph ``name`` (``cora``, ``citeseer``, ``sbm<N>`` like ``sbm100k``) to
    ``folder/<name>.npz`` unless it is there; return the path."""
    import lotan

    path = folder / f"{name}.npz"
    if path.exists():
        return path
    folder.mkdir(parents=True, exist_ok=True)
    if name in ("cora", "citeseer"):
        graph = lotan.datasets.planetoid("Cora" if name == "cora" else "CiteSeer")
    elif name == "arxiv_like":
        graph = lotan.datasets.sbm(
            ARXIV["vertices"],
            num_classes=ARXIV["classes"],
            num_features=128,
            avg_degree=ARXIV["out_degree"],
            train_fraction=ARXIV["split"][0],
            val_fraction=ARXIV["split"][1],
            seed=0,
        )
    elif name.startswith("products_like"):
        scale = float(name.partition("@")[2] or 1)
        graph = lotan.datasets.sbm(**products_kwargs(scale))
    elif name.startswith("sbm"):
        graph = lotan.datasets.sbm(
            _size(name[3:]), num_classes=16, num_features=128, avg_degree=SBM_DEGREE, seed=0
        )
    else:
        raise SystemExit(f"unknown graph {name!r}")
    a = graph.arrays()
    order = np.argsort(a.ids)  # rows in id order: vertex i is row i for every system
    x = a.x[order]
    if name in ("cora", "citeseer"):
        # Kipf & Welling's preprocessing (PyG's NormalizeFeatures): rows sum to 1.
        sums = x.sum(axis=1, keepdims=True)
        x = (x / np.where(sums == 0, 1, sums)).astype(np.float32)
    ids = a.ids[order]
    if not np.array_equal(ids, np.arange(ids.shape[0])):
        raise SystemExit(f"graph {name} does not have dense ids 0..n-1")
    src, dst = a.src, a.dst
    if name == "arxiv_like":  # to_symmetric: both directions, duplicates merged
        n = np.int64(ids.shape[0])
        key = np.unique(np.concatenate([src * n + dst, dst * n + src]))
        src, dst = key // n, key % n
    tmp = path.with_suffix(".tmp.npz")
    np.savez(
        tmp,
        x=x,
        y=a.y[order],
        src=src,
        dst=dst,
        train=a.split[order] == 1,
        val=a.split[order] == 2,
        test=a.split[order] == 3,
    )
    tmp.rename(path)
    return path


def _size(text: str) -> int:
    scale = {"k": 1_000, "m": 1_000_000}
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def load_npz(path: str | Path) -> dict[str, Any]:
    with np.load(path) as f:
        return {k: f[k] for k in f.files}
