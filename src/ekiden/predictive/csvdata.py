"""Reading any CSV with a 0/1 target column into a ``Table`` for ``evaluate-csv``."""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from ekiden.errors import Invalid
from ekiden.predictive.model import Table, Value

# "Select" is what a web form stores when the visitor left a drop-down untouched
MISSING_MARKERS = frozenset({"", "select", "na", "n/a", "nan", "null"})
POSITIVE = frozenset({"1", "true", "yes", "y", "won", "converted"})
NEGATIVE = frozenset({"0", "false", "no", "n", "lost"})


@dataclass(frozen=True)
class LabelledTable:
    table: Table
    labels: NDArray[np.int_]
    excluded: list[str]


def read_labelled_csv(
    path: Path, *, target: str, exclude: list[str] | None = None
) -> LabelledTable:
    """Columns except ``target`` and ``exclude`` (a name ending in ``*`` excludes by prefix).
    A column is numeric when every present value parses as a number. Raises Invalid naming
    the problem (unknown target, a target value that is not 0/1)."""
    with path.open(newline="", encoding="utf-8-sig") as handle:
        reader = csv.reader(handle)
        header = next(reader, None)
        if header is None:
            raise Invalid(f"{path}: the file is empty")
        raw = list(reader)
    if target not in header:
        raise Invalid(f"{path}: no column {target!r}; columns: {', '.join(header)}")
    patterns = exclude or []
    dropped = [name for name in header if name != target and _excluded(name, patterns)]
    kept = [i for i, name in enumerate(header) if name != target and name not in dropped]
    at = header.index(target)
    labels: list[int] = []
    for line, row in enumerate(raw, 2):
        value = row[at].strip().lower() if at < len(row) else ""
        if value not in POSITIVE | NEGATIVE:
            raise Invalid(f"{path}: line {line}: {target} is {row[at]!r}, expected 0 or 1")
        labels.append(1 if value in POSITIVE else 0)
    cells = [[_cell(row[i] if i < len(row) else "") for i in kept] for row in raw]
    for column in range(len(kept)):
        if not all(isinstance(r[column], float) or r[column] is None for r in cells):
            for r in cells:
                cell = r[column]
                r[column] = None if cell is None else _text(cell)
    return LabelledTable(
        table=Table([header[i] for i in kept], cells),
        labels=np.asarray(labels, dtype=np.int_),
        excluded=dropped,
    )


def _excluded(name: str, patterns: list[str]) -> bool:
    return any(name.startswith(p[:-1]) if p.endswith("*") else name == p for p in patterns if p)


def _cell(text: str) -> Value:
    value = text.strip()
    if value.lower() in MISSING_MARKERS:
        return None
    try:
        return float(value)
    except ValueError:
        return value


def _text(value: Value) -> str:
    # a number in a text column: keep it as written ("2" not "2.0")
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)
