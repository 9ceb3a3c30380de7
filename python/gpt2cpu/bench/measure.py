"""Speed measurement: load time, prompt and decode throughput, memory, and how close each
comes to its ceiling: decode to the machine's memory read bandwidth, a prompt to its
arithmetic peak. Optionally beside transformers.

Every figure is a median over repeats with its spread, taken in one process. Ratios
between engines come from repeats run on each in turn, so that both see the same moments of
a machine whose speed drifts.
"""

from __future__ import annotations

import dataclasses
import resource
import statistics
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, Protocol, TypeVar

import numpy as np

from .. import _core
from ..loading.config import GPT2Config
from ..model import Model, Sequence
from ..progress import Progress

# Bytes read by the bandwidth probe: well past any last-level cache.
PROBE_BYTES = 1 << 29
# Rounds of the compute probe's loop per thread and pass: about 20 ms on an AVX2 core.
PROBE_ROUNDS = 10_000_000

T = TypeVar("T")


@dataclass(frozen=True)
class Spread:
    median: float
    p10: float
    p90: float
    n: int

    @classmethod
    def of(cls, values: list[float]) -> Spread:
        q = np.percentile(values, [10, 90])
        return cls(statistics.median(values), float(q[0]), float(q[1]), len(values))


@dataclass
class EngineResult:
    engine: str
    first_load_s: float  # the process's first load: its memory is fresh from the OS
    load_s: Spread  # loads after it (file in the page cache, allocator warm)
    prompt_tokens_per_s: Spread  # over repeats
    decode_ms_per_token: Spread  # over every step of every repeat
    prompt_tokens_per_s_by_repeat: list[float] = field(default_factory=list)
    decode_ms_by_repeat: list[float] = field(default_factory=list)  # each repeat's median
    # The probes run right after each repeat (gpt2cpu alone only): this VM's bandwidth
    # drifts by a third within minutes, and its arithmetic rate with the load beside it,
    # so each repeat is compared with the ceiling of the same moment. Read bandwidth after
    # each decode repeat, arithmetic peak (flops/s) after each prompt repeat.
    read_bandwidth_by_repeat: list[float] = field(default_factory=list)
    multiply_add_peak_by_repeat: list[float] = field(default_factory=list)
    decode_tokens_per_s: float = 0.0
    decode_ms_at_position: dict[int, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.decode_tokens_per_s = 1000.0 / self.decode_ms_per_token.median


@dataclass(frozen=True)
class Workload:
    threads: int
    dtype: str = "float32"
    kv_dtype: str = "float32"
    prompt_tokens: int = 512
    decode_prompt_tokens: int = 16
    new_tokens: int = 128
    repeats: int = 3
    positions: tuple[int, ...] = ()
    position_steps: int = 16
    seed: int = 0
    isa: str | None = None  # the kernel set (None: the default)
    batches: tuple[int, ...] = ()  # batch sizes of the batched-decode measurement
    # prompt_tokens is the default, not asked for: a shorter context cuts it (the bundled
    # model's is 256) rather than refusing the workload.
    fit_prompt: bool = False


def _ids(n: int, vocab: int, seed: int) -> list[int]:
    return [int(i) for i in np.random.default_rng(seed).integers(0, vocab, n)]


def _check(work: Workload) -> None:
    """The workload's own counts, checked before anything loads. Errors start with the
    Workload field at fault (the CLI puts its flag there)."""
    for name in ("prompt_tokens", "decode_prompt_tokens", "new_tokens", "repeats"):
        if getattr(work, name) < 1:
            raise ValueError(f"{name} must be at least 1, got {getattr(work, name)}")
    for name in ("positions", "batches"):
        if any(n < 1 for n in getattr(work, name)):
            raise ValueError(f"{name} must each be at least 1, got {min(getattr(work, name))}")


def _fitted(work: Workload, n_positions: int) -> Workload:
    """work against the model's context: a default prompt length cut to it, anything else
    that does not fit an error starting with the Workload field to lower."""
    if work.fit_prompt and work.prompt_tokens > n_positions:
        work = dataclasses.replace(work, prompt_tokens=n_positions)
    context = f"the model's context of {n_positions} positions"
    if work.prompt_tokens > n_positions:
        raise ValueError(f"prompt_tokens {work.prompt_tokens} is more than {context}")
    room = n_positions - work.decode_prompt_tokens
    if work.new_tokens > room:
        raise ValueError(
            f"new_tokens {work.new_tokens} is more than the {room} that {context} leaves "
            f"after the {work.decode_prompt_tokens}-token decode prompt"
        )
    room = n_positions - work.position_steps
    too_far = [p for p in work.positions if p > room]
    if too_far:
        raise ValueError(
            f"positions {max(too_far)} is more than the {room} that {context} leaves for "
            f"the {work.position_steps} decode steps timed there"
        )
    return work


@dataclass(frozen=True)
class Probes:
    """The machine's ceilings, each measured when called."""

    read_bandwidth: Callable[[], float]  # bytes/s
    multiply_add_peak: Callable[[], float]  # flops/s


class _Engine(Protocol):
    """What the workload needs of an engine: a fresh sequence, and feeding it tokens."""

    def new(self, capacity: int) -> Any: ...
    def feed(self, state: Any, ids: list[int]) -> Any: ...


def _timed_feed(engine: _Engine, state: Any, ids: list[int]) -> tuple[Any, float]:
    start = time.perf_counter()
    state = engine.feed(state, ids)
    return state, time.perf_counter() - start


def _load_repeatedly(load: Callable[[], T], repeats: int) -> tuple[T, float, Spread]:
    """The model loaded 1 + repeats times, each copy dropped before the next is loaded (so
    peak memory stays one model); the last is kept. Returns it, the first load's seconds and
    the spread of the rest. The first load in a process pays for fresh memory from the
    OS: on this project's VMs that alone varied from 0.05 to 0.5 s for 500 MB."""
    times = []
    model: T | None = None
    for _ in range(1 + repeats):
        model = None
        start = time.perf_counter()
        model = load()
        times.append(time.perf_counter() - start)
    assert model is not None
    return model, times[0], Spread.of(times[1:])


def _measure(
    engines: dict[str, _Engine], loads: dict[str, tuple[float, Spread]], vocab: int,
    work: Workload, progress: Progress, probes: Probes | None = None,
) -> dict[str, EngineResult]:
    """The workload, identical for every engine; only feeding tokens is timed. With several
    engines each repeat runs on each in turn, so that they are compared at the same moments
    of a machine whose speed drifts. `probes`, if given, are run after each prompt and
    decode repeat of the first engine."""
    prompt = _ids(work.prompt_tokens, vocab, work.seed)
    first = next(iter(engines))
    prefill: dict[str, list[float]] = {name: [] for name in engines}
    steps: dict[str, list[float]] = {name: [] for name in engines}
    by_repeat: dict[str, list[float]] = {name: [] for name in engines}
    bandwidths: list[float] = []
    peaks: list[float] = []
    at_position: dict[str, dict[int, float]] = {name: {} for name in engines}
    for engine in engines.values():
        engine.feed(engine.new(8), prompt[:8])  # warm-up: threads started, pages touched
    for _ in range(work.repeats):
        for name, engine in engines.items():
            _, seconds = _timed_feed(engine, engine.new(work.prompt_tokens), prompt)
            prefill[name].append(work.prompt_tokens / seconds)
            if probes is not None and name == first:
                peaks.append(probes.multiply_add_peak())
            progress.advance(1)

    tokens = _ids(work.decode_prompt_tokens + work.new_tokens, vocab, work.seed + 1)
    for _ in range(work.repeats):
        for name, engine in engines.items():
            these = _decode(engine, tokens, work.decode_prompt_tokens)
            steps[name] += these
            by_repeat[name].append(statistics.median(these))
            if probes is not None and name == first:
                bandwidths.append(probes.read_bandwidth())
            progress.advance(1)

    if work.positions:
        ids = _ids(max(work.positions) + work.position_steps, vocab, work.seed + 2)
        for name, engine in engines.items():
            at_position[name] = _decode_at_positions(
                engine, ids, work.positions, work.position_steps, progress
            )
    return {
        name: EngineResult(
            name,
            *loads[name],
            Spread.of(prefill[name]),
            Spread.of(steps[name]),
            prompt_tokens_per_s_by_repeat=prefill[name],
            decode_ms_by_repeat=by_repeat[name],
            read_bandwidth_by_repeat=bandwidths if name == first else [],
            multiply_add_peak_by_repeat=peaks if name == first else [],
            decode_ms_at_position=at_position[name],
        )
        for name in engines
    }


def _decode_at_positions(
    engine: _Engine, ids: list[int], positions: tuple[int, ...], steps: int, progress: Progress
) -> dict[int, float]:
    """The median milliseconds of a one-token step with each of `positions` tokens already
    in the cache (prompts ids[:position]), over `steps` steps. The positions' sequences
    all exist at once and step in turn, the order reversed every step, so that they are
    compared at the same moments of a machine whose speed drifts."""
    wanted = list(dict.fromkeys(positions))
    states = []
    for pos in wanted:
        states.append(engine.feed(engine.new(pos + steps), ids[:pos]))
        progress.advance(1)
    times: list[list[float]] = [[] for _ in wanted]
    for step in range(steps):
        order = list(range(len(wanted)))
        for j in order if step % 2 == 0 else order[::-1]:
            states[j], seconds = _timed_feed(engine, states[j], [ids[wanted[j] + step]])
            times[j].append(1000 * seconds)
    return {pos: statistics.median(t) for pos, t in zip(wanted, times, strict=True)}


def _decode(engine: _Engine, ids: list[int], prompt_tokens: int) -> list[float]:
    """Milliseconds of each one-token step after a prompt of ids[:prompt_tokens]."""
    state = engine.feed(engine.new(len(ids)), ids[:prompt_tokens])
    times = []
    for tok in ids[prompt_tokens:]:
        state, seconds = _timed_feed(engine, state, [tok])
        times.append(1000 * seconds)
    return times


class _Gpt2cpuEngine:
    def __init__(self, model: Model) -> None:
        self.model = model

    def new(self, capacity: int) -> Sequence:
        return self.model.new_sequence(capacity, reserve=True)  # as generate does

    def feed(self, state: Sequence, ids: list[int]) -> Sequence:
        state.append(ids)
        return state


class _TransformersEngine:
    """transformers + PyTorch with its KV cache; the state is past_key_values."""

    def __init__(self, model: Any, torch: Any) -> None:
        self.model = model
        self.torch = torch

    def new(self, capacity: int) -> Any:
        return None

    def feed(self, state: Any, ids: list[int]) -> Any:
        # Only the last position's logits, as gpt2cpu computes them.
        out = self.model(
            self.torch.tensor([ids]), past_key_values=state, use_cache=True, logits_to_keep=1
        )
        return out.past_key_values


def load_gpt2cpu(directory: Path, work: Workload) -> tuple[Model, tuple[float, Spread]]:
    model, first, warm = _load_repeatedly(
        lambda: Model.from_pretrained(
            directory, threads=work.threads, dtype=work.dtype, progress=False, isa=work.isa,
            kv_dtype=work.kv_dtype,
        ),
        work.repeats,
    )
    return model, (first, warm)


def load_transformers(
    directory: Path, work: Workload
) -> tuple[_TransformersEngine, tuple[float, Spread]]:
    """transformers + PyTorch (CPU, float32, KV cache), as an engine for the workload."""
    try:
        import torch
        from transformers import GPT2LMHeadModel
        from transformers.utils import logging as untyped_logging
    except ImportError as exc:
        raise ValueError(f"--compare transformers needs torch and transformers ({exc})") from None
    torch.set_num_threads(work.threads)

    transformers_logging: Any = untyped_logging

    def load() -> Any:
        # Without transformers' own progress bar per load, which would break up the report.
        bar_was_on = transformers_logging.is_progress_bar_enabled()
        transformers_logging.disable_progress_bar()
        try:
            model: Any = GPT2LMHeadModel.from_pretrained(directory, dtype=torch.float32)
        finally:
            if bar_was_on:
                transformers_logging.enable_progress_bar()
        return model.eval()

    model, first, warm = _load_repeatedly(load, work.repeats)
    return _TransformersEngine(model, torch), (first, warm)


def _in_child(*args: str) -> str:
    """The last line `python *args` prints: work whose memory must not count towards this
    process's peak."""
    out = subprocess.run([sys.executable, *args], check=True, stdout=subprocess.PIPE, text=True)
    return out.stdout.strip().splitlines()[-1]


def read_bandwidth(threads: int, isa: str) -> float:
    """Read bandwidth in bytes/s with the loads of kernel set `isa`, best of 3 passes over
    PROBE_BYTES, measured in a child process so that the probe's buffer is not counted as
    this one's memory."""
    code = (
        "from gpt2cpu import _core; "
        f"print(_core.testing.read_bandwidth({PROBE_BYTES}, {threads}, 3, {isa!r}))"
    )
    return float(_in_child("-c", code))


def multiply_add_peak(threads: int, isa: str) -> float:
    """Arithmetic peak in flops/s of kernel set `isa` on `threads` threads, best of 3
    passes. It needs no memory, so it runs in this process."""
    return _core.testing.multiply_add_peak(threads, PROBE_ROUNDS, 3, isa)


def prompt_flops(c: GPT2Config, tokens: int) -> float:
    """The multiply-adds a prompt of `tokens` positions needs, 2 flops each: every block
    but the last for every position, with causal attention (position i attends to i + 1
    keys); in the last block the keys and values of every position, and the rest for the
    last position alone, the only one whose logits are wanted; then the LM head for that
    position. gpt2cpu runs just these when n_embd is a multiple of 16, as in every GPT-2
    size (otherwise it computes the last block's queries for every position too). Layer
    norms, activations and softmax are left out: for GPT-2 124M they are under 1%."""
    C, M = c.n_embd, c.mlp_width
    block = 4 * C * C + 2 * C * M  # projections per position: qkv, attention out, MLP
    causal = (c.n_layer - 1) * (tokens * block + 2 * C * tokens * (tokens + 1) // 2)
    # Last block: keys and values of all positions; the query, attention over all
    # positions, attention out and MLP of the last one.
    last = tokens * 2 * C * C + (2 * C * C + 2 * C * M) + 2 * C * tokens
    return 2.0 * (causal + last + C * c.vocab_size)


def batch_decode(model: Model, work: Workload) -> dict[str, dict[str, float]]:
    """Decode of B sequences stepping together through the batched step, for each B of
    work.batches: B prompts of decode_prompt_tokens run in one step, then new_tokens steps
    of one token per sequence. aggregate_tokens_per_s counts every sequence's tokens;
    per_sequence_tokens_per_s is what each of them sees (aggregate / B). Medians of
    work.repeats. The tokens fed are random ids: a step's cost does not depend on them."""
    from ..engine import step

    vocab = model.config.vocab_size
    out: dict[str, dict[str, float]] = {}
    for b in work.batches:
        rates = []
        for r in range(work.repeats):
            seqs = [model.new_sequence(work.decode_prompt_tokens + work.new_tokens,
                                       reserve=True)  # as generate does
                    for _ in range(b)]
            step(seqs, [_ids(work.decode_prompt_tokens, vocab, work.seed + i) for i in range(b)])
            tokens = np.random.default_rng(work.seed + r).integers(0, vocab, (work.new_tokens, b))
            started = time.perf_counter()
            for row in tokens:
                step(seqs, [[int(t)] for t in row])
            rates.append(b * work.new_tokens / (time.perf_counter() - started))
            for seq in seqs:
                seq.close()
        aggregate = statistics.median(rates)
        out[str(b)] = {"aggregate_tokens_per_s": aggregate,
                       "per_sequence_tokens_per_s": aggregate / b}
    return out


def random_model_dir(shape: str) -> Path:
    """The cached random model of a GPT-2 shape, made in a child process so that making it
    does not count towards this process's peak memory."""
    return Path(_in_child("-m", "gpt2cpu.bench.random_model", shape))


def run(
    directory: Path, work: Workload, *, compare: str | None = None, progress: bool | None = None
) -> dict[str, Any]:
    """gpt2cpu alone first: its peak memory and bandwidth share are its own. With
    `compare`, then the workload again with each repeat run on gpt2cpu and on the other
    engine in turn: the ratios come from that part."""
    _check(work)
    stages = work.repeats * 2 + len(set(work.positions))
    with Progress(stages * (3 if compare else 1), "benchmarking", enabled=progress) as bar:
        model, loads = load_gpt2cpu(directory, work)
        work = _fitted(work, model.config.n_positions)
        engine = _Gpt2cpuEngine(model)
        probes = Probes(
            partial(read_bandwidth, work.threads, model.isa),
            partial(multiply_add_peak, work.threads, model.isa),
        )
        vocab = model.config.vocab_size
        alone = _measure({"gpt2cpu": engine}, {"gpt2cpu": loads}, vocab, work, bar, probes)
        ours = alone["gpt2cpu"]
        peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
        side_by_side = None
        if compare:
            reference, reference_loads = load_transformers(directory, work)
            with reference.torch.inference_mode():
                side_by_side = _measure(
                    {"gpt2cpu": engine, "transformers": reference},
                    {"gpt2cpu": loads, "transformers": reference_loads},
                    vocab, work, bar,
                )

    c = model.config
    kv_bytes = model.kv_bytes_per_position
    # Decode reads every weight once per token (the position table only one row of), plus
    # the KV cache of the positions so far: on average the middle of the decode run.
    mean_position = work.decode_prompt_tokens + work.new_tokens / 2
    bytes_per_token = model.weight_bytes - c.n_positions * c.n_embd * 4 + kv_bytes * mean_position
    streamed = bytes_per_token * ours.decode_tokens_per_s
    bandwidth = statistics.median(ours.read_bandwidth_by_repeat)
    # Each decode repeat against the probe taken just after it, then the median.
    pairs = zip(ours.decode_ms_by_repeat, ours.read_bandwidth_by_repeat, strict=True)
    share = statistics.median(bytes_per_token / (ms / 1000) / probed for ms, probed in pairs)
    flops = prompt_flops(c, work.prompt_tokens)
    rates = [flops * tps / work.prompt_tokens for tps in ours.prompt_tokens_per_s_by_repeat]
    # Each prompt repeat against the peak probed just after it, then the median.
    peak_pairs = zip(rates, ours.multiply_add_peak_by_repeat, strict=True)
    report: dict[str, Any] = {
        "model": str(directory),
        "parameters": c.parameter_count(),
        "weight_bytes": model.weight_bytes,
        "dtype": model.dtype,
        "kv_dtype": model.kv_dtype,
        "isa": model.isa,
        "workload": asdict(work),
        "gpt2cpu": asdict(ours),
        "peak_rss_bytes": peak_rss,
        # The most cache the workload's sequences held at once: the positions' all at once.
        "kv_cache_bytes": kv_bytes
        * max(
            work.prompt_tokens,
            work.decode_prompt_tokens + work.new_tokens,
            sum(p + work.position_steps for p in set(work.positions)),
        ),
        "read_bandwidth_bytes_per_s": bandwidth,
        "decode_bytes_per_token": bytes_per_token,
        "decode_bytes_per_s": streamed,
        "decode_bandwidth_share": share,
        "decode_roofline_tokens_per_s": bandwidth / bytes_per_token,
        "prompt_flops": flops,
        "prompt_flops_per_s": flops * ours.prompt_tokens_per_s.median / work.prompt_tokens,
        "multiply_add_peak_flops_per_s": statistics.median(ours.multiply_add_peak_by_repeat),
        "prompt_peak_share": statistics.median(rate / peak for rate, peak in peak_pairs),
    }
    if work.batches:
        report["batch_decode"] = batch_decode(model, work)
    if side_by_side is not None:
        mine, theirs = side_by_side["gpt2cpu"], side_by_side["transformers"]
        report["transformers"] = asdict(theirs)
        report["gpt2cpu_alongside"] = asdict(mine)  # its repeats between transformers' own
        report["speedup"] = {
            "decode": mine.decode_tokens_per_s / theirs.decode_tokens_per_s,
            "prompt": mine.prompt_tokens_per_s.median / theirs.prompt_tokens_per_s.median,
        }
    return report
