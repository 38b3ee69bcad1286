"""OGB node property prediction datasets, read from OGB's own on-disk layout.

``<root>/<name with _>/`` (``ogbn_arxiv/``, as OGB's loaders leave it) holds ``raw/`` —
``edge.csv.gz``, ``node-feat.csv.gz``, ``node-label.csv.gz``, ``num-node-list.csv.gz``,
``num-edge-list.csv.gz``; papers100M's ``data.npz`` and ``node-label.npz`` instead — and
``split/<split type>/{train,valid,test}.csv.gz``. Every file is read as a stream of row
blocks (:func:`vertex_batches`, :func:`edge_batches`): the NumPy path concatenates them, the
Spark path runs the same generators inside one Spark task per table (``mapInArrow``), so a
papers100M-sized graph never passes through the driver.
"""

from __future__ import annotations

import gzip
import os
import shutil
import tempfile
import urllib.error
import urllib.request
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

import numpy as np

from lotan.datasets.planetoid import data_root
from lotan.errors import DatasetNotFoundError, GraphInputError
from lotan.graph import Graph
from lotan.graph.checks import features_matrix, list_array

if TYPE_CHECKING:
    import pyarrow as pa
    from pyspark.sql import DataFrame, SparkSession

__all__ = ["OGB_DATASETS", "edge_batches", "ogb", "vertex_batches"]

#: Rows per block a reader yields (features of 128 float32: 32 MiB).
BLOCK_ROWS = 65_536
#: Seconds a download may wait for the server before it fails.
DOWNLOAD_TIMEOUT_S = 60
_SPLITS = (("train", 1), ("valid", 2), ("test", 3))
_MARK = "lotan.datasets.ogb:"  # starts the message of an error raised inside a Spark task


@dataclass(frozen=True)
class OgbDataset:
    """What Lotan needs to know about one OGB node property prediction dataset."""

    url: str
    download_name: str  # the folder inside the zip
    split: str  # split/<split>/
    num_classes: int
    binary: bool  # raw/data.npz + node-label.npz instead of CSV
    #: ``"symmetric"``: the union of the edges and their reverses, each pair once (OGB's
    #: examples ``to_symmetric`` the directed citation graphs); ``"inverse"``: every edge
    #: and its reverse (what OGB's loader does for ``add_inverse_edge`` datasets).
    edges: str

    def dir_name(self, name: str) -> str:
        return name.replace("-", "_")


_OGB_DATA = "http://snap.stanford.edu/ogb/data/nodeproppred/"
OGB_DATASETS: dict[str, OgbDataset] = {
    "ogbn-arxiv": OgbDataset(_OGB_DATA + "arxiv.zip", "arxiv", "time", 40, False, "symmetric"),
    "ogbn-products": OgbDataset(
        _OGB_DATA + "products.zip", "products", "sales_ranking", 47, False, "inverse"
    ),
    "ogbn-papers100M": OgbDataset(
        _OGB_DATA + "papers100M-bin.zip", "papers100M-bin", "time", 172, True, "symmetric"
    ),
}
_UNSUPPORTED = {
    "ogbn-proteins": "it has 112 binary tasks per vertex (multi-label, ROC-AUC) and no vertex "
    "features, and Lotan trains one class per vertex",
    "ogbn-mag": "it is heterogeneous (four vertex types), and Lotan trains homogeneous graphs",
}


def ogb(
    name: str,
    root: str | os.PathLike[str] | None = None,
    spark: SparkSession | None = None,
    *,
    download: bool = True,
) -> Graph:
    """``ogbn-arxiv``, ``ogbn-products`` or ``ogbn-papers100M`` as a :class:`~lotan.Graph`.

    Reads ``<root>/<name with _>/`` in OGB's layout; ``root`` defaults to
    :func:`~lotan.datasets.data_root`, and an existing OGB download is used where it is
    (pass the folder that holds ``ogbn_arxiv/``, OGB's ``dataset/``). Missing files are
    downloaded from OGB's URL when ``download`` (needs a network). The split is OGB's
    (``valid`` becomes ``val``); labels ``-1``/NaN are unknown; arxiv and papers100M are made
    symmetric, products gets each edge's reverse, as OGB's examples train them.

    With ``spark``, the graph is read by Spark tasks (every file must be readable where the
    executors run) and stays in Spark; without, it is read into this process.

    Raises
    ------
    DatasetNotFoundError
        Unknown or unsupported name, or files missing and not downloaded.
    GraphInputError
        Files that disagree (row counts, ids out of range).
    """
    meta = _meta(name)
    base = data_root(root)
    path = base / meta.dir_name(name)
    missing = _missing(path, meta)
    if missing and download:
        _download(meta.url, base, meta.download_name, path)
        missing = _missing(path, meta)
    if missing:
        raise DatasetNotFoundError(
            f"{name} is not in {path}: missing {missing}; unzip OGB's {meta.url} so that "
            f"{path.name}/ sits in {base}, or pass root= the folder that holds "
            f"{path.name}/ (OGB's dataset/)"
        )
    num_nodes = _num_nodes(path, meta)
    if spark is None:
        return _read_numpy(name, path, meta, num_nodes)
    return _read_spark(name, path, meta, num_nodes, spark)


def _meta(name: str) -> OgbDataset:
    if name in _UNSUPPORTED:
        raise DatasetNotFoundError(f"{name} is not supported: {_UNSUPPORTED[name]}")
    if name not in OGB_DATASETS:
        raise DatasetNotFoundError(
            f"unknown OGB dataset {name!r}; expected one of {sorted(OGB_DATASETS)}"
        )
    return OGB_DATASETS[name]


def _raw_files(meta: OgbDataset) -> list[str]:
    if meta.binary:
        return ["data.npz", "node-label.npz"]
    return [f"{f}.csv.gz" for f in ("edge", "node-feat", "node-label", "num-node-list")]


def _missing(path: Path, meta: OgbDataset) -> list[str]:
    files = [f"raw/{f}" for f in _raw_files(meta)]
    files += [f"split/{meta.split}/{s}.csv.gz" for s, _ in _SPLITS]
    return [f for f in files if not (path / f).is_file()]


def _download(url: str, base: Path, download_name: str, path: Path) -> None:
    """Fetch OGB's zip into ``base``, unpack it, move its folder to ``path`` (files already
    in ``path`` stay), and delete the zip; nothing half-written is left under ``path``."""
    base.mkdir(parents=True, exist_ok=True)
    part = base / (url.rpartition("/")[2] + ".part")
    tmp = Path(tempfile.mkdtemp(dir=base, prefix=".lotan-ogb-"))
    try:
        with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_S) as resp, open(part, "wb") as f:
            shutil.copyfileobj(resp, f, 1 << 20)
        with zipfile.ZipFile(part) as z:
            z.extractall(tmp)
        unpacked = tmp / download_name
        if not unpacked.is_dir():
            raise DatasetNotFoundError(
                f"{url} does not hold the folder {download_name}/; found "
                f"{sorted(p.name for p in tmp.iterdir())}"
            )
        path.mkdir(exist_ok=True)
        for child in unpacked.iterdir():
            if not (path / child.name).exists():
                child.rename(path / child.name)
    except (OSError, urllib.error.URLError, zipfile.BadZipFile) as exc:
        raise DatasetNotFoundError(
            f"downloading {url} failed ({type(exc).__name__}: {exc}); download and unzip it "
            f"yourself so that {path.name}/ sits in {base}, or pass root= the folder that "
            f"holds {path.name}/"
        ) from exc
    finally:
        part.unlink(missing_ok=True)
        shutil.rmtree(tmp, ignore_errors=True)


# ---------------------------------------------------------------- readers


def _num_nodes(path: Path, meta: OgbDataset) -> int:
    raw = path / "raw"
    if meta.binary:
        with np.load(raw / "data.npz") as npz:
            counts = npz["num_nodes_list"]
    else:
        with gzip.open(raw / "num-node-list.csv.gz", "rt") as f:
            counts = np.array([int(line) for line in f if line.strip()])
    if counts.shape[0] != 1:
        raise GraphInputError(
            f"{path.name} holds {counts.shape[0]} graphs; node property prediction needs one"
        )
    return int(counts[0])


def _csv_blocks(path: Path, types: list[str]) -> Iterator[np.ndarray]:
    """Row blocks ``(rows, len(types))`` of a headerless CSV (gzip by its name)."""
    import pyarrow as pa
    import pyarrow.csv as pacsv

    names = [f"c{i}" for i in range(len(types))]
    reader = pacsv.open_csv(
        str(path),
        read_options=pacsv.ReadOptions(column_names=names, block_size=1 << 24),
        convert_options=pacsv.ConvertOptions(
            column_types={n: pa.type_for_alias(t) for n, t in zip(names, types, strict=True)}
        ),
    )
    for batch in reader:
        cols = [c.to_numpy(zero_copy_only=False) for c in batch.columns]
        yield np.column_stack(cols) if len(cols) > 1 else cols[0][:, None]


def _csv_width(path: Path) -> int:
    with gzip.open(path, "rt") as f:
        return f.readline().count(",") + 1


class _Npy:
    """One ``.npy`` member of an ``.npz`` read as a stream of elements (no random access)."""

    def __init__(self, npz: Path, key: str) -> None:
        self._zip = zipfile.ZipFile(npz)
        self.file: BinaryIO = self._zip.open(f"{key}.npy")  # type: ignore[assignment]
        version = np.lib.format.read_magic(self.file)
        read = (
            np.lib.format.read_array_header_1_0
            if version == (1, 0)
            else np.lib.format.read_array_header_2_0
        )
        self.shape, fortran, self.dtype = read(self.file)
        if fortran:
            raise GraphInputError(f"{npz}:{key} is in Fortran order; save it in C order")

    def read(self, count: int) -> np.ndarray:
        """The next ``count`` elements (fewer at the end)."""
        data = self.file.read(count * self.dtype.itemsize)
        return np.frombuffer(data, dtype=self.dtype)

    def close(self) -> None:
        self.file.close()
        self._zip.close()


def _npy_blocks(npz: Path, key: str) -> Iterator[np.ndarray]:
    arr = _Npy(npz, key)
    try:
        width = int(np.prod(arr.shape[1:]))
        while True:
            block = arr.read(BLOCK_ROWS * width)
            if block.size == 0:
                return
            yield block.reshape(-1, width)
    finally:
        arr.close()


class _Take:
    """Exactly ``k`` rows at a time out of blocks of any size."""

    def __init__(self, blocks: Iterator[np.ndarray]) -> None:
        self._blocks = blocks
        self._buf: list[np.ndarray] = []
        self._have = 0

    def take(self, k: int) -> np.ndarray:
        while self._have < k:
            block = next(self._blocks, None)
            if block is None:
                break
            self._buf.append(block)
            self._have += block.shape[0]
        if not self._buf:
            return np.zeros((0, 0))
        joined = np.concatenate(self._buf) if len(self._buf) > 1 else self._buf[0]
        out, rest = joined[:k], joined[k:]
        self._buf = [rest] if rest.shape[0] else []
        self._have = rest.shape[0]
        return out


def _fail(msg: str) -> GraphInputError:
    return GraphInputError(f"{_MARK} {msg}")


def _split_codes(path: Path, meta: OgbDataset, n: int) -> np.ndarray:
    codes = np.zeros(n, np.int8)
    for split, code in _SPLITS:
        file = path / "split" / meta.split / f"{split}.csv.gz"
        blocks = [b[:, 0] for b in _csv_blocks(file, ["int64"])]
        idx = np.concatenate(blocks).astype(np.int64) if blocks else np.zeros(0, np.int64)
        if idx.size and (idx.min() < 0 or idx.max() >= n):
            raise _fail(f"{file} has vertex ids outside 0..{n - 1}, e.g. {idx[idx >= n][:3]}")
        codes[idx] = code
    return codes


def vertex_batches(path: Path, meta: OgbDataset, num_nodes: int) -> Iterator[pa.RecordBatch]:
    """The vertex table in blocks: ``id``, ``features`` (``list<float>``), ``label`` (null
    when unknown) and ``split`` (``"train"``/``"val"``/``"test"``/null), in vertex order."""
    import pyarrow as pa

    raw = path / "raw"
    if meta.binary:
        feats = _Take(_npy_blocks(raw / "data.npz", "node_feat"))
        labels = _Take(_npy_blocks(raw / "node-label.npz", "node_label"))
    else:
        width = _csv_width(raw / "node-feat.csv.gz")
        feats = _Take(_csv_blocks(raw / "node-feat.csv.gz", ["float32"] * width))
        labels = _Take(_csv_blocks(raw / "node-label.csv.gz", ["float64"]))
    codes = _split_codes(path, meta, num_nodes)
    names = pa.array([None, "train", "val", "test"], pa.string())
    start = 0
    while start < num_nodes:
        k = min(BLOCK_ROWS, num_nodes - start)
        x, y = feats.take(k), labels.take(k)
        if x.shape[0] != k or y.shape[0] != k:
            raise _fail(
                f"{path.name} has {num_nodes} vertices (num_nodes), but its features or "
                f"labels end at row {start + min(x.shape[0], y.shape[0])}"
            )
        y = y[:, 0].astype(np.float64)
        unknown = ~np.isfinite(y) | (y < 0)
        if (y[~unknown] >= meta.num_classes).any() or (y[~unknown] % 1 != 0).any():
            raise _fail(
                f"{path.name} has labels outside 0..{meta.num_classes - 1} near row {start}"
            )
        yield pa.RecordBatch.from_arrays(
            [
                pa.array(np.arange(start, start + k, dtype=np.int64)),
                list_array(np.ascontiguousarray(x, np.float32)),
                pa.array(np.where(unknown, 0, y).astype(np.int64), mask=unknown),
                names.take(pa.array(codes[start : start + k].astype(np.int64))),
            ],
            names=["id", "features", "label", "split"],
        )
        start += k
    if feats.take(1).shape[0] or labels.take(1).shape[0]:
        raise _fail(f"{path.name} has more feature or label rows than its {num_nodes} vertices")


def edge_batches(path: Path, meta: OgbDataset, num_nodes: int) -> Iterator[pa.RecordBatch]:
    """The edges as OGB stores them (before :attr:`OgbDataset.edges`): ``src``, ``dst``."""
    import pyarrow as pa

    raw = path / "raw"
    if meta.binary:
        blocks = _npz_edge_blocks(raw / "data.npz")
    else:
        blocks = _csv_blocks(raw / "edge.csv.gz", ["int64", "int64"])
    for block in blocks:
        block = block.astype(np.int64, copy=False)
        if block.size and (block.min() < 0 or block.max() >= num_nodes):
            raise _fail(f"{path.name}'s edges have vertex ids outside 0..{num_nodes - 1}")
        yield pa.RecordBatch.from_arrays(
            [pa.array(block[:, 0]), pa.array(block[:, 1])], names=["src", "dst"]
        )


def _npz_edge_blocks(npz: Path) -> Iterator[np.ndarray]:
    """``edge_index`` ``(2, E)``: one stream for its first row, another for its second."""
    src, dst = _Npy(npz, "edge_index"), _Npy(npz, "edge_index")
    try:
        m = int(src.shape[1])
        for _ in range(0, m, BLOCK_ROWS):  # skip the first row in the second stream
            dst.read(min(BLOCK_ROWS, m - _))
        for start in range(0, m, BLOCK_ROWS):
            k = min(BLOCK_ROWS, m - start)
            yield np.stack([src.read(k), dst.read(k)], axis=1)
    finally:
        src.close()
        dst.close()


def _read_numpy(name: str, path: Path, meta: OgbDataset, n: int) -> Graph:
    import pyarrow as pa

    try:
        vt = pa.Table.from_batches(list(vertex_batches(path, meta, n)))
        et = pa.Table.from_batches(list(edge_batches(path, meta, n)))
    except GraphInputError as exc:
        raise GraphInputError(str(exc).removeprefix(_MARK).strip()) from None
    width = len(vt.column("features")[0]) if n else 0
    x = features_matrix(vt.column("features"), n, width)
    y = vt.column("label").to_numpy(zero_copy_only=False)
    y = np.where(np.isnan(y), -1, y).astype(np.int64) if y.dtype.kind == "f" else y
    split = np.array(vt.column("split").to_pylist(), dtype=object)
    src = et.column("src").to_numpy()
    dst = et.column("dst").to_numpy()
    if meta.edges == "symmetric":
        pairs = np.unique(np.stack([np.r_[src, dst], np.r_[dst, src]], axis=1), axis=0)
        src, dst = pairs[:, 0], pairs[:, 1]
    else:
        src, dst = np.stack([src, dst], 1).reshape(-1), np.stack([dst, src], 1).reshape(-1)
    return Graph.from_arrays(x=x, src=src, dst=dst, y=y, split=split, name=name)


def _read_spark(name: str, path: Path, meta: OgbDataset, n: int, spark: SparkSession) -> Graph:
    from pyspark.sql import functions as F

    root = str(path)

    # Each task reads its one input row first: a worker that leaves input unread is not
    # reused, and the next job pays for a fresh Python process.
    def vertices(batches: Iterator[Any]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            yield from vertex_batches(Path(root), meta, n)

    def edges(batches: Iterator[Any]) -> Iterator[pa.RecordBatch]:
        for _ in batches:
            yield from edge_batches(Path(root), meta, n)

    one = spark.range(1, numPartitions=1)
    vdf = one.mapInArrow(vertices, "id long, features array<float>, label long, split string")
    edf: DataFrame = one.mapInArrow(edges, "src long, dst long")
    reverse = edf.select(F.col("dst").alias("src"), F.col("src").alias("dst"))
    edf = edf.union(reverse).distinct() if meta.edges == "symmetric" else edf.union(reverse)
    try:
        return Graph.from_dataframes(vdf, edf, name=name)
    except Exception as exc:
        text = str(exc)
        if _MARK not in text:
            raise
        msg = text[text.index(_MARK) + len(_MARK) :].splitlines()[0].strip()
        raise GraphInputError(msg) from None
