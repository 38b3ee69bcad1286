"""The DGL environment: its own virtual environment, so DGL cannot affect Lotan's.

    python -m bench.dgl_env        # create bench/.venv-dgl if missing, check it, print its python

Pins: ``dgl==2.1.0`` (the newest wheel for this platform), the same ``torch==2.13.0`` CPU
wheel as Lotan's environment, ``setuptools<70`` (``dgl.utils`` imports
``setuptools.extern.packaging``, which newer setuptools removed) and ``pandas<3`` (imported by
``dgl.data``). ``import dgl`` also needs the ``dgl.graphbolt`` stub that
:mod:`bench.dgl_worker` registers (see there). The check trains nothing: it compares DGL's
``GraphConv`` on a small directed graph with the dense ``D_in^-1/2 (A+I) D_out^-1/2 X W + b``
(DGL normalizes sources by their out-degree; PyG's ``gcn_norm`` uses in-degrees on both
sides — the same on the undirected Planetoid graphs).
"""

from __future__ import annotations

import subprocess
import sys
import venv
from pathlib import Path

__all__ = ["PINS", "dgl_python", "ensure"]

ROOT = Path(__file__).resolve().parent
ENV = ROOT / ".venv-dgl"
PINS = ("torch==2.13.0", "dgl==2.1.0", "pandas<3", "numpy==2.4.6")
#: Installed after ``PINS`` without dependency resolution: torch's metadata asks for
#: setuptools >= 77 (for building extensions, unused here).
OLD_SETUPTOOLS = "setuptools<70"

_CHECK = r"""
import sys, types
sys.modules.setdefault("dgl.graphbolt", types.ModuleType("dgl.graphbolt"))
import dgl, torch
from dgl.nn import GraphConv
torch.manual_seed(0)
src = torch.tensor([0, 1, 2, 3, 3]); dst = torch.tensor([1, 2, 3, 0, 1])
g = dgl.add_self_loop(dgl.graph((src, dst), num_nodes=4))
x = torch.randn(4, 3)
conv = GraphConv(3, 2, norm="both")
a = torch.zeros(4, 4); a[dst, src] = 1; a += torch.eye(4)
d_in, d_out = a.sum(1).pow(-0.5), a.sum(0).pow(-0.5)
ref = (d_in[:, None] * a * d_out[None, :]) @ x @ conv.weight + conv.bias
assert torch.allclose(conv(g, x), ref, atol=1e-5), "DGL GraphConv differs from the reference"
print(dgl.__version__)
"""


def dgl_python() -> Path:
    return ENV / "bin" / "python"


def ensure() -> Path:
    """Create the environment when missing; check DGL works; return its python."""
    py = dgl_python()
    done = ENV / ".installed"
    if not done.exists():
        print(f"creating the DGL environment in {ENV} ...", flush=True)
        venv.create(ENV, with_pip=True, clear=True)
        pip = [str(py), "-m", "pip", "install", "--quiet"]
        subprocess.run([*pip, *PINS], check=True, timeout=1800)
        subprocess.run([*pip, "--no-deps", OLD_SETUPTOOLS], check=True, timeout=600)
        done.touch()
    out = subprocess.run([str(py), "-c", _CHECK], capture_output=True, text=True, timeout=300)
    if out.returncode != 0:
        tail = (out.stderr or out.stdout).strip().splitlines()[-3:]
        raise SystemExit(f"the DGL environment in {ENV} does not work: {' | '.join(tail)}")
    return py


if __name__ == "__main__":
    print(ensure())
    sys.exit(0)
