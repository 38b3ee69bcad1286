"""Normalizations whose statistics span the graph (BatchNorm, LayerNorm(mode="graph"),
PairNorm) equal PyG trained as the OGB examples train it: ``model.train()`` for the epoch
(batch statistics over every vertex, running statistics updated), ``model.eval()`` for the
accuracies (running statistics). Loss, every gradient and every buffer after one epoch, the
evaluation logits before and after, the parameters, buffers and every epoch's accuracies
after 5 epochs of Adam — both engines, several partition counts, a partition without
vertices, ``fit_many``, unfused and split placement."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import GCN2Conv, GCNConv, SAGEConv
from torch_geometric.nn.models import GCN, GIN, GraphSAGE
from torch_geometric.nn.norm import BatchNorm, LayerNorm, PairNorm

import lotan
from lotan.errors import UnsupportedModelError
from lotan.graph_engine.hashing import owner_of
from tests.graph_cases import CASES, _graph
from tests.reference import (
    ATOL,
    RTOL,
    assert_loss_and_gradients,
    call_pyg,
    fit_one_epoch,
    lotan_logits,
)


class BatchNormNet(torch.nn.Module):
    """torch's BatchNorm1d between convolutions: cumulative averaging (``momentum=None``),
    then one without affine parameters and without running statistics."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(f, 8)
        self.bn1 = torch.nn.BatchNorm1d(8, momentum=None)
        self.conv2 = SAGEConv(8, 8)
        self.bn2 = torch.nn.BatchNorm1d(8, affine=False, track_running_stats=False)
        self.head = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.bn1(self.conv1(x, edge_index)).relu()
        return self.head(self.bn2(self.conv2(h, edge_index)))


class InputNormNet(torch.nn.Module):
    """PyG's BatchNorm on the input features (no gradient flows into them), and the same
    value normalized twice (two statistics of one input: their gradients add up)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.bn_in = BatchNorm(f, momentum=0.3)
        self.conv = GCNConv(f, 8)
        self.bn_a = BatchNorm(8)
        self.ln_b = LayerNorm(8, mode="graph")
        self.head = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.conv(self.bn_in(x), edge_index)
        return self.head(self.bn_a(h).relu() + self.ln_b(h))


class PairNormNet(torch.nn.Module):
    """PairNorm both ways: one scale for the graph, then each row scaled on its own."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(f, 8)
        self.norm1 = PairNorm(scale=2.0)
        self.conv2 = GCNConv(8, 8)
        self.norm2 = PairNorm(scale_individually=True)
        self.head = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.conv1(x, edge_index)).relu()
        return self.head(self.norm2(self.conv2(h, edge_index)).relu())


class DeepResidualBN(torch.nn.Module):
    """GCNII-style: ``GCN2Conv`` layers, each followed by BatchNorm and ReLU, with a
    residual addition — ``depth`` layers deep."""

    def __init__(self, f: int, c: int, depth: int = 16) -> None:
        super().__init__()
        self.lin_in = torch.nn.Linear(f, 8)
        self.convs = torch.nn.ModuleList(
            GCN2Conv(8, alpha=0.1, theta=0.5, layer=i + 1) for i in range(depth)
        )
        self.bns = torch.nn.ModuleList(torch.nn.BatchNorm1d(8) for _ in range(depth))
        self.lin_out = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = x_0 = self.lin_in(x).relu()
        for conv, bn in zip(self.convs, self.bns, strict=True):
            x = bn(conv(x, x_0, edge_index)).relu() + x
        return self.lin_out(x)


NORM_MODELS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "gcn_bn": lambda f, c: GCN(f, 8, 3, c, norm="batch_norm"),
    "sage_bn_act_first": lambda f, c: GraphSAGE(f, 8, 2, c, norm="batch_norm", act_first=True),
    "gin_bn": lambda f, c: GIN(f, 8, 2, c, norm="batch_norm"),  # its MLPs normalize too
    "jk_cat_bn": lambda f, c: GCN(f, 8, 2, c, norm="batch_norm", jk="cat"),
    "gcn_graph_ln": lambda f, c: GCN(f, 8, 2, c, norm="layer_norm"),
    "sage_pair_norm": lambda f, c: GraphSAGE(f, 8, 2, c, norm="pair_norm", jk="max"),
    "batch_norm_net": BatchNormNet,
    "input_norm_net": InputNormNet,
    "pair_norm_net": PairNormNet,
}


@dataclass
class Run:
    """One model trained ``epochs`` epochs, as PyG's / OGB's loop does it."""

    loss: float  # first epoch
    grads: dict[str, torch.Tensor]  # first epoch
    buffers_1: dict[str, torch.Tensor]  # after the first epoch
    eval_before: torch.Tensor  # logits in evaluation mode, untrained
    eval_after_1: torch.Tensor  # ... after the first step
    accs: list[tuple[float, float, float]]  # per epoch, in evaluation mode after its step
    #: per epoch and split, the fraction of vertices whose two best logits tie to float
    #: rounding (their argmax may go either way)
    ties: list[tuple[float, float, float]]
    params: dict[str, torch.Tensor]  # after every epoch
    buffers: dict[str, torch.Tensor]


def _acc(out: torch.Tensor, data: object, split: str) -> tuple[float, float]:
    """Accuracy on ``split``, and the fraction of its vertices whose argmax is a tie."""
    mask = getattr(data, f"{split}_mask")
    count = int(mask.sum())
    correct = int((out.argmax(1)[mask] == data.y[mask]).sum())  # type: ignore[attr-defined]
    top = out[mask].topk(2, dim=1).values
    ties = int((top[:, 0] - top[:, 1] < 1e-5).sum())
    return (correct / count, ties / count) if count else (float("nan"), 0.0)


def pyg_run(model: torch.nn.Module, graph: lotan.Graph, epochs: int, optimizer: str, **opt):
    model = copy.deepcopy(model)
    data = graph.to_pyg()
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}[optimizer]
    optim = opt_cls(model.parameters(), **opt)

    def evaluate() -> torch.Tensor:
        model.eval()
        with torch.no_grad():
            return call_pyg(model, data)

    eval_before = evaluate()
    run = None
    accs, ties = [], []
    for _ in range(epochs):
        model.train()
        optim.zero_grad()
        out = call_pyg(model, data)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        optim.step()
        logits = evaluate()
        per_split = [_acc(logits, data, s) for s in ("train", "val", "test")]
        accs.append(tuple(a for a, _ in per_split))
        ties.append(tuple(t for _, t in per_split))
        if run is None:
            grads = {n: p.grad.clone() for n, p in model.named_parameters()}
            bufs = {n: b.clone() for n, b in model.named_buffers()}
            run = Run(float(loss), grads, bufs, eval_before, logits, [], [], {}, {})
    assert run is not None
    run.accs, run.ties = accs, ties
    run.params = {n: p.detach().clone() for n, p in model.named_parameters()}
    run.buffers = {n: b.clone() for n, b in model.named_buffers()}
    return run


def _close(a: torch.Tensor, b: torch.Tensor, msg: str) -> None:
    torch.testing.assert_close(a.double(), b.double(), atol=ATOL, rtol=RTOL, msg=msg)


def _assert_accs(history: list[lotan.EpochRecord], ref: Run) -> None:
    """The history's accuracies are PyG's, up to vertices whose argmax is a tie."""
    ours = [a for r in history for a in (r.train_acc, r.val_acc, r.test_acc)]
    want = [a for row in ref.accs for a in row]
    slack = [t for row in ref.ties for t in row]
    assert len(ours) == len(want)
    for got, acc, tie in zip(ours, want, slack, strict=True):
        assert got == pytest.approx(acc, abs=tie + 1e-9, nan_ok=True), (ours, want)


def assert_matches_pyg(
    model: torch.nn.Module,
    graph: lotan.Graph,
    engine: str,
    parts: int,
    spark: object,
    **kw: object,
) -> None:
    """One epoch of SGD: loss, gradients, buffers, accuracies and the evaluation logits
    before and after equal PyG's."""
    ref = pyg_run(model, graph, 1, "sgd", lr=0.1)
    ours = copy.deepcopy(model)
    _close(lotan_logits(ours, graph, engine, parts, spark), ref.eval_before, "eval logits")
    result = fit_one_epoch(ours, graph, engine, parts, spark, **kw)
    assert_loss_and_gradients(result, ours, ref.loss, ref.grads)
    for name, b in ours.named_buffers():
        _close(b, ref.buffers_1[name], name)
    _assert_accs(result.history, ref)
    _close(lotan_logits(ours, graph, engine, parts, spark), ref.eval_after_1, "eval after")


@pytest.mark.parametrize("name", sorted(NORM_MODELS))
@pytest.mark.parametrize("parts", [1, 3, 5])
def test_norm_model_matches_pyg_local(name: str, parts: int) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    assert_matches_pyg(NORM_MODELS[name](graph.num_features, 3), graph, "local", parts, None)


@pytest.mark.parametrize("name", sorted(NORM_MODELS))
@pytest.mark.parametrize("parts", [5])  # 1 and 3: the local engine (same stage functions)
def test_norm_model_matches_pyg_spark(name: str, parts: int, spark) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    assert_matches_pyg(NORM_MODELS[name](graph.num_features, 3), graph, "spark", parts, spark)


@pytest.mark.parametrize("case", ["weighted", "star_zero_in_degree", "disconnected"])
def test_batch_norm_on_messy_graphs(case: str, spark) -> None:
    graph = CASES[case]()
    torch.manual_seed(1)
    model = GCN(graph.num_features, 8, 3, 3, norm="batch_norm")
    assert_matches_pyg(model, graph, "local", 3, None)
    assert_matches_pyg(model, graph, "spark", 2, spark)


@pytest.mark.parametrize("name", sorted(NORM_MODELS))
@pytest.mark.parametrize(("engine", "parts"), [("local", 4), ("spark", 3)])
def test_norm_model_adam_five_epochs(name: str, engine: str, parts: int, spark) -> None:
    """Parameters and buffers after 5 epochs of Adam, and every epoch's accuracies."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(2)
    model = _without_cancelled_biases(NORM_MODELS[name](graph.num_features, 3), graph)
    ref = pyg_run(model, graph, 5, "adam", lr=0.01)
    ours = copy.deepcopy(model)
    result = lotan.fit(
        ours,
        graph,
        epochs=5,
        optimizer="adam",
        lr=0.01,
        engine=engine,
        num_partitions=parts,
        spark=spark,
        progress=False,
    )
    for n, p in ours.named_parameters():
        _close(p.detach(), ref.params[n], n)
    for n, b in ours.named_buffers():
        _close(b, ref.buffers[n], n)
    _assert_accs(result.history, ref)


def _without_cancelled_biases(model: torch.nn.Module, graph: lotan.Graph) -> torch.nn.Module:
    """``model`` without the biases that a normalization right after them cancels.

    A bias before a normalization that centres each column (BatchNorm, PairNorm) changes
    no output: its gradient is 0 in exact arithmetic and rounding noise in float32, in PyG
    and Lotan alike. Adam divides each gradient by its own size and turns that noise into
    steps of ``lr`` (see NOISE_GRADIENTS in test_models.py), which then shift the running
    means — a comparison of noise. Those biases (found as the ones whose first PyG gradient
    is noise) are removed, as a user who normalizes right after a layer would."""
    first = pyg_run(model, graph, 1, "sgd", lr=0.1)
    for name, g in first.grads.items():
        if g.abs().max() < 1e-6:
            assert name.endswith("bias"), name
            owner, _, attr = name.rpartition(".")
            setattr(model.get_submodule(owner), attr, None)
    return model


def _few_vertices() -> lotan.Graph:
    """5 vertices: hashed to 5 partitions, two own none."""
    src = np.array([0, 1, 2, 3, 4, 0, 2])
    dst = np.array([1, 2, 3, 4, 0, 3, 0])
    return _graph(5, src, dst, seed=6)


@pytest.mark.parametrize("engine", ["local", "spark"])
def test_partitions_without_vertices(engine: str, spark) -> None:
    graph = _few_vertices()
    owners = owner_of(graph.to_pyg().ids.numpy(), 5)
    assert len(set(owners.tolist())) == 3  # two partitions own no vertex
    torch.manual_seed(3)
    model = GCN(graph.num_features, 8, 3, 3, norm="batch_norm")
    assert_matches_pyg(model, graph, engine, 5, spark)


def test_fit_many_batches_batch_norm_models_like_separate_fits(spark) -> None:
    """Per-model statistics and running statistics: a batch equals its separate fits bit
    for bit (parameters, buffers, history), with dropout."""
    graph = CASES["directed_multi"]()
    f = graph.num_features
    torch.manual_seed(4)
    models = [
        GCN(f, 8, 3, 3, norm="batch_norm", dropout=0.5),
        GCN(f, 16, 3, 3, norm="batch_norm", dropout=0.2, norm_kwargs={"momentum": 0.5}),
        GCN(f, 4, 3, 3, norm="batch_norm"),
    ]
    kw = {"epochs": 4, "engine": "spark", "num_partitions": 3, "spark": spark}
    batch = lotan.fit_many([copy.deepcopy(m) for m in models], graph, progress=False, **kw)
    for m, got in zip(models, batch, strict=True):
        alone = lotan.fit(copy.deepcopy(m), graph, progress=False, **kw)
        for (n, a), b in zip(
            alone.model.state_dict().items(), got.model.state_dict().values(), strict=True
        ):
            assert torch.equal(a, b), n
        assert [r.loss for r in alone.history] == [r.loss for r in got.history]
        assert [r.val_acc for r in alone.history] == [r.val_acc for r in got.history]


def test_batch_norm_with_dropout_same_on_both_engines_and_partitions(spark) -> None:
    """The OGB arxiv model's shape (BatchNorm, dropout 0.5): the engines agree, a run
    repeats bit for bit, and partition counts agree to float rounding."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(5)
    model = GCN(graph.num_features, 8, 3, 3, norm="batch_norm", dropout=0.5)
    model = _without_cancelled_biases(model, graph)  # Adam on noise: see there
    kw = {"epochs": 3, "optimizer": "adam", "lr": 0.01, "progress": False}
    runs = {
        (engine, parts): lotan.fit(
            copy.deepcopy(model), graph, engine=engine, num_partitions=parts, spark=spark, **kw
        ).model.state_dict()
        for engine, parts in [("local", 3), ("local", 3), ("spark", 3), ("local", 1)]
    }
    again = lotan.fit(copy.deepcopy(model), graph, engine="local", num_partitions=3, **kw)
    for n, v in runs[("local", 3)].items():
        assert torch.equal(again.model.state_dict()[n], v), n
        assert torch.equal(runs[("spark", 3)][n], v), n
        _close(runs[("local", 1)][n], v, n)


def test_unfused_and_split_placement_match_fused(spark) -> None:
    """Unfused, the statistics are their own stage and carried to the normalization's:
    the same training. Split placement: the same bits."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(6)
    model = NORM_MODELS["batch_norm_net"](graph.num_features, 3)
    assert_matches_pyg(model, graph, "local", 3, None, planner=lotan.PlannerFlags(fuse=False))
    kw = {"epochs": 3, "engine": "spark", "num_partitions": 2, "spark": spark}
    fused = lotan.fit(copy.deepcopy(model), graph, progress=False, **kw)
    split = lotan.fit(copy.deepcopy(model), graph, progress=False, placement="split", **kw)
    for (n, a), b in zip(
        fused.model.state_dict().items(), split.model.state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), n


def test_deep_residual_batch_norm_matches_pyg() -> None:
    """16 GCN2Conv layers, each with BatchNorm and a residual: 33 stages."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(7)
    model = DeepResidualBN(graph.num_features, 3, depth=16)
    assert_matches_pyg(model, graph, "local", 3, None)
    text = lotan.explain(model, graph, print_=False, num_partitions=3)
    assert "per epoch: 33 forward + 32 backward stages" in text


def test_explain_shows_the_statistics_and_their_bytes() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    text = lotan.explain(
        GCN(graph.num_features, 8, 2, 3, norm="batch_norm"), graph, print_=False, num_partitions=3
    )
    assert "moments[running stats norms.0.module, momentum 0.1](%" in text
    assert "statistics %" in text


def test_unsupported_normalizations_are_named() -> None:
    graph = CASES["directed_multi"]()
    f = graph.num_features

    class Instance(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = GCNConv(f, 8)
            self.bn = torch.nn.InstanceNorm1d(8)
            self.head = torch.nn.Linear(8, 3)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            return self.head(self.bn(self.conv(x, edge_index)))

    with pytest.raises(
        UnsupportedModelError, match=r"Instance.bn: InstanceNorm1d is not supported"
    ):
        lotan.fit(Instance(), graph, engine="local", progress=False)
    with pytest.raises(UnsupportedModelError, match=r"GraphNorm is not supported"):
        lotan.fit(GCN(f, 8, 2, 3, norm="graph_norm"), graph, engine="local", progress=False)
    with pytest.raises(UnsupportedModelError, match=r"BatchNorm1d\(4\) on vertex rows of width 8"):

        class Wrong(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                self.conv = GCNConv(f, 8)
                self.bn = torch.nn.BatchNorm1d(4)

            def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
                return self.bn(self.conv(x, edge_index))

        lotan.fit(Wrong(), graph, engine="local", progress=False)
