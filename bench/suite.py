"""The benchmark suites: which experiments, on which graphs, with which systems.

Every measurement runs in a fresh process (:mod:`bench.systems`, or :mod:`bench.dgl_worker`
in the DGL environment), and every comparison runs its baselines in the same suite run.
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench import ladder, products
from bench.graphs import write_graph

__all__ = ["SUITES", "machine", "measure", "run_suite"]

ROOT = Path(__file__).resolve().parent

#: Kipf & Welling (2017), Table 2: GCN test accuracy (%).
PUBLISHED = {"cora": 81.5, "citeseer": 70.3}

#: The Kipf & Welling protocol (weight decay on every parameter here, for all systems).
KIPF = {"hidden": 16, "layers": 2, "dropout": 0.5, "lr": 0.01, "weight_decay": 5e-4}
#: What every epoch-timing spec shares (Kipf & Welling's training settings).
TIMING = {"task": "epochs", "dropout": 0.5, "lr": 0.01, "weight_decay": 5e-4}

#: Veličković et al. (2018), Table 2: GAT test accuracy (%).
PUBLISHED_GAT = {"cora": 83.0, "citeseer": 72.5}

#: The GAT protocol as PyG's examples/gat.py runs it: 8 heads × 8 hidden, ELU, dropout 0.6 on
#: the inputs and the attention coefficients, one averaged output head, Adam 0.005, 5e-4.
GAT_PROTOCOL = {
    "model": "gat",
    "hidden": 8,
    "heads": 8,
    "out_heads": 1,
    "layers": 2,
    "dropout": 0.6,
    "lr": 0.005,
    "weight_decay": 5e-4,
}

#: The OGB ``ogbn-arxiv`` full-batch GCN (``examples/ogbn_arxiv`` of OGB): 3 layers of 256,
#: BatchNorm, ReLU, dropout 0.5, Adam lr 0.01, no weight decay.
ARXIV_GCN = {
    "model": "gcn",
    "hidden": 256,
    "layers": 3,
    "norm": "batch_norm",
    "dropout": 0.5,
    "lr": 0.01,
    "weight_decay": 0.0,
}

#: The ladder's settings, the same in both suites (one 100k graph; the naive GCN is slow).
LADDER = {
    "graph": "sbm100k",
    "hidden": 128,
    "layers": 2,
    "epochs": 4,
    "naive_epochs": 3,
    "partitions": 2,
    "models": 8,
}

SUITES: dict[str, dict[str, Any]] = {
    "quick": {
        "accuracy": {
            "graphs": ["cora", "citeseer"],
            "seeds": 10,
            "epochs": 200,
            "systems": ["pyg", "dgl", "lotan-local"],
        },
        "scale": {
            "graphs": ["sbm10k", "sbm100k"],
            "models": ["gcn", "sage", "gin"],
            "systems": ["pyg", "pyg-csr", "dgl", "lotan-local", "lotan-spark"],
            "spark_models": ["gcn", "sage", "gin"],
            "hidden": 64,
            "layers": 2,
            "epochs": 4,
            "partitions": 2,
        },
        "depth_width": {
            "graph": "sbm10k",
            "model": "gcn",
            "systems": ["pyg-csr", "dgl", "lotan-local"],
            "depths": [2, 4, 8, 16],
            "widths": [16, 256, 1024, 4096],
            "hidden": 64,
            "epochs": 4,
        },
        "batching": {
            "graph": "sbm100k",
            "engines": ["spark"],
            "ks": [1, 4, 8],
            "hidden": 16,
            "epochs": 4,
            "partitions": 2,
            "memory_budget": "4g",
        },
        "planner": {
            "graph": "sbm100k",
            "model": "gcn",
            "hidden": 256,
            "layers": 3,
            "engine": "local",
            "partitions": 4,
            "epochs": 4,
        },
        "partitioners": {
            "graph": "sbm100k",
            "model": "gcn",
            "hidden": 64,
            "engine": "local",
            "partitions": [2, 4, 8],
            "epochs": 3,
        },
        "gat": {
            "accuracy_graphs": ["cora", "citeseer"],
            "accuracy_systems": ["pyg", "lotan-local"],
            "seeds": 10,
            "accuracy_epochs": 200,
            "graphs": ["sbm10k", "sbm100k"],
            "systems": ["pyg", "dgl", "lotan-local", "lotan-spark"],
            "epochs": 4,
            "partitions": 2,
        },
        "ladder": LADDER,
        "batch_norm": {
            "accuracy_graphs": ["cora", "citeseer"],
            "accuracy_systems": ["pyg", "lotan-local"],
            "seeds": 10,
            "accuracy_epochs": 200,
            "graphs": ["arxiv_like"],
            "systems": ["pyg", "pyg-csr", "dgl", "lotan-local", "lotan-spark"],
            "epochs": 4,
            "partitions": 2,
        },
    },
    "full": {
        "accuracy": {
            "graphs": ["cora", "citeseer"],
            "seeds": 10,
            "epochs": 200,
            "systems": ["pyg", "dgl", "lotan-local", "lotan-spark"],
        },
        "scale": {
            "graphs": ["sbm10k", "sbm100k", "sbm1m", "sbm2m"],
            "models": ["gcn", "sage", "gin"],
            "systems": ["pyg", "pyg-csr", "dgl", "lotan-local", "lotan-spark"],
            "spark_models": ["gcn", "sage", "gin"],
            "hidden": 128,
            "layers": 2,
            "epochs": 3,
            "partitions": 8,
            "limit_gb": 20,
        },
        "depth_width": {
            "graph": "sbm100k",
            "model": "gcn",
            "systems": ["pyg", "pyg-csr", "dgl", "lotan-local"],
            "depths": [2, 4, 8, 16],
            "widths": [16, 256, 1024, 4096],
            "hidden": 128,
            "epochs": 4,
            "limit_gb": 20,
        },
        "batching": {
            "graph": "sbm100k",
            "engines": ["local", "spark"],
            "ks": [1, 2, 4, 8, 16],
            "hidden": 64,
            "epochs": 5,
            "partitions": 2,
            "memory_budget": "4g",
        },
        "planner": {
            "graph": "sbm100k",
            "model": "gcn",
            "hidden": 256,
            "layers": 3,
            "engine": "spark",
            "partitions": 4,
            "epochs": 4,
        },
        "partitioners": {
            "graph": "sbm1m",
            "model": "gcn",
            "hidden": 128,
            "engine": "spark",
            "partitions": [2, 4, 8],
            "epochs": 3,
        },
        "ladder": LADDER,
        "products": {
            "systems": ["pyg-csr", "dgl", "lotan-spark"],
            "epochs": 2,
            # 8 partitions, one task at a time on both cores: a task holds its rows and
            # halo (nearly every row at 4-50 partitions of a 50-neighbour graph) and its
            # dense work grows with its own rows; 2 concurrent tasks of 4 or 8 partitions
            # did not fit 24 GiB at the projected sizes, 16+ partitions multiply the bytes.
            "partitions": 8,
            "partitioner": "hash",
            "spark_conf": {"spark.task.cpus": "2"},
            "limit_gb": 20,
        },
        "batch_norm": {
            "accuracy_graphs": ["cora", "citeseer"],
            "accuracy_systems": ["pyg", "lotan-local", "lotan-spark"],
            "seeds": 10,
            "accuracy_epochs": 200,
            "graphs": ["arxiv_like"],
            "systems": ["pyg", "pyg-csr", "dgl", "lotan-local", "lotan-spark"],
            "epochs": 5,
            "partitions": 4,
        },
    },
}


def _commit() -> str:
    """The checkout's commit (``?`` outside a git checkout)."""
    out = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    )
    return out.stdout.strip() if out.returncode == 0 else "?"


def cpu_name() -> str:
    """The CPU's model name and its widest vector unit (``/proc/cpuinfo``): suites merged
    from runs on different machines say which ran what."""
    try:
        info = Path("/proc/cpuinfo").read_text()
    except OSError:
        return platform.processor() or platform.machine()
    fields = dict(
        (k.strip(), v.strip()) for k, _, v in (ln.partition(":") for ln in info.splitlines())
    )
    flags = fields.get("flags", "").split()
    vector = "AVX-512" if "avx512f" in flags else "AVX2" if "avx2" in flags else "no AVX2"
    return f"{fields.get('model name', platform.machine())}, {vector}"


def machine() -> dict[str, Any]:
    """Cores, memory and versions of what runs the benchmarks."""
    import pyspark
    import torch
    import torch_geometric

    import lotan

    mem = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    java = subprocess.run(["java", "-version"], capture_output=True, text=True)
    return {
        "cpu": cpu_name(),
        "cores": os.cpu_count(),
        "memory_gib": round(mem, 1),
        "gpu": "none" if not torch.cuda.is_available() else torch.cuda.get_device_name(0),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torch_geometric": torch_geometric.__version__,
        "pyspark": pyspark.__version__,
        "lotan": lotan.__version__,
        "commit": _commit(),
        "java": (java.stderr or java.stdout).splitlines()[0] if java.returncode == 0 else "?",
    }


def measure(spec: dict[str, Any], dgl_python: Path | None) -> dict[str, Any]:
    """Run one spec in a fresh process; the result dict (``ok`` False on failure)."""
    if spec["system"] == "dgl":
        if dgl_python is None:
            return {"ok": False, "error": "no DGL environment"}
        cmd = [str(dgl_python), str(ROOT / "dgl_worker.py"), json.dumps(spec)]
    else:
        cmd = [sys.executable, "-m", "bench.systems", json.dumps(spec)]
    start = time.perf_counter()
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, timeout=spec.get("timeout", 3600), cwd=ROOT.parent
        )
    except subprocess.TimeoutExpired:
        return {"ok": False, "error": "timed out"}
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            res: dict[str, Any] = json.loads(line[len("RESULT ") :])
            res["wall_s"] = time.perf_counter() - start
            return res
    if proc.returncode in (-9, 137):
        return {"ok": False, "error": "killed (out of memory)"}
    tail = (proc.stderr or proc.stdout).strip().splitlines()[-3:]
    return {"ok": False, "error": f"exit {proc.returncode}: {' | '.join(tail)[-300:]}"}


def _accuracy(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    out = []
    for graph in cfg["graphs"]:
        path = write_graph(graph, data)
        for system in cfg["systems"]:
            spec = {
                "system": system,
                "task": "accuracy",
                "graph": str(path),
                "model": "gcn",
                "epochs": cfg["epochs"],
                "seeds": list(range(cfg["seeds"])),
                "partitions": 2,
                **KIPF,
            }
            res = measure(spec, dgl)
            log(f"accuracy {graph} {system}: {_short(res)}")
            out.append({"experiment": "accuracy", "graph": graph, "system": system, **res})
    return out


def _accuracy_then_timing(
    experiment: str,
    accuracy_protocol: dict[str, Any],
    timing_protocol: dict[str, Any],
    cfg: dict[str, Any],
    data: Path,
    dgl: Path | None,
    log: Callable,
) -> list[dict]:
    """An experiment of two parts: accuracy (``accuracy_graphs`` × ``accuracy_systems``,
    ``seeds`` seeds of ``accuracy_epochs``), then epoch time and memory (``graphs`` ×
    ``systems``, ``epochs`` epochs), each with its protocol."""
    out = []
    runs = [("accuracy", g, s) for g in cfg["accuracy_graphs"] for s in cfg["accuracy_systems"]]
    runs += [("epochs", g, s) for g in cfg["graphs"] for s in cfg["systems"]]
    for task, graph, system in runs:
        accuracy = task == "accuracy"
        spec = {
            "system": system,
            "task": task,
            "graph": str(write_graph(graph, data)),
            "epochs": cfg["accuracy_epochs"] if accuracy else cfg["epochs"],
            "seeds": list(range(cfg["seeds"])) if accuracy else [0],
            "partitions": cfg["partitions"],
            **(accuracy_protocol if accuracy else timing_protocol),
        }
        res = measure(spec, dgl)
        log(f"{experiment} {task} {graph} {system}: {_short(res)}")
        out.append(
            {"experiment": experiment, "task": task, "graph": graph, "system": system, **res}
        )
    return out


def _gat(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """GAT: accuracy with the original protocol, then epoch time and memory."""
    return _accuracy_then_timing("gat", GAT_PROTOCOL, GAT_PROTOCOL, cfg, data, dgl, log)


def _batch_norm(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """BatchNorm: GCN with BatchNorm on Planetoid (Kipf & Welling's protocol plus the norm),
    then the OGB arxiv GCN's epoch time and memory on the arxiv-shaped graph."""
    accuracy = {**KIPF, "model": "gcn", "norm": "batch_norm"}
    return _accuracy_then_timing("batch_norm", accuracy, ARXIV_GCN, cfg, data, dgl, log)


def _scale(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    out = []
    for graph in cfg["graphs"]:
        path = write_graph(graph, data)
        for model in cfg["models"]:
            for system in cfg["systems"]:
                if system == "lotan-spark" and model not in cfg["spark_models"]:
                    continue
                spec = {
                    "system": system,
                    **TIMING,
                    "graph": str(path),
                    "model": model,
                    "hidden": cfg["hidden"],
                    "layers": cfg["layers"],
                    "epochs": cfg["epochs"],
                    "partitions": cfg["partitions"],
                    "limit_gb": cfg.get("limit_gb"),
                }
                res = measure(spec, dgl)
                log(f"scale {graph} {model} {system}: {_short(res)}")
                out.append(
                    {"experiment": "scale", "graph": graph, "model": model, "system": system, **res}
                )
    return out


def _depth_width(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """Depth (``layers``, hidden ``hidden``) and width (hidden, 2 layers) of one model."""
    path = write_graph(cfg["graph"], data)
    shapes = [("depth", d, cfg["hidden"]) for d in cfg["depths"]]
    shapes += [("width", 2, w) for w in cfg["widths"]]
    out = []
    for axis, layers, hidden in shapes:
        for system in cfg["systems"]:
            spec = {
                "system": system,
                **TIMING,
                "graph": str(path),
                "model": cfg["model"],
                "hidden": hidden,
                "layers": layers,
                "epochs": cfg["epochs"],
                "limit_gb": cfg.get("limit_gb"),
            }
            res = measure(spec, dgl)
            log(f"{axis} layers={layers} hidden={hidden} {system}: {_short(res)}")
            out.append(
                {
                    "experiment": "depth_width",
                    "axis": axis,
                    "graph": cfg["graph"],
                    "model": cfg["model"],
                    "layers": layers,
                    "hidden": hidden,
                    "system": system,
                    **res,
                }
            )
    return out


def _batching(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """``fit_many`` with K models vs K sequential fits (:mod:`bench.model_batching`)."""
    import argparse

    from bench.model_batching import _run

    out = []
    for engine in cfg["engines"]:
        args = argparse.Namespace(
            graph=cfg["graph"],
            ks=",".join(str(k) for k in cfg["ks"]),
            epochs=cfg["epochs"],
            hidden=cfg["hidden"],
            partitions=cfg["partitions"],
            memory_budget=cfg["memory_budget"],
        )
        try:
            res: dict[str, Any] = {"ok": True, **_run(engine, args)}
        except SystemExit as exc:
            res = {"ok": False, "error": str(exc)[:300]}
        if res["ok"]:
            costs = {k: v["cost"] for k, v in res["batched"].items()}
            log(f"batching {engine}: " + ", ".join(f"K={k} {c:.3f}s" for k, c in costs.items()))
        else:
            log(f"batching {engine}: FAILED ({res['error']})")
        out.append(
            {"experiment": "batching", "system": f"lotan-{engine}", "graph": cfg["graph"], **res}
        )
    return out


def _planner(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """Each planner rule off in turn (:data:`bench.planner_rules.CONFIGS`), same model."""
    from dataclasses import asdict

    from bench.planner_rules import CONFIGS

    path = write_graph(cfg["graph"], data)
    out = []
    for name, flags in CONFIGS.items():
        spec = {
            **_lotan_spec(cfg, path, cfg["partitions"]),
            "layers": cfg["layers"],
            "planner": asdict(flags),
        }
        res = measure(spec, dgl)
        log(f"planner {name}: {_short(res)}")
        out.append({"experiment": "planner", "config": name, "system": spec["system"], **res})
    return out


def _partitioners(cfg: dict[str, Any], data: Path, dgl: Path | None, log: Callable) -> list[dict]:
    """Hash vs label propagation at several partition counts: halo, bytes, time."""
    from lotan.options import PARTITIONERS

    path = write_graph(cfg["graph"], data)
    out = []
    for parts in cfg["partitions"]:
        for partitioner in PARTITIONERS:
            spec = {**_lotan_spec(cfg, path, parts), "layers": 2, "partitioner": partitioner}
            res = measure(spec, dgl)
            log(f"partitioners {parts} {partitioner}: {_short(res)}")
            out.append(
                {
                    "experiment": "partitioners",
                    "partitions": parts,
                    "partitioner": partitioner,
                    "system": spec["system"],
                    **res,
                }
            )
    return out


def _lotan_spec(cfg: dict[str, Any], path: Path, parts: int) -> dict[str, Any]:
    """A Lotan epoch-timing spec on ``cfg["engine"]`` with ``parts`` partitions that also
    reports the physical plan's numbers."""
    return {
        "system": f"lotan-{cfg['engine']}",
        **TIMING,
        "graph": str(path),
        "model": cfg["model"],
        "hidden": cfg["hidden"],
        "epochs": cfg["epochs"],
        "partitions": parts,
        "local_partitions": parts,
        "plan": True,
    }


def _short(res: dict[str, Any]) -> str:
    if not res.get("ok"):
        return f"FAILED ({res.get('error')})"
    if "test" in res:
        t = res["test"]
        return f"test {100 * sum(t) / len(t):.1f}% over {len(t)} seeds"
    return f"epoch {res['epoch']:.3f}s"


EXPERIMENTS: dict[str, Callable[..., list[dict]]] = {
    "accuracy": _accuracy,
    "gat": _gat,
    "batch_norm": _batch_norm,
    "scale": _scale,
    "depth_width": _depth_width,
    "batching": _batching,
    "planner": _planner,
    "partitioners": _partitioners,
    "ladder": ladder.run,
    "products": products.run,
}


def run_suite(
    name: str,
    only: list[str] | None,
    out_dir: Path,
    use_dgl: bool = True,
    graphs: list[str] | None = None,
) -> Path:
    """Run suite ``name`` (experiments ``only``, default all); write ``results.json``.

    With ``only``, the run merges into the suite's results: it replaces the records of the
    experiments it ran. With ``graphs`` too, it runs those experiments on ``graphs`` alone
    (each must be in the experiment's ``graphs``) and replaces only their records; its
    seconds and machine are kept under ``experiment[graph,...]``, beside the experiment's
    own, so the report says what was re-run where."""
    from bench.dgl_env import OLD_SETUPTOOLS, PINS, ensure

    suite = SUITES[name]
    if graphs is not None:
        suite = _narrowed(suite, only, graphs)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = out_dir / "scratch"
    dgl = ensure() if use_dgl else None
    started = time.perf_counter()

    def log(msg: str) -> None:
        print(f"[{time.perf_counter() - started:7.1f}s] {msg}", flush=True)

    def replaced(record: dict[str, Any]) -> bool:
        return record["experiment"] in (only or []) and (
            graphs is None or record.get("graph") in graphs
        )

    def key(exp: str) -> str:
        return exp if graphs is None else f"{exp}[{','.join(graphs)}]"

    def stale(k: str) -> bool:  # a whole-experiment run replaces its partial re-runs too
        base = k.partition("[")[0]
        return base in (only or []) and (graphs is None or k == key(base))

    path = out_dir / "results.json"
    empty: dict[str, Any] = {"records": [], "seconds": {}}
    previous = json.loads(path.read_text()) if path.exists() and only else empty
    records = [r for r in previous["records"] if not replaced(r)]
    seconds = {k: v for k, v in previous["seconds"].items() if not stale(k)}
    for exp, cfg in suite.items():
        if only and exp not in only:
            continue
        start = time.perf_counter()
        records += EXPERIMENTS[exp](cfg, data, dgl, log)
        seconds[key(exp)] = time.perf_counter() - start
    here = machine()
    before = previous.get("machines", {})
    machines = {k: before.get(k, previous.get("machine")) for k in seconds}
    machines.update({key(exp): here for exp in suite if not only or exp in only})
    result = {
        "suite": name,
        "config": SUITES[name],
        "machine": here,
        "machines": machines,  # what ran each experiment: --only runs merge
        # Without DGL this run measured no DGL row; the merged ones keep their pins.
        "dgl": {"pins": [*PINS, OLD_SETUPTOOLS]} if dgl else previous.get("dgl"),
        "seconds": seconds,
        "records": records,
    }
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(result, indent=1))
    tmp.rename(path)
    log(f"wrote {path}")
    return path


def _narrowed(
    suite: dict[str, dict[str, Any]], only: list[str] | None, graphs: list[str]
) -> dict[str, dict[str, Any]]:
    """``suite`` with the ``graphs`` of the experiments ``only`` narrowed to ``graphs``: a
    clear error when an experiment has no graph list or lacks one of them."""
    if not only:
        raise SystemExit("--graphs re-runs part of an experiment: name it with --only")
    out = dict(suite)
    for exp in only:
        have = suite.get(exp, {}).get("graphs")
        if have is None:
            raise SystemExit(f"--graphs: experiment {exp!r} has no graph list to narrow")
        missing = [g for g in graphs if g not in have]
        if missing:
            raise SystemExit(
                f"--graphs: {', '.join(missing)} not among {exp!r}'s graphs ({', '.join(have)})"
            )
        out[exp] = {**suite[exp], "graphs": list(graphs)}
    return out
