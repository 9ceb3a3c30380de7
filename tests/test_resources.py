"""Memory: many generations in one process leave resident memory flat, closed sequences
leave their caches with the model for the next ones (within the most in use at once and
the weights' size), and a dropped model gives all of its memory back. Measured as the
process's RSS; skipped under AddressSanitizer, whose allocator keeps freed memory in
quarantine.
"""

from __future__ import annotations

import gc
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import gpt2cpu
import numpy as np
import pytest
from model_files import model_dir

psutil = pytest.importorskip("psutil")


def sanitized() -> bool:
    try:
        return "libasan" in Path("/proc/self/maps").read_text()
    except OSError:
        return False


pytestmark = pytest.mark.skipif(sanitized(), reason="RSS means nothing under ASan")

MiB = 1 << 20

# A per-sequence KV cache of 1 MiB at full context: a leak of one per call would be a GiB.
GEN: dict[str, Any] = dict(
    model_type="gpt2", n_layer=2, n_embd=128, n_head=4, n_positions=512, vocab_size=701,
    activation_function="gelu_new", layer_norm_epsilon=1e-5, bos_token_id=700, eos_token_id=700,
)
# Weights of ~120 MB: enough to see leave, quick to write and load.
BIG: dict[str, Any] = dict(
    model_type="gpt2", n_layer=4, n_embd=512, n_head=8, n_positions=512, vocab_size=32000,
    activation_function="gelu_new", layer_norm_epsilon=1e-5,
)


def rss() -> int:
    gc.collect()
    return int(psutil.Process().memory_info().rss)


def generate_like(model: gpt2cpu.Model) -> Callable[[int], Any]:
    """One call of the public generation API when it exists, else the same work by hand:
    a fresh sequence, a prompt, then one token at a time."""
    prompt = [5, 17, 300, 2, 99, 41]
    if hasattr(model, "generate"):
        return lambda i: model.generate(prompt, max_new_tokens=16, temperature=0.9, top_k=40,
                                        seed=i, ignore_eos=True)

    def by_hand(i: int) -> None:
        rng = np.random.default_rng(i)
        seq = model.new_sequence(len(prompt) + 16)
        logits = seq.append(prompt)
        for _ in range(15):
            logits = seq.append([int(rng.choice(len(logits)))])

    return by_hand


def test_a_thousand_generations_leave_memory_flat(tmp_path: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, GEN), threads=1)
    call = generate_like(model)
    for i in range(100):  # warm-up: allocator pools, thread pool, caches
        call(i)
    before = rss()
    for i in range(1000):
        call(i)
    grown = rss() - before
    assert grown < 4 * MiB, f"RSS grew by {grown / MiB:.1f} MiB over 1000 generations"


def test_a_deleted_model_gives_its_memory_back(tmp_path: Path) -> None:
    directory = model_dir(tmp_path, BIG)
    baseline = rss()
    model = gpt2cpu.Model.from_pretrained(directory, threads=2)
    weights = model.weight_bytes
    assert weights > 100 * MiB
    model.forward([1, 2, 3])
    loaded = rss()
    # The checkpoint's pages are dropped as they are copied: the load costs the weights once.
    assert loaded - baseline < 1.3 * weights
    seq = model.new_sequence()
    del model
    gc.collect()
    assert rss() > baseline + 0.8 * weights, "a live sequence must keep its model"
    del seq
    freed = loaded - rss()
    assert freed > 0.9 * weights, f"freed {freed / MiB:.0f} of {weights / MiB:.0f} MiB"


def test_an_int4_load_never_holds_the_float32_checkpoint(tmp_path: Path) -> None:
    """The engine reads the checkpoint a band at a time (csrc/src/weights_file.cpp): an
    int4 load's peak is its packed weights, a fraction of the float32 file. Measured in a
    fresh process, whose peak RSS is the load's."""
    directory = model_dir(tmp_path, BIG)
    file_bytes = (directory / "model.safetensors").stat().st_size
    # VmHWM, not ru_maxrss: that one starts from the parent's peak when the child is
    # spawned with vfork, as subprocess does.
    code = f"""
import psutil, gpt2cpu, gpt2cpu.model
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))
before = psutil.Process().memory_info().rss
model = gpt2cpu.Model.from_pretrained({str(directory)!r}, threads=2, dtype="int4")
print(peak() - before, model.weight_bytes)
"""
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    grown, weights = map(int, out.stdout.split())
    # The float32 embedding alone is 65 MB of the 120 MB file; int4 weights are ~20 MB.
    assert grown < weights + 16 * MiB, f"peak {grown / MiB:.0f} MiB for {weights / MiB:.0f}"
    assert grown < 0.3 * file_bytes


# For the per-model pool of caches: 4 KiB of keys and values per position, 1024 positions,
# and 16 MB of weights (the most an idle model keeps in caches).
POOLED: dict[str, Any] = dict(GEN, n_layer=4, n_positions=1024, vocab_size=32000)
KV_PER_POSITION = 2 * POOLED["n_layer"] * POOLED["n_embd"] * 4


def fill_and_close(model: gpt2cpu.Model, count: int, tokens: int = 512) -> None:
    sequences = [model.new_sequence() for _ in range(count)]
    for seq in sequences:
        seq.append(np.arange(tokens) % POOLED["vocab_size"])
    for seq in sequences:
        seq.close()


def test_closed_caches_are_reused_by_the_next_batch_and_the_model_frees_them(
        tmp_path: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, POOLED), threads=1)
    written = KV_PER_POSITION * 512  # 2 MiB a cache
    fill_and_close(model, 1)
    fill_and_close(model, 4)  # four caches in use at once, then idle
    four = rss()
    fill_and_close(model, 4)  # the next batch takes them: no page mapped afresh
    grown = rss() - four
    assert grown < 0.25 * written, f"{grown / MiB:.1f} MiB more for reused caches"
    del model
    freed = four - rss()
    assert freed > 0.9 * 4 * written, f"freed {freed / MiB:.1f} of {4 * written / MiB:.1f} MiB"


def test_idle_caches_never_take_memory_past_the_most_in_use_at_once(tmp_path: Path) -> None:
    model = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, POOLED), threads=1)
    fill_and_close(model, 4)  # 8 MiB in use at most, then idle
    idle = rss()
    # A cache none of the idle ones fits (4 MiB): two of them go first. (In steps of 500
    # tokens, whose activations fit the buffer the 512-token steps left.)
    big = model.new_sequence(1024)
    for _ in range(2):
        big.append(np.arange(500) % POOLED["vocab_size"])
    grown = rss() - idle
    assert grown < 0.25 * 1000 * KV_PER_POSITION, f"{grown / MiB:.1f} MiB past the peak"
    big.close()  # idle: the 4 MiB cache and two of 2 MiB, the 8 MiB of the peak
    # All of an idle cache's pages are resident: one far bigger than a new sequence needs
    # is not handed to it. The new one is mapped afresh (400 KB), and the 4 MiB one goes to
    # keep the total within the peak...
    before = rss()
    short = model.new_sequence(100)
    short.append(np.arange(100) % POOLED["vocab_size"])
    freed = before - rss()
    assert freed > 0.6 * 1024 * KV_PER_POSITION, f"freed {freed / MiB:.1f} MiB"
    # ... while the 2 MiB ones stay: a 512-token sequence takes one, mapping nothing new
    # (in steps of 64 tokens, whose activations fit the buffer the 100-token step left).
    before = rss()
    again = model.new_sequence(512, reserve=True)
    for _ in range(8):
        again.append(np.arange(64) % POOLED["vocab_size"])
    grown = rss() - before
    assert grown < 0.25 * 512 * KV_PER_POSITION, f"{grown / MiB:.1f} MiB for a kept cache"


def test_an_idle_model_does_not_keep_a_huge_steps_activations() -> None:
    """One step of 64 prompts of 250 tokens needs ~80 MB of activations and 150 MB of
    caches on the bundled model; once its sequences are closed, the model keeps no buffer
    over 64 MB idle (it kept the whole one, until some later, smaller step replaced it),
    and caches of at most its weights' size (14 MB)."""
    model = gpt2cpu.Model.from_pretrained(threads=1)
    before = rss()
    sequences = [model.new_sequence() for _ in range(64)]
    model.step(sequences, [np.arange(250) % 60 + 1 for _ in sequences])
    for seq in sequences:
        seq.close()
    kept = rss() - before
    assert kept < 24 * MiB, f"{kept / MiB:.1f} MiB kept by an idle model"
