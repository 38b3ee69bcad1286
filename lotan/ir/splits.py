"""The split a vertex belongs to, as the integer code layouts and arrays carry."""

from __future__ import annotations

__all__ = ["SPLIT_CODES", "SPLIT_NAMES"]

#: Integer codes of the ``split`` column inside arrays and layouts (0: no split).
SPLIT_CODES = {"train": 1, "val": 2, "test": 3}
#: The split name of each code.
SPLIT_NAMES = {code: name for name, code in SPLIT_CODES.items()}
