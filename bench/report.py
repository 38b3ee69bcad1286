"""The report: ``report.md`` and PNG plots from a suite's ``results.json``.

python -m bench report --suite quick      # re-render without re-running
"""

from __future__ import annotations

import json
import statistics
from collections import defaultdict
from pathlib import Path
from typing import Any

from bench import ladder, products

__all__ = ["render"]

SYSTEM_NAMES = {
    "pyg": "PyG (`edge_index`)",
    "pyg-csr": "PyG (cached CSR `adj_t`)",
    "dgl": "DGL 2.1.0",
    "lotan-local": "Lotan, local engine",
    "lotan-spark": "Lotan, Spark engine",
}
GRAPH_NAMES = {"cora": "Cora", "citeseer": "CiteSeer"}


def _sizes(graph: str) -> int:
    text = graph[3:]
    scale = {"k": 1_000, "m": 1_000_000}
    return int(float(text[:-1]) * scale[text[-1]]) if text[-1] in scale else int(text)


def _mean_std(xs: list[float]) -> str:
    m = 100 * statistics.mean(xs)
    s = 100 * statistics.stdev(xs) if len(xs) > 1 else 0.0
    return f"{m:.1f} ± {s:.1f}"


def _rss(r: dict[str, Any]) -> str:
    rss = r.get("rss_gib", {})
    if not rss:
        return ""
    return ", ".join(f"{k} {v:.2f}" for k, v in sorted(rss.items()))


def _accuracy(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    from bench.suite import KIPF, PUBLISHED

    rows = [r for r in records if r["experiment"] == "accuracy"]
    if not rows:
        return []
    cfg = config.get("accuracy", {})
    lines = [
        "## Accuracy: GCN, Kipf & Welling protocol",
        "",
        f"2-layer GCN, hidden {KIPF['hidden']}, dropout {KIPF['dropout']}, Adam lr "
        f"{KIPF['lr']}, weight decay {KIPF['weight_decay']} (on every parameter, for every "
        f"system), {cfg.get('epochs')} epochs, public Planetoid split; test accuracy at the "
        f"epoch with the best validation accuracy; mean ± std over {cfg.get('seeds')} seeds "
        "(seed = weight initialization and dropout; Lotan trains the seeds together as "
        "`fit_many` replicates, each ending as its own `fit` with that seed, bit for bit).",
        "",
        "| dataset | system | test accuracy (%) | validation (%) | published (Kipf & Welling) |",
        "|---|---|---|---|---|",
    ]
    for r in rows:
        name = GRAPH_NAMES.get(r["graph"], r["graph"])
        pub = PUBLISHED.get(r["graph"], "")
        if not r.get("ok"):
            lines.append(
                f"| {name} | {SYSTEM_NAMES[r['system']]} | failed: {r.get('error')} | | {pub} |"
            )
            continue
        lines.append(
            f"| {name} | {SYSTEM_NAMES[r['system']]} | {_mean_std(r['test'])} | "
            f"{_mean_std(r['val'])} | {pub} |"
        )
    return [*lines, ""]


def _gat(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    from bench.suite import GAT_PROTOCOL, PUBLISHED_GAT

    rows = [r for r in records if r["experiment"] == "gat"]
    if not rows:
        return []
    cfg = config.get("gat", {})
    g = GAT_PROTOCOL
    lines = [
        "## GAT: accuracy (original protocol), epoch time and memory",
        "",
        f"PyG's `examples/gat.py` model: `GATConv` with {g['heads']} heads × {g['hidden']} "
        f"hidden, ELU, dropout {g['dropout']} on the inputs and on the attention coefficients, "
        f"{g['out_heads']} averaged output head; Adam lr {g['lr']}, weight decay "
        f"{g['weight_decay']}. Accuracy: {cfg.get('accuracy_epochs')} epochs, test accuracy at "
        f"the best validation epoch, mean ± std over {cfg.get('seeds')} seeds, next to the "
        "published numbers (Veličković et al., 2018). Timing: median of epochs 2.."
        f"{cfg.get('epochs')} on the SBM graphs, each system in a fresh process; Spark "
        f"`local[*]`, {cfg.get('partitions')} partitions; ratios to PyG in the same run. DGL "
        "runs the same model with its `GATConv` (`attn_drop` on the coefficients, one self "
        "loop per vertex).",
        "",
    ]
    return lines + _accuracy_and_timing(rows, PUBLISHED_GAT, "published")


def _batch_norm(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    from bench.graphs import ARXIV
    from bench.suite import ARXIV_GCN, KIPF

    rows = [r for r in records if r["experiment"] == "batch_norm"]
    if not rows:
        return []
    cfg = config.get("batch_norm", {})
    a = ARXIV_GCN
    lines = [
        "## BatchNorm: GCN with BatchNorm on Planetoid, and the OGB arxiv GCN",
        "",
        f'Accuracy: GCN with `norm="batch_norm"` and Kipf & Welling\'s protocol otherwise '
        f"({KIPF['layers']} layers, hidden {KIPF['hidden']}, dropout {KIPF['dropout']}, Adam "
        f"lr {KIPF['lr']}, weight decay {KIPF['weight_decay']}); {cfg.get('accuracy_epochs')} "
        "epochs, test accuracy (evaluation mode: running statistics) at the best validation "
        f"epoch, mean ± std over {cfg.get('seeds')} seeds (Lotan's as `fit_many` replicates). "
        "Lotan and PyG in the same run: the "
        "point is the same distribution. Timing: OGB's `ogbn-arxiv` full-batch GCN "
        f"({a['layers']} × {a['hidden']}, BatchNorm, ReLU, dropout {a['dropout']}, Adam lr "
        f"{a['lr']}) on a synthetic arxiv-shaped graph ({ARXIV['vertices']:,} vertices, "
        f"{ARXIV['classes']} classes, 128 features, an SBM of out-degree "
        f"{ARXIV['out_degree']} made symmetric); median of epochs 2..{cfg.get('epochs')}, each "
        "system in a fresh process. PyG on `edge_index` and on a cached CSR `adj_t` (the OGB "
        "example's code path); DGL with `GraphConv` and `BatchNorm1d`; Spark `local[*]`, "
        f"{cfg.get('partitions')} partitions; ratios to PyG in the same run.",
        "",
    ]
    return lines + _accuracy_and_timing(rows, {}, "")


def _accuracy_and_timing(
    rows: list[dict[str, Any]], published: dict[str, float], published_name: str
) -> list[str]:
    """The accuracy table (mean ± std per dataset and system, with published numbers when
    given) and the timing table (epoch, ratio to PyG, first epoch, peak RSS) of ``rows``."""
    pub_head = f" {published_name} |" if published_name else ""
    lines = [
        f"| dataset | system | test accuracy (%) | validation (%) |{pub_head}",
        "|---|---|---|---|" + ("---|" if published_name else ""),
    ]
    for r in (r for r in rows if r["task"] == "accuracy"):
        name, system = GRAPH_NAMES.get(r["graph"], r["graph"]), SYSTEM_NAMES[r["system"]]
        pub = f" {published.get(r['graph'], '')} |" if published_name else ""
        if not r.get("ok"):
            lines.append(f"| {name} | {system} | failed: {r.get('error')} | |{pub}")
            continue
        lines.append(f"| {name} | {system} | {_mean_std(r['test'])} | {_mean_std(r['val'])} |{pub}")
    lines += [
        "",
        "| graph | system | epoch (s) | ÷ PyG | first epoch (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|",
    ]
    timing = [r for r in rows if r["task"] == "epochs"]
    base = {r["graph"]: r["epoch"] for r in timing if r["system"] == "pyg" and r.get("ok")}
    for r in timing:
        system = SYSTEM_NAMES[r["system"]]
        if not r.get("ok"):
            lines.append(f"| {r['graph']} | {system} | {r.get('error')} | | | |")
            continue
        b = base.get(r["graph"])
        ratio = f"{r['epoch'] / b:.2f}" if b else ""
        lines.append(
            f"| {r['graph']} | {system} | {r['epoch']:.3f} | {ratio} | {r['first_epoch']:.2f} | "
            f"{_rss(r)} |"
        )
    return [*lines, ""]


def _scale(records: list[dict[str, Any]], config: dict[str, Any], out: Path) -> list[str]:
    rows = [r for r in records if r["experiment"] == "scale"]
    if not rows:
        return []
    cfg = config.get("scale", {})
    lines = [
        "## Epoch time and memory vs graph size",
        "",
        f"Synthetic SBM graphs (16 classes, 128 features, average degree 20), "
        f"{cfg.get('layers')}-layer models, hidden {cfg.get('hidden')}, dropout 0.5, Adam; "
        f"median of epochs 2..{cfg.get('epochs')} (epoch = forward, backward, optimizer step; "
        "Lotan's epoch also measures the train/val/test accuracies). Each system in a fresh "
        f"process; Spark: `local[*]`, {cfg.get('partitions')} partitions. Ratios are to PyG on "
        "`edge_index` in the same run (lower is faster). Peak RSS in GiB per process kind.",
        "",
        "| graph | model | system | epoch (s) | ÷ PyG | first epoch (s) | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    base: dict[tuple[str, str], float] = {}
    for r in rows:
        if r["system"] == "pyg" and r.get("ok"):
            base[(r["graph"], r["model"])] = r["epoch"]
    for r in rows:
        name = SYSTEM_NAMES[r["system"]]
        if not r.get("ok"):
            lines.append(f"| {r['graph']} | {r['model']} | {name} | {r.get('error')} | | | |")
            continue
        b = base.get((r["graph"], r["model"]))
        ratio = f"{r['epoch'] / b:.2f}" if b else ""
        lines.append(
            f"| {r['graph']} | {r['model'].upper()} | {name} | {r['epoch']:.3f} | {ratio} | "
            f"{r['first_epoch']:.2f} | {_rss(r)} |"
        )
    plot = _scale_plot(rows, out)
    if plot:
        lines += ["", f"![epoch time vs graph size]({plot})"]
    return [*lines, ""]


def _scale_plot(rows: list[dict[str, Any]], out: Path) -> str | None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    models = sorted({r["model"] for r in rows})
    fig, axes = plt.subplots(1, len(models), figsize=(5 * len(models), 4), squeeze=False)
    for ax, model in zip(axes[0], models, strict=True):
        series: dict[str, list[tuple[int, float]]] = defaultdict(list)
        for r in rows:
            if r["model"] == model and r.get("ok"):
                series[r["system"]].append((_sizes(r["graph"]), r["epoch"]))
        for system, pts in series.items():
            pts.sort()
            ax.plot([p[0] for p in pts], [p[1] for p in pts], marker="o", label=system)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel("vertices (SBM, degree 20)")
        ax.set_ylabel("seconds per epoch")
        ax.set_title(model.upper())
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    name = "scale.png"
    fig.savefig(out / name, dpi=110)
    plt.close(fig)
    return name


def _depth_width(records: list[dict[str, Any]], config: dict[str, Any], out: Path) -> list[str]:
    rows = [r for r in records if r["experiment"] == "depth_width"]
    if not rows:
        return []
    cfg = config.get("depth_width", {})
    lines = [
        "## Depth and width",
        "",
        f"{cfg.get('model', 'gcn').upper()} on `{cfg.get('graph')}`: depth 2 → 16 layers at "
        f"hidden {cfg.get('hidden')}, and width (hidden) 16 → 4096 at 2 layers; median of "
        f"epochs 2..{cfg.get('epochs')}; ratios to the first system listed, same run.",
        "",
        "| axis | layers | hidden | system | epoch (s) | ratio | peak RSS (GiB) |",
        "|---|---|---|---|---|---|---|",
    ]
    first = cfg.get("systems", [rows[0]["system"]])[0]
    base = {
        (r["axis"], r["layers"], r["hidden"]): r["epoch"]
        for r in rows
        if r["system"] == first and r.get("ok")
    }
    for r in rows:
        key = (r["axis"], r["layers"], r["hidden"])
        head = f"| {r['axis']} | {r['layers']} | {r['hidden']} | {SYSTEM_NAMES[r['system']]} |"
        if not r.get("ok"):
            lines.append(f"{head} {r.get('error')} | | |")
            continue
        b = base.get(key)
        ratio = f"{r['epoch'] / b:.2f}" if b else ""
        lines.append(f"{head} {r['epoch']:.3f} | {ratio} | {_rss(r)} |")
    return [*lines, ""]


def _batching(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    rows = [r for r in records if r["experiment"] == "batching"]
    if not rows:
        return []
    cfg = config.get("batching", {})
    lines = [
        "## Model batching: `lotan.fit_many`",
        "",
        f"A grid of `GCN(128, {cfg.get('hidden')}, 2, 16)` models (dropout 0 / 0.5, four "
        f"learning rates) on `{cfg.get('graph')}`, trained together with `fit_many` (one "
        "batch, `cost(K)` = its epoch time) and one after the other with `fit` (`K fits` = "
        "the sum of their epoch times), same process; median of epochs 2.."
        f"{cfg.get('epochs')}; Spark with {cfg.get('partitions')} partitions "
        "(`python -m bench.model_batching` measures the same thing standalone).",
        "",
        "| engine | K | cost(K) (s) | K fits (s) | speedup | cost(K) / cost(1) | sub-batches |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        name = SYSTEM_NAMES[r["system"]]
        if not r.get("ok"):
            lines.append(f"| {name} | | {r.get('error')} | | | | |")
            continue
        ks = sorted(int(k) for k in r["batched"])
        base = r["batched"][str(ks[0])]["cost"]
        for k in ks:
            b = r["batched"][str(k)]
            seq = sum(r["sequential"][:k])
            subs = " + ".join(str(s["models"]) for s in b["sub_batches"])
            lines.append(
                f"| {name} | {k} | {b['cost']:.3f} | {seq:.3f} | {seq / b['cost']:.2f}x | "
                f"{b['cost'] / base:.2f} | {subs} |"
            )
    return [*lines, ""]


def _planner(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    rows = [r for r in records if r["experiment"] == "planner"]
    if not rows:
        return []
    cfg = config.get("planner", {})
    lines = [
        "## Planner ablation: each rewrite rule off",
        "",
        f"`GCN(128, {cfg.get('hidden')}, {cfg.get('layers')}, 16)` on `{cfg.get('graph')}`, "
        f"{cfg.get('engine')} engine, {cfg.get('partitions')} partitions (hash); median of "
        f"epochs 2..{cfg.get('epochs')}; stages and bytes per epoch as `lotan.explain` "
        "reports them (bytes are the rows exchanged between partitions, forward and "
        "backward); ratio to all rules on, same run. Rules: `reorder` aggregates the narrower "
        "side of a linear layer, `cache_constants` computes aggregations of constants (ÂX) "
        "once, `prune_constant_gradients` skips gradients nobody needs, `fuse` merges local "
        "operators into one stage.",
        "",
        "| rules | epoch (s) | ratio | stages / epoch | exchanged fwd (MB) | bwd (MB) | "
        "first epoch (s) |",
        "|---|---|---|---|---|---|---|",
    ]
    base = next((r["epoch"] for r in rows if r.get("ok")), None)
    for r in rows:
        if not r.get("ok"):
            lines.append(f"| {r['config']} | {r.get('error')} | | | | | |")
            continue
        p = r["plan"]
        ratio = f"{r['epoch'] / base:.2f}" if base else ""
        lines.append(
            f"| {r['config']} | {r['epoch']:.3f} | {ratio} | {p['stages']} | "
            f"{p['fwd_mb']:,.1f} | {p['bwd_mb']:,.1f} | {r['first_epoch']:.2f} |"
        )
    return [*lines, ""]


def _partitioners(records: list[dict[str, Any]], config: dict[str, Any]) -> list[str]:
    rows = [r for r in records if r["experiment"] == "partitioners"]
    if not rows:
        return []
    cfg = config.get("partitioners", {})
    lines = [
        "## Partitioners: hash vs label propagation",
        "",
        f"`GCN(128, {cfg.get('hidden')}, 2, 16)` on `{cfg.get('graph')}`, {cfg.get('engine')} "
        f"engine; median of epochs 2..{cfg.get('epochs')}. Replication factor = halo rows / "
        "vertices (rows each partition receives from others); exchanged bytes per epoch as "
        "`lotan.explain` reports them; preparation ≈ first epoch − median epoch (partitioning "
        "and building the layouts). Ratios are label propagation ÷ hash at the same "
        "partition count, same run.",
        "",
        "| partitions | partitioner | replication | vertex skew | exchanged fwd (MB) | "
        "epoch (s) | epoch ÷ hash | preparation (s) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    hash_epoch = {
        r["partitions"]: r["epoch"] for r in rows if r["partitioner"] == "hash" and r.get("ok")
    }
    for r in rows:
        head = f"| {r['partitions']} | {r['partitioner']} |"
        if not r.get("ok"):
            lines.append(f"{head} {r.get('error')} | | | | | |")
            continue
        p = r["plan"]
        b = hash_epoch.get(r["partitions"])
        ratio = f"{r['epoch'] / b:.2f}" if b else ""
        lines.append(
            f"{head} {p['replication']:.3f} | {p['vertex_skew']:.2f} | {p['fwd_mb']:,.1f} | "
            f"{r['epoch']:.3f} | {ratio} | {r['first_epoch'] - r['epoch']:.1f} |"
        )
    return [*lines, ""]


def _machine(m: dict[str, Any]) -> str:
    commit = f" ({m['commit']})" if m.get("commit") else ""
    return (
        f"{m['cores']} cores ({m['cpu']}), {m['memory_gib']} GiB, GPU: {m['gpu']}; Python "
        f"{m['python']}, torch {m['torch']}, PyG {m['torch_geometric']}, PySpark "
        f"{m['pyspark']}, {m['java']}, Lotan {m['lotan']}{commit}"
    )


def _machines(results: dict[str, Any]) -> str:
    """The machine of the run, or of each experiment when ``--only`` runs were merged on
    different machines or checkouts."""
    per = results.get("machines") or {k: results["machine"] for k in results["seconds"]}
    groups: dict[str, list[str]] = {}
    for exp, m in per.items():
        groups.setdefault(_machine(m), []).append(exp)
    if len(groups) == 1:
        return f"Machine: {next(iter(groups))}."
    parts = [f"{', '.join(exps)} on {text}" for text, exps in groups.items()]
    return "Experiments run separately (`--only`) and merged: " + "; ".join(parts) + "."


def render(results_path: Path) -> Path:
    """Write ``report.md`` (and plots) next to ``results_path``; return its path."""
    results = json.loads(results_path.read_text())
    out = results_path.parent
    lines = [
        f"# Lotan benchmark report — `{results['suite']}` suite",
        "",
        f"Generated by `python -m bench run --suite {results['suite']}` in "
        f"{sum(results['seconds'].values()) / 60:.1f} minutes ("
        + ", ".join(f"{k} {v / 60:.1f}" for k, v in results["seconds"].items())
        + "). "
        + _machines(results),
        "",
        "Every measurement runs in a fresh process; every comparison's baselines run in the "
        "same suite run. DGL runs in its own environment (`bench/.venv-dgl`, pins: "
        f"{', '.join((results.get('dgl') or {}).get('pins', []))}, the last without "
        "dependency resolution): DGL 2.1.0 is the newest wheel for this platform, its "
        "compiled `graphbolt` libraries only cover torch ≤ 2.2.1, so the worker registers an "
        "empty `dgl.graphbolt` module before `import dgl` (full-batch training does not use "
        "it); `python -m bench.dgl_env` checks `GraphConv` against a dense reference.",
        "",
    ]
    lines += _accuracy(results["records"], results["config"])
    lines += _gat(results["records"], results["config"])
    lines += _batch_norm(results["records"], results["config"])
    lines += _scale(results["records"], results["config"], out)
    lines += _depth_width(results["records"], results["config"], out)
    lines += _batching(results["records"], results["config"])
    lines += _planner(results["records"], results["config"])
    lines += _partitioners(results["records"], results["config"])
    lines += ladder.render(results["records"], results["config"])
    lines += products.render(results["records"], results["config"])
    path = out / "report.md"
    path.write_text("\n".join(lines))
    return path
