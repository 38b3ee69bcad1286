"""Every row of the README's bad-input table: the input gives exactly the documented error,
a ``LotanError`` subclass, never a crash deep in Spark, a hang or a silent wrong answer."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from tests.bad_input_cases import CASES, Case

README = Path(__file__).resolve().parents[1] / "README.md"


def readme_table() -> str:
    """The table as the README shows it (regenerate with ``python -m tests.test_bad_input``)."""
    lines = ["| case | input | error | message (excerpt) |", "|---|---|---|---|"]
    for c in CASES:
        error = "`lotan` exits 2" if c.error.__name__ == "CliFailed" else f"`{c.error.__name__}`"
        message = c.message.replace("|", "\\|")
        lines.append(f"| `{c.name}` | {c.what} | {error} | {message} |")
    return "\n".join(lines)


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_bad_input_gives_the_documented_error(case: Case, request: Any, tmp_path: Path) -> None:
    spark = request.getfixturevalue("spark") if case.spark else None
    with pytest.raises(case.error) as info:
        case.run(spark, tmp_path)
    assert case.message in str(info.value), str(info.value)


def test_the_readme_lists_every_case() -> None:
    assert len(CASES) >= 20
    assert readme_table() in README.read_text(), "README's bad-input table is out of date"


if __name__ == "__main__":
    print(readme_table())
