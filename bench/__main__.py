"""``python -m bench run --suite quick|full [--only accuracy,scale [--graphs sbm2m]]
[--no-dgl]`` runs a suite (or some experiments of it, on some of their graphs) and writes
``bench/results/<suite>/results.json``, ``report.md`` and plots;
``python -m bench report --suite quick`` re-renders the report from the results."""

from __future__ import annotations

import argparse
from pathlib import Path

from bench.report import render
from bench.suite import SUITES, run_suite

RESULTS = Path(__file__).resolve().parent / "results"


def main() -> None:
    ap = argparse.ArgumentParser(prog="python -m bench")
    ap.add_argument("command", choices=["run", "report"])
    ap.add_argument("--suite", choices=sorted(SUITES), default="quick")
    ap.add_argument("--only", default=None, help="comma-separated experiments (default: all)")
    ap.add_argument(
        "--graphs",
        default=None,
        help="with --only: re-run those experiments on these graphs alone (comma-separated)",
    )
    ap.add_argument("--no-dgl", action="store_true", help="skip DGL (no DGL environment)")
    args = ap.parse_args()
    out = RESULTS / args.suite
    if args.command == "run":
        only = args.only.split(",") if args.only else None
        graphs = args.graphs.split(",") if args.graphs else None
        path = run_suite(args.suite, only, out, use_dgl=not args.no_dgl, graphs=graphs)
    else:
        path = out / "results.json"
    print(f"report: {render(path)}")


if __name__ == "__main__":
    main()
