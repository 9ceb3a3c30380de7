"""Encoding throughput of gpt2cpu's tokenizer beside tiktoken and Hugging Face `tokenizers`.

    pytest benchmarks/bench_tokenizer.py
    pytest benchmarks/bench_tokenizer.py --benchmark-timer=time.process_time  # busy machine

All three encode the same ~1 MB of English (tinyshakespeare from ../shared/data when it is
there, else generated prose) with the real GPT-2 vocabulary, single-threaded, in one run.
gpt2cpu is timed with each merge loop (the C++ one, used when the package is built, and the
pure-Python fallback) both "cold", with a new tokenizer each round so that every distinct
word goes through the merge loop as on a first call, and "warm", with its per-word cache
filled as in a long-running process. The references keep no cache between calls. A summary
in MB/s and as ratios to the references is printed at the end.
"""

from __future__ import annotations

import os
import random
import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
os.environ.setdefault("RAYON_NUM_THREADS", "1")

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
from gpt2cpu import Tokenizer  # noqa: E402
from rates import record_rate  # noqa: E402
from tokenizer_corpus import prose  # noqa: E402
from tokenizer_references import (  # noqa: E402
    MERGE_LOOPS,
    gpt2_tokenizer,
    hf_gpt2_fast,
    tiktoken_gpt2,
)

SHAKESPEARE = Path(__file__).resolve().parents[2] / "shared" / "data" / "tinyshakespeare.txt"
CORPUS_BYTES = 1_000_000


def english_corpus() -> str:
    if SHAKESPEARE.is_file():
        return SHAKESPEARE.read_text(encoding="utf-8")
    rng = random.Random(1)
    parts: list[str] = []
    while sum(map(len, parts)) < CORPUS_BYTES:
        parts.append(prose(rng))
    return "".join(parts)


TEXT = english_corpus()
SIZE_MB = len(TEXT.encode("utf-8")) / 1e6
MEDIANS: dict[str, float] = {}


@pytest.fixture(scope="module")
def expected_ids() -> list[int]:
    return list(tiktoken_gpt2().encode_ordinary(TEXT))


@pytest.fixture(scope="module", autouse=True)
def summary(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if not MEDIANS:
        return
    lines = [f"tokenizer encode throughput on {SIZE_MB:.2f} MB, median of the rounds:"]
    for name, seconds in MEDIANS.items():
        ratios = "  ".join(
            f"{other / seconds:.2f}x {ref}"
            for ref in ("tiktoken", "hf-tokenizers")
            if ref != name and (other := MEDIANS.get(ref))
        )
        lines.append(f"  {name:<22} {SIZE_MB / seconds:7.2f} MB/s  {ratios}".rstrip())
    # Teardown output is captured like a test's; this is meant for the terminal.
    capture = request.config.pluginmanager.get_plugin("capturemanager")
    reporter = request.config.pluginmanager.get_plugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("\n" + "\n".join(lines))


def measure(
    benchmark: Any, name: str, encode: Callable[..., list[int]], expected: list[int], **kw: Any
) -> None:
    ids = benchmark.pedantic(encode, iterations=1, **kw)
    assert list(ids) == expected
    median = record_rate(benchmark, "MB/s", SIZE_MB)
    if median is not None:
        MEDIANS[name] = median


def test_tiktoken(benchmark: Any, expected_ids: list[int]) -> None:
    enc = tiktoken_gpt2()
    measure(benchmark, "tiktoken", enc.encode_ordinary, expected_ids, args=(TEXT,), rounds=7)


def test_hf_tokenizers(benchmark: Any, expected_ids: list[int], tmp_path: Path) -> None:
    backend = hf_gpt2_fast(tmp_path).backend_tokenizer

    def encode(text: str) -> list[int]:
        return list(backend.encode(text, add_special_tokens=False).ids)

    measure(benchmark, "hf-tokenizers", encode, expected_ids, args=(TEXT,), rounds=5)


@pytest.fixture(scope="module", params=MERGE_LOOPS)
def merge_loop(request: pytest.FixtureRequest) -> str:
    return str(request.param)


def test_gpt2cpu_cold(benchmark: Any, expected_ids: list[int], merge_loop: str) -> None:
    def fresh() -> tuple[tuple[Tokenizer], dict[str, Any]]:
        return (gpt2_tokenizer(merge_loop),), {}

    def encode(tok: Tokenizer) -> list[int]:
        return tok.encode(TEXT)

    name = f"gpt2cpu {merge_loop} cold"
    measure(benchmark, name, encode, expected_ids, setup=fresh, rounds=5)


def test_gpt2cpu_warm(benchmark: Any, expected_ids: list[int], merge_loop: str) -> None:
    tok = gpt2_tokenizer(merge_loop)
    name = f"gpt2cpu {merge_loop} warm"
    measure(benchmark, name, tok.encode, expected_ids, args=(TEXT,), rounds=7, warmup_rounds=1)
