"""Load on `gpt2cpu serve` (issue 20): staggered streaming clients from one asyncio process.

    python benchmarks/serve_load.py                      # 124M shape, 32 clients, 60 s
    python benchmarks/serve_load.py --kill 0.3 --repeat 2   # clients dropped mid-stream
    python benchmarks/serve_load.py --joiner 8           # a 1,000-token prompt joins 8 streams

For each server setting (--max-batch 32, then 1) it starts `gpt2cpu serve` on a free
loopback port, runs `--clients` clients that arrive `--stagger` seconds apart, each sending
streaming completions of a `max_tokens` drawn from 16-256 (ignore_eos, so every answer must
have exactly that many tokens) until `--duration` seconds have passed; requests in flight
then finish. It reports errors, incomplete answers, aggregate tokens/s (tokens received
within the --duration window over its length, and all tokens over the whole run's wall time,
in which the batched server finishes its last requests at ever smaller batches), p50/p99 time
to first token and between tokens, and this process's CPU time (it shares the cores with the
server). With --kill P, each request is dropped after a random number of chunks with
probability P; the server's RSS after each of `--repeat` identical runs and its /metrics
cancellations are reported. With --joiner N, one server (the first --batches value, at
least N + 1) streams N long completions; after --joiner-baseline seconds of them, a prompt of
--joiner-tokens tokens joins; reported are the N streams' p50/p99 time between tokens in the
window before it joined and while it was read (from its request to its first token), side
by side.
Output: one JSON object per run, then a summary line.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import re
import socket
import subprocess
import sys
import time
from typing import Any

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def percentile(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q / 100 * len(ordered)))]


def rss_bytes(pid: int) -> int:
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024
    return 0


class Server:
    def __init__(self, model: str, threads: int, max_batch: int, extra: list[str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.process = subprocess.Popen(
            [sys.executable, "-m", "gpt2cpu", "serve", "--model", model, "--threads",
             str(threads), "--port", str(self.port), "--max-batch", str(max_batch),
             "--max-queue", "1024", *extra],
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(self.url + "/health", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if self.process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the server did not start")
            time.sleep(0.2)

    def metric(self, name: str) -> float:
        text = httpx.get(self.url + "/metrics", timeout=10).text
        match = re.search(rf"^{re.escape(name)} (\S+)$", text, re.MULTILINE)
        return float(match.group(1)) if match else 0.0

    def close(self) -> None:
        self.process.terminate()
        self.process.wait(30)


async def client(number: int, args: argparse.Namespace, url: str, shape: tuple[int, int],
                 end: float, stats: dict[str, Any]) -> None:
    vocab, context = shape
    rng = random.Random(args.seed * 1000 + number)
    await asyncio.sleep(number * args.stagger)
    async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as http:
        while time.monotonic() < end:
            prompt = [rng.randrange(vocab) for _ in range(rng.randint(8, 64))]
            wanted = min(rng.randint(16, 256), context - len(prompt))  # a small model's context
            kill_after = rng.randint(1, wanted) if rng.random() < args.kill else None
            body = {"prompt": prompt, "max_tokens": wanted, "ignore_eos": True,
                    "stream": True, "temperature": 1.0, "seed": rng.randrange(2**31),
                    "stream_options": {"include_usage": True}}
            sent = time.monotonic()
            last = None
            chunks = in_window = 0
            try:
                async with http.stream("POST", url + "/v1/completions", json=body) as response:
                    if response.status_code != 200:
                        stats["errors"].append(f"HTTP {response.status_code}")
                        await response.aread()
                        continue
                    async for line in response.aiter_lines():
                        if not line.startswith("data: {"):
                            continue
                        data = json.loads(line[6:])
                        now = time.monotonic()
                        if "error" in data:
                            stats["errors"].append(data["error"]["message"])
                            break
                        if data.get("usage"):
                            got = data["usage"]["completion_tokens"]
                            stats["tokens"] += got
                            # A chunk holds one token or more (text held back for a split
                            # character comes with the next): the window's share, pro rata.
                            stats["window_tokens"] += got * in_window / max(chunks, 1)
                            stats["done"] += 1
                            if got != wanted:
                                stats["incomplete"] += 1
                            continue
                        if data["choices"][0]["finish_reason"] is not None:
                            continue
                        chunks += 1
                        if now < end:
                            in_window = chunks
                        if last is None:
                            stats["ttft"].append(now - sent)
                        else:
                            stats["itl"].append(now - last)
                        last = now
                        if kill_after is not None and chunks >= kill_after:
                            stats["killed"] += 1
                            break  # leaving the block closes the connection mid-stream
            except httpx.HTTPError as exc:
                stats["errors"].append(repr(exc))


async def load(args: argparse.Namespace, url: str, shape: tuple[int, int]) -> dict[str, Any]:
    stats: dict[str, Any] = {"errors": [], "tokens": 0, "done": 0, "incomplete": 0,
                             "ttft": [], "itl": [], "killed": 0, "window_tokens": 0}
    cpu = time.process_time()
    started = time.monotonic()
    end = started + args.duration
    await asyncio.gather(*(client(i, args, url, shape, end, stats)
                           for i in range(args.clients)))
    wall = time.monotonic() - started
    return {
        "wall_s": round(wall, 1),
        "requests_completed": stats["done"],
        "requests_killed": stats["killed"],
        "errors": len(stats["errors"]),
        "first_errors": stats["errors"][:3],
        "incomplete": stats["incomplete"],
        "tokens": stats["tokens"],
        "tokens_per_s": round(stats["window_tokens"] / args.duration, 1),  # the window's
        "tokens_per_s_with_drain": round(stats["tokens"] / wall, 1),
        "ttft_p50_s": percentile(stats["ttft"], 50),
        "ttft_p99_s": percentile(stats["ttft"], 99),
        "inter_token_p50_s": percentile(stats["itl"], 50),
        "inter_token_p99_s": percentile(stats["itl"], 99),
        "client_cpu_s": round(time.process_time() - cpu, 1),
    }


async def stream_times(http: httpx.AsyncClient, url: str, body: dict[str, Any],
                       times: list[float], stop: asyncio.Event | None = None) -> None:
    """Streams one completion, appending each chunk's arrival time to times."""
    async with http.stream("POST", url + "/v1/completions", json=body) as response:
        if response.status_code != 200:
            raise RuntimeError(f"HTTP {response.status_code}: {(await response.aread())!r}")
        async for line in response.aiter_lines():
            if line.startswith("data: {") and '"finish_reason":null' in line.replace(" ", ""):
                times.append(time.monotonic())
            if stop is not None and stop.is_set():
                break


async def joiner(args: argparse.Namespace, url: str, shape: tuple[int, int]) -> dict[str, Any]:
    """N streams decode; after a baseline window, a long prompt joins: the streams' time
    between tokens before it and while it is read, side by side."""
    vocab, context = shape
    rng = random.Random(args.seed)
    streams: list[list[float]] = []  # one list of chunk times per request
    stop = asyncio.Event()

    async def streamer() -> None:
        async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as http:
            while not stop.is_set():
                prompt = [rng.randrange(vocab) for _ in range(16)]
                times: list[float] = []
                streams.append(times)
                await stream_times(http, url, {
                    "prompt": prompt, "max_tokens": context - len(prompt), "ignore_eos": True,
                    "stream": True, "temperature": 1.0, "seed": rng.randrange(2**31)},
                    times, stop)

    cpu = time.process_time()
    tasks = [asyncio.create_task(streamer()) for _ in range(args.joiner)]
    while sum(1 for t in streams if t) < args.joiner:  # every stream is decoding
        await asyncio.sleep(0.05)
    await asyncio.sleep(1.0)
    start = time.monotonic()
    await asyncio.sleep(args.joiner_baseline)
    long_prompt = [rng.randrange(vocab) for _ in range(args.joiner_tokens)]
    joined_at = time.monotonic()
    first: list[float] = []
    async with httpx.AsyncClient(timeout=httpx.Timeout(600)) as http:
        await stream_times(http, url, {
            "prompt": long_prompt, "max_tokens": min(16, context - len(long_prompt)),
            "ignore_eos": True, "stream": True}, first)
    read_at = first[0]
    stop.set()
    await asyncio.gather(*tasks)

    def gaps(since: float, until: float) -> list[float]:
        return [b - a for times in streams for a, b in zip(times, times[1:], strict=False)
                if since <= b < until]

    before, during = gaps(start, joined_at), gaps(joined_at, read_at)
    p99_before, p99_during = percentile(before, 99), percentile(during, 99)
    return {
        "streams": args.joiner, "joiner_tokens": args.joiner_tokens,
        "joiner_ttft_s": round(read_at - joined_at, 2),
        "gaps_before": len(before), "gaps_during": len(during),
        "inter_token_p50_before_s": percentile(before, 50),
        "inter_token_p99_before_s": p99_before,
        "inter_token_p50_during_s": percentile(during, 50),
        "inter_token_p99_during_s": p99_during,
        "p99_ratio": None if not p99_before or p99_during is None
        else round(p99_during / p99_before, 2),
        "client_cpu_s": round(time.process_time() - cpu, 1),
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--model", default=None,
                        help="model directory (default: the random 124M model of bench --shape)")
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--clients", type=int, default=32)
    parser.add_argument("--stagger", type=float, default=0.25)
    parser.add_argument("--duration", type=float, default=60.0)
    parser.add_argument("--batches", default="32,1", help="--max-batch values, one run each")
    parser.add_argument("--kill", type=float, default=0.0, help="probability of dropping a "
                        "request mid-stream")
    parser.add_argument("--repeat", type=int, default=1, help="identical runs per server")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--serve-arg", action="append", default=[], metavar="ARG",
                        help="an argument for gpt2cpu serve, e.g. --serve-arg=--prefix-cache "
                        "--serve-arg=0 (repeatable)")
    parser.add_argument("--joiner", type=int, default=0, metavar="N",
                        help="instead: N streams, then a long prompt joins")
    parser.add_argument("--joiner-tokens", type=int, default=1000)
    parser.add_argument("--joiner-baseline", type=float, default=15.0,
                        help="seconds of the streams alone before the prompt joins")
    args = parser.parse_args()
    model = args.model
    if model is None:
        from gpt2cpu.bench.random_model import cached_random_model

        model = str(cached_random_model("124m"))
    with open(os.path.join(model, "config.json")) as f:
        config = json.load(f)
    shape = (int(config["vocab_size"]), int(config["n_positions"]))
    if args.joiner:
        # Room for the streams and the joiner: queued behind them, it would wait for a
        # stream to finish instead of being read beside them.
        batch = max(int(args.batches.split(",")[0]), args.joiner + 1)
        server = Server(model, args.threads, batch, args.serve_arg)
        try:
            print(json.dumps(asyncio.run(joiner(args, server.url, shape))), flush=True)
        finally:
            server.close()
        return 0
    rates: dict[int, float] = {}
    for batch in (int(b) for b in args.batches.split(",")):
        server = Server(model, args.threads, batch, args.serve_arg)
        try:
            for run in range(args.repeat):
                steps = server.metric("gpt2cpu_batch_size_count")
                rows = server.metric("gpt2cpu_batch_size_sum")
                result = asyncio.run(load(args, server.url, shape))
                steps = server.metric("gpt2cpu_batch_size_count") - steps
                result.update({
                    "server_steps": int(steps), "server_mean_batch": round(
                        (server.metric("gpt2cpu_batch_size_sum") - rows) / max(steps, 1), 1),
                    "max_batch": batch, "run": run + 1, "server_rss_mb":
                    round(rss_bytes(server.process.pid) / 2**20, 1),
                    # Finished sequences the prefix cache keeps count in the RSS: this part.
                    "server_kv_mb": round(server.metric("gpt2cpu_kv_cache_bytes") / 2**20, 1),
                    "server_cancelled": server.metric(
                        'gpt2cpu_sequences_total{outcome="cancelled"}'),
                    "server_running_after": server.metric("gpt2cpu_running_sequences"),
                })
                print(json.dumps(result), flush=True)
                rates[batch] = result["tokens_per_s"]
        finally:
            server.close()
    if len(rates) > 1:
        most, least = max(rates), min(rates)  # whichever order they ran in
        print("aggregate tokens/s: " + ", ".join(f"--max-batch {b}: {r}" for b, r in
                                                  rates.items())
              + f"; ratio {rates[most] / max(rates[least], 1e-9):.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
