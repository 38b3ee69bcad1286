"""Every supported model equals PyG: loss, logits and every gradient after one epoch, and the
parameters after 5 epochs of Adam — both engines, several partition counts, shuffled ids."""

from __future__ import annotations

import copy
from collections.abc import Callable

import pytest
import torch
import torch.nn.functional as F
from torch_geometric.nn import (
    APPNP,
    GATConv,
    GATv2Conv,
    GCN2Conv,
    GCNConv,
    GINConv,
    GINEConv,
    GraphConv,
    SAGEConv,
    SGConv,
)
from torch_geometric.nn.models import GAT, GCN, GIN, MLP, GraphSAGE

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


class AttentionV2Net(torch.nn.Module):
    """GATv2: two heads over the graph's own edges, then one averaged head with a shared
    weight for both ends, added self loops, a residual and no bias."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GATv2Conv(f, 4, heads=2, negative_slope=0.1, add_self_loops=False)
        self.conv2 = GATv2Conv(
            8, c, heads=2, concat=False, share_weights=True, residual=True, bias=False
        )

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        return self.conv2(F.elu(self.conv1(x, edge_index)), edge_index)


class GCNII(torch.nn.Module):
    """GCNII (Chen et al. 2020) as PyG's ``examples/gcn2_cora.py`` builds it: ``x_0`` from a
    linear map feeds every ``GCN2Conv`` (initial residual), each with its identity mapping
    ``β_l = log(θ / l + 1)``."""

    def __init__(self, f: int, c: int, layers: int = 4, shared: bool = True) -> None:
        super().__init__()
        self.lin_in = torch.nn.Linear(f, 8)
        self.convs = torch.nn.ModuleList(
            GCN2Conv(8, alpha=0.1, theta=0.5, layer=i + 1, shared_weights=shared)
            for i in range(layers)
        )
        self.lin_out = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        x = x_0 = self.lin_in(x).relu()
        for conv in self.convs:
            x = conv(x, x_0, edge_index).relu()
        return self.lin_out(x)


class GineNet(torch.nn.Module):
    """GINE (Hu et al.): edge features projected (``edge_dim``) in the first layer, added
    raw in the second (vertex features of the edge features' width)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GINEConv(MLP([f, 8, 3], norm=None), train_eps=True, edge_dim=3)
        self.conv2 = GINEConv(torch.nn.Sequential(torch.nn.Linear(3, 8), torch.nn.ReLU()))
        self.head = torch.nn.Linear(8, c)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        h = self.conv1(x, edge_index, edge_attr).relu()
        return self.head(self.conv2(h, edge_index, edge_attr))


class EdgeAttentionNet(torch.nn.Module):
    """GATv2 and GAT layers that score edges by their features, then a GAT layer that
    ignores them (called without ``edge_attr``, as PyG allows)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = GATv2Conv(f, 4, heads=2, edge_dim=3)
        self.conv2 = GATConv(8, 4, heads=2, edge_dim=3, add_self_loops=False)
        self.conv3 = GATConv(8, c, heads=1)

    def forward(
        self, x: torch.Tensor, edge_index: torch.Tensor, edge_attr: torch.Tensor
    ) -> torch.Tensor:
        h = F.elu(self.conv1(x, edge_index, edge_attr))
        h = F.elu(self.conv2(h, edge_index, edge_attr))
        return self.conv3(h, edge_index)


class LayerNormNet(torch.nn.Module):
    """torch's LayerNorm after a convolution (without affine parameters after the second)."""

    def __init__(self, f: int, c: int) -> None:
        super().__init__()
        self.conv1 = SAGEConv(f, 8)
        self.norm1 = torch.nn.LayerNorm(8)
        self.conv2 = GCNConv(8, 8)
        self.norm2 = torch.nn.LayerNorm(8, elementwise_affine=False)
        self.head = torch.nn.Linear(8, c)

    def forward(self, x: torch.Tensor, edge_index: torch.Tensor) -> torch.Tensor:
        h = self.norm1(self.conv1(x, edge_index)).relu()
        return self.head(self.norm2(self.conv2(h, edge_index)))


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
    "gatv2": lambda f, c: GAT(f, 8, 2, c, heads=2, v2=True),
    "attention_v2": AttentionV2Net,
    "gcnii": GCNII,
    "gcnii_unshared": lambda f, c: GCNII(f, c, layers=2, shared=False),
    "jk_cat_layer_norm": lambda f, c: GCN(
        f, 8, 3, c, jk="cat", norm="layer_norm", norm_kwargs={"mode": "node"}, act_first=True
    ),
    "jk_max": lambda f, c: GraphSAGE(f, 8, 2, c, jk="max", dropout=0.0),
    "jk_last": lambda f, c: GIN(f, 8, 2, c, jk="last"),
    "layer_norm_net": LayerNormNet,
}

#: Models that read edge features, run on the ``edge_features`` graph case.
EDGE_MODELS: dict[str, Callable[[int, int], torch.nn.Module]] = {
    "gine": GineNet,
    "gat_edges": lambda f, c: GAT(f, 8, 2, c, heads=2, edge_dim=3),
    "gatv2_edges": lambda f, c: GAT(f, 8, 2, c, heads=2, v2=True, edge_dim=3),
    "edge_attention": EdgeAttentionNet,
}
ALL_MODELS = {**MODELS, **EDGE_MODELS}

#: Models whose first gradient has entries that are 0 in exact arithmetic but rounding noise
#: (~1e-11) in float32, in PyG and Lotan alike: GATv2's ``x_r`` columns where every edge of a
#: destination sits on one side of the leaky ReLU, so the score shifts by the same amount on
#: all of them and the softmax does not change. Adam divides each gradient by its own size,
#: which turns that noise into steps of ``lr · 1e-3``: its trajectory would compare rounding
#: noise (measured: 6e-4 apart after 5 epochs on ``convs.1.lin_r.weight``, every other
#: parameter within 2e-6). They are trained with SGD and momentum instead.
NOISE_GRADIENTS = frozenset({"gatv2"})


def _case(name: str, default: str) -> lotan.Graph:
    return CASES["edge_features" if name in EDGE_MODELS else default]()


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
@pytest.mark.parametrize("parts", [1, 3, 5])
def test_model_matches_pyg_local(name: str, parts: int, spark) -> None:
    graph = _case(name, "directed_multi")
    torch.manual_seed(0)
    model = ALL_MODELS[name](graph.num_features, 3)
    assert_one_epoch_matches(model, graph, "local", parts, spark)


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
# 1 and 3 partitions: the local engine (the same stage functions); Spark at 1 partition is
# covered by tests/test_equivalence.py
@pytest.mark.parametrize("parts", [5])
def test_model_matches_pyg_spark(name: str, parts: int, spark) -> None:
    graph = _case(name, "directed_multi")
    torch.manual_seed(0)
    model = ALL_MODELS[name](graph.num_features, 3)
    assert_one_epoch_matches(model, graph, "spark", parts, spark)


@pytest.mark.parametrize("name", sorted(ALL_MODELS))
@pytest.mark.parametrize(("engine", "parts"), [("local", 4), ("spark", 3)])
def test_model_adam_five_epochs(name: str, engine: str, parts: int, spark) -> None:
    graph = _case(name, "weighted")
    torch.manual_seed(1)
    model = ALL_MODELS[name](graph.num_features, 3)
    if name in NOISE_GRADIENTS:
        assert_training_matches(model, graph, engine, parts, spark, "sgd", lr=0.05, momentum=0.9)
    else:
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


@pytest.mark.parametrize("name", ["gat", "edge_attention", "gine"])
def test_edge_functions_run_unfused(name: str, spark) -> None:
    """``PlannerFlags(fuse=False)``: every op its own stage, so an attention layer's inputs
    (``h`` and its scores) come from different stages, each sent by its own and each
    gradient returned to it — the same training as fused, on both engines."""
    graph = _case(name, "directed_multi")
    torch.manual_seed(0)
    model = ALL_MODELS[name](graph.num_features, 3)
    unfused = lotan.PlannerFlags(fuse=False)
    stages = [
        lotan.explain(model, graph, planner=flags, print_=False).count("\nstage ")
        for flags in (lotan.PlannerFlags(), unfused)
    ]
    assert stages[1] > stages[0]
    # SGD: attention's a_dst gradients include exact zeros (see NOISE_GRADIENTS)
    opt = {"optimizer": "sgd", "lr": 0.05, "momentum": 0.9}
    for engine in ("local", "spark"):
        kw = {"engine": engine, "num_partitions": 3, "spark": spark, "epochs": 3, **opt}
        ours = [
            lotan.fit(copy.deepcopy(model), graph, progress=False, planner=flags, **kw)
            for flags in (lotan.PlannerFlags(), unfused)
        ]
        fused, split = (dict(r.model.named_parameters()) for r in ours)
        for key, p in fused.items():
            torch.testing.assert_close(split[key], p, rtol=1e-5, atol=1e-6, msg=key)


def test_deep_propagation_matches_pyg() -> None:
    """APPNP at depth 16: 17 stages, ``x_0`` carried to every one of them."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(3)
    model = AppnpNet(graph.num_features, 3)
    model.prop.K = 16
    assert_one_epoch_matches(model, graph, "local", 3, None)
    text = lotan.explain(model, graph, print_=False, num_partitions=3)
    assert "per epoch: 17 forward + 16 backward stages" in text


def test_deep_gcnii_matches_pyg() -> None:
    """GCNII 16 layers deep: ``x_0`` and its gradient cross 16 stages, and every layer's
    ``β_l`` differs."""
    graph = CASES["directed_multi"]()
    torch.manual_seed(4)
    model = GCNII(graph.num_features, 3, layers=16)
    assert_one_epoch_matches(model, graph, "local", 3, None)
    text = lotan.explain(model, graph, print_=False, num_partitions=3)
    assert "per epoch: 17 forward + 16 backward stages" in text
