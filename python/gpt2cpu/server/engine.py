"""The engine loop: one thread owns the model and advances every running choice together.

Each iteration admits waiting choices (up to `max_batch` running, within the KV-cache
budget), drops cancelled ones, runs one step in which every running choice advances by one
token (or, while its prompt is prefilled, by a chunk of it, the chunks of one iteration
sharing a budget that keeps a long prompt from stalling the others: `_prefill_budget`), and
hands each choice its logits. The HTTP side only enqueues choices and reads events: it never
waits on a step.
"""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from .job import Job
from .metrics import Metrics
from .prefix_cache import PrefixCache

if TYPE_CHECKING:
    from ..model import Model, Sequence

logger = logging.getLogger("gpt2cpu.server")


# What prompt tokens may add to a step beside decoding rows, in decode rows: a prompt token
# at position p costs 1 + p / PREFILL_POSITION_COST of them (it attends to the p before it),
# and a step may take max(PREFILL_FLOOR, decoding rows) of them, since its fixed part (the
# weights, read once) covers a few rows. Measured on the 124M shape with 2 threads: a step of
# one decoding row and 4 short-prompt rows cost what the row alone did (~40 ms); beside 8
# streams, 8 rows of a 1,000-token prompt a step made their p99 time between tokens 2.17x
# (serve_load.py --joiner 8), 4 rows 1.32x, and a budget of half the decoding rows starved
# the short prompts of staggered arrivals (time to first token 3-8 s in a ramp of 32).
PREFILL_FLOOR = 16
PREFILL_POSITION_COST = 128


class QueueFull(Exception):
    """Too many choices are waiting: answer 429 at once rather than pile up."""


class TooLarge(Exception):
    """A choice whose KV cache alone exceeds the whole budget: it could never run."""


class TooManyChoices(Exception):
    """More choices in one request than the queue holds: it could never be queued."""


class ShuttingDown(Exception):
    """The engine has stopped: nothing submitted now would ever run."""


SHUTTING_DOWN = "the server is shutting down"


@dataclass(frozen=True)
class StepItem:
    sequence: Sequence
    tokens: list[int]
    rows: int  # logit rows wanted, the last `rows` positions of `tokens`


def advance(items: list[StepItem]) -> list[np.ndarray[Any, Any]]:
    """Runs every item's tokens on its sequence and returns each one's logits (rows, vocab).

    The one place where sequences meet the model: one batched step (gpt2cpu.engine.step)
    advances every item at once, so each matrix product reads the weights once for all of
    them, and each sequence gets the same logits as it would alone.
    """
    from ..engine import step

    if not items:
        return []
    return step(
        [item.sequence for item in items],
        [np.asarray(item.tokens, dtype=np.int64) for item in items],
        last_n=[item.rows for item in items],
    ).outputs


def available_memory() -> int:
    """MemAvailable from /proc/meminfo, else the physical memory (bytes)."""
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    import os

    return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))


def sequence_capacity(needed: int, n_positions: int) -> int:
    """Positions to allocate for a choice that needs `needed`: the next power of two from
    64, so that a cached sequence has room for a later request that extends it (a chat's
    next turn), capped at the context."""
    size = 64
    while size < needed:
        size *= 2
    return min(size, n_positions)


class Engine:
    def __init__(
        self,
        model: Model,
        *,
        max_batch: int = 32,
        max_queue: int = 256,
        max_kv_bytes: int | None = None,
        prefill_chunk: int = 256,
        prefix_cache_entries: int = 16,
        metrics: Metrics | None = None,
        step: Callable[[list[StepItem]], list[np.ndarray[Any, Any]]] = advance,
    ) -> None:
        self.model = model
        self.max_batch = max_batch
        self.max_queue = max_queue
        self.per_position = model.kv_bytes_per_position
        self.max_kv_bytes = (available_memory() // 2) if max_kv_bytes is None else max_kv_bytes
        self.prefill_chunk = prefill_chunk
        self.metrics = metrics or Metrics()
        self.metrics.kv_budget = self.max_kv_bytes
        self._step = step
        self._cache = PrefixCache(prefix_cache_entries)
        self._waiting: collections.deque[Job] = collections.deque()
        self._calls: collections.deque[tuple[Callable[[], Any], Future[Any]]] = collections.deque()
        self._running: list[Job] = []
        self._wake = threading.Condition()
        self._stopping = False
        self._thread = threading.Thread(target=self._loop, name="gpt2cpu-engine", daemon=True)

    # -- the HTTP side's interface (any thread) ----------------------------------------------

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        """Fails every open choice and call (503) and ends the engine thread; again: a
        no-op."""
        with self._wake:
            self._stopping = True
            self._wake.notify()
        if self._thread.is_alive():
            self._thread.join()

    def submit(self, jobs: list[Job]) -> None:
        """Queues a request's choices, all or none. Raises QueueFull, TooLarge or
        TooManyChoices."""
        if len(jobs) > self.max_queue:  # a 429 would invite retries that cannot succeed
            raise TooManyChoices(
                f"this request has {len(jobs)} choices (n times the prompts), more than "
                f"the server's queue holds ({self.max_queue}, --max-queue); lower n or send "
                "fewer prompts"
            )
        n_positions = self.model.config.n_positions
        for job in jobs:
            need = self._bytes(sequence_capacity(job.capacity, n_positions))
            if need > self.max_kv_bytes:
                raise TooLarge(
                    f"this request needs {need} bytes of KV cache, more than the server's "
                    f"budget of {self.max_kv_bytes} (--max-kv-memory)"
                )
        with self._wake:
            if self._stopping:
                raise ShuttingDown(SHUTTING_DOWN)
            if len(self._waiting) + len(jobs) > self.max_queue:
                raise QueueFull(
                    f"the server's queue is full ({self.max_queue} waiting); retry later"
                )
            self._waiting.extend(jobs)
            self._wake.notify()

    def call(self, function: Callable[[], Any]) -> Future[Any]:
        """Runs function on the engine thread between steps (work that needs the model
        outside the token loop, such as embeddings)."""
        future: Future[Any] = Future()
        with self._wake:
            if self._stopping:
                future.set_exception(ShuttingDown(SHUTTING_DOWN))
            else:
                self._calls.append((function, future))
                self._wake.notify()
        return future

    @property
    def queue_length(self) -> int:
        return len(self._waiting)

    # -- the engine thread --------------------------------------------------------------------

    def _bytes(self, positions: int) -> int:
        return positions * self.per_position

    def _held_bytes(self) -> int:
        running = sum(j.sequence.capacity for j in self._running if j.sequence is not None)
        return self._bytes(running + self._cache.positions())

    def _loop(self) -> None:
        while True:
            with self._wake:
                while not (self._stopping or self._waiting or self._running or self._calls):
                    self._wake.wait()
                if self._stopping:
                    break
                calls = list(self._calls)
                self._calls.clear()
            for function, future in calls:
                if future.set_running_or_notify_cancel():
                    try:
                        future.set_result(function())
                    except BaseException as exc:  # handed to the caller, who reports it
                        future.set_exception(exc)
            blocked = False
            try:
                blocked = self._admit()
                self._drop_cancelled()
                if self._running:
                    self._iterate()
            except Exception as exc:  # a bug must not kill the loop: fail what was running
                logger.exception("engine step failed")
                for job in self._running:
                    self._close(job, "failed")
                    job.fail(500, f"internal error in the engine: {type(exc).__name__}: {exc}")
                self._running.clear()
            # Every iteration, not only those that step: admitting, cancelling or failing
            # may have emptied the batch, and the gauges must then say so.
            self.metrics.gauges(len(self._waiting), len(self._running), self._held_bytes())
            if blocked and not self._running:
                # Only choices that do not fit yet (the cache was evicted already): wait for
                # a submission or a cancellation instead of spinning.
                with self._wake:
                    self._wake.wait(0.05)
        for job in self._running:
            job.fail(503, SHUTTING_DOWN)
        with self._wake:  # nothing joins these once _stopping is set
            waiting, calls = list(self._waiting), list(self._calls)
            self._waiting.clear()
            self._calls.clear()
        for job in waiting:
            job.fail(503, SHUTTING_DOWN)
        for _, future in calls:
            if future.set_running_or_notify_cancel():
                future.set_exception(ShuttingDown(SHUTTING_DOWN))
        self._cache.clear()

    def _admit(self) -> bool:
        """Moves waiting choices into the batch; True when the first waiting one does not
        fit the KV budget."""
        while len(self._running) < self.max_batch:
            with self._wake:
                if not self._waiting:
                    return False
                job = self._waiting[0]
                if job.cancelled.is_set():
                    self._waiting.popleft()
                    self.metrics.outcome("cancelled")
                    continue
            capacity = sequence_capacity(job.capacity, self.model.config.n_positions)
            found = None if job.prompt_logprobs else self._cache.find(job.prompt, job.capacity)
            if found is None:
                while self._held_bytes() + self._bytes(capacity) > self.max_kv_bytes:
                    if not self._cache.evict_one():
                        return True  # waits for a running choice to finish
            with self._wake:
                self._waiting.popleft()
            try:
                if found is None:
                    job.sequence = self.model.new_sequence(capacity, reserve=True)
                else:
                    key, shared, size = found
                    room = self._held_bytes() + self._bytes(size) <= self.max_kv_bytes
                    # Its room came with it: every cached sequence began reserved, above,
                    # and a fork takes its parent's room.
                    job.sequence = self._cache.use(key, shared, copy=room)
                    job.prefilled = job.cached_tokens = shared
                job.start(self.model)
            except (ValueError, MemoryError) as exc:
                self._close(job, "failed")
                job.fail(400 if isinstance(exc, ValueError) else 503, str(exc))
                continue
            self.metrics.tokens(prompt=len(job.prompt), cached=job.cached_tokens)
            self._running.append(job)
        return False

    def _drop_cancelled(self) -> None:
        for job in [j for j in self._running if j.cancelled.is_set()]:
            self._running.remove(job)
            self._close(job, "cancelled")

    def _prefill_budget(self) -> float:
        """Decode rows' worth of prompt this step may run (PREFILL_FLOOR says how that was
        sized): a long prompt at most doubles the step the decoders wait on. With nobody
        decoding, only prefill_chunk limits it."""
        decoding = sum(1 for job in self._running if not job.prefilling)
        return float("inf") if decoding == 0 else float(max(PREFILL_FLOOR, decoding))

    def _prompt_tokens(self, job: Job, budget: float, tokens: int) -> tuple[int, float]:
        """How many of job's next prompt tokens fit budget (at least one) and tokens, and
        what they cost."""
        start, left = job.prefilled, min(tokens, len(job.prompt) - job.prefilled)
        count, spent = 0, 0.0
        while count < left:
            cost = 1.0 + (start + count) / PREFILL_POSITION_COST
            if count and spent + cost > budget:
                break
            count, spent = count + 1, spent + cost
        return count, spent

    def _iterate(self) -> None:
        budget, chunk = self._prefill_budget(), self.prefill_chunk
        work: list[tuple[Job, StepItem]] = []
        for job in self._running:
            if job.prefilling:
                if budget <= 0 or chunk <= 0:
                    continue  # its next chunk waits for the next iteration
                count, spent = self._prompt_tokens(job, budget, chunk)
                budget, chunk = budget - spent, chunk - count
                tokens, rows = job.next_tokens(count)
            else:
                tokens, rows = job.next_tokens(1)
            assert job.sequence is not None
            work.append((job, StepItem(job.sequence, tokens, rows)))
        results = self._step([item for _, item in work])
        for (job, item), logits in zip(work, results, strict=True):
            before = job.last_token_at
            try:
                done = job.accept(item.tokens, logits)
            except ValueError as exc:  # e.g. a logit_bias that bans every token
                self._running.remove(job)
                self._close(job, "failed")
                job.fail(400, str(exc))
                continue
            if job.last_token_at is not None and job.last_token_at != before:
                if before is None:
                    self.metrics.first_token(job.last_token_at - job.submitted)
                else:
                    self.metrics.between_tokens(job.last_token_at - before)
            if done:
                self._running.remove(job)
                self._close(job, "finished")
        self.metrics.step(len(work))

    def _close(self, job: Job, outcome: str) -> None:
        """A choice leaves: a finished one's sequence goes to the prefix cache, the others'
        caches are freed at once."""
        self.metrics.outcome(outcome)
        self.metrics.tokens(generated=len(job.generated))
        sequence, job.sequence = job.sequence, None
        if sequence is None:
            return
        if outcome == "finished":
            self._cache.put(sequence)
        else:
            sequence.close()


def wait_until(predicate: Callable[[], bool], timeout: float) -> bool:
    """Polls predicate for up to timeout seconds (tests and shutdown)."""
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            return False
        time.sleep(0.005)
    return True
