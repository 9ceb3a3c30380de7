"""Task-head checkpoints (GPT2ForSequenceClassification, GPT2ForTokenClassification,
GPT2DoubleHeadsModel) with random weights, saved with save_pretrained: from_pretrained loads
their heads, and classify / classify_tokens / choose match transformers."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.errors import ModelFormatError
from hf_models import perturb_biases

SHAPE = dict(n_layer=2, n_embd=48, n_head=4, vocab_size=301, n_positions=40)
LABELS = {0: "negative", 1: "neutral", 2: "positive"}
PAD = 7
TOL = 1e-4


def save(directory: Path, cls_name: str, **extra: Any) -> Any:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    torch.manual_seed(len(cls_name))
    vocab = SHAPE["vocab_size"]
    cfg = transformers.GPT2Config(bos_token_id=vocab - 1, eos_token_id=vocab - 1, **SHAPE, **extra)
    model = perturb_biases(getattr(transformers, cls_name)(cfg).eval())
    model.save_pretrained(directory, safe_serialization=True)
    return model


@pytest.fixture(scope="module")
def heads(tmp_path_factory: pytest.TempPathFactory) -> Callable[[str], tuple[Path, Any]]:
    cache: dict[str, tuple[Path, Any]] = {}
    extras: dict[str, dict[str, Any]] = {
        "GPT2ForSequenceClassification": dict(id2label=LABELS, label2id={v: k for k, v in
                                              LABELS.items()}, pad_token_id=PAD),
        "GPT2ForTokenClassification": dict(id2label=LABELS, label2id={v: k for k, v in
                                           LABELS.items()}),
        "GPT2DoubleHeadsModel": dict(summary_activation="tanh"),
    }

    def make(cls_name: str) -> tuple[Path, Any]:
        if cls_name not in cache:
            directory = tmp_path_factory.mktemp(cls_name)
            cache[cls_name] = (directory, save(directory, cls_name, **extras[cls_name]))
        return cache[cls_name]

    return make


def texts(seed: int, count: int) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    out = [rng.integers(0, SHAPE["vocab_size"], size=int(rng.integers(1, 30)))
           for _ in range(count)]
    out[0] = np.concatenate([out[0], [PAD, PAD]])  # right-padded
    out[1] = np.concatenate([[PAD], out[1]])  # a pad id before the text counts as a token
    return out


def test_sequence_classification(heads: Callable[[str], tuple[Path, Any]]) -> None:
    import torch

    directory, ref = heads("GPT2ForSequenceClassification")
    model = gpt2cpu.Model.from_pretrained(directory, threads=2)
    assert model.head is not None and model.head.kind == "sequence_classification"
    batch = texts(1, 6)
    results = model.classify(batch)
    for ids, result in zip(batch, results, strict=True):
        with torch.no_grad():
            want = ref(torch.as_tensor(ids)[None]).logits[0].numpy()
        np.testing.assert_allclose(result.logits, want, atol=TOL, rtol=0)
        best = int(np.argmax(want))
        assert result.label == LABELS[best] and result.label_id == best
        np.testing.assert_allclose(result.probabilities, torch.softmax(torch.as_tensor(want),
                                   -1).numpy(), atol=1e-6)
    # It is still a language model (the tied LM head): generation and scoring run.
    assert model.forward([1, 2]).shape == (2, SHAPE["vocab_size"])


def test_token_classification(heads: Callable[[str], tuple[Path, Any]]) -> None:
    import torch

    directory, ref = heads("GPT2ForTokenClassification")
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    batch = texts(2, 4)
    for ids, result in zip(batch, model.classify_tokens(batch), strict=True):
        with torch.no_grad():
            want = ref(torch.as_tensor(ids)[None]).logits[0].numpy()
        np.testing.assert_allclose(result.logits, want, atol=TOL, rtol=0)
        assert result.labels == [LABELS[int(i)] for i in want.argmax(axis=1)]
        assert result.probabilities.shape == (ids.size, len(LABELS))


def test_multiple_choice(heads: Callable[[str], tuple[Path, Any]]) -> None:
    import torch

    directory, ref = heads("GPT2DoubleHeadsModel")
    model = gpt2cpu.Model.from_pretrained(directory, threads=2)
    rng = np.random.default_rng(3)
    choices = rng.integers(0, SHAPE["vocab_size"], size=(4, 12))
    cls_index = [11, 5, 8, 11]
    with torch.no_grad():
        out = ref(torch.as_tensor(choices)[None], mc_token_ids=torch.as_tensor(cls_index)[None])
    want = out.mc_logits[0].numpy()
    got = model.choose(list(choices), cls_index=cls_index)
    np.testing.assert_allclose(got.logits, want, atol=TOL, rtol=0)
    assert got.index == int(np.argmax(want))
    np.testing.assert_allclose(got.probabilities.sum(), 1.0)
    # Without cls_index: each choice's last token, transformers' default for equal lengths.
    with torch.no_grad():
        default = ref(torch.as_tensor(choices)[None]).mc_logits[0].numpy()
    np.testing.assert_allclose(model.choose(list(choices)).logits, default, atol=TOL, rtol=0)
    # The LM head is the double-heads model's other head.
    with torch.no_grad():
        lm = ref(torch.as_tensor(choices[0])[None]).logits[0].numpy()
    np.testing.assert_allclose(model.forward(choices[0]), lm, atol=TOL * 10, rtol=0)


def test_wrong_method_and_plain_model(heads: Callable[[str], tuple[Path, Any]],
                                      hf_model_dir: Any) -> None:
    directory, _ = heads("GPT2ForTokenClassification")
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    with pytest.raises(ValueError, match="classify needs a sequence_classification head.*"
                                         "classify_tokens"):
        model.classify([[1]])
    plain_dir, _ = hf_model_dir(**SHAPE)
    plain = gpt2cpu.Model.from_pretrained(plain_dir, threads=1)
    assert plain.head is None
    with pytest.raises(ValueError, match="choose needs a task-head checkpoint"):
        plain.choose([[1], [2]])


def test_bad_head_checkpoints(heads: Callable[[str], tuple[Path, Any]], tmp_path: Path) -> None:
    source, _ = heads("GPT2ForSequenceClassification")
    broken = tmp_path / "broken"
    broken.mkdir()
    (broken / "model.safetensors").symlink_to(source / "model.safetensors")
    config = json.loads((source / "config.json").read_text())
    del config["id2label"]
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match=r"config.json: a classification head needs "
                                               r"'id2label'"):
        gpt2cpu.Model.from_pretrained(broken, threads=1)
    config["id2label"] = {"0": "a", "1": "b"}
    (broken / "config.json").write_text(json.dumps(config))
    with pytest.raises(ModelFormatError, match="id2label has no label for id 2"):
        gpt2cpu.Model.from_pretrained(broken, threads=1)


def test_bad_choices(heads: Callable[[str], tuple[Path, Any]]) -> None:
    directory, _ = heads("GPT2DoubleHeadsModel")
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    with pytest.raises(ValueError, match=r"cls_index\[1\] must be in \[0, 2\)"):
        model.choose([[1, 2], [3, 4]], cls_index=[0, 2])
    with pytest.raises(ValueError, match=r"choices\[1\] holds 0 tokens"):
        model.choose([[1, 2], []])
