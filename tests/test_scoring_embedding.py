"""Model.score, Model.embed and Model.forward(hidden_states=True) against transformers'
GPT2LMHeadModel (log_softmax of its logits, its output_hidden_states) on random-weight
models, to 1e-4; batches of texts of different lengths; bad elements named."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.tasks.embedding import Pooling
from hf_models import SMALL
from text_models import small_text_model_fixture, text_model_dir_fixture  # noqa: F401

TOL = 1e-4


def reference(torch_model: Any, ids: np.ndarray[Any, Any]) -> Any:
    import torch

    with torch.no_grad():
        return torch_model(torch.as_tensor(ids, dtype=torch.int64)[None], output_hidden_states=True)


def ref_logprobs(torch_model: Any, ids: np.ndarray[Any, Any]) -> tuple[Any, Any]:
    import torch

    # The last token is only a target: a text may be one token longer than the context.
    logits = reference(torch_model, ids[:-1]).logits[0]
    logp = torch.log_softmax(logits.double(), dim=-1).numpy()
    targets = ids[1:]
    picked = logp[np.arange(len(targets)), targets]
    return picked, logits.numpy().argmax(axis=1) == targets


@pytest.fixture(scope="module")
def small(hf_model_dir: Any) -> tuple[gpt2cpu.Model, Any]:
    directory, torch_model = hf_model_dir(**SMALL)
    return gpt2cpu.Model.from_pretrained(directory, threads=2), torch_model


def batch(seed: int, count: int, longest: int) -> list[np.ndarray[Any, Any]]:
    rng = np.random.default_rng(seed)
    return [rng.integers(0, SMALL["vocab_size"], size=int(rng.integers(1, longest + 1)))
            for _ in range(count)]


def test_score_matches_log_softmax(small: tuple[gpt2cpu.Model, Any]) -> None:
    model, torch_model = small
    texts = batch(1, 9, SMALL["n_positions"]) + [np.arange(SMALL["n_positions"] + 1) % 1001]
    results = model.score(texts)
    assert len(results) == len(texts)
    for ids, result in zip(texts, results, strict=True):
        assert result.token_ids == ids.tolist()
        assert result.logprobs.shape == (ids.size - 1,)
        if ids.size == 1:
            assert result.total == 0.0 and result.is_greedy
            continue
        want, greedy = ref_logprobs(torch_model, ids)
        np.testing.assert_allclose(result.logprobs, want, atol=TOL, rtol=0)
        assert abs(result.total - want.sum()) <= TOL * ids.size
        assert np.array_equal(result.greedy_tokens, greedy)
        assert result.is_greedy == bool(greedy.all())


def test_score_greedy_flag_on_a_greedy_continuation(small: tuple[gpt2cpu.Model, Any]) -> None:
    """A text the model continues greedily is flagged greedy; one token changed, not."""
    model, _ = small
    ids = [3]
    with model.new_sequence() as seq:
        logits = seq.append(ids)
        for _ in range(8):
            ids.append(int(np.argmax(logits)))
            logits = seq.append([ids[-1]])
    (result,) = model.score([ids])
    assert result.is_greedy
    changed = list(ids)
    changed[-1] = (changed[-1] + 1) % SMALL["vocab_size"]
    assert not model.score([changed])[0].is_greedy


def test_score_prepend_bos(small: tuple[gpt2cpu.Model, Any]) -> None:
    model, torch_model = small
    ids = batch(2, 1, 20)[0]
    bos = SMALL["vocab_size"] - 1  # hf_models sets bos = eos = the last id
    (result,) = model.score([ids], prepend_bos=True)
    assert result.token_ids == ids.tolist() and result.logprobs.shape == (ids.size,)
    want, _ = ref_logprobs(torch_model, np.concatenate([[bos], ids]))
    np.testing.assert_allclose(result.logprobs, want, atol=TOL, rtol=0)


def test_score_is_the_same_alone_and_in_a_batch(small: tuple[gpt2cpu.Model, Any]) -> None:
    """Scoring in a batch gives each text what it gets alone (batches stay under 48 rows
    here: the few-row matrix products sum every row count the same way)."""
    model, _ = small
    texts = batch(3, 6, 8)
    together = model.score(texts)
    for ids, result in zip(texts, together, strict=True):
        assert np.array_equal(model.score([ids])[0].logprobs, result.logprobs)


@pytest.mark.parametrize("layer", [0, 1, -1, 2])
def test_forward_hidden_states_match_transformers(small: tuple[gpt2cpu.Model, Any],
                                                  layer: int) -> None:
    model, torch_model = small
    ids = batch(4, 1, SMALL["n_positions"])[0]
    ours = model.forward(ids, hidden_states=True)
    ref = reference(torch_model, ids)
    assert ours.hidden_states.shape == (SMALL["n_layer"] + 1, ids.size, SMALL["n_embd"])
    np.testing.assert_allclose(ours.hidden_states[layer], ref.hidden_states[layer][0].numpy(),
                               atol=TOL, rtol=0)
    np.testing.assert_allclose(ours.logits, ref.logits[0].numpy(), atol=TOL * 10, rtol=0)


@pytest.mark.parametrize("pooling", ["mean", "last", "none"])
@pytest.mark.parametrize("layer", [0, 1, -1])
def test_embed_matches_transformers(small: tuple[gpt2cpu.Model, Any], pooling: Pooling,
                                    layer: int) -> None:
    model, torch_model = small
    texts = batch(5, 7, 40)
    got = model.embed(texts, pooling=pooling, layer=layer)
    for i, ids in enumerate(texts):
        states = reference(torch_model, ids).hidden_states[layer][0].numpy()
        want = {"mean": states.mean(axis=0), "last": states[-1], "none": states}[pooling]
        np.testing.assert_allclose(got[i], want, atol=TOL, rtol=0)
    if pooling != "none":
        assert isinstance(got, np.ndarray) and got.shape == (len(texts), SMALL["n_embd"])


def test_embed_normalize(small: tuple[gpt2cpu.Model, Any]) -> None:
    model, _ = small
    texts = batch(6, 3, 10)
    plain = model.embed(texts)
    unit = model.embed(texts, normalize=True)
    assert isinstance(plain, np.ndarray) and isinstance(unit, np.ndarray)
    np.testing.assert_allclose(np.linalg.norm(unit, axis=1), 1.0, rtol=1e-5)
    np.testing.assert_allclose(unit * np.linalg.norm(plain, axis=1, keepdims=True), plain,
                               rtol=1e-5, atol=1e-6)


def test_texts_are_encoded(small_text_model: tuple[Path, Any]) -> None:
    directory, _ = small_text_model
    model = gpt2cpu.Model.from_pretrained(directory, threads=1)
    assert model.tokenizer is not None
    text = "def parse(self, args):"
    ids = model.tokenizer.encode(text)
    (by_text,) = model.score([text])
    (by_ids,) = model.score([ids])
    assert by_text.token_ids == ids
    assert np.array_equal(by_text.logprobs, by_ids.logprobs)
    assert np.array_equal(model.embed([text]), model.embed([ids]))


def test_bad_elements_are_named(small: tuple[gpt2cpu.Model, Any]) -> None:
    model, _ = small
    n = SMALL["n_positions"]
    with pytest.raises(ValueError, match="texts must not be empty"):
        model.score([])
    with pytest.raises(ValueError, match=r"texts\[1\] holds 0 tokens"):
        model.score([[1, 2], []])
    with pytest.raises(ValueError, match=r"texts\[2\] holds 66 tokens"):
        model.score([[1], [2], list(range(n + 2))])
    with pytest.raises(ValueError, match=r"texts\[1\] holds 65 tokens"):
        model.embed([[1], list(range(n + 1))])
    with pytest.raises(ValueError, match=r"texts\[0\]\[1\] = 1001 is outside"):
        model.embed([[1, 1001]])
    with pytest.raises(TypeError, match="texts must be a list"):
        model.score("a text")
    with pytest.raises(ValueError, match="texts.*no tokenizer"):
        model.embed([[1], "text"])
    with pytest.raises(ValueError, match="pooling must be"):
        model.embed([[1]], pooling="max")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=r"layer must be an integer in \[-3, 2\]"):
        model.embed([[1]], layer=3)
    with pytest.raises(ValueError, match="hidden_states must be True or False"):
        model.forward([1], hidden_states=1)  # type: ignore[call-overload]
