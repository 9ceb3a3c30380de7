"""A job's input rows: the text to work on, the row's id, and why it cannot run if it
cannot (a bad row is reported in the errors file, not fatal)."""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from .formats import BadLine


@dataclass(frozen=True)
class Row:
    """One input row.

    index: its position among the input's rows, from 0: what resumption keys on (ids need
        not be unique).
    id: the id column's value, else index; kept beside the result in the output and the
        input of the row's seed.
    text: the text column's value; None when the row has a problem.
    problem: why the row cannot run (missing column, empty text, ...), else None.
    """

    index: int
    id: Any
    text: str | None
    problem: str | None = None


def _plain(value: Any) -> Any:
    """A numpy scalar (from Parquet through pandas, or Ray) as the Python value."""
    item = getattr(value, "item", None)
    return item() if callable(item) and not isinstance(value, (list, dict, str)) else value


def _missing(value: Any) -> bool:
    return value is None or (isinstance(value, float) and math.isnan(value))


def make_row(index: int, record: dict[str, Any] | BadLine, column: str, id_column: str,
             ids_given: bool) -> Row:
    """The Row of one input record. ids_given: whether the input has an id column (then a
    record without one is a bad row; else ids are row numbers)."""
    if isinstance(record, BadLine):
        return Row(index, index, None, str(record))
    row_id: Any = index
    if ids_given:
        row_id = _plain(record.get(id_column))
        if _missing(row_id):
            return Row(index, index, None, f"no value in the id column {id_column!r}")
    text = _plain(record.get(column))
    if column not in record or _missing(text):
        return Row(index, row_id, None, f"no value in the text column {column!r}")
    if not isinstance(text, str):
        return Row(index, row_id, None,
                   f"the text column {column!r} holds {type(text).__name__}, not text")
    if not text:
        return Row(index, row_id, None, "the text is empty")
    return Row(index, row_id, text)


def rows_of(records: Iterable[dict[str, Any] | BadLine], column: str, id_column: str,
            ids_given: bool) -> Iterator[Row]:
    """Each record as a Row. ids_given: whether the input has the id column (in its header,
    or in any JSONL row: formats.scan_records), decided for the whole input so that a row
    without an id is a bad row wherever it is, never a reason to number every row."""
    for index, record in enumerate(records):
        yield make_row(index, record, column, id_column, ids_given)
