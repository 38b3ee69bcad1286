"""How an option is declared (:func:`setting`), and the checks and vocabularies the option
objects share."""

from __future__ import annotations

import re
from dataclasses import Field, dataclass, field, fields
from typing import Any

from lotan.errors import LotanError

__all__ = [
    "DEFAULT_EPOCHS",
    "DEFAULT_LR",
    "ENGINES",
    "MONITORS",
    "PARTITIONERS",
    "Setting",
    "check_partitioner",
    "declared",
    "parse_bytes",
    "positive_int",
    "setting",
]

#: Kipf & Welling's GCN protocol: 200 epochs of Adam at lr 0.01.
DEFAULT_EPOCHS = 200
DEFAULT_LR = 0.01
#: Metrics early stopping and ``best`` can watch: accuracies (higher is better) and the
#: training loss (lower is better).
MONITORS = ("val_acc", "train_acc", "test_acc", "loss")
#: ``engine="auto"`` picks one of the other two (:func:`lotan.engines.choice.choose_engine`).
ENGINES = ("auto", "spark", "local")
#: Which partition owns each vertex: a hash of its id, or balanced label propagation
#: (:mod:`lotan.runtime.label_propagation`).
PARTITIONERS = ("hash", "label_propagation")


@dataclass(frozen=True)
class Setting:
    """How one option field is declared (the metadata of a :func:`setting` field).

    Attributes
    ----------
    keyword : the name ``lotan.fit`` (and every face) takes it under.
    doc : one line for the docs, ``--help`` and the estimator's ``explainParams``.
    python_only : why only the Python API takes it (e.g. a live SparkSession), else None.
    """

    keyword: str
    doc: str
    python_only: str | None = None


def setting(default: Any, doc: str, *, keyword: str = "", python_only: str | None = None) -> Any:
    """A field of an option object with its declaration (see :class:`Setting`); the keyword
    defaults to the field's name."""
    return field(default=default, metadata={"lotan": Setting(keyword, doc, python_only)})


def declared(cls: type) -> list[tuple[str, Setting, Field[Any]]]:
    """``(keyword, declaration, field)`` of every declared field of option class ``cls``."""
    out = []
    for f in fields(cls):
        decl = f.metadata.get("lotan")
        if decl is not None:
            out.append((decl.keyword or f.name, decl, f))
    return out


def positive_int(name: str, v: Any, *, none: bool = False) -> None:
    if none and v is None:
        return
    if isinstance(v, bool) or not isinstance(v, int) or v < 1:
        what = "a positive integer or None" if none else "a positive integer"
        raise LotanError(f"{name} must be {what}, found {v!r}")


def check_partitioner(name: str) -> str:
    if name not in PARTITIONERS:
        raise LotanError(
            f"partitioner={name!r} is not one of {list(PARTITIONERS)}: 'hash' assigns "
            "vertices by a hash of their id, 'label_propagation' keeps neighbours together"
        )
    return name


def parse_bytes(value: int | str | None, what: str = "memory_budget") -> int | None:
    """``4g``, ``512m``, ``1.5GiB``, an integer number of bytes, or ``None`` (no limit);
    ``what`` names the setting in the error."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([kmgt]?)(i?b)?\s*", str(value).lower())
    if not m or isinstance(value, bool):
        raise LotanError(f"{what} must be bytes or a size like '4g' or '512m', found {value!r}")
    scale = {"": 1, "k": 2**10, "m": 2**20, "g": 2**30, "t": 2**40}[m.group(2)]
    out = int(float(m.group(1)) * scale)
    if out <= 0:
        raise LotanError(f"{what} must be positive, found {value!r}")
    return out
