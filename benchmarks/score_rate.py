"""Model.score over many texts against a 512-token prompt, in GFLOP/s (the batching issue:
scoring runs at >= 90% of a prompt's rate, counting the LM head at every position scoring
needs).

    python benchmarks/score_rate.py [--texts 1000] [--tokens 128] [--rounds 3] [--dtype D]

The prompt and the scoring alternate within each round, so the machine's drift hits both
alike; the figures are medians over the rounds. Flops are counted as `gpt2cpu bench` counts
a prompt's (bench.measure.prompt_flops: the projections and causal attention, 2 flops a
multiply-add); a text of T tokens needs every block at all T positions and the LM head at
the T - 1 positions that predict a next token.
"""

from __future__ import annotations

import argparse
import statistics
import time

import gpt2cpu
import numpy as np
from gpt2cpu.bench.measure import prompt_flops
from gpt2cpu.bench.random_model import cached_random_model
from gpt2cpu.loading.config import GPT2Config


def score_flops(c: GPT2Config, tokens: int) -> float:
    """Multiply-adds (x2) of scoring one text of `tokens` tokens."""
    C, M = c.n_embd, c.mlp_width
    block = 4 * C * C + 2 * C * M
    blocks = c.n_layer * (tokens * block + 2 * C * tokens * (tokens + 1) // 2)
    return 2.0 * (blocks + (tokens - 1) * C * c.vocab_size)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--tokens", type=int, default=128)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtype", default="float32")
    parser.add_argument("--shape", default="124m")
    args = parser.parse_args()

    model = gpt2cpu.Model.from_pretrained(
        cached_random_model(args.shape), threads=args.threads, dtype=args.dtype, tokenizer=False
    )
    config = model.config
    rng = np.random.default_rng(0)
    texts = [rng.integers(0, config.vocab_size, args.tokens).tolist() for _ in range(args.texts)]
    prompt = rng.integers(0, config.vocab_size, 512)
    model.score(texts[:4])  # warm: the first step of a process pays for fresh memory

    prompt_s, score_s = [], []
    for r in range(args.rounds):
        seq = model.new_sequence(512)
        start = time.perf_counter()
        seq.append(prompt)
        prompt_s.append(time.perf_counter() - start)
        seq.close()
        start = time.perf_counter()
        model.score(texts)
        score_s.append(time.perf_counter() - start)
        print(f"round {r + 1}/{args.rounds}: prompt {prompt_s[-1]:.3f} s, "
              f"score {score_s[-1]:.2f} s", flush=True)

    prompt_rate = prompt_flops(config, 512) / statistics.median(prompt_s) / 1e9
    score_rate = args.texts * score_flops(config, args.tokens) / statistics.median(score_s) / 1e9
    print(f"{args.shape} {args.dtype}, {args.threads} threads, medians of {args.rounds} rounds")
    print(f"  prompt of 512 tokens     {prompt_rate:7.1f} GFLOP/s")
    print(f"  score {args.texts} x {args.tokens} tokens  {score_rate:7.1f} GFLOP/s "
          f"({args.texts * args.tokens / statistics.median(score_s):.0f} tokens/s)")
    print(f"  score / prompt           {score_rate / prompt_rate:7.2f}x")


if __name__ == "__main__":
    main()
