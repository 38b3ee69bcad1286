"""Synthetic graphs: a stochastic block model with class-correlated features.

Vertex ``v`` has class ``v % num_classes``. Each vertex draws ``Poisson(avg_degree)`` out-edges;
each edge goes to a uniformly random vertex of the same class with probability
``homophily``, else to a uniformly random vertex. Features are the class mean (a fixed random
vector per class) times ``signal`` plus standard normal noise. The split is drawn per vertex.

The graph is generated in fixed-size chunks of consecutive vertices, each from its own seeded
random stream, so the in-memory generator and the Spark generator (one task per group of
chunks, for graphs too large for the driver) produce the *same* graph.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.graph_engine.layout import SPLIT_CODES
from lotan.graph_engine.session import default_parallelism

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

__all__ = ["sbm"]

#: Vertices per generation chunk (one random stream each).
CHUNK = 1 << 16


def _class_means(num_classes: int, num_features: int, seed: int) -> np.ndarray:
    return np.random.default_rng([seed, 0xC1A55]).standard_normal((num_classes, num_features))


def _chunk(
    k: int,
    chunk: int,
    n: int,
    c: int,
    f: int,
    avg_degree: float,
    homophily: float,
    signal: float,
    split_fracs: tuple[float, float],
    seed: int,
) -> dict[str, np.ndarray]:
    lo, hi = k * chunk, min(n, (k + 1) * chunk)
    rng = np.random.default_rng([seed, k])
    ids = np.arange(lo, hi, dtype=np.int64)
    cls = ids % c
    x = (_class_means(c, f, seed)[cls] * signal + rng.standard_normal((hi - lo, f))).astype(
        np.float32
    )
    u = rng.random(hi - lo)
    split = np.zeros(hi - lo, dtype=np.int8)
    split[u < split_fracs[0]] = SPLIT_CODES["train"]
    split[(u >= split_fracs[0]) & (u < split_fracs[0] + split_fracs[1])] = SPLIT_CODES["val"]
    split[u >= split_fracs[0] + split_fracs[1]] = SPLIT_CODES["test"]
    deg = rng.poisson(avg_degree, hi - lo)
    src = np.repeat(ids, deg)
    m = src.shape[0]
    same = rng.random(m) < homophily
    src_cls = src % c
    per_class = (n - src_cls + c - 1) // c  # vertices of the source's class
    same_dst = src_cls + c * (rng.random(m) * per_class).astype(np.int64)
    any_dst = rng.integers(0, n, m)
    dst = np.where(same, same_dst, any_dst)
    return {"ids": ids, "x": x, "y": cls, "split": split, "src": src, "dst": dst}


def sbm(
    num_vertices: int,
    *,
    num_classes: int = 8,
    num_features: int = 32,
    avg_degree: float = 10.0,
    homophily: float = 0.8,
    signal: float = 0.5,
    train_fraction: float = 0.2,
    val_fraction: float = 0.2,
    seed: int = 0,
    chunk_size: int = CHUNK,
    spark: SparkSession | None = None,
) -> Graph:
    """A stochastic-block-model graph; generated in Spark when ``spark`` is given.

    Parameters
    ----------
    num_vertices : vertices, ids ``0..num_vertices-1``.
    avg_degree : mean out-degree (Poisson).
    homophily : probability that an edge stays inside its class.
    signal : scale of the class means in the features (higher is easier).
    train_fraction, val_fraction : expected split sizes; the rest is test.
    chunk_size : vertices per random stream (part of the graph's identity, like ``seed``).
    spark : generate as Spark DataFrames (any size) instead of NumPy arrays on the driver.
    """
    if num_vertices < 1 or num_classes < 1 or num_features < 1:
        raise GraphInputError(
            "sbm needs num_vertices, num_classes and num_features >= 1, found "
            f"{num_vertices}, {num_classes}, {num_features}"
        )
    if not (0 <= homophily <= 1) or train_fraction + val_fraction > 1:
        raise GraphInputError(
            f"sbm needs 0 <= homophily <= 1 (found {homophily}) and train_fraction + "
            f"val_fraction <= 1 (found {train_fraction + val_fraction})"
        )
    args = (
        chunk_size,
        num_vertices,
        num_classes,
        num_features,
        avg_degree,
        homophily,
        signal,
        (train_fraction, val_fraction),
        seed,
    )
    chunks = -(-num_vertices // chunk_size)
    name = f"sbm-{num_vertices}"
    if spark is None:
        parts = [_chunk(k, *args) for k in range(chunks)]
        cat = {key: np.concatenate([p[key] for p in parts]) for key in parts[0]}
        return Graph.from_arrays(
            x=cat["x"],
            src=cat["src"],
            dst=cat["dst"],
            y=cat["y"],
            split=cat["split"],
            ids=cat["ids"],
            name=name,
        )
    return _sbm_spark(spark, chunks, args, name)


def _sbm_spark(spark: SparkSession, chunks: int, args: tuple[Any, ...], name: str) -> Graph:
    import pyarrow as pa

    names = {code: n for n, code in SPLIT_CODES.items()}

    def vertices(batches: Any) -> Any:
        for batch in batches:
            for k in batch.column(0).to_pylist():
                ch = _chunk(int(k), *args)
                n, f = ch["x"].shape
                feats = pa.ListArray.from_arrays(
                    pa.array(np.arange(0, (n + 1) * f, f, dtype=np.int32)),
                    pa.array(ch["x"].reshape(-1)),
                )
                yield pa.RecordBatch.from_pydict(
                    {
                        "id": ch["ids"],
                        "features": feats,
                        "label": ch["y"],
                        "split": pa.array([names.get(int(s)) for s in ch["split"]], pa.string()),
                    }
                )

    def edges(batches: Any) -> Any:
        for batch in batches:
            for k in batch.column(0).to_pylist():
                ch = _chunk(int(k), *args)
                yield pa.RecordBatch.from_pydict({"src": ch["src"], "dst": ch["dst"]})

    ks = spark.range(chunks).repartition(max(1, min(chunks, default_parallelism(spark))))
    v = ks.mapInArrow(vertices, "id long, features array<float>, label long, split string")
    e = ks.mapInArrow(edges, "src long, dst long")
    return Graph.from_dataframes(v, e, name=name)
