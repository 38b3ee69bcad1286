"""The exchange plan is its own transpose: the backward exchange is the adjoint of the
forward one, so ``<assemble(forward(H)), G> == <H, reduce(backward(G))>``."""

from __future__ import annotations

import numpy as np
import pytest

from lotan.engines.local import prepare_local
from lotan.graph_engine.exchange import (
    assemble,
    backward_messages,
    forward_messages,
    reduce_partials,
    to_bfloat16,
    widen,
)
from lotan.ir.norm import NormSpec
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


def test_bfloat16_rounds_to_nearest_even_like_torch() -> None:
    """Every float32 bit pattern class: rounding ties to even, carries into the exponent,
    overflow to inf, signed zeros, subnormals, inf and NaN."""
    import torch

    rng = np.random.default_rng(1)
    special = np.array(
        [0.0, -0.0, 1.0, -1.0, np.inf, -np.inf, 3.4e38, -3.4e38, 1e-40, -1e-40, 1.00390625],
        np.float32,
    )
    ties = (np.arange(0, 1 << 16, 257, dtype=np.uint32) << 16 | 0x8000).view(np.float32)
    x = np.concatenate([rng.standard_normal(10_000).astype(np.float32) * 1e3, special, ties])
    x = x[np.isfinite(x) | np.isinf(x)]
    got = widen(to_bfloat16(x))
    want = torch.from_numpy(x).to(torch.bfloat16).float().numpy()
    np.testing.assert_array_equal(got.view(np.uint32), want.view(np.uint32))
    nan = widen(to_bfloat16(np.array([np.nan, -np.nan], np.float32)))
    assert np.isnan(nan).all()
    small = np.array([[1.5, -2.25]], np.float32)  # representable: exact
    np.testing.assert_array_equal(widen(to_bfloat16(small)), small)
    assert to_bfloat16(small).dtype == np.uint16 and widen(to_bfloat16(small)).shape == (1, 2)


@pytest.mark.parametrize("parts", [1, 3])
def test_a_bfloat16_exchange_assembles_the_rounded_rows(parts: int) -> None:
    """Sent as bfloat16 bits (half the bytes), every row arrives as the float32 value of its
    rounding, own rows included: the assembled block does not depend on the partitioning."""
    a = CASES["directed_multi"]().arrays()
    layouts = prepare_local(a.ids, a.x, a.y, a.split, a.src, a.dst, a.weight, parts, (NormSpec(),))
    rng = np.random.default_rng(0)
    h = {p: rng.standard_normal((lay.num_own, 4)).astype(np.float32) for p, lay in layouts.items()}
    inbox: dict[int, dict[int, np.ndarray]] = {p: {} for p in layouts}
    for p, lay in layouts.items():
        sent = forward_messages(lay, h[p], "bfloat16")
        assert all(rows.dtype == np.uint16 for _, rows in sent)
        for q, rows in sent:
            inbox[q][p] = rows
    for p, lay in layouts.items():
        full = assemble(lay, inbox[p])
        assert full.dtype == np.float32
        np.testing.assert_array_equal(full[: lay.num_own], widen(to_bfloat16(h[p])))
    with pytest.raises(ValueError, match="exchange dtype 'float16'"):
        forward_messages(layouts[0], h[0], "float16")
