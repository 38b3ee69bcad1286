"""The exchange plan is its own transpose: the backward exchange is the adjoint of the
forward one, so ``<assemble(forward(H)), G> == <H, reduce(backward(G))>``."""

from __future__ import annotations

import numpy as np
import pytest

from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
    forward_messages,
    reduce_partials,
)
from lotan.graph_engine.layout import NormSpec
from lotan.graph_engine.prepare import prepare_local
from tests.graph_cases import CASES


@pytest.mark.parametrize("parts", [1, 2, 5])
def test_backward_exchange_is_adjoint_of_forward(parts: int) -> None:
    a = CASES["directed_multi"]().arrays()
    layouts = prepare_local(a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, parts, (NormSpec(),))
    rng = np.random.default_rng(0)
    h = {p: rng.standard_normal((lay.num_own, 3)) for p, lay in layouts.items()}
    g = {p: rng.standard_normal((lay.num_own + lay.num_halo, 3)) for p, lay in layouts.items()}

    inbox: dict[int, dict[int, np.ndarray]] = {p: {} for p in layouts}
    for p, lay in layouts.items():
        for q, rows in forward_messages(lay, h[p]):
            inbox[q][p] = rows
    lhs = sum(float((assemble(layouts[p], inbox[p]) * g[p]).sum()) for p in layouts)

    back: dict[int, dict[int, np.ndarray]] = {p: {} for p in layouts}
    for p, lay in layouts.items():
        for q, rows in backward_messages(lay, g[p]):
            back[q][p] = rows
    rhs = sum(float((h[p] * reduce_partials(layouts[p], back[p])).sum()) for p in layouts)
    assert lhs == pytest.approx(rhs, rel=1e-12)
