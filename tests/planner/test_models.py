"""Every supported model equals PyG: loss, logits and every gradient after one epoch, and the
parameters after 5 epochs of Adam — both engines, several partition counts, shuffled ids."""

from __future__ import annotations

from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import APPNP, GATConv, GCNConv, GINConv, GraphConv, SAGEConv, SGConv
from torch_geometric.nn.models import GAT, GIN, MLP, GraphSAGE

import lotan
from lotan.errors import UnsupportedModelError
from tests.graph_cases import CASES
from tests.reference import assert_one_epoch_matches, assert_training_matches


class ResidualNet(torch.nn.Module):
    """Two convolutions with a residual addition, a concatenation and a Linear head."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(f, 8)
        self.conv2 = SAGEConv(8, 8)
        self.head = torch.nn.Linear(16, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x, edge_index))
        h2 = F.leaky_relu(self.conv2(h, edge_index), 0.1) + h
        return self.head(torch.cat([h, h2], dim=-1))


class GinSgcNet(torch.nn.Module):
    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.gin = GINConv(MLP([f, 8, 8], norm=None), train_eps=True)
        self.sgc = SGConv(8, c, K=2)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.sgc(self.gin(x, edge_index).tanh(), edge_index)


class SkipNet(torch.nn.Module):
    """``h`` feeds dense work in two later stages: its gradients from both must add up."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GCNConv(f, 8)
        self.conv2 = GCNConv(8, 8)
        self.conv3 = GCNConv(8, 8)
        self.head = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = F.relu(self.conv1(x, edge_index))
        h2 = F.relu(self.conv2(h, edge_index)) + h
        return self.head(self.conv3(h2, edge_index) + h)


class MaxMinNet(torch.nn.Module):
    """Extremes instead of sums: a max, then a min over ReLU outputs (many tied zeros)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = SAGEConv(f, 8, aggr="max")
        self.conv2 = GraphConv(8, c, aggr="min")

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.relu(self.conv1(x, edge_index)), edge_index)


class AttentionNet(torch.nn.Module):
    """Two GATConv layers: concatenated heads with added self loops, then one averaged head
    over the graph's own edges (self loops kept as they are) with a residual."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GATConv(f, 4, heads=2, negative_slope=0.1)
        self.conv2 = GATConv(8, c, heads=2, concat=False, add_self_loops=False, residual=True)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


class AppnpNet(torch.nn.Module):
    """An MLP, then APPNP's propagation (Klicpera et al.): ``x_0`` feeds every step."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.mlp = MLP([f, 8, c], norm=None, dropout=0.0)
        self.prop = APPNP(K=4, alpha=0.1)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.prop(self.mlp(x), edge_index)


MODELS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "graphsage": lambda f, c: GraphSAGE(f, 8, 2, c),
    "graphsage_sum": lambda f, c: GraphSAGE(f, 8, 2, c, aggr="sum"),
    "gin": lambda f, c: GIN(f, 8, 2, c),
    "gin_train_eps": lambda f, c: GIN(f, 8, 2, c, train_eps=True, eps=0.2),
    "sgc": lambda f, c: SGConv(f, c, K=2),
    "residual": ResidualNet,
    "gin_sgc": GinSgcNet,
    "skip": SkipNet,
    "max_min": MaxMinNet,
    "graphconv": lambda f, c: GraphConv(f, c),  # weighted sum on a weighted graph
    "gat": lambda f, c: GAT(f, 8, 2, c, heads=2),
    "attention": AttentionNet,
    "appnp": AppnpNet,
}


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize("parts", [1, 3])
def test_model_matches_pyg_local(name: str, parts: int, spark) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    assert_one_epoch_matches(MODELS[name](graph.num_features, 3), graph, "local", parts, spark)


@pytest.mark.parametrize("name", sorted(MODELS))
def test_model_matches_pyg_spark(name: str, spark) -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    assert_one_epoch_matches(MODELS[name](graph.num_features, 3), graph, "spark", 2, spark)


@pytest.mark.parametrize("name", sorted(MODELS))
@pytest.mark.parametrize(("engine", "parts"), [("local", 4), ("spark", 3)])
def test_model_adam_five_epochs(name: str, engine: str, parts: int, spark) -> None:
    graph = CASES["weighted"]()
    torch.manual_seed(1)
    model = MODELS[name](graph.num_features, 3)
    assert_training_matches(model, graph, engine, parts, spark, "adam", lr=0.02)


def test_unsupported_parts_are_named() -> None:
    graph = CASES["disconnected"]()
    f = graph.num_features
    with pytest.raises(UnsupportedModelError, match=r"aggr='std' is not supported"):
        lotan.fit(GraphSAGE(f, 8, 2, 3, aggr="std"), graph, engine="local", progress=False)
    with pytest.raises(UnsupportedModelError, match=r"GraphConv\(aggr='max'\) with edge weights"):
        lotan.fit(GraphConv(f, 3, aggr="max"), CASES["weighted"](), engine="local", progress=False)

    class Sig(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = GCNConv(f, 3)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            return torch.sigmoid(self.conv(x, edge_index))

    with pytest.raises(UnsupportedModelError, match=r"call_function .*sigmoid.* is not supported"):
        lotan.fit(Sig(), graph, engine="local", progress=False)

    class Bad(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.conv = GCNConv(f, 8)
            self.head = torch.nn.Linear(4, 3)

        def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
            return self.head(self.conv(x, edge_index))

    with pytest.raises(
        UnsupportedModelError, match=r"Bad.head: shape mismatch, the layer expects 4"
    ):
        lotan.fit(Bad(), graph, engine="local", progress=False)


def test_explain_shows_attention_and_its_edge_values() -> None:
    graph = CASES["directed_multi"]()
    torch.manual_seed(0)
    text = lotan.explain(GAT(graph.num_features, 8, 2, 3, heads=2), graph, print_=False)
    assert "aggregate[attention 2 heads, A-loops+I](%1, %2, %3) -> 8" in text
    assert "exchange %1, %2, %3 (attention, edge values" in text
    with pytest.raises(UnsupportedModelError, match=r"attention layer needs its inputs from one"):
        lotan.explain(
            GAT(graph.num_features, 8, 2, 3, heads=2),
            graph,
            planner=lotan.PlannerFlags(fuse=False),
            print_=False,
        )


def test_deep_propagation_matches_pyg() -> None:
    """APPNP at depth 16: 17 stages, ``x_0`` carried to every one of them."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(3)
    model = AppnpNet(graph.num_features, 3)
    model.prop.K = 16
    assert_one_epoch_matches(model, graph, "local", 3, None)
    text = lotan.explain(model, graph, print_=False, num_partitions=3)
    assert "per epoch: 17 forward + 16 backward stages" in text
