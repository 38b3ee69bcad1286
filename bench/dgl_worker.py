"""The DGL side of a measurement, run with the DGL environment's Python (``bench/.venv-dgl``,
see :mod:`bench.dgl_env`) as a plain script: ``python bench/dgl_worker.py SPEC_JSON`` prints
``RESULT {json}``. It imports neither Lotan nor PyG, only DGL, torch and NumPy, and reads the
graph from the ``.npz`` file every system reads.

DGL 2.1.0 — the newest wheel installable here — ships compiled ``graphbolt`` libraries for
torch ≤ 2.2.1 only, and ``import dgl`` imports ``dgl.graphbolt``, which fails to load them
with torch 2.13. ``dgl.graphbolt`` (a sampling data loader) is not used by full-batch
training, so an empty module is registered under that name before ``import dgl``; DGL's
graph convolutions then work (and :mod:`bench.dgl_env` checks them against a dense
reference when it builds the environment).

Models mirror PyG's ``BasicGNN`` (``torch_geometric.nn.models``): ``layers`` convolutions,
a ``BatchNorm1d`` (with ``norm="batch_norm"``), ReLU and dropout between them;
``GraphConv(norm="both")`` on the graph with self loops
(PyG's ``gcn_norm``), ``SAGEConv("mean")``, ``GINConv`` (sum) over a 2-layer MLP; ``gat``
mirrors ``bench.systems``' GAT (PyG's ``examples/gat.py``) with DGL's ``GATConv``: dropout on
the inputs, ``heads`` concatenated heads, ELU, dropout, ``out_heads`` averaged heads,
attention dropout on both layers, on the graph with one self loop per vertex (PyG's
``GATConv(add_self_loops=True)``).
"""

from __future__ import annotations

import json
import statistics
import sys
import time
import types
from typing import Any

sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))

import dgl  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402
from dgl.nn import GATConv, GINConv, GraphConv, SAGEConv  # noqa: E402


class Net(torch.nn.Module):
    def __init__(
        self, kind: str, f: int, h: int, layers: int, c: int, dropout: float, norm: bool = False
    ) -> None:
        super().__init__()
        # BasicGNN(norm="batch_norm"): a BatchNorm1d after every convolution but the last
        self.norms = torch.nn.ModuleList(
            torch.nn.BatchNorm1d(h) if norm else torch.nn.Identity() for _ in range(layers - 1)
        )
        widths = [f] + [h] * (layers - 1) + [c]
        self.convs = torch.nn.ModuleList()
        for a, b in zip(widths[:-1], widths[1:], strict=True):
            if kind == "gcn":
                conv: torch.nn.Module = GraphConv(a, b, norm="both", allow_zero_in_degree=True)
            elif kind == "sage":
                conv = SAGEConv(a, b, "mean")
            else:
                mlp = torch.nn.Sequential(
                    torch.nn.Linear(a, b), torch.nn.ReLU(), torch.nn.Linear(b, b)
                )
                conv = GINConv(mlp, "sum")
            self.convs.append(conv)
        self.dropout = dropout

    def forward(self, g: Any, x: torch.Tensor) -> torch.Tensor:
        for i, conv in enumerate(self.convs):
            x = conv(g, x)
            if i < len(self.convs) - 1:
                x = F.dropout(F.relu(self.norms[i](x)), self.dropout, self.training)
        return x


class Gat(torch.nn.Module):
    def __init__(self, f: int, hidden: int, c: int, heads: int, out_heads: int, p: float):
        super().__init__()
        self.p = p
        self.conv1 = GATConv(f, hidden, heads, feat_drop=0.0, attn_drop=p)
        self.conv2 = GATConv(hidden * heads, c, out_heads, feat_drop=0.0, attn_drop=p)

    def forward(self, g: Any, x: torch.Tensor) -> torch.Tensor:
        x = F.dropout(x, self.p, self.training)
        x = F.elu(self.conv1(g, x).flatten(1))
        x = F.dropout(x, self.p, self.training)
        return self.conv2(g, x).mean(1)


def _graph(data: dict[str, np.ndarray], kind: str) -> Any:
    n = data["x"].shape[0]
    g = dgl.graph((torch.from_numpy(data["src"]), torch.from_numpy(data["dst"])), num_nodes=n)
    if kind in ("gcn", "gat"):  # PyG's gcn_norm / GATConv: one self loop per vertex
        g = dgl.add_self_loop(dgl.remove_self_loop(g))
    return g


def run(spec: dict[str, Any], data: dict[str, np.ndarray], seed: int) -> dict[str, Any]:
    g = _graph(data, spec["model"])
    x = torch.from_numpy(data["x"])
    y = torch.from_numpy(data["y"])
    masks = [torch.from_numpy(data[k]) for k in ("train", "val", "test")]
    torch.manual_seed(seed)
    c = int(y.max()) + 1
    if spec["model"] == "gat":
        model: torch.nn.Module = Gat(
            x.shape[1], spec["hidden"], c, spec["heads"], spec["out_heads"], spec["dropout"]
        )
    else:
        model = Net(
            spec["model"],
            x.shape[1],
            spec["hidden"],
            spec["layers"],
            c,
            spec["dropout"],
            norm=spec.get("norm") == "batch_norm",
        )
    opt = torch.optim.Adam(model.parameters(), lr=spec["lr"], weight_decay=spec["weight_decay"])
    times, curve = [], []
    for _ in range(spec["epochs"]):
        start = time.perf_counter()
        model.train()
        opt.zero_grad()
        loss = F.cross_entropy(model(g, x)[masks[0]], y[masks[0]])
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
        if spec["task"] == "accuracy":
            model.eval()
            with torch.no_grad():
                pred = model(g, x).argmax(1)
            curve.append([float((pred[m] == y[m]).float().mean()) for m in masks])
    return {"times": times, "loss": float(loss), "curve": curve}


def _peak_rss_gib() -> float:
    with open("/proc/self/status") as fh:
        hwm = next(ln for ln in fh if ln.startswith("VmHWM:"))
    return int(hwm.split()[1]) / 2**20


def main() -> None:
    spec = json.loads(sys.argv[1])
    if spec.get("limit_gb"):
        import resource

        limit = int(spec["limit_gb"] * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (limit, limit))
    with np.load(spec["graph"]) as f:
        data = {k: f[k] for k in f.files}
    try:
        runs = [run(spec, data, seed) for seed in spec.get("seeds", [0])]
        res: dict[str, Any] = {"ok": True}
        if spec["task"] == "accuracy":
            pairs = []
            for r in runs:
                curve = r["curve"]
                best = max(range(len(curve)), key=lambda e: (curve[e][1], -e))
                pairs.append((curve[best][1], curve[best][2]))
            res["val"] = [p[0] for p in pairs]
            res["test"] = [p[1] for p in pairs]
        else:
            times = runs[0]["times"]
            res["first_epoch"] = times[0]
            res["epoch"] = statistics.median(times[1:]) if len(times) > 1 else times[0]
            res["loss"] = runs[0]["loss"]
    except (MemoryError, RuntimeError) as exc:
        res = {"ok": False, "error": f"{type(exc).__name__}: {str(exc).splitlines()[0][:200]}"}
    res["rss_gib"] = {"driver": _peak_rss_gib()}
    res["dgl_version"] = dgl.__version__
    print("RESULT " + json.dumps(res), flush=True)


if __name__ == "__main__":
    main()
