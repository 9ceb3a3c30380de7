"""Counters, gauges and histograms for `GET /metrics`, in Prometheus' text format, kept
without a client library (the engine thread and the HTTP side both write them)."""

from __future__ import annotations

import bisect
import threading
from collections import defaultdict

_LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128)


class _Histogram:
    def __init__(self, buckets: tuple[float, ...]) -> None:
        self.buckets = buckets
        self.counts = [0] * (len(buckets) + 1)
        self.sum = 0.0
        self.count = 0

    def observe(self, value: float) -> None:
        self.counts[bisect.bisect_left(self.buckets, value)] += 1
        self.sum += value
        self.count += 1

    def lines(self, name: str) -> list[str]:
        out, running = [], 0
        for bound, count in zip((*self.buckets, float("inf")), self.counts, strict=True):
            running += count
            le = "+Inf" if bound == float("inf") else repr(float(bound))
            out.append(f'{name}_bucket{{le="{le}"}} {running}')
        out += [f"{name}_sum {self.sum!r}", f"{name}_count {self.count}"]
        return out


class Metrics:
    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests: defaultdict[tuple[str, str], int] = defaultdict(int)  # (endpoint, status)
        self.finished: defaultdict[str, int] = defaultdict(int)  # by outcome
        self.prompt_tokens = 0
        self.cached_tokens = 0
        self.generated_tokens = 0
        self.queue_length = 0
        self.running = 0
        self.kv_bytes = 0
        self.kv_budget = 0
        self.ttft = _Histogram(_LATENCY_BUCKETS)
        self.inter_token = _Histogram(_LATENCY_BUCKETS)
        self.batch_size = _Histogram(_BATCH_BUCKETS)

    def request(self, endpoint: str, status: int) -> None:
        with self._lock:
            self.requests[(endpoint, str(status))] += 1

    def outcome(self, outcome: str) -> None:
        """A choice left the engine: finished, cancelled or failed."""
        with self._lock:
            self.finished[outcome] += 1

    def tokens(self, prompt: int = 0, cached: int = 0, generated: int = 0) -> None:
        with self._lock:
            self.prompt_tokens += prompt
            self.cached_tokens += cached
            self.generated_tokens += generated

    def step(self, batch: int) -> None:
        with self._lock:
            self.batch_size.observe(batch)

    def gauges(self, queue: int, running: int, kv_bytes: int) -> None:
        with self._lock:
            self.queue_length, self.running, self.kv_bytes = queue, running, kv_bytes

    def first_token(self, seconds: float) -> None:
        with self._lock:
            self.ttft.observe(seconds)

    def between_tokens(self, seconds: float) -> None:
        with self._lock:
            self.inter_token.observe(seconds)

    def render(self) -> str:
        with self._lock:
            lines = [
                "# HELP gpt2cpu_requests_total HTTP requests answered, by endpoint and status.",
                "# TYPE gpt2cpu_requests_total counter",
            ]
            for (endpoint, status), n in sorted(self.requests.items()):
                labels = f'endpoint="{endpoint}",status="{status}"'
                lines.append(f"gpt2cpu_requests_total{{{labels}}} {n}")
            lines += [
                "# HELP gpt2cpu_sequences_total Choices that left the engine, by outcome.",
                "# TYPE gpt2cpu_sequences_total counter",
            ]
            for outcome in ("finished", "cancelled", "failed"):
                lines.append(f'gpt2cpu_sequences_total{{outcome="{outcome}"}} '
                             f"{self.finished[outcome]}")
            for name, value, kind, text in (
                ("prompt_tokens_total", self.prompt_tokens, "counter", "Prompt tokens read."),
                ("cached_prompt_tokens_total", self.cached_tokens, "counter",
                 "Prompt tokens served from the prefix cache instead of computed."),
                ("generation_tokens_total", self.generated_tokens, "counter",
                 "Tokens generated."),
                ("queue_length", self.queue_length, "gauge", "Choices waiting for admission."),
                ("running_sequences", self.running, "gauge", "Choices in the engine's batch."),
                ("kv_cache_bytes", self.kv_bytes, "gauge",
                 "KV-cache bytes held by running and prefix-cached sequences."),
                ("kv_cache_budget_bytes", self.kv_budget, "gauge", "The --max-kv-memory budget."),
            ):
                lines += [f"# HELP gpt2cpu_{name} {text}", f"# TYPE gpt2cpu_{name} {kind}",
                          f"gpt2cpu_{name} {value}"]
            for name, histogram, text in (
                ("time_to_first_token_seconds", self.ttft,
                 "From admission to the queue to the first sampled token."),
                ("inter_token_seconds", self.inter_token, "Between a choice's tokens."),
                ("batch_size", self.batch_size, "Sequences advanced per engine step."),
            ):
                lines += [f"# HELP gpt2cpu_{name} {text}", f"# TYPE gpt2cpu_{name} histogram"]
                lines += histogram.lines(f"gpt2cpu_{name}")
            return "\n".join(lines) + "\n"
