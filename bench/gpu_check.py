"""The prepared GPU check (issue: decoupled scaling): dense work on a GPU vs the CPU.

    python -m bench.gpu_check [--vertices 200000] [--epochs 6]

GCN 3x256 (128 features, 16 classes) on a synthetic SBM graph, Lotan's local engine with
4 partitions, once with ``LOTAN_DENSE_DEVICE=cpu`` and once with ``cuda``, same process, same
seed: reports the median epoch and the dense task time per epoch on each device, their
ratios, and checks that the trained weights agree (float32 tolerance) and that every dense
piece of the CUDA run ran on CUDA (``FitResult.devices``; inputs and results cross through
pinned memory). Prints one JSON line ``RESULT {...}``; exits 1 if either check fails.
"""

from __future__ import annotations

import argparse
import copy
import json
import os
import statistics
import sys

import torch
from torch_geometric.nn.models import GCN

import lotan


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--vertices", type=int, default=200_000)
    ap.add_argument("--epochs", type=int, default=6)
    args = ap.parse_args()
    if not torch.cuda.is_available():
        raise SystemExit("no CUDA device: this check needs a GPU")
    graph = lotan.datasets.sbm(args.vertices, num_classes=16, num_features=128, avg_degree=20)
    torch.manual_seed(0)
    model = GCN(128, 256, 3, 16, dropout=0.5)
    out: dict[str, object] = {"gpu": torch.cuda.get_device_name(0), "torch": torch.__version__}
    trained = {}
    for device in ("cpu", "cuda"):
        os.environ["LOTAN_DENSE_DEVICE"] = device
        res = lotan.fit(
            copy.deepcopy(model),
            graph,
            epochs=args.epochs,
            engine="local",
            num_partitions=4,
            progress=False,
        )
        rest = res.history[1:]
        out[device] = {
            "epoch_s": statistics.median(r.seconds for r in rest),
            "dense_s": statistics.median(r.phases["dense"] for r in rest),
            "final_loss": res.history[-1].loss,
            "devices": res.devices,
        }
        trained[device] = res.model
    cpu, gpu = out["cpu"], out["cuda"]
    assert isinstance(cpu, dict) and isinstance(gpu, dict)
    out["epoch_gpu_over_cpu"] = gpu["epoch_s"] / cpu["epoch_s"]
    out["dense_gpu_over_cpu"] = gpu["dense_s"] / cpu["dense_s"]
    worst = 0.0
    for p, q in zip(trained["cpu"].parameters(), trained["cuda"].parameters(), strict=True):
        worst = max(worst, float(((p - q).abs() / (q.abs() + 1e-6)).max()))
    out["max_rel_weight_diff"] = worst
    ok = all(
        torch.allclose(p, q, rtol=1e-3, atol=1e-5)
        for p, q in zip(trained["cpu"].parameters(), trained["cuda"].parameters(), strict=True)
    )
    out["equal"] = ok
    ok = ok and gpu["devices"]["on_cuda"] == gpu["devices"]["dense_pieces"] > 0
    print("RESULT " + json.dumps(out), flush=True)
    sys.exit(0 if ok else 1)


if __name__ == "__main__":
    main()
