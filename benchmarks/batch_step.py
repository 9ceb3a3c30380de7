"""The batched step at the 124M shape (random weights), 2 threads by default:

    python benchmarks/batch_step.py [--threads 2] [--rounds 5] [--rss]

- decode: aggregate tokens/s of B sequences stepping together (one step = B tokens) against
  batch-1 decode, each the median of --rounds runs of 32 steps after a 64-token prompt;
- fork: copying a 1024-token sequence's cache against computing it again;
- --rss: resident memory of 64 sequences holding 1024 tokens each (one prompt, forked 63
  times: every cache really written), and one decode step over all 64.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time
from pathlib import Path

import numpy as np


def rss_mib() -> float:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--batches", default="1,4,16,64")
    parser.add_argument("--steps", type=int, default=32)
    parser.add_argument("--rss", action="store_true")
    parser.add_argument("--package", help="import gpt2cpu from here (an older build)")
    args = parser.parse_args()
    if args.package:
        sys.path.insert(0, args.package)
    import gpt2cpu
    from gpt2cpu.bench.random_model import cached_random_model

    model = gpt2cpu.Model.from_pretrained(cached_random_model("124m"), threads=args.threads)
    print(f"gpt2cpu from {Path(gpt2cpu.__file__).parent}, {args.threads} threads")
    rng = np.random.default_rng(0)
    has_step = hasattr(model, "step")

    if not args.rss:
        # The batch sizes take their steps in turn, so that each sees the same moments of
        # a machine whose speed drifts; each round starts fresh sequences.
        batches = [int(b) for b in args.batches.split(",") if has_step or b.strip() == "1"]
        rates: dict[int, list[float]] = {b: [] for b in batches}
        for _ in range(args.rounds):
            seqs = {b: [model.new_sequence() for _ in range(b)] for b in batches}
            for b in batches:
                for s in seqs[b]:
                    s.append(rng.integers(0, 50257, 64))
            spent = dict.fromkeys(batches, 0.0)
            for _ in range(args.steps):
                for b in batches:
                    tokens = [[int(t)] for t in rng.integers(0, 50257, b)]
                    start = time.perf_counter()
                    if b == 1:
                        seqs[b][0].append(tokens[0])
                    else:
                        model.step(seqs[b], tokens)
                    spent[b] += time.perf_counter() - start
            for b in batches:
                rates[b].append(b * args.steps / spent[b])
                for s in seqs[b]:
                    s.close()
        base = statistics.median(rates[1]) if 1 in rates else None
        for b in batches:
            med = statistics.median(rates[b])
            ratio = f", {med / base:.2f}x batch 1" if base else ""
            print(f"decode batch {b:3d}: {med:8.1f} tokens/s aggregate, {med / b:7.1f} per "
                  f"sequence{ratio} (runs: {', '.join(f'{r:.1f}' for r in rates[b])})")
        if has_step:
            seq = model.new_sequence()
            start = time.perf_counter()
            seq.append(rng.integers(0, 50257, 1024))
            prefill = time.perf_counter() - start
            times = []
            for _ in range(5):
                start = time.perf_counter()
                twin = seq.fork()
                times.append(time.perf_counter() - start)
                twin.close()
            print(f"fork of 1024 tokens: {statistics.median(times) * 1e3:.1f} ms "
                  f"(its prefill: {prefill * 1e3:.0f} ms)")
        return

    base = rss_mib()
    seq = model.new_sequence()
    seq.append(rng.integers(0, 50257, 1023))
    family = [seq] + [seq.fork() for _ in range(63)]
    held = rss_mib()
    kv = 64 * 1023 * 12 * 2 * 768 * 4 / 2**20
    print(f"64 sequences x 1023 tokens: RSS {held:.0f} MiB, {held - base:.0f} MiB over the "
          f"loaded model ({kv:.0f} MiB of keys and values)")
    start = time.perf_counter()
    out = model.step(family, [[int(t)] for t in rng.integers(0, 50257, 64)])
    print(f"one decode step of all 64 at position 1023: {time.perf_counter() - start:.2f} s, "
          f"RSS {rss_mib():.0f} MiB; {len(out)} rows of logits")


if __name__ == "__main__":
    main()
