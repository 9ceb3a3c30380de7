"""Batch-1 decode of two builds in strict turns: two processes, one per build, taking one
124M decode step each in alternation, so that both see the same moments of a noisy machine.

    pip install --no-deps --target /tmp/old <old checkout>
    python benchmarks/ab_decode.py /tmp/old [--threads 2] [--steps 48] [--rounds 4]

Prints each build's median step time (ms) overall and per round; the installed gpt2cpu is
"new".
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import statistics
import sys
import time
from typing import Any


def worker(name: str, path: str | None, mine: Any, theirs: Any, out: Any, args: Any) -> None:
    if path:
        sys.path.insert(0, path)
    import gpt2cpu
    import numpy as np
    from gpt2cpu.bench.random_model import cached_random_model

    model = gpt2cpu.Model.from_pretrained(cached_random_model("124m"), threads=args.threads)
    rng = np.random.default_rng(0)
    times: list[float] = []
    for _ in range(args.rounds):
        seq = model.new_sequence()
        seq.append(rng.integers(0, 50257, 64))
        core = seq._core
        assert core is not None
        for i in range(args.steps):
            mine.wait()
            mine.clear()
            token = np.array([i], dtype=np.int64)
            start = time.perf_counter()
            core.append(token, 1)
            times.append(time.perf_counter() - start)
            theirs.set()
        seq.close()
    rounds = [statistics.median(times[k * args.steps:(k + 1) * args.steps]) * 1e3
              for k in range(args.rounds)]
    out.put((name, statistics.median(times) * 1e3, rounds))


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("old", help="a directory holding the other build's gpt2cpu package")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=48)
    parser.add_argument("--rounds", type=int, default=4)
    args = parser.parse_args()
    ctx = mp.get_context("spawn")
    old_turn, new_turn, out = ctx.Event(), ctx.Event(), ctx.Queue()
    procs = [
        ctx.Process(target=worker, args=("old", args.old, old_turn, new_turn, out, args)),
        ctx.Process(target=worker, args=("new", None, new_turn, old_turn, out, args)),
    ]
    for p in procs:
        p.start()
    old_turn.set()
    results = dict((name, (med, rounds)) for name, med, rounds in (out.get() for _ in procs))
    for p in procs:
        p.join()
    for name in ("old", "new"):
        med, rounds = results[name]
        print(f"{name}: {med:.2f} ms a step (rounds: {', '.join(f'{r:.2f}' for r in rounds)})")
    print(f"new/old: {results['new'][0] / results['old'][0]:.3f}")


if __name__ == "__main__":
    main()
