"""One model, several Python threads, each with its own sequences: every thread gets
exactly (bit for bit) what it gets alone, and the threads really run at once, because the
bindings release the GIL around compute. Misuse across threads (one sequence fed from two
threads, a sequence closed or a model dropped while another thread runs) raises or is
harmless, never corrupts memory. No assertion depends on how fast anything runs.
"""

from __future__ import annotations

import gc
import subprocess
import sys
import threading
import time
import weakref
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from gpt2cpu import _core
from model_files import model_dir

# Big enough that one forward pass is a long stretch of C++ (tens of milliseconds or more).
MEDIUM: dict[str, Any] = dict(
    model_type="gpt2", n_layer=4, n_embd=256, n_head=4, n_positions=512, vocab_size=3001,
    activation_function="gelu_new", layer_norm_epsilon=1e-5,
)


@pytest.fixture(scope="module")
def medium_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return model_dir(tmp_path_factory.mktemp("medium"), MEDIUM, seed=5)


def run_threads(targets: list[Callable[[], Any]]) -> list[Any]:
    """Run each target on its own thread, all released at once; results in order. An
    exception in a thread is re-raised here."""
    barrier = threading.Barrier(len(targets))
    results: list[Any] = [None] * len(targets)
    errors: list[BaseException] = []

    def wrap(i: int) -> None:
        try:
            barrier.wait()
            results[i] = targets[i]()
        except BaseException as exc:  # noqa: BLE001 - handed to the main thread
            errors.append(exc)

    threads = [threading.Thread(target=wrap, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    if errors:
        raise errors[0]
    return results


def workload(model: gpt2cpu.Model, seed: int) -> list[np.ndarray]:
    """What one thread does: two sequences, a prompt each then single tokens, interleaved,
    plus a truncate and a stateless forward."""
    rng = np.random.default_rng(seed)
    vocab = model.config.vocab_size
    out = []
    a, b = model.new_sequence(), model.new_sequence(200)
    out.append(a.append(rng.integers(0, vocab, 37 + seed)))
    out.append(b.append(rng.integers(0, vocab, 5), all_logits=True))
    for _ in range(3):
        out.append(a.append([int(rng.integers(vocab))]))
        out.append(b.append([int(rng.integers(vocab))]))
    b.truncate(3)
    out.append(b.append(rng.integers(0, vocab, 20), all_logits=True))
    out.append(model.forward(rng.integers(0, vocab, 50)))
    return out


# (Python threads, compute threads per call): more than the cores, oversubscribed
# OpenMP teams spin, and the test only gets slow.
@pytest.mark.parametrize("python_threads, threads", [(4, 1), (2, 2)])
def test_threads_get_exactly_what_they_get_alone(medium_dir: Path, python_threads: int,
                                                 threads: int) -> None:
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=threads)
    seeds = list(range(python_threads))
    alone = [workload(model, s) for s in seeds]
    for _ in range(2):
        together = run_threads([partial(workload, model, s) for s in seeds])
        for seed, mine, reference in zip(seeds, together, alone, strict=True):
            assert len(mine) == len(reference)
            for i, (x, y) in enumerate(zip(mine, reference, strict=True)):
                assert np.array_equal(x, y), f"thread {seed}, result {i} differs"


def test_python_runs_while_a_forward_pass_computes(medium_dir: Path) -> None:
    """A pure-Python thread keeps running in the middle of a long C++ call. Were the GIL
    held, it could run only just before the call and just after (one switch interval each),
    never in the middle half of it."""
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)
    ids = np.arange(MEDIUM["n_positions"]) % MEDIUM["vocab_size"]
    model.forward(ids[:8])  # warm up: page in the weights, start the thread pool
    stamps: list[float] = []
    stop = threading.Event()
    started = threading.Event()

    def count() -> None:
        started.set()
        while not stop.is_set():
            stamps.append(time.perf_counter())

    counter = threading.Thread(target=count)
    counter.start()
    started.wait()
    try:
        begin = time.perf_counter()
        model.forward(ids)
        end = time.perf_counter()
    finally:
        stop.set()
        counter.join()
    quarter = (end - begin) / 4
    middle = [t for t in stamps if begin + quarter < t < end - quarter]
    assert middle, "no Python ran in the middle of the forward pass: the GIL was held"
    # and not only at one instant: Python ran early and late in the middle half
    assert min(middle) < begin + 1.5 * quarter and max(middle) > end - 1.5 * quarter


def test_calls_on_two_threads_overlap(medium_dir: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)
    ids = np.arange(300) % MEDIUM["vocab_size"]
    model.forward(ids[:8])

    def timed() -> tuple[float, float]:
        begin = time.perf_counter()
        model.forward(ids)
        return begin, time.perf_counter()

    (b1, e1), (b2, e2) = run_threads([timed, timed])
    overlap = min(e1, e2) - max(b1, b2)
    # Serialised calls would overlap by at most a switch interval; these share most of it.
    assert overlap > 0.5 * min(e1 - b1, e2 - b2)


def test_one_sequence_from_two_threads_is_refused_not_corrupted(medium_dir: Path) -> None:
    """While one thread runs a long prompt on a sequence, another thread's call on it is
    refused, and the prompt's result is whole. The calls are made to meet: the second
    thread calls again and again for as long as the first is inside (the GIL is released
    there), so a sequence that let both in would fail here, not pass by luck of timing."""
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)
    ids = np.random.default_rng(0).integers(0, MEDIUM["vocab_size"], 400)
    want = _core.Sequence(model._core, len(ids)).append(ids, 1)
    seq = _core.Sequence(model._core, MEDIUM["n_positions"])
    nothing = np.empty(0, dtype=np.int64)
    refused: list[str] = []
    for _ in range(20):
        seq.truncate(0)
        results: list[np.ndarray[Any, Any]] = []

        def prompt(results: list[np.ndarray[Any, Any]] = results) -> None:
            while True:  # this thread may be the one refused, if the prober got in first
                try:
                    results.append(seq.append(ids, 1))
                    return
                except RuntimeError as exc:
                    refused.append(str(exc))

        worker = threading.Thread(target=prompt)
        worker.start()
        while worker.is_alive():
            try:
                seq.append(nothing, 0)  # takes the sequence as any call does, then no-op
            except RuntimeError as exc:
                refused.append(str(exc))
                break
        worker.join()
        assert seq.length == len(ids)
        np.testing.assert_array_equal(results[0], want)
        if refused:
            break
    assert refused, "the two threads never met on the sequence"
    assert all("in use by another thread" in m for m in refused)


def test_close_and_delete_while_another_thread_computes(medium_dir: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)
    ids = np.arange(400) % MEDIUM["vocab_size"]
    expected = model.new_sequence().append(ids)
    seq = model.new_sequence()
    entered = threading.Event()
    result: list[np.ndarray] = []

    def work() -> None:
        entered.set()
        result.append(seq.append(ids))

    worker = threading.Thread(target=work)
    worker.start()
    entered.wait()
    time.sleep(0.01)
    # Whether or not the append has started, neither of these may pull memory from under it.
    seq.close()
    del model
    gc.collect()
    worker.join()
    if result:  # the append ran (it usually does): its answer is right
        assert np.array_equal(result[0], expected)
    with pytest.raises(ValueError, match="closed"):
        seq.append([1])


def test_step_keeps_its_sequences_alive_when_the_caller_drops_them(medium_dir: Path) -> None:
    """_core.step releases the GIL while it computes: another thread emptying the list it was
    given, so dropping the sequences' last references, must not free them under the step."""
    core = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)._core
    ids = np.arange(400) % MEDIUM["vocab_size"]
    expected = _core.Sequence(core, 400).append(ids, 1)

    def computing(seq: _core.Sequence) -> bool:
        """The step holds each of its sequences' locks while it computes."""
        try:
            seq.truncate(seq.length)
        except RuntimeError as exc:
            assert "in use by another thread" in str(exc)
            return True
        return False

    def work(seqs: list[_core.Sequence], result: list[np.ndarray]) -> None:
        result.append(_core.step(core, seqs, [ids] * 4, [1] * 4)[0])

    for _ in range(5):
        probe = _core.Sequence(core, 400)
        seqs = [_core.Sequence(core, 400) for _ in range(3)] + [probe]
        weak = [weakref.ref(s) for s in seqs[:3]]
        result: list[np.ndarray] = []
        worker = threading.Thread(target=work, args=(seqs, result))
        worker.start()
        while worker.is_alive() and not computing(probe):
            pass
        seqs.clear()  # the only strong references to three of the four
        alive = [w() is not None for w in weak]
        caught = computing(probe)
        worker.join()
        assert len(result) == 1
        np.testing.assert_array_equal(result[0], np.repeat(expected, 4, axis=0))
        if caught:  # the list was emptied mid-step
            assert all(alive)
            return
    pytest.fail("the step was never caught computing")


def test_loading_races_are_refused(medium_dir: Path) -> None:
    """load_tensor and finalize from several threads: serialised by the model's lock; once
    finalized, every later load is refused."""
    model = gpt2cpu.Model.from_pretrained(medium_dir)
    config = model._core.config
    specs = _core.tensor_specs(config)
    core = _core.Model(config, 1)
    arrays = {name: np.full(shape, 0.01, np.float32) for name, shape in specs}
    outcomes: list[str] = []
    lock = threading.Lock()

    def load_all(reverse: bool) -> None:
        for name, _ in (reversed(specs) if reverse else specs):
            try:
                core.load_tensor(name, arrays[name])
            except ValueError as exc:
                with lock:
                    outcomes.append(str(exc))

    def finalize_repeatedly() -> None:
        for _ in range(200):
            try:
                core.finalize()
                return
            except ValueError:
                time.sleep(0.001)

    run_threads([lambda: load_all(False), lambda: load_all(True), finalize_repeatedly])
    if not core.ready:
        core.finalize()
    assert all("already loaded" in m for m in outcomes)
    assert _core.Sequence(core, 4).append(np.array([1, 2]), 1).shape == (1, MEDIUM["vocab_size"])


def test_tokens_and_cache_change_together(medium_dir: Path) -> None:
    """A Sequence's tokens list changes after the C++ call returns: a truncate or fork from
    another thread in that moment must be refused, not leave the tokens and the cache
    disagreeing. The moment is held open here by a C++ sequence that waits after append."""
    model = gpt2cpu.Model.from_pretrained(medium_dir, threads=1)
    seq = model.new_sequence()
    seq.append([1, 2, 3])
    inside, release = threading.Event(), threading.Event()

    class Waiting:
        def __init__(self, real: _core.Sequence) -> None:
            self.real = real

        def append(self, ids: np.ndarray[Any, Any], n: int) -> np.ndarray[Any, Any]:
            out = self.real.append(ids, n)
            inside.set()
            release.wait(10)
            return out

        def __getattr__(self, name: str) -> Any:
            return getattr(self.real, name)

    real = seq._core
    assert real is not None
    seq._core = Waiting(real)  # type: ignore[assignment]
    worker = threading.Thread(target=seq.append, args=([4, 5],))
    worker.start()
    assert inside.wait(10)
    try:
        for call in (lambda: seq.truncate(1), seq.fork, lambda: seq.append([6])):
            with pytest.raises(RuntimeError, match="in use by another thread"):
                call()
        with pytest.raises(RuntimeError, match=r"sequences\[1\]: .*in use by another thread"):
            gpt2cpu.engine.step([model.new_sequence(), seq], [[1], [2]])
    finally:
        release.set()
        worker.join()
    assert seq.tokens == [1, 2, 3, 4, 5] and real.length == 5


EXIT_WITH_DAEMONS_IN_THE_ENGINE = """
import atexit, threading, time
import numpy as np

stop = threading.Event()
# Registered before the engine loads, so it runs after anything the engine registers: the
# thread finalizing the interpreter still computes, and joins a thread that computes.
def cleanup():
    stop.set()
    worker.join()
    print("at exit:", model.generate([1, 2, 3], max_new_tokens=3, temperature=0).token_ids)
atexit.register(cleanup)

import gpt2cpu
from gpt2cpu import _core

model = gpt2cpu.Model.from_pretrained(threads=2)
row = np.ones(64, np.float32)

def short_calls():  # mostly waiting for the GIL: where finalization catches a thread
    while True:
        _core.sampling.kth_largest(row, 1)

def appends():
    while not stop.is_set():
        with model.new_sequence() as seq:
            seq.append(list(range(200)))

for target in (short_calls, short_calls):
    threading.Thread(target=target, daemon=True).start()
worker = threading.Thread(target=appends, daemon=True)
worker.start()
time.sleep(0.2)
print("main done", flush=True)
"""


def test_daemon_threads_in_the_engine_at_exit_do_not_abort_the_process() -> None:
    # Python ends a daemon thread that wants the GIL back during finalization with
    # pthread_exit; unwound through a noexcept GIL guard, that aborted the process (every
    # run of this script, before).
    for _ in range(5):
        out = subprocess.run([sys.executable, "-c", EXIT_WITH_DAEMONS_IN_THE_ENGINE],
                             capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr
        lines = out.stdout.splitlines()
        assert lines[0] == "main done" and len(lines) == 2, out.stdout
        assert lines[1].startswith("at exit: [") and lines[1].count(",") == 2, out.stdout


@pytest.mark.parametrize("batched", [False, True])
def test_a_stream_closed_from_another_thread_stops_at_its_next_step(batched: bool) -> None:
    """close() while another thread is inside the stream (a step running): it used to raise
    "generator already executing" and the stream ran to its end."""
    import gpt2cpu

    model = gpt2cpu.Model.from_pretrained(threads=1)
    prompt: Any = ["ROMEO:", "JULIET:"] if batched else "ROMEO:"
    stream = model.stream(prompt, max_new_tokens=255, ignore_eos=True)
    started = threading.Event()
    pieces: list[Any] = []

    def consume() -> None:
        for piece in stream:
            pieces.append(piece)
            started.set()

    consumer = threading.Thread(target=consume)
    steps = model.stats.steps
    consumer.start()
    assert started.wait(30)
    for _ in range(200):  # until close() meets the consumer inside the generator
        stream.close()
        if not consumer.is_alive():
            break
    consumer.join(30)
    assert not consumer.is_alive()
    assert model.stats.steps - steps < 250  # it stopped well before its 255 tokens
    result = stream.results if batched else stream.result
    assert result is None


@pytest.mark.parametrize("batched", [False, True])
def test_a_stream_dropped_part_way_goes_at_once(batched: bool) -> None:
    """No reference cycle between a stream and its generator: dropped mid-way, it is freed
    by reference counting alone, and its KV cache with it (a cycle kept both until the
    cycle collector ran: 106 dropped streams held 212 MiB with it off)."""
    import gpt2cpu

    model = gpt2cpu.Model.from_pretrained(threads=1)
    prompt: Any = ["ROMEO:", "JULIET:"] if batched else "ROMEO:"
    gc.disable()
    try:
        stream = model.stream(prompt, max_new_tokens=50, ignore_eos=True, n=2 if batched else 1)
        next(stream)
        gone = weakref.ref(stream)
        del stream
        assert gone() is None
    finally:
        gc.enable()
