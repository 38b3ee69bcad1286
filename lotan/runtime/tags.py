"""Every message between the pieces of a run, declared once: its tag, the piece that sends
it, the piece that reads it, and what its payload holds.

A message's tag is a :class:`Tag`'s prefix, followed — for a tag about one exchange or one
plan node — by that index, and — for values that differ with dropout off — by
:data:`EVAL` for the evaluation stream (``x3``, ``x3:e``, ``metrics``). Senders build tags
with :meth:`Tag.of` and receivers match them with :meth:`Tag.of` or :meth:`Tag.index_of`;
payload keys that name a value (an input of an exchange, a node, a saved input) are built
by the functions at the end of this module. Nothing else writes or parses a tag.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AGGREGATED",
    "AGGREGATION_GRADS",
    "CANDIDATES",
    "CARRIED",
    "CARRIED_GRADS",
    "DEGREES",
    "DEMAND",
    "EVAL",
    "EXCHANGED",
    "INV_SQRT_DEGREES",
    "KEPT",
    "LABELS",
    "LABEL_COUNTS",
    "LAYOUT",
    "METRICS",
    "NEIGHBOUR_LABELS",
    "OUTPUT_ROWS",
    "OWNER",
    "PARAM_GRADS",
    "PARTIAL_GRADS",
    "REQUEST",
    "SAVED",
    "STATISTICS",
    "STATISTICS_GRADS",
    "TAGS",
    "TIMING",
    "Tag",
    "count_key",
    "input_key",
    "node_key",
    "saved_key",
]

#: The suffix of a message in the evaluation stream (dropout off, running statistics).
EVAL = ":e"


@dataclass(frozen=True)
class Tag:
    """One kind of message.

    Attributes
    ----------
    prefix : the tag, or its first part when ``indexed``.
    sender, receiver : the pieces (or the driver, or the run's output) at either end.
    payload : what the payload's arrays are.
    indexed : the tag names the exchange or plan node it is about.
    """

    prefix: str
    sender: str
    receiver: str
    payload: str
    indexed: bool = True

    def of(self, index: int | None = None, stream: str = "") -> str:
        """The tag of this kind's message about ``index`` in ``stream`` (``""`` or
        :data:`EVAL`)."""
        if self.indexed != (index is not None):
            what = "needs an index" if self.indexed else "takes no index"
            raise ValueError(f"message tag {self.prefix!r} {what}")
        return f"{self.prefix}{'' if index is None else index}{stream}"

    def index_of(self, tag: str, stream: str = "") -> int | None:
        """The index ``tag`` names when it is this kind's tag in ``stream``, else None."""
        if not self.indexed or not tag.startswith(self.prefix) or not tag.endswith(stream):
            return None
        rest = tag[len(self.prefix) : len(tag) - len(stream)]
        return int(rest) if rest.isdigit() else None


# ---------------------------------------------------------------- a plan's pieces
EXCHANGED = Tag(
    "x",
    "forward (a stage that sends an exchange's inputs)",
    "aggregate",
    "per input of exchange i (input_key), the rows of this partition the destination's halo "
    "holds, in its order: one tile per pair of partitions",
)
AGGREGATED = Tag(
    "z",
    "aggregate",
    "forward (the same stage)",
    "per input (input_key) or per node with per-edge values (node_key), the aggregation of "
    "exchange i over this partition's in-edges: own rows",
)
KEPT = Tag(
    "h",
    "aggregate",
    "transpose",
    "the [own | halo] rows exchange i aggregated, kept for a max/min or edge function's "
    "backward (input_key)",
)
CARRIED = Tag(
    "v",
    "forward",
    "forward (a later stage's dense work)",
    "'rows': this partition's rows of node i",
)
STATISTICS = Tag(
    "m",
    "forward (the stage that computes the input)",
    "forward (the stage of moments node i), on every partition; and the driver",
    "this partition's partial moments of moments node i's input (n, mean, M2)",
)
SAVED = Tag(
    "saved",
    "forward",
    "backward (the same stage)",
    "the stage's inputs (saved_key), and the vertex count of each statistics node it "
    "combined (count_key)",
    indexed=False,
)
AGGREGATION_GRADS = Tag(
    "a",
    "backward (forward, at the last stage)",
    "transpose (the same stage)",
    "the gradients of exchange i's aggregations: per input (input_key) or per node with "
    "per-edge values (node_key), own rows",
)
PARTIAL_GRADS = Tag(
    "g",
    "transpose",
    "backward (the stage that sent the input)",
    "per input of exchange i (input_key), the partial gradient of the rows the receiver "
    "owns, in the order it sent them",
)
CARRIED_GRADS = Tag(
    "d",
    "backward",
    "backward (the stage that computed node i)",
    "'rows': the gradient of this partition's rows of node i",
)
STATISTICS_GRADS = Tag(
    "r",
    "backward (the stage of moments node i)",
    "backward (the stage that sent its input), on every partition",
    "this partition's share of the statistics' gradient, as affine coefficients (a, b)",
)
OUTPUT_ROWS = Tag(
    "o",
    "forward",
    "the run's output (predictions, cached constants)",
    "'ids' and 'rows': this partition's vertex ids and its rows of node i",
)
PARAM_GRADS = Tag(
    "grad",
    "backward, transpose",
    "the driver",
    "this partition's share of the gradient of each parameter, by name",
    indexed=False,
)
METRICS = Tag(
    "metrics",
    "forward (the last stage)",
    "the driver",
    "'metrics': one row of METRIC_FIELDS per model",
    indexed=False,
)
TIMING = Tag(
    "timing",
    "every task",
    "the driver",
    "the task's seconds by phase and its dense work's device counts (runtime.timing)",
    indexed=False,
)

# ---------------------------------------------------------------- graph preparation
LAYOUT = Tag(
    "layout",
    "each preparation step",
    "the next step (to itself); the run's output",
    "the partition's layout so far (PartitionLayout.to_arrays)",
    indexed=False,
)
DEGREES = Tag(
    "deg",
    "in-structure step",
    "send-list step (to itself)",
    "'rows': the weighted in-degree of each own vertex, per weighting",
    indexed=False,
)
REQUEST = Tag(
    "request",
    "in-structure step",
    "send-list step (at the source's owner)",
    "'rows': the owner-local rows of the halo the sender needs from the receiver",
    indexed=False,
)
INV_SQRT_DEGREES = Tag(
    "dis",
    "send-list step",
    "normalize step",
    "'rows': deg^-1/2 of the rows the receiver's halo holds, per weighting",
    indexed=False,
)

# ---------------------------------------------------------------- label propagation
LABELS = Tag(
    "labels",
    "each round",
    "the next round (to itself)",
    "'rows': the partition of each own vertex",
    indexed=False,
)
NEIGHBOUR_LABELS = Tag(
    "lf",
    "send step",
    "count step",
    "'rows': the labels of the rows the receiver's halo holds",
    indexed=False,
)
LABEL_COUNTS = Tag(
    "pairs",
    "count step",
    "demand step (at the owner of the row)",
    "'r', 'l', 'c': (row, label, count) of in- and out-neighbours' labels",
    indexed=False,
)
CANDIDATES = Tag(
    "candidates",
    "demand step",
    "move step (to itself)",
    "the vertices that want to move, their target and gain",
    indexed=False,
)
DEMAND = Tag(
    "demand",
    "demand step",
    "move step, on every partition",
    "'d', 's': how many vertices want to move between each pair of partitions, and sizes",
    indexed=False,
)
OWNER = Tag(
    "owner",
    "the last round",
    "the run's output",
    "'ids' and 'rows': each own vertex's partition",
    indexed=False,
)

#: Every kind of message, by tag prefix.
TAGS: dict[str, Tag] = {
    t.prefix: t
    for t in (
        EXCHANGED,
        AGGREGATED,
        KEPT,
        CARRIED,
        STATISTICS,
        SAVED,
        AGGREGATION_GRADS,
        PARTIAL_GRADS,
        CARRIED_GRADS,
        STATISTICS_GRADS,
        OUTPUT_ROWS,
        PARAM_GRADS,
        METRICS,
        TIMING,
        LAYOUT,
        DEGREES,
        REQUEST,
        INV_SQRT_DEGREES,
        LABELS,
        NEIGHBOUR_LABELS,
        LABEL_COUNTS,
        CANDIDATES,
        DEMAND,
        OWNER,
    )
}


# ---------------------------------------------------------------- payload keys
def input_key(u: int) -> str:
    """The payload key of value ``u`` as an input of an exchange."""
    return str(u)


def node_key(a: int) -> str:
    """The payload key of the output (or gradient) of node ``a`` with per-edge values: such
    a node may have several inputs, so it travels under its own id."""
    return f"n{a}"


def saved_key(k: int) -> str:
    """The payload key, in a :data:`SAVED` message, of the stage's input ``k``."""
    return f"s{k}"


def count_key(m: int) -> str:
    """The payload key, in a :data:`SAVED` message, of statistics node ``m``'s vertex count."""
    return f"N{m}"
