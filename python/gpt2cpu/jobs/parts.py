"""Where a job's finished rows go until the job ends: OUTPUT.parts/, a directory of part
files and a manifest, written so that a job killed at any instant loses nothing written.

- A part holds a contiguous run of input rows (results and error rows), as JSON Lines. It is
  written to a temporary file, fsynced, renamed into place and the directory fsynced: it
  exists whole or not at all.
- manifest.jsonl then gets one line naming the part (fsynced): the commit. Its first line
  is the job's identity (input file, task, model, options, seed, kernel set).
- On restart, parts the manifest does not name (a kill between the rename and the manifest
  line: at most one batch) and temporary files are deleted and their rows run again; a torn
  last manifest line is cut off. The rows the manifest names are not run again.
- When every row is done, the parts are merged in input order into OUTPUT and
  OUTPUT.errors.jsonl (each written to a temporary file and renamed) and the directory is
  removed.
- A run holds an exclusive lock (flock on OUTPUT.parts/lock) from `open` to its end: a
  second run on the same OUTPUT is refused before any row runs, rather than deleting the
  first's parts or merging half of them. Files the job did not write are never deleted: a parts
  directory holding any is refused.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, BinaryIO

from .formats import dumps, table_format, write_table
from .tasks import Outcome

MANIFEST = "manifest.jsonl"
LOCK = "lock"
# Every name a job writes in its parts directory; anything else is someone else's.
_JOB_FILE = re.compile(r"(manifest\.jsonl|part-\d{12}-\d{12}\.jsonl)(\.tmp)?|lock")
# The errors file's columns besides the id column.
ERROR_COLUMNS = ("row", "error")


class JobConflict(ValueError):
    """OUTPUT or its parts belong to another job, or to a finished one."""


def parts_dir(output: Path) -> Path:
    return output.with_name(output.name + ".parts")


def errors_path(output: Path) -> Path:
    return output.with_name(output.name + ".errors.jsonl")


def tmp_path(path: Path) -> Path:
    """Where write_atomically writes path before renaming it into place."""
    return path.with_name(path.name + ".tmp")


def _fsync_dir(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write_atomically(path: Path, write: Any) -> Any:
    """write(binary file) into a temporary file beside path, fsync, rename over path."""
    tmp = tmp_path(path)
    try:
        with open(tmp, "wb") as f:
            value = write(f)
            f.flush()
            os.fsync(f.fileno())
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return value


def _lock(directory: Path, output: Path) -> BinaryIO:
    """Make directory if need be and take its lock, held while the returned file is open."""
    while True:
        try:
            directory.mkdir(exist_ok=True)
        except FileExistsError:
            raise JobConflict(f"{directory} is not a directory: gpt2cpu batch keeps "
                              f"{output.name}'s unfinished parts there; move it or choose "
                              "another OUTPUT") from None
        path = directory / LOCK
        try:
            f = open(path, "ab")  # noqa: SIM115 - held open for the whole run
        except FileNotFoundError:  # a run finishing just now removed the directory
            continue
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            f.close()
            raise JobConflict(f"{output}: another gpt2cpu batch run is writing this output "
                              f"(it holds {path}); wait for it to end, or choose another "
                              "OUTPUT") from None
        except OSError as exc:  # a file system without locks (some NFS mounts)
            f.close()
            raise JobConflict(f"{path}: cannot be locked ({exc.strerror}), so a second run "
                              "could not be kept out; write OUTPUT on a local file "
                              "system") from None
        try:
            same = os.path.samestat(os.fstat(f.fileno()), path.stat())
        except FileNotFoundError:
            same = False
        if same:
            return f
        f.close()  # a run that finished removed the file between our open and our lock


@dataclass
class PartStore:
    """The parts of one job's output; `open` it, `write` outcomes, `finish`; `close`
    releases its lock (finish does too)."""

    output: Path
    directory: Path
    lock: BinaryIO | None = None
    done: set[int] = field(default_factory=set)
    # Rows of parts found whole on disk but not in the manifest (deleted): rows that had
    # been written once and are run again.
    orphaned: set[int] = field(default_factory=set)
    counts: dict[str, int] = field(default_factory=lambda: {"ok": 0, "errors": 0, "tokens": 0})

    @classmethod
    def open(cls, output: Path, identity: dict[str, Any], *, overwrite: bool = False) -> PartStore:
        table_format(output, "output")
        directory = parts_dir(output)
        store = cls(output, directory, _lock(directory, output))
        try:
            store._open(identity, overwrite)
        except BaseException:
            store._release()
            raise
        return store

    def _open(self, identity: dict[str, Any], overwrite: bool) -> None:
        names = {p.name for p in self.directory.iterdir()}
        foreign = sorted(n for n in names if not _JOB_FILE.fullmatch(n))
        if foreign:
            raise JobConflict(
                f"{self.directory} holds files gpt2cpu batch did not write "
                f"({', '.join(foreign[:3])}{', ...' if len(foreign) > 3 else ''}); they are "
                "not deleted: move them, or choose another OUTPUT"
            )
        if MANIFEST not in names and self.output.exists() and not overwrite:
            raise JobConflict(
                f"{self.output} exists and no job is in progress there (no job manifest "
                f"in {self.directory.name}/): a finished job's output is not overwritten; "
                "delete it or pass --overwrite"
            )
        try:
            self._load(identity)
        except JobConflict:
            if not overwrite:
                raise
            # Another job's parts. The same job's are kept even with --overwrite, so that
            # rerunning a command that has it resumes rather than starts again.
            self._delete()
            self._load(identity)

    def _delete(self) -> None:
        """Delete the files the job wrote but the lock."""
        for path in self.directory.iterdir():
            if _JOB_FILE.fullmatch(path.name) and path.name != LOCK:
                path.unlink()

    def _release(self) -> None:
        """Remove the lock file and the directory if nothing is left in it (a file someone
        put there meanwhile, or the parts of a job that is not this one, stay), then release
        the lock."""
        with contextlib.suppress(OSError):
            (self.directory / LOCK).unlink()  # a run that opened it will see it is gone
        with contextlib.suppress(OSError):
            self.directory.rmdir()
        self.close()

    def close(self) -> None:
        """Release the lock (the parts stay for a resume)."""
        if self.lock is not None:
            self.lock.close()
            self.lock = None

    def discard_if_empty(self) -> None:
        """Removes the parts directory if it holds no row (only the manifest): a job that
        failed before its first row then leaves nothing that would refuse the corrected
        command as a different job, and loses nothing."""
        if self.done or self.orphaned:
            return
        if all(p.name in (MANIFEST, LOCK) for p in self.directory.iterdir()):
            self._delete()
            self._release()

    def _load(self, identity: dict[str, Any]) -> None:
        # As it reads back: a logit bias's int keys become strings, and -inf (a ban) is
        # kept, which strict JSON (`dumps`) would refuse.
        line = json.dumps({"job": identity}, sort_keys=True, separators=(",", ":"))
        identity = json.loads(line)["job"]
        manifest = self.directory / MANIFEST
        if not manifest.exists():
            write_atomically(manifest, lambda f: f.write(line.encode() + b"\n"))
        entries = self._entries(manifest)
        first = entries[0].get("job") if entries else None
        if first != identity:
            raise JobConflict(self._conflict(first, identity))
        named = set()
        for entry in entries[1:]:
            named.add(entry["part"])
            self._count(entry)
            self.done.update(range(entry["first"], entry["last"] + 1))
        for path in self.directory.iterdir():
            if path.name in (MANIFEST, LOCK):
                continue
            if path.name not in named:
                if path.suffix == ".jsonl":
                    self.orphaned.update(_part_rows(path))
                path.unlink()

    def _conflict(self, found: Any, identity: dict[str, Any]) -> str:
        if not isinstance(found, dict):
            return f"{self.directory / MANIFEST} is not a gpt2cpu job manifest"
        differ = sorted(k for k in set(found) | set(identity) if found.get(k) != identity.get(k))
        return (
            f"{self.directory} holds the parts of a different job (it differs in: "
            f"{', '.join(differ)}); rerun with the same input and options, or pass --overwrite "
            "to start again"
        )

    @staticmethod
    def _entries(manifest: Path) -> list[dict[str, Any]]:
        data = manifest.read_bytes()
        keep = data.rfind(b"\n") + 1
        if keep < len(data):  # a line torn by a kill mid-append: never committed
            with open(manifest, "r+b") as f:
                f.truncate(keep)
                os.fsync(f.fileno())
        return [json.loads(line) for line in data[:keep].splitlines() if line.strip()]

    def _count(self, entry: dict[str, Any]) -> None:
        for key in self.counts:
            self.counts[key] += int(entry[key])

    def write(self, outcomes: Sequence[Outcome]) -> None:
        """Commit outcomes (any order of rows not yet done), as one part per contiguous run
        of row indices, so that parts can be merged by concatenation."""
        ordered = sorted(outcomes, key=lambda o: o.index)
        run: list[Outcome] = []
        for outcome in ordered:
            if outcome.index in self.done:
                raise ValueError(f"row {outcome.index} was already written")
            if run and outcome.index != run[-1].index + 1:
                self._write_part(run)
                run = []
            run.append(outcome)
        if run:
            self._write_part(run)

    def _write_part(self, run: list[Outcome]) -> None:
        first, last = run[0].index, run[-1].index
        name = f"part-{first:012d}-{last:012d}.jsonl"
        lines = b"".join(dumps(_record(o)).encode() + b"\n" for o in run)
        write_atomically(self.directory / name, lambda f: f.write(lines))
        entry = {"part": name, "first": first, "last": last,
                 "ok": sum(o.error is None for o in run),
                 "errors": sum(o.error is not None for o in run),
                 "tokens": sum(o.tokens for o in run)}
        with open(self.directory / MANIFEST, "ab") as f:
            f.write(dumps(entry).encode() + b"\n")
            f.flush()
            os.fsync(f.fileno())
        self._count(entry)
        self.done.update(range(first, last + 1))

    def _records(self) -> Iterator[dict[str, Any]]:
        entries = self._entries(self.directory / MANIFEST)[1:]
        for entry in sorted(entries, key=lambda e: int(e["first"])):
            with open(self.directory / entry["part"], encoding="utf-8") as f:
                for line in f:
                    yield json.loads(line)

    def finish(self, id_column: str, fields: dict[str, str]) -> None:
        """Merge the parts into OUTPUT and its errors file; remove the parts. fields: the
        result's columns and their types (formats.write_table's)."""
        fmt = table_format(self.output, "output")

        def results() -> Iterator[dict[str, Any]]:
            for record in self._records():
                if record.get("error") is None:
                    yield {id_column: record["id"], **{k: record["result"][k] for k in fields}}

        def errors() -> Iterator[dict[str, Any]]:
            for record in self._records():
                if record.get("error") is not None:
                    yield {"row": record["row"], id_column: record["id"], "error": record["error"]}

        write_atomically(self.output, lambda f: write_table(
            fmt, results, f, {id_column: "id", **fields}))
        write_atomically(errors_path(self.output), lambda f: write_table(
            "jsonl", errors, f, {"row": "int64", id_column: "id", "error": "string"}))
        self._delete()
        self._release()
        with contextlib.suppress(OSError):
            _fsync_dir(self.output.parent)


def _record(outcome: Outcome) -> dict[str, Any]:
    if outcome.error is not None:
        return {"row": outcome.index, "id": outcome.id, "error": outcome.error}
    return {"row": outcome.index, "id": outcome.id, "result": outcome.result}


def _part_rows(path: Path) -> list[int]:
    rows = []
    with open(path, encoding="utf-8") as f:
        for line in f:
            with contextlib.suppress(ValueError, KeyError):
                rows.append(int(json.loads(line)["row"]))
    return rows
