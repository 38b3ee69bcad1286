"""One measurement of one system, in a fresh process: ``python -m bench.systems SPEC_JSON``
prints ``RESULT {json}``. Systems: ``pyg`` (``edge_index``), ``pyg-csr`` (cached
``torch.sparse`` CSR ``adj_t``), ``lotan-local``, ``lotan-spark``, and the naive in-Spark
GCN of :mod:`bench.naive` (``naive-spark``: SQL joins and ``groupBy``;
``naive-graphframes``: ``GraphFrame.aggregateMessages``); DGL runs in its own environment
through :mod:`bench.dgl_worker` with the same spec.

Spec keys: ``system``, ``task`` (``accuracy``: train ``epochs`` per seed, report the test
accuracy at the best validation epoch — Lotan trains the seeds together, as replicates of
``fit_many``, which end exactly as separate fits; ``epochs``: time ``epochs`` training
epochs),
``graph`` (an ``.npz`` from :mod:`bench.graphs`), ``model`` (``gcn``/``sage``/``gin``, or
``gat``: :class:`Gat`, with ``heads`` and ``out_heads``),
``hidden``, ``layers``, ``dropout``, ``norm`` (``BasicGNN``'s, e.g. ``"batch_norm"``;
optional), ``lr``, ``weight_decay``, ``epochs``, ``seeds``,
``partitions`` (Spark), ``limit_gb`` (address-space limit of this process, optional);
for Lotan also ``local_partitions`` (local engine, default 1), ``partitioner``, ``planner``
(:class:`lotan.PlannerFlags` fields, e.g. ``{"fuse": false}``), ``plan`` (true: report
what ``lotan.explain`` measures — stages, bytes exchanged per epoch, replication factor) and
``models`` (K > 1: train K copies, seeds ``seed … seed + K − 1``, together with
``lotan.fit_many``; the times reported are the batch's epoch divided by K, per model);
for ``lotan-spark`` also ``generate`` (:func:`lotan.datasets.sbm` arguments: the graph is
generated inside Spark and never passes through the driver; ``graph`` is then not read) and
``spark_io`` (true: report the GiB written to shuffle files and spilled, :func:`spark_io`).
"""

from __future__ import annotations

import json
import re
import resource
import statistics
import sys
import time
from typing import Any

import numpy as np


def _gat_class() -> Any:
    import torch
    import torch.nn.functional as F
    from torch_geometric.nn import GATConv

    class Gat(torch.nn.Module):
        """PyG's ``examples/gat.py`` (Veličković et al.): dropout on the inputs and on the
        attention coefficients, ``heads`` concatenated heads of ``hidden`` channels, ELU,
        then ``out_heads`` averaged output heads."""

        def __init__(self, f: int, hidden: int, c: int, heads: int, out_heads: int, p: float):
            super().__init__()
            self.p = p
            self.conv1 = GATConv(f, hidden, heads, dropout=p)
            self.conv2 = GATConv(hidden * heads, c, heads=out_heads, concat=False, dropout=p)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            x = F.dropout(x, p=self.p, training=self.training)
            x = F.elu(self.conv1(x, edge_index))
            x = F.dropout(x, p=self.p, training=self.training)
            return self.conv2(x, edge_index)

    return Gat


def _model(spec: dict[str, Any], f: int, c: int, *, csr: bool = False) -> Any:
    from torch_geometric.nn.models import GCN, GIN, GraphSAGE

    if spec["model"] == "gat":
        gat = _gat_class()
        return gat(f, spec["hidden"], c, spec["heads"], spec["out_heads"], spec["dropout"])
    cls = {"gcn": GCN, "sage": GraphSAGE, "gin": GIN}[spec["model"]]
    kw: dict[str, Any] = {"dropout": spec["dropout"]}
    if spec.get("norm"):
        kw["norm"] = spec["norm"]
    if csr and spec["model"] == "gcn":
        kw["cached"] = True
    return cls(f, spec["hidden"], spec["layers"], c, **kw)


def _pyg(spec: dict[str, Any], g: dict[str, Any], seed: int, csr: bool) -> dict[str, Any]:
    import torch
    import torch.nn.functional as F
    from torch_geometric.utils import to_torch_csr_tensor

    x = torch.from_numpy(g["x"])
    y = torch.from_numpy(g["y"])
    n = x.shape[0]
    edge_index = torch.from_numpy(np.stack([g["src"], g["dst"]]))
    adj: Any = edge_index
    if csr:  # adj_t: row = target, as PyG's ToSparseTensor builds it
        adj = to_torch_csr_tensor(edge_index.flip(0), size=(n, n))
    masks = {k: torch.from_numpy(g[k]) for k in ("train", "val", "test")}
    c = int(y.max()) + 1
    torch.manual_seed(seed)
    model = _model(spec, x.shape[1], c, csr=csr)
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    times, curve = [], []
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        out = model(x, adj)
        loss = F.cross_entropy(out[masks["train"]], y[masks["train"]])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        if spec["task"] == "accuracy":
            model.eval()
            with torch.no_grad():
                pred = model(x, adj).argmax(1)
            curve.append([float((pred[m] == y[m]).float().mean()) for m in masks.values()])
    return {"times": times, "loss": float(loss), "curve": curve}


def _setup(spec: dict[str, Any], g: dict[str, Any], engine: str) -> tuple[Any, dict[str, Any]]:
    """The graph (from ``g``, or generated inside Spark) and the engine options of a Lotan
    run."""
    import lotan

    spark = None
    if engine == "spark":
        from lotan.engines.spark.session import get_spark

        spark = get_spark(conf=spec.get("spark_conf"))
    if spark is not None and spec.get("generate"):
        graph = lotan.datasets.sbm(**spec["generate"], spark=spark)  # never on the driver
    else:
        split = np.zeros(g["y"].shape[0], np.int8)
        for code, key in ((1, "train"), (2, "val"), (3, "test")):
            split[g[key]] = code
        graph = lotan.Graph.from_arrays(x=g["x"], src=g["src"], dst=g["dst"], y=g["y"], split=split)
    parts = spec.get("partitions") if engine == "spark" else spec.get("local_partitions", 1)
    options: dict[str, Any] = {
        "engine": engine,
        "num_partitions": parts,
        "partitioner": spec.get("partitioner", "hash"),
        "planner": lotan.PlannerFlags(**spec.get("planner", {})),
        "spark": spark,
    }
    return graph, options


def _lotan(spec: dict[str, Any], g: dict[str, Any], seed: int, engine: str) -> dict[str, Any]:
    import torch

    import lotan

    graph, options = _setup(spec, g, engine)
    spark = options["spark"]
    torch.manual_seed(seed)
    model = _model(spec, graph.num_features, graph.num_classes)
    common = {"epochs": spec["epochs"], "seed": seed, "progress": False, **options}
    if not spec.get("measure", True):
        # No accuracies until the end (a timing loop of PyG or DGL measures none): the
        # epochs run no evaluation stream, only the final evaluation does.
        common["eval_every"] = spec["epochs"] + 1
    start = time.perf_counter()
    if spec.get("models", 1) > 1:
        times, res = _batched(spec, graph, seed, common)
    else:
        res = lotan.fit(model, graph, lr=spec["lr"], weight_decay=spec["weight_decay"], **common)
        times = [r.seconds for r in res.history]
    # Preparation counts in epoch 1 (a batch's, per model).
    times[0] = (time.perf_counter() - start) / spec.get("models", 1) - sum(times[1:])
    curve = [[r.train_acc, r.val_acc, r.test_acc] for r in res.history]
    out = {"times": times, "loss": res.history[-1].loss, "curve": curve}
    out["preparation_s"] = times[0] - res.history[0].seconds
    out["phases"] = res.history[-1].phases
    if spark is not None and spec.get("spark_io"):
        out["spark_io"] = spark_io(spark)
    if spec.get("plan"):
        out["plan"] = plan_stats(lotan.explain(model, graph, print_=False, **options))
    return out


def _replicates(
    spec: dict[str, Any], g: dict[str, Any], seeds: list[int], engine: str
) -> list[dict[str, Any]]:
    """The accuracy protocol's seeds as replicates trained together by ``fit_many``
    (``lotan.grid(build, {"seed": seeds})``): replicate ``s`` is built after
    ``manual_seed(s)`` and ends exactly as ``lotan.fit`` with seed ``s`` does (bit for bit:
    ``tests/test_model_batching.py``), in one pass over the graph per epoch."""
    import lotan

    graph, options = _setup(spec, g, engine)
    trials = lotan.grid(
        lambda: _model(spec, graph.num_features, graph.num_classes),
        {"seed": seeds, "lr": [spec["lr"]], "weight_decay": [spec["weight_decay"]]},
    )
    results = lotan.fit_many(trials, graph, epochs=spec["epochs"], progress=False, **options)
    return [
        {"curve": [[r.train_acc, r.val_acc, r.test_acc] for r in res.history]} for res in results
    ]


def _batched(
    spec: dict[str, Any], graph: Any, seed: int, common: dict[str, Any]
) -> tuple[list[float], Any]:
    """``spec["models"]`` copies of the model (seeds ``seed …``) trained with ``fit_many``:
    per-model epoch times (each sub-batch's epoch summed, over K) and the first result."""
    import torch

    import lotan

    k = spec["models"]
    trials = []
    for i in range(k):
        torch.manual_seed(seed + i)
        model = _model(spec, graph.num_features, graph.num_classes)
        opt = lotan.OptimizerConfig("adam", spec["lr"], spec["weight_decay"])
        trials.append(lotan.Trial(model, opt, {"k": i}))
    results = lotan.fit_many(trials, graph, **common)
    firsts = [results[members[0]] for bp in results.batches for members, _ in bp.sub_batches]
    times = [sum(r.history[e].seconds for r in firsts) / k for e in range(spec["epochs"])]
    return times, results[0]


def spark_io(spark: Any) -> dict[str, float]:
    """GiB that this application's finished stages wrote to shuffle files and spilled
    (``diskBytesSpilled``: to disk; ``memoryBytesSpilled``: the same data's size in memory),
    from the Spark UI's REST API on this machine."""
    import urllib.request

    sc = spark.sparkContext
    port = (sc.uiWebUrl or "").rsplit(":", 1)[-1]
    if not port.isdigit():
        return {}
    url = f"http://127.0.0.1:{port}/api/v1/applications/{sc.applicationId}/stages"
    with urllib.request.urlopen(url, timeout=60) as resp:
        stages = json.load(resp)
    keys = {
        "shuffleWriteBytes": "shuffle_write_gib",
        "diskBytesSpilled": "disk_spill_gib",
        "memoryBytesSpilled": "memory_spill_gib",
    }
    return {name: sum(s.get(k, 0) for s in stages) / 2**30 for k, name in keys.items()}


def plan_stats(text: str) -> dict[str, float]:
    """What ``lotan.explain`` printed about the physical plan, as numbers."""
    part = re.search(r"replication factor ([\d.]+), vertex skew ([\d.]+), edge skew ([\d.]+)", text)
    size = re.search(
        r"partitions \d+ \([^)]*\): ([\d,]+) vertices, ([\d,]+) edges, halo ([\d,]+) rows", text
    )
    epoch = re.search(
        r"per epoch: (\d+) forward \+ (\d+) backward stages; "
        r"exchanged forward ([\d,.]+) MB, backward ([\d,.]+) MB",
        text,
    )
    if part is None or epoch is None or size is None:
        raise RuntimeError("lotan.explain's physical plan lines changed; update plan_stats")
    return {
        "replication": float(part[1]),
        "vertex_skew": float(part[2]),
        "edge_skew": float(part[3]),
        "stages": int(epoch[1]) + int(epoch[2]),
        "fwd_mb": float(epoch[3].replace(",", "")),
        "bwd_mb": float(epoch[4].replace(",", "")),
        "vertices": int(size[1].replace(",", "")),
        "edges": int(size[2].replace(",", "")),
        "halo": int(size[3].replace(",", "")),
    }


def best_val_test(curve: list[list[float]]) -> tuple[float, float]:
    """(best validation accuracy, test accuracy at its first epoch)."""
    best = max(range(len(curve)), key=lambda e: (curve[e][1], -e))
    return curve[best][1], curve[best][2]


def summarize(spec: dict[str, Any], runs: list[dict[str, Any]]) -> dict[str, Any]:
    """What a worker reports: per seed, best val / test acc (accuracy), or epoch times."""
    out: dict[str, Any] = {}
    if spec["task"] == "accuracy":
        pairs = [best_val_test(r["curve"]) for r in runs]
        out["val"] = [p[0] for p in pairs]
        out["test"] = [p[1] for p in pairs]
    else:
        times = runs[0]["times"]
        out["first_epoch"] = times[0]
        out["epoch"] = statistics.median(times[1:]) if len(times) > 1 else times[0]
        out["loss"] = runs[0]["loss"]
        for key in ("preparation_s", "phases", "spark_io"):
            if key in runs[0]:
                out[key] = runs[0][key]
    if "plan" in runs[0]:
        out["plan"] = runs[0]["plan"]
    return out


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("limit_gb"):
        limit = int(spec["limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    from bench.graphs import load_npz
    from bench.scale import _peak_rss

    system = spec["system"]
    generated = system == "lotan-spark" and spec.get("generate")
    g = {} if generated else load_npz(spec["graph"])
    try:
        runs = []
        seeds = spec.get("seeds", [0])
        lotan_system = system in ("lotan-local", "lotan-spark")
        if lotan_system and spec["task"] == "accuracy" and len(seeds) > 1:
            runs = _replicates(spec, g, seeds, system.split("-")[1])
            seeds = []
        for seed in seeds:
            if system in ("pyg", "pyg-csr"):
                runs.append(_pyg(spec, g, seed, csr=system == "pyg-csr"))
            elif lotan_system:
                runs.append(_lotan(spec, g, seed, system.split("-")[1]))
            elif system in ("naive-spark", "naive-graphframes"):
                from bench.naive import run

                runs.append(run(spec, g, seed))
            else:
                raise SystemExit(f"unknown system {system!r}")
        res: dict[str, Any] = {"ok": True, **summarize(spec, runs)}
    except (MemoryError, RuntimeError) as exc:  # torch reports OOM as RuntimeError
        res = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    res["rss_gib"] = _peak_rss()
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
