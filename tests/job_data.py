"""Inputs for the dataset-job tests: rows of text (a few bad ones among them), written as
JSONL, CSV or Parquet, and the job's command line."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import gpt2cpu

MODEL = str(gpt2cpu.BUNDLED_MODEL_DIR)  # 256 positions: a long row is easy to make
SPEAKERS = ("ROMEO", "JULIET", "KING HENRY", "PAULINA", "First Citizen", "MERCUTIO")
LONG = "to be or not to be, " * 120  # over 256 tokens


def good_rows(n: int) -> list[dict[str, Any]]:
    return [{"id": f"r{i}", "text": f"{SPEAKERS[i % len(SPEAKERS)]}:\n" + "O " * (i % 5)}
            for i in range(n)]


def rows_with_bad_ones(n: int) -> list[dict[str, Any]]:
    """n good rows, then rows that must become error rows (each named in the comment)."""
    return [
        *good_rows(n),
        {"id": "no-text"},                 # the text column is missing
        {"id": "empty", "text": ""},       # an empty text
        {"id": "long", "text": LONG},      # longer than the context
        {"id": "number", "text": 7},       # not text
    ]


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows), encoding="utf-8")
    return path


def write_csv(path: Path, rows: list[dict[str, Any]]) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as f:
        writer = csv.DictWriter(f, fieldnames=["id", "text"])
        writer.writeheader()
        writer.writerows(rows)
    return path


def write_parquet(path: Path, rows: list[dict[str, Any]]) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)
    return path


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def batch_command(*args: str) -> list[str]:
    return [sys.executable, "-m", "gpt2cpu", "batch", "--model", MODEL, *args]


def batch_env() -> dict[str, str]:
    return {**os.environ, "GPT2CPU_NUM_THREADS": "1", "PYTHONIOENCODING": "utf-8"}


def run_batch(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(batch_command(*args), capture_output=True, text=True,
                          encoding="utf-8", env=batch_env(), timeout=300)
