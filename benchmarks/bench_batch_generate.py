"""Batched generation through `Model.generate` at the 124M shape (random weights):

    python benchmarks/bench_batch_generate.py [--threads 2] [--dtype float32,int8]
        [--kv-dtype float32,bfloat16] [--prompts 16] [--new-tokens 128] [--rounds 3]

- gpt2cpu: greedy generation of 16 random 16-token prompts, 128 new tokens each, as one
  `model.generate(prompts)` call, against the same prompts generated one at a time (batch 1);
  aggregate tokens/s = new tokens of all prompts / wall time (prefill included, as a user
  sees it). For each --dtype and --kv-dtype (the KV cache's), side by side.
- CTranslate2 (if installed; `pip install ctranslate2`): its converter run on the same random
  checkpoint, `Generator.generate_batch` on the same prompts (greedy, the same token counts,
  end token disabled so that both produce every token). Skipped with the reason otherwise.

Rounds alternate the engines so that each sees the same moments of a drifting machine.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np


def timed(run: Callable[[], int]) -> float:
    """tokens/s of one call of run, which returns the tokens it produced."""
    started = time.perf_counter()
    tokens = run()
    return tokens / (time.perf_counter() - started)


def variant(dtype: str, kv_dtype: str) -> str:
    """How the results name a dtype and KV cache type."""
    return dtype if kv_dtype == "float32" else f"{dtype}+{kv_dtype}-kv"


def gpt2cpu_runs(directory: Path, dtype: str, kv_dtype: str, threads: int,
                 prompts: list[list[int]], new: int) -> dict[str, Callable[[], int]]:
    import gpt2cpu
    from gpt2cpu.generation.loop import GenerationResult

    model = gpt2cpu.Model.from_pretrained(directory, threads=threads, dtype=dtype,
                                          kv_dtype=kv_dtype)
    options: dict[str, Any] = dict(max_new_tokens=new, temperature=0.0, ignore_eos=True)

    def batch() -> int:
        results = model.generate(prompts, **options)
        assert isinstance(results, list)
        return sum(len(r.token_ids) for r in results)

    def one_by_one() -> int:
        total = 0
        for p in prompts:
            result = model.generate(p, **options)
            assert isinstance(result, GenerationResult)
            total += len(result.token_ids)
        return total

    name = variant(dtype, kv_dtype)
    return {f"gpt2cpu {name} batch {len(prompts)}": batch, f"gpt2cpu {name} batch 1": one_by_one}


def ctranslate2_run(directory: Path, threads: int, prompts: list[list[int]],
                    new: int) -> tuple[dict[str, Callable[[], int]], str | None]:
    try:
        import ctranslate2
        from ctranslate2.converters import TransformersConverter
    except ImportError as exc:
        return {}, f"CTranslate2 skipped: {exc} (pip install ctranslate2)"
    work = Path(tempfile.mkdtemp(prefix="ct2-"))
    out = work / "model"
    try:
        TransformersConverter(str(_with_tokenizer(directory, work))).convert(
            str(out), quantization=None)
    except Exception as exc:  # the converter needs transformers and torch
        return {}, f"CTranslate2 skipped: its converter failed: {exc}"
    generator = ctranslate2.Generator(str(out), device="cpu", intra_threads=threads)
    # generate_batch takes token strings: the converted model's vocabulary names each id.
    vocab = _vocabulary(out)
    tokens = [[vocab[i] for i in p] for p in prompts]

    def batch() -> int:
        results = generator.generate_batch(
            tokens, max_length=new, sampling_topk=1, include_prompt_in_result=False,
            end_token=[], beam_size=1,
        )
        return sum(len(r.sequences_ids[0]) for r in results)

    return {f"ctranslate2 generate_batch {len(prompts)}": batch}, None


def _with_tokenizer(directory: Path, work: Path) -> Path:
    """The random checkpoint beside a stand-in GPT-2 tokenizer (one made-up token a
    vocabulary id, no merges): CTranslate2's converter wants a tokenizer to name the
    vocabulary, and the random checkpoint has none. The benchmark feeds token ids."""
    import json

    from gpt2cpu.loading.config import GPT2Config

    here = work / "checkpoint"
    here.mkdir()
    for item in directory.iterdir():
        (here / item.name).symlink_to(item)
    size = GPT2Config.from_file(directory / "config.json").vocab_size
    # The last id is GPT-2's <|endoftext|>, which the tokenizer would add otherwise.
    vocab = {f"t{i}": i for i in range(size - 1)} | {"<|endoftext|>": size - 1}
    (here / "vocab.json").write_text(json.dumps(vocab), "utf-8")
    (here / "merges.txt").write_text("#version: 0.2\n", "utf-8")
    return here


def _vocabulary(model_dir: Path) -> list[str]:
    import json

    for name in ("vocabulary.json", "vocabulary.txt"):
        path = model_dir / name
        if path.is_file():
            if name.endswith(".json"):
                return list(json.loads(path.read_text("utf-8")))
            return path.read_text("utf-8").splitlines()
    raise FileNotFoundError(f"no vocabulary in {model_dir}")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32,int8")
    parser.add_argument("--kv-dtype", default="float32")
    parser.add_argument("--prompts", type=int, default=16)
    parser.add_argument("--prompt-tokens", type=int, default=16)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--shape", default="124m")
    args = parser.parse_args()

    from gpt2cpu.bench.random_model import cached_random_model

    directory = Path(cached_random_model(args.shape))
    rng = np.random.default_rng(0)
    prompts = [[int(t) for t in rng.integers(0, 50257, args.prompt_tokens)]
               for _ in range(args.prompts)]
    variants = [(d, kv) for d in args.dtype.split(",") for kv in args.kv_dtype.split(",")]
    runs: dict[str, Callable[[], int]] = {}
    for dtype, kv_dtype in variants:
        runs.update(gpt2cpu_runs(directory, dtype, kv_dtype, args.threads, prompts,
                                 args.new_tokens))
    ct2, skipped = ctranslate2_run(directory, args.threads, prompts, args.new_tokens)
    runs.update(ct2)
    rates: dict[str, list[float]] = {name: [] for name in runs}
    for _ in range(args.rounds):
        for name, run in runs.items():
            rates[name].append(timed(run))
    print(f"{args.prompts} prompts of {args.prompt_tokens} tokens, {args.new_tokens} new "
          f"tokens each, greedy, {args.threads} threads, random {args.shape}; medians of "
          f"{args.rounds}")
    medians = {name: statistics.median(r) for name, r in rates.items()}
    for name, med in medians.items():
        print(f"  {name:<36} {med:8.1f} tokens/s (runs: "
              f"{', '.join(f'{r:.1f}' for r in rates[name])})")
    for dtype, kv_dtype in variants:
        name = variant(dtype, kv_dtype)
        base = medians[f"gpt2cpu {name} batch 1"]
        batch = medians[f"gpt2cpu {name} batch {args.prompts}"]
        line = f"  {name}: batch {args.prompts} / batch 1 = {batch / base:.2f}x"
        if ct2:
            theirs = medians[f"ctranslate2 generate_batch {args.prompts}"]
            line += f"; / ctranslate2 = {batch / theirs:.2f}x"
        print(line)
    if skipped:
        print(skipped)


if __name__ == "__main__":
    main()
