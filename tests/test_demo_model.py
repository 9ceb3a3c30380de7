"""The bundled demo model, python/gpt2cpu/models/tiny-shakespeare (issue 6).

Checks that the directory is a standard Hugging Face GPT-2 that `transformers` loads unchanged,
that the numbers and sample in its eval.json and model card are what the model really does,
and that gpt2cpu's engine agrees with them. The held-out checks need the training text
(Tiny Shakespeare, not shipped); they look for it in $GPT2CPU_TINYSHAKESPEARE,
/work/shared/data/ and ../shared/data/ next to the repository, and skip when it is absent.
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]
MODEL_DIR = REPO / "python" / "gpt2cpu" / "models" / "tiny-shakespeare"
MAX_DIR_BYTES = 16 * 1024 * 1024
PROMPT = "ROMEO:"
# Lines a speaker's name alone ends with a colon on, as in the corpus ("KING RICHARD II:").
SPEAKER_HEADING = re.compile(r"^[A-Z][A-Za-z' ]*:$", re.MULTILINE)

Logits = Callable[[list[int]], np.ndarray]


def data_file() -> Path | None:
    candidates = [
        os.environ.get("GPT2CPU_TINYSHAKESPEARE", ""),
        "/work/shared/data/tinyshakespeare.txt",
        str(REPO.parent / "shared" / "data" / "tinyshakespeare.txt"),
    ]
    return next((Path(c) for c in candidates if c and Path(c).is_file()), None)


@pytest.fixture(scope="module")
def eval_info() -> dict[str, Any]:
    info: dict[str, Any] = json.loads((MODEL_DIR / "eval.json").read_text())
    return info


@pytest.fixture(scope="module")
def heldout_text(eval_info: dict[str, Any]) -> str:
    path = data_file()
    if path is None:
        pytest.skip("tinyshakespeare.txt not found (set GPT2CPU_TINYSHAKESPEARE to its path)")
    raw = path.read_bytes()
    assert hashlib.sha256(raw).hexdigest() == eval_info["data_sha256"], (
        f"{path} is not the text the demo model was trained and evaluated on"
    )
    text = raw.decode("utf-8")
    heldout = text[eval_info["split_char_index"] :]
    assert eval_info["split_char_index"] == len(text) * 9 // 10  # "the last 10%"
    assert len(heldout) == eval_info["text_chars"]
    return heldout


@pytest.fixture(scope="module")
def hf_model() -> Any:
    pytest.importorskip("torch", reason="the reference is PyTorch")
    transformers = pytest.importorskip("transformers")
    model = transformers.GPT2LMHeadModel.from_pretrained(str(MODEL_DIR))
    return model.eval()


@pytest.fixture(scope="module")
def hf_tokenizer() -> Any:
    transformers = pytest.importorskip("transformers")
    return transformers.GPT2TokenizerFast.from_pretrained(str(MODEL_DIR))


@pytest.fixture(scope="module")
def engine_model() -> Any:
    import gpt2cpu

    try:
        model_class = gpt2cpu.Model
    except ImportError as exc:  # the C++ extension is not built in this checkout
        pytest.skip(f"gpt2cpu's engine is not available: {exc}")
    return model_class.from_pretrained(str(MODEL_DIR))


def card_sample(kind: str) -> tuple[int, str]:
    """(new tokens, text) of the "Greedy" or "Sampled" sample in the model card."""
    card = (MODEL_DIR / "README.md").read_text()
    tokens = re.search(r"(\d+) new tokens", card)
    found = re.search(kind + r" [^\n]*\n(?:[^\n]+\n)*\n```text\n(.*?)\n```", card, re.S)
    assert tokens and found, f"the model card has no {kind.lower()} sample"
    return int(tokens.group(1)), found.group(1)


def sliding_window_nll(logits_of: Logits, tokens: list[int], window: int, stride: int) -> float:
    """The procedure eval.json describes, written afresh from that description."""
    total = 0.0
    begin, prev_end = 0, 0
    while True:
        end = min(begin + window, len(tokens))
        first = max(begin + 1, prev_end)
        logits = np.asarray(logits_of(tokens[begin:end]), dtype=np.float32)
        rows = logits[first - 1 - begin : end - 1 - begin]
        shifted = rows - rows.max(axis=1, keepdims=True)
        log_probs = shifted - np.log(np.exp(shifted).sum(axis=1, keepdims=True))
        picked = log_probs[np.arange(len(rows)), tokens[first:end]]
        total -= float(picked.astype(np.float64).sum())
        if end == len(tokens):
            return total
        prev_end = end
        begin += stride


def torch_logits(model: Any) -> Logits:
    import torch

    def run(ids: list[int]) -> np.ndarray:
        with torch.no_grad():
            logits: np.ndarray = model(input_ids=torch.tensor([ids])).logits[0].float().numpy()
            return logits

    return run


# --------------------------------------------------------------------------- the directory


def test_directory_is_a_small_standard_gpt2_dir(eval_info: dict[str, Any]) -> None:
    names = {p.name for p in MODEL_DIR.iterdir()}
    required = {"config.json", "model.safetensors", "tokenizer.json", "vocab.json", "merges.txt"}
    required |= {"tokenizer_config.json", "eval.json", "README.md"}
    assert required <= names, f"missing: {sorted(required - names)}"
    size = sum(p.stat().st_size for p in MODEL_DIR.iterdir() if p.is_file())
    assert size <= MAX_DIR_BYTES, f"{size / 2**20:.2f} MiB is over the package budget"

    config = json.loads((MODEL_DIR / "config.json").read_text())
    assert config["model_type"] == "gpt2"
    assert config["activation_function"] == "gelu_new"
    assert config["n_embd"] % config["n_head"] == 0
    assert eval_info["window"] == config["n_positions"]
    assert eval_info["stride"] == config["n_positions"] // 2
    assert eval_info["scored_tokens"] == eval_info["tokens"] - 1
    assert eval_info["dtype"] == "float32"
    nats = eval_info["nll_sum"] / eval_info["scored_tokens"]
    assert eval_info["nats_per_token"] == pytest.approx(nats, rel=1e-12)
    assert eval_info["perplexity"] == pytest.approx(math.exp(nats), rel=1e-12)
    bits = eval_info["nll_sum"] / math.log(2) / eval_info["text_chars"]
    assert eval_info["bits_per_char"] == pytest.approx(bits, rel=1e-12)


def test_transformers_loads_it_unchanged(hf_model: Any, hf_tokenizer: Any) -> None:
    config = hf_model.config
    assert len(hf_tokenizer) == config.vocab_size
    assert hf_tokenizer.eos_token == "<|endoftext|>"
    assert hf_tokenizer.eos_token_id == config.eos_token_id
    assert hf_tokenizer.model_max_length == config.n_positions


def test_vocab_and_merges_say_what_tokenizer_json_says(hf_tokenizer: Any) -> None:
    # GPT-2 readers that know only vocab.json + merges.txt must tokenize identically.
    tokenizers = pytest.importorskip("tokenizers")
    from_files = tokenizers.ByteLevelBPETokenizer(
        str(MODEL_DIR / "vocab.json"), str(MODEL_DIR / "merges.txt"), add_prefix_space=False
    )
    text = "ROMEO:\nBut, soft! what light through yonder window breaks?\n\n  Naïve café — 3 ½\t!"
    assert from_files.encode(text).ids == hf_tokenizer.encode(text, add_special_tokens=False)
    assert hf_tokenizer.decode(hf_tokenizer.encode(text)) == text


def test_card_greedy_sample_is_what_transformers_generates(
    hf_model: Any, hf_tokenizer: Any
) -> None:
    import torch

    new_tokens, card_text = card_sample("Greedy")
    ids = hf_tokenizer(PROMPT, return_tensors="pt").input_ids
    with torch.no_grad():
        out = hf_model.generate(
            ids, do_sample=False, max_new_tokens=new_tokens, pad_token_id=hf_tokenizer.eos_token_id
        )
    assert hf_tokenizer.decode(out[0]) == card_text
    assert card_text.count("\n") >= 4, "expected verse lines"


def test_card_sampled_text_reads_like_a_play() -> None:
    # Greedy decoding of a model this small settles into a loop; sampled text is what users
    # see by default, and it should have the corpus's shape: new speakers' headings, verse.
    _, text = card_sample("Sampled")
    assert text.startswith(PROMPT)
    assert SPEAKER_HEADING.search(text[len(PROMPT) :]), text
    assert text.count("\n") >= 6, text


# --------------------------------------------------------------------------- held-out text


def test_heldout_perplexity_reproduces_with_transformers(
    eval_info: dict[str, Any], heldout_text: str, hf_model: Any, hf_tokenizer: Any
) -> None:
    tokens = hf_tokenizer.encode(heldout_text, add_special_tokens=False)
    assert len(tokens) == eval_info["tokens"]
    nll = sliding_window_nll(
        torch_logits(hf_model), tokens, eval_info["window"], eval_info["stride"]
    )
    # Same framework, same weights: only summation order may differ between machines.
    assert nll == pytest.approx(eval_info["nll_sum"], rel=1e-5)


# --------------------------------------------------------------------------- gpt2cpu engine


def test_engine_tokenizes_like_transformers(engine_model: Any, hf_tokenizer: Any) -> None:
    path = data_file()
    text = path.read_text(encoding="utf-8")[-20000:] if path else card_sample("Sampled")[1]
    assert list(engine_model.tokenizer.encode(text)) == hf_tokenizer.encode(
        text, add_special_tokens=False
    )


def test_engine_greedy_output_equals_transformers(engine_model: Any) -> None:
    new_tokens, card_text = card_sample("Greedy")
    out = engine_model.generate(PROMPT, max_new_tokens=new_tokens, temperature=0.0)
    assert PROMPT + out.text == card_text


def test_engine_heldout_perplexity_within_0_1_percent(
    eval_info: dict[str, Any], heldout_text: str, engine_model: Any
) -> None:
    tokens = [int(t) for t in engine_model.tokenizer.encode(heldout_text)]
    assert len(tokens) == eval_info["tokens"]
    nll = sliding_window_nll(engine_model.forward, tokens, eval_info["window"], eval_info["stride"])
    perplexity = math.exp(nll / (len(tokens) - 1))
    assert perplexity == pytest.approx(eval_info["perplexity"], rel=1e-3)
