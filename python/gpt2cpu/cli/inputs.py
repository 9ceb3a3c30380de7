"""Reading a file of inputs (one text a line, or JSONL) and writing JSONL, for the
sub-commands that take many texts: generate --prompts-file, score, embed, classify."""

from __future__ import annotations

import argparse
import json
import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from . import CliError
from .common import read_stdin


def add_file_argument(parser: argparse.ArgumentParser, field: str) -> None:
    parser.add_argument(
        "file", metavar="FILE",
        help=f'one text a line, or JSONL with a "{field}" field on each line; "-": stdin',
    )


@dataclass(frozen=True)
class InputTexts:
    """A file's texts, and for each the line it came from (1-based), for errors."""

    path: str
    texts: list[str]
    lines: list[int]

    def where(self, index: int) -> str:
        return f"{self.path}:{self.lines[index]}"

    def reword(self, message: str, name: str = "texts") -> str:
        """An API error about name[i] (the i-th text) reworded to name its file and line."""
        return re.sub(rf"^{name}\[(\d+)\]",
                      lambda m: self.where(int(m.group(1))), message)


def read_texts(path: str, field: str, flag: str = "FILE") -> InputTexts:
    """The texts of a file: JSONL when every non-blank line starts with "{" (each an
    object with a string `field`), else one text a line. Blank lines are skipped, so a
    trailing newline adds no empty text. Errors name the file and line."""
    try:
        # Bytes, decoded here: text mode's universal newlines would split at a lone "\r".
        # A leading byte order mark (Windows editors write one) is not text: kept, it hid
        # a JSONL file's first "{" and the whole file was scored as plain text.
        content = read_stdin() if path == "-" else Path(path).read_bytes().decode("utf-8-sig")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{flag} {path}: {exc}") from None
    # Lines end at "\n" (or "\r\n") only: str.splitlines also breaks at U+2028, form feeds
    # and other separators, which a JSON string may hold raw (json.dumps(ensure_ascii=False)
    # writes them so) and a text may too.
    split = (line.removesuffix("\r") for line in content.split("\n"))
    lines = [(n, line) for n, line in enumerate(split, 1) if line.strip()]
    if not lines:
        raise CliError(f"{flag} {path}: no texts in it")
    numbers = [n for n, _ in lines]
    if not all(line.lstrip().startswith("{") for _, line in lines):
        return InputTexts(path, [line for _, line in lines], numbers)
    texts = []
    for n, line in lines:
        try:
            value = json.loads(line).get(field)
        except (ValueError, AttributeError):
            raise CliError(
                f"{path}:{n}: not a JSON object (every line starts with '{{', so the file is "
                "read as JSONL)"
            ) from None
        if not isinstance(value, str):
            raise CliError(f'{path}:{n}: needs a string "{field}" field')
        texts.append(value)
    return InputTexts(path, texts, numbers)


def jsonl_line(record: dict[str, Any]) -> str:
    """record as one line of JSON, UTF-8 encodable: a string holding a lone surrogate (a
    JSON input may escape one) is written escaped, as it came, not left to fail the write
    part-way through the output."""
    line = json.dumps(record, ensure_ascii=False)
    try:
        line.encode("utf-8")
    except UnicodeEncodeError:
        line = json.dumps(record)
    return line + "\n"


def write_jsonl(records: list[dict[str, Any]]) -> None:
    out = sys.stdout
    for record in records:
        out.write(jsonl_line(record))
    out.flush()
