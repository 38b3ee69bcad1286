"""Numerical safety and determinism: a diverging run stops before its weights take a
non-finite step (keeping the last good checkpoint), huge edge weights do not overflow the
degree normalization, and the same seed repeats a run bit for bit."""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCNConv
from torch_geometric.nn.models import GCN

import lotan
from lotan.training.checkpoint import load_latest


def _graph(**kw: Any) -> lotan.Graph:
    return lotan.datasets.sbm(300, num_classes=3, num_features=6, avg_degree=5, seed=2, **kw)


def _model(hidden: int = 8) -> torch.nn.Module:
    torch.manual_seed(0)
    return GCN(6, hidden, 2, 3, dropout=0.5)


def test_a_diverging_run_stops_before_the_bad_step(tmp_path: Path) -> None:
    model = _model()
    with pytest.raises(lotan.TrainingDivergedError) as info:
        lotan.fit(
            model,
            _graph(),
            epochs=10,
            optimizer="sgd",
            lr=1e30,
            engine="local",
            progress=False,
            checkpoint_dir=str(tmp_path),
            checkpoint_every=1,
        )
    msg = str(info.value)
    assert (
        msg.startswith("epoch 2: the training loss is ") and "the weights were not updated" in msg
    )
    assert "the last finite loss was " in msg and " at epoch 1" in msg
    assert f"the newest checkpoint in {tmp_path} is the last good state" in msg
    state = load_latest(tmp_path)
    assert state is not None and state["epoch"] == 1 and not state["complete"]
    weights = state["trainers"][0]["model"]
    assert all(torch.isfinite(w).all() for w in weights.values())
    # the module keeps the last weights whose loss was finite: the checkpoint's
    for name, p in model.state_dict().items():
        assert torch.equal(p, weights[name]), name


def test_fit_many_stops_only_the_diverging_model() -> None:
    graph = _graph()
    trials = [
        lotan.Trial(_model(), lotan.OptimizerConfig("sgd", lr=0.1)),
        lotan.Trial(_model(), lotan.OptimizerConfig("sgd", lr=1e30)),
    ]
    grid = lotan.fit_many(trials, graph, epochs=6, engine="local", progress=False)
    good, bad = grid.results
    assert good.diverged is None and good.epochs_run == 6
    assert bad.diverged is not None and bad.diverged.startswith("epoch 2:")
    assert list(grid.table()["diverged"]) == [False, True]
    alone = lotan.fit(
        _model(), graph, epochs=6, optimizer="sgd", lr=0.1, engine="local", progress=False
    )
    for p, q in zip(good.model.parameters(), alone.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_huge_edge_weights_do_not_overflow_the_normalization() -> None:
    """Weights near float32's max: PyG's float32 gcn_norm overflows the degree to inf (and
    zeroes those aggregations); Lotan normalizes in float64 and matches a float64 PyG."""
    rng = np.random.default_rng(0)
    n = 30
    src = rng.integers(0, n, 120)
    dst = rng.integers(0, n, 120)
    weight = np.full(120, 3e38, np.float32)
    graph = lotan.Graph.from_arrays(
        x=rng.standard_normal((n, 4)).astype(np.float32),
        src=src,
        dst=dst,
        weight=weight,
        y=rng.integers(0, 2, n),
        split=np.array(["train"] * n, dtype=object),
    )
    torch.manual_seed(0)
    conv = GCNConv(4, 2)
    ours = lotan.predict(conv, graph, engine="local", num_partitions=2)
    logits = torch.tensor(np.stack(ours["logits"]))
    assert torch.isfinite(logits).all()
    data = graph.to_pyg()
    ref = conv.double()(data.x.double(), data.edge_index, data.edge_weight.double())
    torch.testing.assert_close(logits, ref.float(), rtol=1e-4, atol=1e-5)
    f32 = conv.float()(data.x, data.edge_index, data.edge_weight)
    assert not torch.allclose(f32, ref.float(), rtol=1e-3, atol=1e-3)  # PyG in float32 differs
    loss = F.cross_entropy(logits, torch.from_numpy(graph.arrays().y))
    assert torch.isfinite(loss)


def _history(result: lotan.FitResult) -> list[tuple[float, ...]]:
    return [(r.epoch, r.loss, r.train_acc, r.val_acc, r.test_acc) for r in result.history]


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_the_same_seed_repeats_a_run_bit_for_bit(engine: str, spark: Any) -> None:
    graph = _graph()
    kw: dict[str, Any] = {
        "epochs": 4,
        "lr": 0.05,
        "engine": engine,
        "num_partitions": 3,
        "seed": 7,
        "progress": False,
        "spark": spark if engine == "spark" else None,
    }
    a = lotan.fit(_model(), graph, **kw)
    b = lotan.fit(_model(), graph, **kw)
    assert _history(a) == _history(b)
    for p, q in zip(a.model.parameters(), b.model.parameters(), strict=True):
        assert torch.equal(p, q)
    other = lotan.fit(_model(), graph, **{**kw, "seed": 8})  # the seed matters (dropout)
    assert _history(other) != _history(a)


def test_engines_and_partition_counts_agree_within_rounding(spark: Any) -> None:
    graph = _graph()
    kw: dict[str, Any] = {"epochs": 4, "lr": 0.05, "seed": 7, "progress": False}
    base = lotan.fit(_model(), graph, engine="local", num_partitions=1, **kw)
    for engine, parts in (("local", 4), ("spark", 2), ("spark", 3)):
        run = lotan.fit(_model(), graph, engine=engine, num_partitions=parts, spark=spark, **kw)
        for p, q in zip(run.model.parameters(), base.model.parameters(), strict=True):
            torch.testing.assert_close(p, q, rtol=1e-4, atol=1e-5)


def _bf16_reference(
    model: torch.nn.Module, graph: lotan.Graph
) -> tuple[torch.Tensor, float, dict[str, Any]]:
    """PyG's loss and gradients when the exchanged value — the second GCNConv's linear
    output (``explain`` shows it is what crosses) — is rounded to bfloat16 on the way and
    the gradient passes the rounding unchanged, as Lotan's bfloat16 exchange does."""
    from lotan.graph_engine.exchange import to_bfloat16, widen

    def rounded(_m: Any, _i: Any, out: torch.Tensor) -> torch.Tensor:
        r = torch.from_numpy(widen(to_bfloat16(out.detach().numpy())))
        return out + (r - out).detach()

    ref = copy.deepcopy(model)
    ref.convs[1].lin.register_forward_hook(rounded)
    data = graph.to_pyg()
    logits = ref(data.x, data.edge_index)
    mask = data.train_mask
    loss = F.cross_entropy(logits[mask], data.y[mask])
    loss.backward()
    return logits.detach(), float(loss), {n: p.grad.clone() for n, p in ref.named_parameters()}


def test_a_bfloat16_exchange_matches_pyg_rounding_the_same_value(spark: Any) -> None:
    """``exchange_dtype="bfloat16"``: one SGD step at lr 1 (the weights move by the
    gradient) against PyG rounding the exchanged value the same way — loss and every
    gradient to float32 tolerance, on both engines and several partition counts; and
    ``predict``'s logits, which the float32 exchange misses by far more than that."""
    graph = _graph()
    model = GCN(6, 8, 2, 3)  # no dropout: PyG's masks are not Lotan's
    torch.manual_seed(0)
    model.reset_parameters()
    want_logits, want_loss, grads = _bf16_reference(model, graph)
    start = {n: p.detach().clone() for n, p in model.named_parameters()}
    kw: dict[str, Any] = {"epochs": 1, "optimizer": "sgd", "lr": 1.0, "progress": False}
    kw["exchange_dtype"] = "bfloat16"
    for engine, parts in (("local", 1), ("local", 3), ("spark", 2)):
        run = lotan.fit(
            copy.deepcopy(model), graph, engine=engine, num_partitions=parts,
            spark=spark, **kw,
        )  # fmt: skip
        assert run.history[0].loss == pytest.approx(want_loss, rel=1e-5), (engine, parts)
        for n, p in run.model.named_parameters():
            torch.testing.assert_close(start[n] - p.detach(), grads[n], rtol=1e-4, atol=1e-6)
    order = np.argsort(graph.arrays().ids)
    for engine, dtype in (("local", "bfloat16"), ("spark", "bfloat16"), ("local", "float32")):
        preds = lotan.predict(
            model, graph, engine=engine, num_partitions=3, spark=spark, exchange_dtype=dtype
        )
        frame = preds if engine == "local" else preds.toPandas().sort_values("id")
        got = torch.from_numpy(np.stack(frame["logits"].to_list()))
        gap = float((got - want_logits[order]).abs().max())
        if dtype == "bfloat16":
            assert gap < 1e-5, (engine, gap)
        else:
            assert gap > 1e-4, gap  # rounding the exchange changes the logits
    with pytest.raises(lotan.LotanError, match="exchange_dtype='fp8' is not one of"):
        lotan.fit(model, graph, engine="local", exchange_dtype="fp8")


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_eval_every_measures_fewer_epochs_and_trains_the_same(engine: str, spark: Any) -> None:
    """``eval_every=3`` over 7 epochs: accuracies at epochs 3, 6 and 7 (the last), NaN
    elsewhere; those equal the every-epoch run's, and the losses and weights are the same
    bit for bit (the evaluation stream never feeds training)."""
    graph = _graph()
    kw: dict[str, Any] = {"epochs": 7, "lr": 0.05, "engine": engine, "num_partitions": 2}
    kw |= {"seed": 3, "progress": False, "spark": spark if engine == "spark" else None}
    every = lotan.fit(_model(), graph, **kw)
    some = lotan.fit(_model(), graph, eval_every=3, **kw)
    assert [r.loss for r in some.history] == [r.loss for r in every.history]
    for p, q in zip(some.model.parameters(), every.model.parameters(), strict=True):
        assert torch.equal(p, q)
    for a, b in zip(some.history, every.history, strict=True):
        accs = (a.train_acc, a.val_acc, a.test_acc)
        if a.epoch in (3, 6, 7):
            assert accs == (b.train_acc, b.val_acc, b.test_acc), a.epoch
        else:
            assert all(np.isnan(v) for v in accs), a.epoch
    with pytest.raises(lotan.LotanError, match="eval_every must be a positive integer"):
        lotan.fit(_model(), graph, engine="local", eval_every=0)


def test_early_stopping_sees_only_measured_epochs() -> None:
    """With ``eval_every=2`` and patience, the best epoch is a measured one and the model
    ends with that epoch's weights (those of a run that simply stops there)."""
    graph = _graph()
    kw: dict[str, Any] = {"lr": 0.05, "engine": "local", "seed": 3, "progress": False}
    run = lotan.fit(_model(), graph, epochs=60, eval_every=2, patience=6, **kw)
    best = run.best()
    assert best.epoch % 2 == 0 and not np.isnan(best.val_acc)
    assert run.stopped_early and run.epochs_run - best.epoch == 6
    plain = lotan.fit(_model(), graph, epochs=best.epoch, **kw)
    for p, q in zip(run.model.parameters(), plain.model.parameters(), strict=True):
        assert torch.equal(p, q)
