"""The Planetoid citation graphs (Cora, CiteSeer, PubMed) from their raw files.

The raw files (``ind.<name>.x``, ``.tx``, ``.allx``, ``.y``, ``.ty``, ``.ally``, ``.graph``,
``.test.index``) are Python pickles, so they are read with a restricted unpickler that admits
only the NumPy/SciPy types the format needs: a crafted file cannot run code. Processing follows
PyTorch Geometric's ``read_planetoid_data`` exactly (public split: 20 labelled vertices per
class for training, 500 for validation, 1000 for test; self loops removed, duplicate edges
merged), so a model sees the same graph as with ``torch_geometric.datasets.Planetoid``.
"""

from __future__ import annotations

import io
import os
import pickle
from pathlib import Path
from typing import Any

import numpy as np

from lotan.errors import DatasetNotFoundError, GraphInputError
from lotan.graph import Graph

__all__ = ["PLANETOID_NAMES", "data_root", "planetoid", "read_planetoid_raw"]

PLANETOID_NAMES = {"cora": "Cora", "citeseer": "CiteSeer", "pubmed": "PubMed"}
_RAW_PARTS = ("x", "tx", "allx", "y", "ty", "ally", "graph", "test.index")


class _RestrictedUnpickler(pickle.Unpickler):
    """Admits only the globals the Planetoid pickles contain."""

    def find_class(self, module: str, name: str) -> Any:
        import collections

        import scipy.sparse
        from numpy._core.multiarray import _reconstruct

        allowed: dict[tuple[str, str], Any] = {
            ("numpy", "dtype"): np.dtype,
            ("numpy", "ndarray"): np.ndarray,
            ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
            ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
            ("scipy.sparse.csr", "csr_matrix"): scipy.sparse.csr_matrix,
            ("scipy.sparse._csr", "csr_matrix"): scipy.sparse.csr_matrix,
            ("__builtin__", "list"): list,
            ("builtins", "list"): list,
            ("collections", "defaultdict"): collections.defaultdict,
        }
        try:
            return allowed[(module, name)]
        except KeyError:
            raise pickle.UnpicklingError(
                f"refusing to load {module}.{name}: not a type the Planetoid format uses"
            ) from None


def _load_pickle(path: Path) -> Any:
    try:
        return _RestrictedUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    except pickle.UnpicklingError as exc:
        raise GraphInputError(f"{path} is not a valid Planetoid file: {exc}") from exc


def _dense(obj: Any, path: Path) -> np.ndarray:
    arr = obj.toarray() if hasattr(obj, "toarray") else np.asarray(obj)
    if not isinstance(arr, np.ndarray) or arr.ndim != 2:
        raise GraphInputError(f"{path} should hold a 2-D matrix, found {type(obj).__name__}")
    return arr.astype(np.float32)


def read_planetoid_raw(raw_dir: str | os.PathLike[str], name: str) -> Graph:
    """Read the raw files of ``name`` from ``raw_dir`` into a :class:`~lotan.Graph`."""
    raw = Path(raw_dir)
    prefix = name.lower()
    paths = {part: raw / f"ind.{prefix}.{part}" for part in _RAW_PARTS}
    missing = [str(p) for p in paths.values() if not p.is_file()]
    if missing:
        raise DatasetNotFoundError(f"Planetoid raw files missing: {missing}")
    _x, tx, allx = (_dense(_load_pickle(paths[k]), paths[k]) for k in ("x", "tx", "allx"))
    y, ty, ally = (_dense(_load_pickle(paths[k]), paths[k]) for k in ("y", "ty", "ally"))
    graph = _load_pickle(paths["graph"])
    if not isinstance(graph, dict):
        raise GraphInputError(f"{paths['graph']} should hold a dict, found {type(graph).__name__}")
    test_index = np.loadtxt(paths["test.index"], dtype=np.int64, ndmin=1)
    sorted_test = np.sort(test_index)

    if prefix == "citeseer":
        # CiteSeer has isolated test vertices missing from tx/ty; PyG adds them as zeros.
        span = int(test_index.max() - test_index.min()) + 1
        tx_ext = np.zeros((span, tx.shape[1]), dtype=tx.dtype)
        tx_ext[sorted_test - test_index.min()] = tx
        ty_ext = np.zeros((span, ty.shape[1]), dtype=ty.dtype)
        ty_ext[sorted_test - test_index.min()] = ty
        tx, ty = tx_ext, ty_ext

    feats = np.concatenate([allx, tx], axis=0)
    feats[test_index] = feats[sorted_test]
    labels = np.concatenate([ally, ty], axis=0).argmax(axis=1).astype(np.int64)
    labels[test_index] = labels[sorted_test]
    n = labels.shape[0]

    split = np.zeros(n, dtype=np.int8)
    split[np.arange(y.shape[0])] = 1
    split[np.arange(y.shape[0], y.shape[0] + 500)] = 2
    split[test_index] = 3

    src = np.fromiter((int(k) for k, vs in graph.items() for _ in vs), dtype=np.int64)
    dst = np.fromiter((int(v) for vs in graph.values() for v in vs), dtype=np.int64)
    keep = src != dst
    pairs = np.unique(np.stack([src[keep], dst[keep]], axis=1), axis=0)
    return Graph.from_arrays(
        x=feats,
        src=pairs[:, 0],
        dst=pairs[:, 1],
        y=labels,
        split=split,
        name=PLANETOID_NAMES[prefix],
    )


def data_root(root: str | os.PathLike[str] | None = None) -> Path:
    """``root``, else ``$LOTAN_DATA_DIR``, else ``$XDG_CACHE_HOME/lotan`` (``~/.cache/lotan``)."""
    if root is not None:
        return Path(root)
    env = os.environ.get("LOTAN_DATA_DIR")
    if env:
        return Path(env)
    cache = os.environ.get("XDG_CACHE_HOME") or os.path.join(Path.home(), ".cache")
    return Path(cache) / "lotan"


def planetoid(name: str, root: str | os.PathLike[str] | None = None) -> Graph:
    """Cora, CiteSeer or PubMed as a :class:`~lotan.Graph` with the public split.

    Reads ``<root>/planetoid/<Name>/raw/``; ``root`` defaults to :func:`data_root`. When the
    files are absent they are downloaded with PyG's standard loader into that folder (needs a
    network connection). Nothing is written next to files that are already there.
    """
    key = name.lower()
    if key not in PLANETOID_NAMES:
        raise DatasetNotFoundError(
            f"unknown Planetoid dataset {name!r}; expected one of "
            f"{sorted(PLANETOID_NAMES.values())}"
        )
    proper = PLANETOID_NAMES[key]
    base = data_root(root) / "planetoid"
    raw = base / proper / "raw"
    if not all((raw / f"ind.{key}.{p}").is_file() for p in _RAW_PARTS):
        _download(base, proper, raw)
    return read_planetoid_raw(raw, proper)


def _download(base: Path, proper: str, raw: Path) -> None:
    try:
        from torch_geometric.datasets import Planetoid

        Planetoid(str(base), proper)
    except Exception as exc:
        raise DatasetNotFoundError(
            f"{proper} is not in {raw} and downloading it failed ({type(exc).__name__}: {exc}); "
            f"copy the raw files ind.{proper.lower()}.* there, or set LOTAN_DATA_DIR to a "
            "folder that has planetoid/<Name>/raw/"
        ) from exc
