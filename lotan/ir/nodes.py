"""A node of a logical plan: one op (:mod:`lotan.ir.ops`) on the values of earlier nodes."""

from __future__ import annotations

from dataclasses import dataclass, fields

from lotan.errors import UnsupportedModelError
from lotan.ir.norm import NormSpec
from lotan.ir.ops import OPS, OpName, Reduce

__all__ = ["Node"]

#: Attributes any node may carry, whatever its op.
_COMMON = frozenset({"id", "op", "inputs", "width", "origin", "key", "seed"})


@dataclass(frozen=True)
class Node:
    """One operation; ``width`` is the number of features of its value.

    Which of the attributes below a node carries depends on its op: :data:`lotan.ir.ops.OPS`
    declares them (``Op.attrs``), and a node that sets another op's attribute is refused
    when it is built, so a node is never a bag of fields that mean nothing for its op.

    Attributes
    ----------
    id : unique within a plan; nodes are kept in topological order.
    op : the op (:data:`lotan.ir.ops.OPS`).
    inputs : ids of the input values.
    width : features of the value (a ``moments`` node's value is ``(2, width)``).
    param : the parameter of ``linear`` / ``matmul`` / ``bias`` / ``head_dot``, the weight
        of a normalization, ``scale_eps``'s trained eps (``None``: ``eps`` fixed).
    act, negative_slope : the activation of ``act`` (and the slope of leaky_relu, or of the
        attention scores of an ``aggregate``).
    p : dropout probability (of features for ``dropout``, of attention coefficients for an
        ``aggregate``).
    eps : ``scale_eps``'s fixed eps; a normalization's eps.
    norm : an ``aggregate``'s edge weighting.
    reduce : an ``aggregate``'s reduction (:data:`lotan.ir.ops.REDUCES`).
    heads : attention heads (``aggregate``, ``head_dot``, ``head_mean``).
    params : an ``aggregate``'s edge-function parameters (their roles per ``reduce``: see
        :mod:`lotan.runtime.edge_functions`).
    edge_features : an ``aggregate`` reads the graph's edge features.
    factor : the constant of ``scale``, ``pair_norm``'s scale.
    buffers : for ``moments`` of a BatchNorm that tracks running statistics, the buffers
        ``(running_mean, running_var, num_batches_tracked)``, updated by each training epoch
        with ``momentum`` (``None``: the cumulative average) and read instead of the batch
        statistics in evaluation.
    cached : an aggregation of a constant, computed once per run.
    origin : the module it was lowered from.
    key : seeds the dropout mask (default: the id). A batch of models renumbers its nodes and
        keeps each model's own ids here, so every model draws the masks it draws alone.
    seed : the run seed of its masks when it is not the run's: a ``fit_many`` model with a
        seed of its own (:class:`lotan.nn_engine.dense.MaskSeed`).
    """

    id: int
    op: OpName
    inputs: tuple[int, ...]
    width: int
    param: str | None = None
    act: str | None = None
    negative_slope: float = 0.01
    p: float = 0.0
    eps: float = 0.0
    norm: NormSpec | None = None
    reduce: Reduce = "sum"
    heads: int = 1
    params: tuple[str, ...] = ()
    edge_features: bool = False
    factor: float = 1.0
    buffers: tuple[str, ...] = ()
    momentum: float | None = 0.1
    cached: bool = False
    origin: str = ""
    key: int | None = None
    seed: int | None = None

    def __post_init__(self) -> None:
        spec = OPS.get(self.op)
        if spec is None:
            raise UnsupportedModelError(f"node {self.id}: unknown op {self.op!r}")
        allowed = _COMMON | set(spec.attrs)
        for f in fields(self):
            if f.name not in allowed and getattr(self, f.name) != f.default:
                raise ValueError(
                    f"node {self.id} ({self.op}) sets {f.name}={getattr(self, f.name)!r}, "
                    f"which {self.op} does not read (it reads {list(spec.attrs)})"
                )

    @property
    def random(self) -> bool:
        """A dropout (of features, or of attention coefficients) that drops something."""
        return self.p > 0 and (self.op == "dropout" or self.reduce == "attention")

    @property
    def evaluates_apart(self) -> bool:
        """Its value differs in evaluation mode (``model.eval()``): a dropout, or the
        statistics of a BatchNorm that tracks running statistics."""
        return self.random or (self.op == "moments" and bool(self.buffers))

    @property
    def mask_key(self) -> int:
        """What keys its dropout masks within the plan it was lowered in."""
        return self.id if self.key is None else self.key

    def describe(self) -> str:
        """Its line of ``explain``: ``%3 = linear[convs.0.lin.weight](%2) -> 16``."""
        args = ", ".join(f"%{i}" for i in self.inputs)
        extra = OPS[self.op].annotate(self)
        width = f"2x{self.width}" if self.op == "moments" else str(self.width)
        return f"%{self.id} = {self.op}{extra}({args}) -> {width}"
