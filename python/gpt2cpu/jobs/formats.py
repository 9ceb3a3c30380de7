"""Tables on disk, chosen by extension: JSON Lines, CSV or Parquet (through pyarrow).

Readers yield one dict per input row, in file order, without loading the whole file;
writers take rows in order and write them to an open binary file.
"""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any, BinaryIO

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


class BadLine(Exception):
    """A line of a JSONL file that is not a JSON object: the row is an error row."""


def table_format(path: Path, what: str) -> str:
    """The format of path from its extension; ValueError naming the known ones."""
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        known = ", ".join(FORMATS)
        raise ValueError(f"{what} {path}: unknown extension {path.suffix!r} (known: {known})")
    if fmt == "parquet":
        require_pyarrow(path)
    return fmt


def require_pyarrow(path: Path) -> None:
    try:
        import pyarrow  # noqa: F401
    except ImportError:
        raise ValueError(
            f"{path}: Parquet needs pyarrow; pip install 'gpt2cpu[parquet]'"
        ) from None


def read_records(path: Path) -> Iterator[dict[str, Any] | BadLine]:
    """Each row of the table at path as a dict (a bad JSONL line as a BadLine)."""
    fmt = table_format(path, "input")
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "csv":
        # utf-8-sig: Excel's CSV starts with a BOM, which would become part of the first key.
        with open(path, newline="", encoding="utf-8-sig") as f:
            yield from csv.DictReader(f, restval=None)
    else:
        import pyarrow.parquet as pq

        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def _read_jsonl(path: Path) -> Iterator[dict[str, Any] | BadLine]:
    with open(path, encoding="utf-8-sig") as f:  # a leading BOM is no JSON
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue  # a blank line (often the last) is no row
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadLine(f"line {number} is not JSON ({exc.msg})")
                continue
            yield value if isinstance(value, dict) else BadLine(
                f"line {number} is not a JSON object"
            )


def count_records(path: Path) -> int:
    """How many rows read_records yields, counted cheaply (for the progress bar)."""
    fmt = table_format(path, "input")
    if fmt == "parquet":
        import pyarrow.parquet as pq

        return int(pq.ParquetFile(path).metadata.num_rows)
    if fmt == "csv":
        with open(path, newline="", encoding="utf-8-sig") as f:
            return max(0, sum(1 for _ in csv.reader(f)) - 1)
    with open(path, encoding="utf-8-sig") as f:
        return sum(1 for line in f if line.strip())


def write_table(fmt: str, rows: Iterable[dict[str, Any]], out: BinaryIO) -> int:
    """Write rows (dicts, all with the same keys in the same order) as fmt; the count."""
    if fmt == "jsonl":
        n = 0
        for row in rows:
            out.write(dumps(row).encode() + b"\n")
            n += 1
        return n
    if fmt == "csv":
        return _write_csv(rows, out)
    return _write_parquet(rows, out)


def dumps(row: Any) -> str:
    # allow_nan=False: a NaN would make a line other JSON readers reject.
    return json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _write_csv(rows: Iterable[dict[str, Any]], out: BinaryIO) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    writer: csv.DictWriter[str] | None = None
    n = 0
    for row in rows:
        if writer is None:
            writer = csv.DictWriter(text, fieldnames=list(row))
            writer.writeheader()
        # CSV has no lists: a list or dict cell is its JSON text.
        writer.writerow({k: dumps(v) if isinstance(v, (list, dict)) else v
                         for k, v in row.items()})
        n += 1
    text.flush()
    text.detach()  # the caller owns `out` and closes it
    return n


def _write_parquet(rows: Iterable[dict[str, Any]], out: BinaryIO) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    writer: pq.ParquetWriter | None = None
    n = 0
    chunk: list[dict[str, Any]] = []

    def flush() -> None:
        nonlocal writer
        table = pa.Table.from_pylist(chunk)
        if writer is None:
            writer = pq.ParquetWriter(out, table.schema)
        writer.write_table(table.cast(writer.schema))

    for row in rows:
        chunk.append(row)
        n += 1
        if len(chunk) == 4096:  # row groups of bounded memory
            flush()
            chunk = []
    if chunk or writer is None:
        flush()
    assert writer is not None
    writer.close()
    return n
