"""Every row of the docs' bad-input table: the input gives exactly the documented error, a
``LotanError`` subclass, never a crash deep in Spark, a hang or a silent wrong answer. The
table is generated from the same cases (``tests/bad_input_cases.table``, tests/test_docs.py
checks the built page)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bad_input_cases import CASES, Case


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_the_documented_error(case: Case, request: Any, tmp_path: Path) -> None:
    spark = request.getfixturevalue("spark") if case.spark else None
    with pytest.raises(case.error) as info:
        case.run(spark, tmp_path)
    assert case.message in str(info.value), str(info.value)


def test_the_docs_page_is_generated_from_the_cases() -> None:
    from tests.bad_input_cases import table

    assert len(CASES) >= 20
    page = (Path(__file__).resolve().parents[1] / "docs" / "errors.md").read_text()
    assert "<!-- lotan:errors -->" in page
    assert all(f"| `{c.name}` |" in table() for c in CASES)
