"""Checkpoints that transformers loads and runs: gpt2cpu loads them too and computes the same
logits, whatever transformers' defaults put in config.json and however the tensors are laid
out (sharded with stale copies, a stored head beside a tied one, a padded vocabulary)."""

from __future__ import annotations

import json
import shutil
import warnings
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu.errors import ModelFormatError
from gpt2cpu.loading.safetensors import SafetensorsFile
from hf_models import hf_logits, perturb_biases
from model_files import TINY, model_dir

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
safetensors_torch = pytest.importorskip("safetensors.torch")

SHAPE = dict(n_layer=2, n_embd=16, n_head=2, n_positions=32)
IDS = [5, 1, 0, 17, 3, 9, 2]


def save_hf(directory: Path, seed: int = 0, **config: Any) -> Any:
    """A random GPT2LMHeadModel saved with transformers' own defaults for what is not given
    (unlike hf_models.make_hf_model, which names the special ids)."""
    torch.manual_seed(seed)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
    perturb_biases(model)
    model.save_pretrained(directory, safe_serialization=True)
    return model


def load_quietly(directory: Path) -> gpt2cpu.Model:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return gpt2cpu.Model.from_pretrained(directory, threads=1)


def test_transformers_default_special_ids_outside_a_small_vocabulary(tmp_path: Path) -> None:
    """GPT2Config(vocab_size=65) keeps bos/eos 50256: transformers warns and runs it."""
    hf = save_hf(tmp_path, vocab_size=65, **SHAPE)
    assert json.loads((tmp_path / "config.json").read_text())["eos_token_id"] == 50256
    with pytest.warns(UserWarning) as caught:
        model = gpt2cpu.Model.from_pretrained(tmp_path, threads=1)
    # One warning per field of each file that holds it (save_pretrained writes the ids into
    # generation_config.json too), each naming its file.
    files = ["config.json"]
    if (tmp_path / "generation_config.json").exists():
        files.append("generation_config.json")
    expected = sorted(
        f"{tmp_path / file}: field '{name}' = 50256 is outside the vocabulary [0, 65)"
        for file in files for name in ("bos_token_id", "eos_token_id")
        if file == "config.json" or name in json.loads((tmp_path / file).read_text())
    )
    messages = sorted(str(w.message) for w in caught)
    assert len(messages) == len(expected)
    for message, start in zip(messages, expected, strict=True):
        assert message.startswith(start)
    assert model.config.bos_token_id is None and model.config.eos_token_id is None
    assert not model.eos_token_ids()
    np.testing.assert_allclose(model.forward(IDS), hf_logits(hf, IDS), atol=1e-4, rtol=0)
    # No EOS: nothing stops the generation but its length.
    result = model.generate(IDS, max_new_tokens=20, temperature=2.0, seed=0)
    assert result.finish_reason == "length" and len(result.token_ids) == 20


@pytest.mark.parametrize("config", [
    dict(vocab_size=65),
    dict(vocab_size=65, activation_function="gelu"),
    dict(vocab_size=65, activation_function="gelu_python"),
    dict(vocab_size=65, activation_function="gelu_accurate"),
    dict(vocab_size=65, activation_function="gelu_python_tanh"),
    dict(vocab_size=65, activation_function="relu", scale_attn_weights=False),
    dict(vocab_size=65, scale_attn_by_inverse_layer_idx=True, reorder_and_upcast_attn=True),
    dict(vocab_size=65, add_cross_attention=True),  # runs as a decoder without encoder states
    dict(vocab_size=65, n_inner=24, tie_word_embeddings=False, layer_norm_epsilon=1e-3),
    dict(vocab_size=300, bos_token_id=-1, eos_token_id=299),
], ids=str)
def test_random_models_transformers_saves_and_runs_load_and_match(
    tmp_path: Path, config: dict[str, Any]
) -> None:
    hf = save_hf(tmp_path, seed=3, **SHAPE, **config)
    model = load_quietly(tmp_path)
    np.testing.assert_allclose(model.forward(IDS), hf_logits(hf, IDS), atol=1e-4, rtol=0)


def write_shards(directory: Path, shards: dict[str, dict[str, Any]],
                 weight_map: dict[str, str]) -> None:
    for name, tensors in shards.items():
        safetensors_torch.save_file(tensors, directory / name, metadata={"format": "pt"})
    (directory / "model.safetensors.index.json").write_text(
        json.dumps({"metadata": {}, "weight_map": weight_map}))


def test_sharded_tensors_come_from_the_shard_the_index_names(tmp_path: Path) -> None:
    """A stale copy of a tensor in another shard (left by an interrupted re-save) is not
    what transformers loads; the index says which shard holds each tensor."""
    hf = save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    single = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(single)
    single.unlink()
    names = sorted(tensors)
    first, second = names[: len(names) // 2], names[len(names) // 2 :]
    stale = "transformer.h.1.mlp.c_fc.weight"
    assert stale in second
    shard_a = {n: tensors[n] for n in first}
    shard_a[stale] = torch.randn_like(tensors[stale])  # the copy the index does not name
    weight_map = {n: "model-00001-of-00002.safetensors" for n in first}
    weight_map.update({n: "model-00002-of-00002.safetensors" for n in second})
    write_shards(tmp_path, {"model-00001-of-00002.safetensors": shard_a,
                            "model-00002-of-00002.safetensors": {n: tensors[n] for n in second}},
                 weight_map)
    want = hf_logits(hf, IDS)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    np.testing.assert_allclose(hf_logits(reloaded, IDS), want, atol=1e-5, rtol=0)
    model = gpt2cpu.Model.from_pretrained(tmp_path, threads=1)
    np.testing.assert_allclose(model.forward(IDS), want, atol=1e-4, rtol=0)


def test_an_index_naming_a_shard_without_the_tensor_is_refused(tmp_path: Path) -> None:
    save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    single = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(single)
    single.unlink()
    names = sorted(tensors)
    moved = "transformer.wte.weight"
    weight_map = {n: "a.safetensors" for n in names}
    weight_map[moved] = "b.safetensors"
    write_shards(tmp_path, {"a.safetensors": tensors,
                            "b.safetensors": {"other": torch.zeros(2)}}, weight_map)
    index = tmp_path / "model.safetensors.index.json"
    with pytest.raises(ModelFormatError) as info:
        gpt2cpu.Model.from_pretrained(tmp_path)
    assert str(info.value) == (f"{index}: weight_map puts {moved!r} in 'b.safetensors', which "
                               "has no such tensor")


def test_a_tied_config_with_a_distinct_stored_head_computes_as_transformers(
    tmp_path: Path,
) -> None:
    """tie_word_embeddings true, but the file holds an lm_head.weight of its own: transformers
    (5.x) leaves the two untied and computes with the stored head."""
    save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    path = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    assert "lm_head.weight" not in tensors  # tied: saved once
    torch.manual_seed(1)
    tensors["lm_head.weight"] = torch.randn_like(tensors["transformer.wte.weight"])
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert torch.equal(hf.lm_head.weight, tensors["lm_head.weight"])
    with pytest.warns(UserWarning, match="tie_word_embeddings.*differs from 'transformer.wte"):
        model = gpt2cpu.Model.from_pretrained(tmp_path, threads=1)
    np.testing.assert_allclose(model.forward(IDS), hf_logits(hf, IDS), atol=1e-4, rtol=0)

    # A stored head equal to the embedding is the tie itself: no warning. Nor is either
    # read whole into float32 to find out (a vocabulary-sized copy each).
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})

    def whole(*args: object, **kwargs: object) -> None:
        raise AssertionError("a tensor read whole into float32")

    with warnings.catch_warnings(), pytest.MonkeyPatch.context() as patch:
        warnings.simplefilter("error")
        patch.setattr(SafetensorsFile, "to_float32", whole)
        tied = gpt2cpu.Model.from_pretrained(tmp_path, threads=1)
    assert tied.config.tie_word_embeddings

    # One element apart, at the very end: not the same head.
    tensors["lm_head.weight"][-1, -1] += 1.0
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    with pytest.warns(UserWarning, match="tie_word_embeddings"):
        assert not gpt2cpu.Model.from_pretrained(tmp_path, threads=1).config.tie_word_embeddings


@pytest.mark.parametrize("dtype", [torch.float32, torch.float16, torch.bfloat16])
def test_float32_chunks_are_the_tensor_in_pieces(tmp_path: Path, dtype: Any) -> None:
    values = torch.randn(13, 7).to(dtype)
    safetensors_torch.save_file({"t": values}, tmp_path / "t.safetensors")
    with SafetensorsFile(tmp_path / "t.safetensors") as f:
        chunks = [c.copy() for c in f.float32_chunks("t", elements=10)]
        assert [c.size for c in chunks] == [10] * 9 + [1]
        np.testing.assert_array_equal(np.concatenate(chunks), f.to_float32("t").reshape(-1))
    np.testing.assert_array_equal(np.concatenate(chunks), values.float().reshape(-1).numpy())


BUNDLED = Path(gpt2cpu.__file__).parent / "models" / "tiny-shakespeare"


def test_a_vocabulary_padded_past_the_tokenizer_never_samples_an_undecodable_id(
    tmp_path: Path,
) -> None:
    """nanoGPT pads GPT-2's 50257 tokens to 50304: the extra ids have no text, so
    generation must not pick them, however likely the model makes them."""
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copyfile(BUNDLED / name, tmp_path / name)
    tokenizer = gpt2cpu.Tokenizer.from_pretrained(tmp_path)
    words = tokenizer.vocab_size
    config = dict(TINY, vocab_size=words + 47, n_positions=64)
    del config["bos_token_id"], config["eos_token_id"]
    model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, config), threads=1)
    padded = list(range(words, words + 47))
    favoured = {i: 30.0 for i in padded}  # the padding would win every draw
    greedy = model.generate("To be", max_new_tokens=10, temperature=0, logit_bias=favoured)
    sampled = model.generate("To be", max_new_tokens=40, temperature=3.0, seed=0,
                             logit_bias=favoured, ignore_eos=True)
    for result in (greedy, sampled):
        assert result.token_ids and max(result.token_ids) < words
        assert result.text == tokenizer.decode(result.token_ids)
    stream = model.stream("To be", max_new_tokens=40, temperature=3.0, seed=0,
                          logit_bias=favoured, ignore_eos=True)
    streamed = "".join(stream)
    assert streamed == sampled.text


@pytest.mark.parametrize(("generic", "value"), [("num_attention_heads", 4),
                                                ("num_hidden_layers", 1)])
def test_a_size_under_both_names_takes_the_generic_one_as_transformers(
    tmp_path: Path, generic: str, value: int
) -> None:
    """config.json with n_head and num_attention_heads (or n_layer and num_hidden_layers)
    apart: transformers sets the generic name last, so its value is the model's. The head
    count changes no tensor's shape, so nothing else would catch taking the other."""
    save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    config_path = tmp_path / "config.json"
    config = json.loads(config_path.read_text())
    config[generic] = value
    config_path.write_text(json.dumps(config))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        hf = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    assert (hf.config.n_head, hf.config.n_layer) == (
        (value, 2) if generic == "num_attention_heads" else (2, value))
    model = load_quietly(tmp_path)
    np.testing.assert_allclose(model.forward(IDS), hf_logits(hf, IDS), atol=1e-4, rtol=0)


def test_copies_of_a_weight_with_and_without_the_prefix_must_agree(tmp_path: Path) -> None:
    """'transformer.wte.weight' and 'wte.weight' both stored: equal copies load; copies
    that differ are ambiguous and refused, naming both, rather than one taken silently."""
    hf = save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    path = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    tensors["wte.weight"] = tensors["transformer.wte.weight"].clone()
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    np.testing.assert_allclose(load_quietly(tmp_path).forward(IDS), hf_logits(hf, IDS),
                               atol=1e-4, rtol=0)
    tensors["wte.weight"][3, 1] += 1.0
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    with pytest.raises(ModelFormatError) as info:
        load_quietly(tmp_path)
    assert str(info.value) == (f"{path}: tensors 'transformer.wte.weight' and 'wte.weight' are "
                               "two different copies of one weight; remove the one the model "
                               "should not use")


@pytest.mark.parametrize("dtype", ["U16", "U32", "U64", "F8_E4M3", "F8_E5M2"])
def test_an_unused_tensor_of_any_safetensors_dtype_is_ignored(tmp_path: Path, dtype: str) -> None:
    """A quantizer's extra tensor (uint32 scales, an fp8 copy) beside the weights: transformers
    loads the model and ignores it, and so does gpt2cpu; a used weight of such a dtype is
    still refused, naming it."""
    from model_files import header_for, pack, random_tensors

    tensors = random_tensors(TINY)
    data = b"".join(a.tobytes() for a in tensors.values())
    header = header_for(tensors)
    size = {"U16": 2, "U32": 4, "U64": 8}.get(dtype, 1)
    header["transformer.h.0.attn.quant_scale"] = {
        "dtype": dtype, "shape": [3], "data_offsets": [len(data), len(data) + 3 * size]}
    directory = model_dir(tmp_path / "extra", tensors=tensors)
    (directory / "model.safetensors").write_bytes(pack(header, data + bytes(3 * size)))
    reference = model_dir(tmp_path / "plain", tensors=tensors)
    np.testing.assert_array_equal(load_quietly(directory).forward(IDS[:3]),
                                  load_quietly(reference).forward(IDS[:3]))

    header["transformer.h.0.attn.quant_scale"]["shape"] = [2]
    (directory / "model.safetensors").write_bytes(pack(header, data + bytes(3 * size)))
    with pytest.raises(ModelFormatError, match="quant_scale.*holds"):
        load_quietly(directory)

    used = "transformer.ln_f.bias"
    header = header_for(tensors)
    n = TINY["n_embd"]
    begin, _ = header[used]["data_offsets"]
    header[used]["dtype"] = dtype
    header[used]["data_offsets"] = [len(data), len(data) + n * size]
    (directory / "model.safetensors").write_bytes(pack(header, data + bytes(n * size)))
    with pytest.raises(ModelFormatError, match=f"tensor '{used}' has dtype {dtype}; weights"):
        load_quietly(directory)


def test_a_tensor_the_index_leaves_out_is_read_from_its_shard(tmp_path: Path) -> None:
    """transformers reads every tensor of the shards the index names, so one missing from
    weight_map but present in a shard still loads."""
    hf = save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    single = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(single)
    single.unlink()
    names = sorted(tensors)
    weight_map = {n: "a.safetensors" for n in names if n != "transformer.ln_f.bias"}
    write_shards(tmp_path, {"a.safetensors": tensors}, weight_map)
    reloaded = transformers.GPT2LMHeadModel.from_pretrained(tmp_path).eval()
    want = hf_logits(hf, IDS)
    np.testing.assert_allclose(hf_logits(reloaded, IDS), want, atol=1e-5, rtol=0)
    np.testing.assert_allclose(load_quietly(tmp_path).forward(IDS), want, atol=1e-4, rtol=0)


def test_a_stored_head_equal_to_the_embedding_with_nans_is_still_the_tie(tmp_path: Path) -> None:
    save_hf(tmp_path, vocab_size=65, bos_token_id=0, eos_token_id=0, **SHAPE)
    path = tmp_path / "model.safetensors"
    tensors = safetensors_torch.load_file(path)
    tensors["transformer.wte.weight"][4, 2] = float("nan")
    tensors["lm_head.weight"] = tensors["transformer.wte.weight"].clone()
    safetensors_torch.save_file(tensors, path, metadata={"format": "pt"})
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        model = gpt2cpu.Model.from_pretrained(tmp_path, threads=1)
    assert model.config.tie_word_embeddings
