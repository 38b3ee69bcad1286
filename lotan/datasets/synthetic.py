"""Synthetic graphs: a stochastic block model with class-correlated features.

Vertex ``v`` has class ``v % num_classes``. Each edge goes to a vertex of the same class with
probability ``homophily``, else to any vertex. Features are the class mean (a fixed random
vector per class) times ``signal`` plus standard normal noise. The split is drawn per vertex.

Degrees (``degrees``):

- ``"poisson"`` (the default): each vertex draws ``Poisson(avg_degree)`` out-edges to
  uniformly random vertices (of its class, or of the graph);
- ``"power_law"``: a degree-corrected SBM (Karrer & Newman, 2011). Vertex ``v`` has a weight
  ``θ_v`` drawn from a power law ``P(θ) ∝ θ^-degree_exponent``, truncated at
  ``max_degree`` and scaled so that its mean is ``avg_degree``; ``v`` draws
  ``Poisson(θ_v)`` edges (half that with ``undirected``) and each edge's other end is
  drawn with probability proportional to its weight, so a vertex's expected degree is
  ``θ_v``: a few hubs with thousands of neighbours, most vertices near the minimum.

``undirected`` emits every drawn edge in both directions (``avg_degree`` is then the mean
number of neighbours, and a vertex draws half its edges); self loops are dropped there.
Two draws can pick the same pair, so the graph may hold a few repeated edges (between hubs,
mostly), as a multigraph.

The graph is generated in fixed-size chunks of consecutive vertices, each from its own seeded
random stream, so the in-memory generator and the Spark generator (one task per group of
chunks, for graphs too large for the driver) produce the *same* graph.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np

from lotan.engines.spark.session import default_parallelism
from lotan.errors import GraphInputError
from lotan.graph import Graph
from lotan.ir.splits import SPLIT_CODES

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
    degrees: Degrees | None = None,
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
    if degrees is not None:
        src, dst = _weighted_edges(rng, ids, n, c, chunk, seed, homophily, degrees)
        return {"ids": ids, "x": x, "y": cls, "split": split, "src": src, "dst": dst}
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


@dataclass(frozen=True)
class Degrees:
    """The degree model of a ``power_law`` or ``undirected`` graph (see the module)."""

    avg: float
    exponent: float | None  # None: every weight is ``avg`` (Poisson degrees)
    max_degree: float
    undirected: bool


def _capped_mean(exponent: float, cap: float) -> float:
    """``E[min(r, cap)]`` of a Pareto draw ``P(r > t) = t^-α`` (``t >= 1``, ``α = exponent -
    1``): ``1 + (1 - cap^(1-α)) / (α - 1)``, ``1 + log(cap)`` at ``α = 1``."""
    alpha = exponent - 1
    if abs(alpha - 1) < 1e-12:
        return 1 + float(np.log(cap))
    return 1 + (1 - cap ** (1 - alpha)) / (alpha - 1)


def _pareto_cap(exponent: float, ratio: float) -> float:
    """The cap ``c`` on Pareto draws whose scaled maximum is ``ratio`` times the scaled mean,
    ``c / E[min(r, c)] = ratio`` (bisection: the left side grows with ``c``)."""
    lo, hi = 1.0, max(2.0, ratio) * 1e6
    for _ in range(200):
        mid = (lo * hi) ** 0.5
        lo, hi = (mid, hi) if mid / _capped_mean(exponent, mid) < ratio else (lo, mid)
    return lo


@lru_cache(maxsize=4)
def _weights(n: int, chunk: int, seed: int, degrees: Degrees) -> np.ndarray:
    """Every vertex's weight ``θ`` (mean ``degrees.avg``), from one stream per chunk: each
    task that generates edges computes the same array."""
    if degrees.exponent is None:
        return np.full(n, degrees.avg)
    cap = _pareto_cap(degrees.exponent, degrees.max_degree / degrees.avg)
    draws = [
        np.random.default_rng([seed, 0xDE6, k]).random(min(n, (k + 1) * chunk) - k * chunk)
        for k in range(-(-n // chunk))
    ]
    r = np.minimum((1 - np.concatenate(draws)) ** (-1 / (degrees.exponent - 1)), cap)
    return r * (degrees.avg / _capped_mean(degrees.exponent, cap))


@lru_cache(maxsize=4)
def _cumulative(n: int, c: int, chunk: int, seed: int, degrees: Degrees) -> list[np.ndarray]:
    """Cumulative weights of the whole graph (last entry) and of each class's vertices
    ``cls, cls + c, ...`` (entries ``0..c-1``), for drawing ends by weight."""
    w = _weights(n, chunk, seed, degrees)
    return [np.cumsum(w[k::c]) for k in range(c)] + [np.cumsum(w)]


def _draw(rng: np.random.Generator, cum: np.ndarray, m: int) -> np.ndarray:
    """``m`` indices drawn with probability proportional to the weights summed in ``cum``."""
    if m == 0:
        return np.zeros(0, np.int64)
    at = np.searchsorted(cum, rng.random(m) * cum[-1], side="right")
    return np.minimum(at, cum.shape[0] - 1).astype(np.int64)


def _weighted_edges(
    rng: np.random.Generator,
    ids: np.ndarray,
    n: int,
    c: int,
    chunk: int,
    seed: int,
    homophily: float,
    degrees: Degrees,
) -> tuple[np.ndarray, np.ndarray]:
    """The edges whose first end is in this chunk: ``Poisson(θ_v)`` draws per vertex (half
    when undirected), the other end by weight, inside the class with probability
    ``homophily``; both directions when undirected."""
    theta = _weights(n, chunk, seed, degrees)[ids]
    scale = 0.5 if degrees.undirected else 1.0
    src = np.repeat(ids, rng.poisson(theta * scale))
    m = src.shape[0]
    same = rng.random(m) < homophily
    cums = _cumulative(n, c, chunk, seed, degrees)
    dst = np.empty(m, np.int64)
    dst[~same] = _draw(rng, cums[c], int((~same).sum()))
    src_cls = src % c
    for k in range(c):
        pick = same & (src_cls == k)
        dst[pick] = k + c * _draw(rng, cums[k], int(pick.sum()))
    if not degrees.undirected:
        return src, dst
    keep = src != dst
    src, dst = src[keep], dst[keep]
    return np.concatenate([src, dst]), np.concatenate([dst, src])


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
    degrees: str = "poisson",
    degree_exponent: float = 2.5,
    max_degree: float | None = None,
    undirected: bool = False,
    chunk_size: int = CHUNK,
    spark: SparkSession | None = None,
) -> Graph:
    """A stochastic-block-model graph; generated in Spark when ``spark`` is given.

    Parameters
    ----------
    num_vertices : vertices, ids ``0..num_vertices-1``.
    avg_degree : mean out-degree (mean number of neighbours when ``undirected``).
    degrees : ``"poisson"`` or ``"power_law"`` (a degree-corrected SBM; see the module).
    degree_exponent : ``γ`` of the power law ``P(θ) ∝ θ^-γ`` (> 1).
    max_degree : the largest expected degree of the power law (default ``num_vertices - 1``).
    undirected : every edge in both directions, no self loops.
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
    if degrees not in ("poisson", "power_law"):
        raise GraphInputError(f"sbm degrees must be 'poisson' or 'power_law', found {degrees!r}")
    cap = float(num_vertices - 1 if max_degree is None else max_degree)
    if degrees == "power_law" and (degree_exponent <= 1 or not avg_degree < cap):
        raise GraphInputError(
            "sbm(degrees='power_law') needs degree_exponent > 1 and avg_degree < max_degree, "
            f"found {degree_exponent}, {avg_degree} and {cap:g}"
        )
    model = None
    if degrees == "power_law" or undirected:
        exponent = degree_exponent if degrees == "power_law" else None
        model = Degrees(float(avg_degree), exponent, cap, bool(undirected))
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
        model,
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
