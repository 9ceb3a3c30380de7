"""Tables on disk, chosen by extension: JSON Lines, CSV or Parquet (through pyarrow).

Readers yield one dict per input row, in file order, without loading the whole file;
writers take rows in order and write them to an open binary file.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import re
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any, BinaryIO

from .seeds import canonical_id

FORMATS = {".jsonl": "jsonl", ".ndjson": "jsonl", ".csv": "csv", ".parquet": "parquet"}


# csv's default of 128 KiB refuses a long document in one field; no field can be longer than
# its file anyway. (The largest a C long takes on every platform.)
CSV_FIELD_LIMIT = 2**31 - 1
# What surrogateescape turns an undecodable byte into: text that is not UTF-8.
_UNDECODED = re.compile("[\udc80-\udcff]")


class BadLine(Exception):
    """A line of a JSONL file that is not a JSON object, or a line that is not UTF-8: the
    row is an error row."""


class ReadError(ValueError):
    """The input cannot be read on (a corrupt Parquet file, a malformed CSV line)."""


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
    """Each row of the table at path as a dict (a bad line as a BadLine); ReadError names
    the file (and line) where it cannot be read on."""
    fmt = table_format(path, "input")
    if fmt == "jsonl":
        yield from _read_jsonl(path)
    elif fmt == "csv":
        yield from _read_csv(path)
    else:
        yield from _read_parquet(path)


def _undecodable(number: int, texts: Iterable[Any]) -> BadLine | None:
    for text in texts:
        found = _UNDECODED.search(text) if isinstance(text, str) else None
        if found:
            return BadLine(f"line {number} is not UTF-8 text (byte "
                           f"0x{ord(found.group()) - 0xDC00:02x} at character {found.start() + 1})")
    return None


def _read_jsonl(path: Path) -> Iterator[dict[str, Any] | BadLine]:
    # utf-8-sig: a leading BOM is no JSON. surrogateescape: a line that is not UTF-8 is one
    # bad row, not the end of the job.
    with open(path, encoding="utf-8-sig", errors="surrogateescape") as f:
        for number, line in enumerate(f, 1):
            if not line.strip():
                continue  # a blank line (often the last) is no row
            bad = _undecodable(number, [line])
            if bad is not None:
                yield bad
                continue
            try:
                value = json.loads(line)
            except json.JSONDecodeError as exc:
                yield BadLine(f"line {number} is not JSON ({exc.msg})")
                continue
            yield value if isinstance(value, dict) else BadLine(
                f"line {number} is not a JSON object"
            )


def _read_csv(path: Path) -> Iterator[dict[str, Any] | BadLine]:
    csv.field_size_limit(max(csv.field_size_limit(), CSV_FIELD_LIMIT))
    # utf-8-sig: Excel's CSV starts with a BOM, which would become part of the first key.
    with open(path, newline="", encoding="utf-8-sig", errors="surrogateescape") as f:
        reader = csv.DictReader(f, restval=None)
        try:
            for record in reader:
                texts = [*record, *record.values()]
                yield _undecodable(reader.line_num, texts) or record
        except csv.Error as exc:
            raise ReadError(f"{path}: line {reader.line_num}: not readable as CSV ({exc})"
                            ) from None


@contextlib.contextmanager
def _parquet_errors(path: Path) -> Iterator[None]:
    import pyarrow as pa

    try:
        yield
    except (pa.ArrowException, OSError) as exc:
        raise ReadError(f"{path}: not a readable Parquet file ({exc})") from None


def _read_parquet(path: Path) -> Iterator[dict[str, Any]]:
    import pyarrow.parquet as pq

    with _parquet_errors(path):
        for batch in pq.ParquetFile(path).iter_batches(batch_size=1024):
            yield from batch.to_pylist()


def scan_records(path: Path, key: str) -> tuple[int, bool]:
    """How many rows read_records yields, and whether any has key (the header's columns
    are every row's); reading errors as read_records gives them, before any work."""
    if table_format(path, "input") == "parquet":
        import pyarrow.parquet as pq

        with _parquet_errors(path), pq.ParquetFile(path) as table:
            return int(table.metadata.num_rows), key in table.schema_arrow.names
    count, found = 0, False
    for record in read_records(path):
        count += 1
        found = found or (isinstance(record, dict) and key in record)
    return count, found


def write_table(fmt: str, rows: Callable[[], Iterable[dict[str, Any]]], out: BinaryIO,
                columns: Mapping[str, str]) -> int:
    """Write rows() (dicts with the keys of columns, in order) as fmt; the count. columns:
    each column's type, the schema of a Parquet file (also one without rows): "string",
    "int64", "float64", "bool", "list<TYPE>", or "id": the type of its values if they are
    all of one Python type, else (Parquet has no column of mixed types) their text as
    canonical_id gives it. A CSV file gets its header even without rows."""
    if fmt == "jsonl":
        n = 0
        for row in rows():
            out.write(dumps(row).encode() + b"\n")
            n += 1
        return n
    if fmt == "csv":
        return _write_csv(rows(), out, list(columns))
    return _write_parquet(rows, out, columns)


def dumps(row: Any) -> str:
    # allow_nan=False: a NaN would make a line other JSON readers reject.
    return json.dumps(row, ensure_ascii=False, allow_nan=False, separators=(",", ":"))


def _write_csv(rows: Iterable[dict[str, Any]], out: BinaryIO, columns: list[str]) -> int:
    text = io.TextIOWrapper(out, encoding="utf-8", newline="")
    writer = csv.DictWriter(text, fieldnames=columns)
    writer.writeheader()
    n = 0
    for row in rows:
        # CSV has no lists: a list or dict cell is its JSON text.
        writer.writerow({k: dumps(v) if isinstance(v, (list, dict)) else v
                         for k, v in row.items()})
        n += 1
    text.flush()
    text.detach()  # the caller owns `out` and closes it
    return n


def _arrow_type(name: str) -> Any:
    import pyarrow as pa

    if name.startswith("list<") and name.endswith(">"):
        return pa.list_(_arrow_type(name[5:-1]))
    return pa.type_for_alias(name)


def _id_type(rows: Callable[[], Iterable[dict[str, Any]]], column: str) -> Any:
    """The Arrow type of an id column, or None where its values are written as text."""
    import pyarrow as pa

    ids = [row[column] for row in rows()]
    if len({type(i) for i in ids}) != 1:
        return None
    try:
        return pa.array(ids).type
    except (pa.ArrowException, OverflowError):
        return None


def _write_parquet(rows: Callable[[], Iterable[dict[str, Any]]], out: BinaryIO,
                   columns: Mapping[str, str]) -> int:
    import pyarrow as pa
    import pyarrow.parquet as pq

    types = {k: _id_type(rows, k) if t == "id" else _arrow_type(t) for k, t in columns.items()}
    as_text = [k for k, t in types.items() if t is None]
    schema = pa.schema([(k, pa.string() if t is None else t) for k, t in types.items()])
    n = 0
    chunk: list[dict[str, Any]] = []
    with pq.ParquetWriter(out, schema) as writer:
        for row in rows():
            chunk.append({**row, **{k: canonical_id(row[k]) for k in as_text}})
            n += 1
            if len(chunk) == 4096:  # row groups of bounded memory
                writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
                chunk = []
        if chunk:
            writer.write_table(pa.Table.from_pylist(chunk, schema=schema))
    return n
