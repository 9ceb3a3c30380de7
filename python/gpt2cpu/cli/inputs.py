"""Reading a file of inputs (one text a line, or JSONL) and writing JSONL, for the
sub-commands that take many texts: generate --prompts-file, score, embed, classify."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from . import CliError
from .common import read_text_argument


def add_file_argument(parser: argparse.ArgumentParser, field: str) -> None:
    parser.add_argument(
        "file", metavar="FILE",
        help=f'one text a line, or JSONL with a "{field}" field on each line; "-": stdin',
    )


def read_texts(path: str, field: str, flag: str = "FILE") -> list[str]:
    """The texts of a file: JSONL when every non-blank line starts with "{" (each an
    object with a string `field`), else one text a line. Blank lines are skipped, so a
    trailing newline adds no empty text. Errors name the file and line."""
    try:
        content = read_text_argument(path) if path == "-" else Path(path).read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{flag} {path}: {exc}") from None
    lines = [(n, line) for n, line in enumerate(content.splitlines(), 1) if line.strip()]
    if not lines:
        raise CliError(f"{flag} {path}: no texts in it")
    if not all(line.lstrip().startswith("{") for _, line in lines):
        return [line for _, line in lines]
    texts = []
    for n, line in lines:
        try:
            value = json.loads(line).get(field)
        except (ValueError, AttributeError):
            raise CliError(f"{path}:{n}: not a JSON object") from None
        if not isinstance(value, str):
            raise CliError(f'{path}:{n}: needs a string "{field}" field')
        texts.append(value)
    return texts


def write_jsonl(records: list[dict[str, Any]]) -> None:
    out = sys.stdout
    for record in records:
        out.write(json.dumps(record, ensure_ascii=False) + "\n")
    out.flush()
