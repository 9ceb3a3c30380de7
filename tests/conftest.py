from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # tests' own helpers: hf_models, reference


@pytest.fixture(scope="session")
def hf_model_dir(tmp_path_factory: pytest.TempPathFactory) -> Callable[..., tuple[Path, Any]]:
    """make(**shape) -> (directory, torch model): a random-weight HF GPT-2 saved once per
    session for each distinct set of arguments (see hf_models.make_hf_model)."""
    pytest.importorskip("torch", reason="the Hugging Face reference needs torch")
    pytest.importorskip("transformers", reason="the Hugging Face reference needs transformers")
    from hf_models import make_hf_model

    cache: dict[tuple[tuple[str, Any], ...], tuple[Path, Any]] = {}

    def make(**kwargs: Any) -> tuple[Path, Any]:
        key = tuple(sorted(kwargs.items()))
        if key not in cache:
            directory = tmp_path_factory.mktemp("hf_model")
            cache[key] = (directory, make_hf_model(directory, **kwargs))
        return cache[key]

    return make


@pytest.fixture(scope="session")
def heldout() -> tuple[Any, str, dict[str, float]]:
    """(the bundled model in float32, its held-out text, {"float32": its perplexity}): the
    baseline the lower precisions of weights and of the KV cache are held to."""
    import json

    from gpt2cpu import BUNDLED_MODEL_DIR, Model
    from gpt2cpu.tasks.perplexity import perplexity
    from test_demo_model import data_file

    path = data_file()
    if path is None:
        pytest.skip("tinyshakespeare.txt not found (set GPT2CPU_TINYSHAKESPEARE to its path)")
    info = json.loads((BUNDLED_MODEL_DIR / "eval.json").read_text())
    text = path.read_text(encoding="utf-8")[info["split_char_index"] :]
    model = Model.from_pretrained(BUNDLED_MODEL_DIR)
    return model, text, {"float32": perplexity(model, text).perplexity}


ALL_ISAS = ["generic", "avx2", "avx512", "neon"]


@pytest.fixture(params=ALL_ISAS)
def isa(request: pytest.FixtureRequest) -> Iterator[str]:
    """Run the test once per kernel set this CPU has (every set gpt2cpu knows is listed, so
    a new one is tested wherever the CPU runs it); the portable one always."""
    from gpt2cpu import _core

    name = request.param
    if name not in _core.testing.available_isas():
        pytest.skip(f"this CPU cannot run the {name} kernels")
    previous = _core.testing.isa()
    _core.testing.set_isa(name)
    try:
        yield name
    finally:
        _core.testing.set_isa(previous)
