"""The PyTorch Geometric reference: the same module trained by a plain full-batch PyG loop."""

from __future__ import annotations

import copy
import inspect
from dataclasses import dataclass

import torch
import torch.nn.functional as F

import lotan


@dataclass
class Reference:
    logits: torch.Tensor  # vertices in ascending id order
    loss: float
    grads: dict[str, torch.Tensor]
    params_after: dict[str, torch.Tensor]


def pyg_reference(
    model: torch.nn.Module, graph: lotan.Graph, *, epochs: int, optimizer: str, **opt: float
) -> Reference:
    """Logits, loss and gradients of the first epoch, and the parameters after ``epochs``."""
    model = copy.deepcopy(model)
    data = graph.to_pyg()
    opt_cls = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam, "adamw": torch.optim.AdamW}
    optim = opt_cls[optimizer](model.parameters(), **opt)
    first: tuple[torch.Tensor, float, dict[str, torch.Tensor]] | None = None
    model.train()
    for _ in range(epochs):
        optim.zero_grad()
        out = call_pyg(model, data)
        loss = F.cross_entropy(out[data.train_mask], data.y[data.train_mask])
        loss.backward()
        if first is None:
            grads = {n: p.grad.detach().clone() for n, p in model.named_parameters()}
            first = (out.detach().clone(), float(loss), grads)
        optim.step()
    assert first is not None
    params = {n: p.detach().clone() for n, p in model.named_parameters()}
    return Reference(first[0], first[1], first[2], params)


def call_pyg(model: torch.nn.Module, data: object) -> torch.Tensor:
    """``model`` on ``data`` as a PyG user calls it: the edge weights and edge features
    passed where its forward takes them (``edge_weight`` as the third positional argument,
    ``edge_attr`` by name)."""
    from torch_geometric.nn.models.basic_gnn import BasicGNN

    ew = getattr(data, "edge_weight", None)
    ea = getattr(data, "edge_attr", None)
    x, ei = data.x, data.edge_index  # type: ignore[attr-defined]
    if isinstance(model, BasicGNN):
        kw = {}
        if model.supports_edge_weight and ew is not None:
            kw["edge_weight"] = ew
        if model.supports_edge_attr and ea is not None:
            kw["edge_attr"] = ea
        return model(x, ei, **kw)
    names = list(inspect.signature(model.forward).parameters)
    if "edge_attr" in names and ea is not None:
        return model(x, ei, edge_attr=ea)
    if len(names) > 2 and names[2] != "edge_attr" and ew is not None:
        return model(x, ei, ew)
    return model(x, ei)


ATOL = 1e-5
RTOL = 1e-4


def lotan_logits(
    model: torch.nn.Module,
    graph: lotan.Graph,
    engine: str,
    parts: int,
    spark: object,
    partitioner: str = "hash",
    placement: str = "fused",
) -> torch.Tensor:
    """Lotan's logits, vertices in ascending id order."""
    preds = lotan.predict(
        model,
        graph,
        engine=engine,
        num_partitions=parts,
        spark=spark,
        partitioner=partitioner,
        placement=placement,
    )
    if engine == "spark":
        pdf = preds.toPandas().sort_values("id")
        preds.unpersist()
    else:
        pdf = preds
    return torch.tensor([list(v) for v in pdf["logits"]])


def assert_one_epoch_matches(
    model: torch.nn.Module,
    graph: lotan.Graph,
    engine: str,
    parts: int,
    spark: object,
    partitioner: str = "hash",
    placement: str = "fused",
) -> None:
    """Same logits, loss and every parameter gradient as PyG after one epoch."""
    ref = pyg_reference(model, graph, epochs=1, optimizer="sgd", lr=0.1)
    ours = copy.deepcopy(model)
    logits = lotan_logits(ours, graph, engine, parts, spark, partitioner, placement)
    torch.testing.assert_close(logits, ref.logits, atol=ATOL, rtol=RTOL)
    result = fit_one_epoch(
        ours, graph, engine, parts, spark, partitioner=partitioner, placement=placement
    )
    assert_loss_and_gradients(result, ours, ref.loss, ref.grads)
    assert type(ours) is type(model)


def fit_one_epoch(
    model: torch.nn.Module,
    graph: lotan.Graph,
    engine: str,
    parts: int,
    spark: object,
    **kw: object,
) -> lotan.FitResult:
    """One epoch of SGD (lr 0.1), the reference's: the gradients stay in ``model``."""
    return lotan.fit(
        model,
        graph,
        epochs=1,
        optimizer="sgd",
        lr=0.1,
        engine=engine,
        num_partitions=parts,
        spark=spark,
        progress=False,
        **kw,
    )


def assert_loss_and_gradients(
    result: lotan.FitResult,
    model: torch.nn.Module,
    loss: float,
    grads: dict[str, torch.Tensor],
) -> None:
    """The first epoch's loss and every parameter's gradient equal the reference's."""
    assert abs(result.history[0].loss - loss) <= 1e-6 + 1e-5 * abs(loss)
    for name, p in model.named_parameters():
        assert p.grad is not None, name
        torch.testing.assert_close(p.grad, grads[name], atol=ATOL, rtol=RTOL, msg=name)


def assert_training_matches(
    model: torch.nn.Module,
    graph: lotan.Graph,
    engine: str,
    parts: int,
    spark: object,
    optimizer: str,
    epochs: int = 5,
    partitioner: str = "hash",
    **opt: float,
) -> None:
    """Same parameters as PyG after ``epochs`` epochs of ``optimizer``."""
    ref = pyg_reference(model, graph, epochs=epochs, optimizer=optimizer, **opt)
    ours = copy.deepcopy(model)
    lotan.fit(
        ours,
        graph,
        epochs=epochs,
        optimizer=optimizer,
        engine=engine,
        num_partitions=parts,
        partitioner=partitioner,
        spark=spark,
        progress=False,
        **opt,
    )
    for name, p in ours.named_parameters():
        torch.testing.assert_close(
            p.detach(), ref.params_after[name], atol=ATOL, rtol=RTOL, msg=name
        )
