"""The cluster model's arithmetic: fitted unit costs recover the costs that made the runs,
and a prediction's terms follow the stated formula."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from bench.cluster_model import Costs, fit, papers_kwargs, predict


def _run(n: int, edges: int, mb: float, costs: Costs, concurrent: int = 2) -> dict[str, Any]:
    """A run these costs would produce on one machine with ``concurrent`` tasks at once."""
    nbytes = mb * 1e6
    dense, spmm, codec = costs.d * n, costs.s * edges, costs.c * nbytes
    task = dense + spmm + codec
    epoch = costs.alpha + costs.beta * nbytes + task / concurrent
    phases = {"dense": dense, "spmm": spmm, "encode": codec / 2, "decode": codec / 2, "task": task}
    return {
        "n": n,
        "edges": edges,
        "plan": {"fwd_mb": mb * 2 / 3, "bwd_mb": mb / 3},
        "phases": phases,
        "epoch": epoch,
        "concurrent": concurrent,
    }


def test_fit_recovers_the_costs_that_made_the_runs() -> None:
    truth = Costs(d=2e-6, s=3e-8, c=4e-9, alpha=0.7, beta=1.5e-9)
    runs = [_run(50_000, 2_500_000, 300.0, truth), _run(50_000, 2_500_000, 1_200.0, truth)]
    got = fit(runs)
    for k, v in truth.as_dict().items():
        assert got.as_dict()[k] == pytest.approx(v, rel=1e-6), k
    # and it predicts a third run it was not fitted to
    other = _run(120_000, 6_000_000, 2_000.0, truth)
    pred = predict(got, 120_000, 6_000_000, 2_000e6, machines=1, cores=2, gbps=None)
    assert pred["epoch"] == pytest.approx(other["epoch"], rel=1e-6)


def test_prediction_terms_divide_over_the_machines_and_the_network() -> None:
    costs = Costs(d=1e-6, s=1e-8, c=1e-9, alpha=1.0, beta=2e-9)
    one = predict(costs, 1e6, 5e7, 8e9, machines=1, cores=8, gbps=None)
    many = predict(costs, 1e6, 5e7, 8e9, machines=16, cores=8, gbps=100.0)
    assert many["work"] == pytest.approx(one["work"] / 16)
    assert many["shuffle"] == pytest.approx(one["shuffle"] / 16)
    # each machine sends its 1/16 share of 8 GB, 15/16 of it off the machine, at 12.5 GB/s
    assert many["net"] == pytest.approx(8e9 * (15 / 16) / 16 / 12.5e9)
    assert one["net"] == 0.0
    assert many["epoch"] == pytest.approx(sum(many[k] for k in ("fixed", "work", "shuffle", "net")))


def test_papers_shape_has_its_mean_degree() -> None:
    kw = papers_kwargs(0.001)
    assert kw["num_vertices"] == 111_060 and kw["avg_degree"] == pytest.approx(29.1, abs=0.1)
    assert kw["undirected"] and kw["degrees"] == "power_law"


def test_halo_rows_from_the_degrees_match_what_hash_partitioning_gives() -> None:
    """The projection's halo at partition counts too large to build here comes from the
    degrees; at counts that can be built it agrees with the partitioning itself."""
    import torch
    from torch_geometric.nn.models import GraphSAGE

    import lotan
    from bench.cluster_model import distinct_degrees, halo_rows
    from bench.graphs import products_kwargs
    from bench.systems import plan_stats

    kw = products_kwargs(0.002)
    g = lotan.datasets.sbm(**kw)
    deg = distinct_degrees(g.arrays().src, g.arrays().dst, kw["num_vertices"])
    torch.manual_seed(0)
    net = GraphSAGE(100, 16, 2, 47)
    for parts in (4, 32):
        text = lotan.explain(net, g, engine="local", num_partitions=parts, print_=False)
        assert halo_rows(deg, parts) == pytest.approx(plan_stats(text)["halo"], rel=0.05)


def test_the_command_projects_from_saved_runs(tmp_path: Path) -> None:
    """``python -m bench.cluster_model --from-json`` (the README's way to re-project): the
    saved runs are checked, the halo measured on the shapes, every projection printed."""
    import json
    import subprocess
    import sys

    truth = Costs(d=2e-6, s=3e-8, c=4e-9, alpha=0.7, beta=1.5e-9)
    runs = {
        "fitted": [_run(5_000, 250_000, 30.0, truth), _run(5_000, 250_000, 120.0, truth)],
        "runs": [{**_run(5_000, 250_000, 60.0, truth), "parts": 4}],
    }
    saved = tmp_path / "runs.json"
    saved.write_text(json.dumps({"models": {"sage": runs}}))
    out = tmp_path / "report.json"
    cmd = [sys.executable, "-m", "bench.cluster_model", "--models", "sage", "--from-json"]
    cmd += [str(saved), "--scale", "0.002", "--papers-scale", "0.0001", "--json", str(out)]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    report = json.loads(out.read_text())["models"]["sage"]
    assert report["checks"][0]["error"] == pytest.approx(0.0, abs=1e-9)
    assert len(report["projections"]) == 2 * 3 * 2 * 2  # graphs, machines, layouts, networks
    assert "| GraphSAGE | papers100M | 128 × 64 | core (8192) | 200 |" in proc.stdout
