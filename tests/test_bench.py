"""`gpt2cpu bench` on a small model: what it reports, for gpt2cpu and transformers alike.
Figures are not checked for speed (benchmarks do that), only for being measured."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from hf_models import SMALL, HfModelDir


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cpu", "bench", *args], capture_output=True, text=True
    )


def test_reports_both_engines_on_the_same_workload(hf_model_dir: HfModelDir) -> None:
    directory, reference = hf_model_dir(**SMALL)
    out = bench(
        "--model",
        str(directory),
        "--threads",
        "1",
        "--prompt-tokens",
        "20",
        "--new-tokens",
        "5",
        "--repeats",
        "2",
        "--positions",
        "3,40",
        "--json",
        "--compare",
        "transformers",
    )
    assert out.returncode == 0, out.stderr
    report = json.loads(out.stdout)
    for engine in ("gpt2cpu", "transformers", "gpt2cpu_alongside"):
        r = report[engine]
        assert r["prompt_tokens_per_s"]["n"] == 2 and r["prompt_tokens_per_s"]["median"] > 0
        assert r["decode_ms_per_token"]["n"] == 2 * 5 and r["decode_tokens_per_s"] > 0
        assert sorted(r["decode_ms_at_position"]) == ["3", "40"]
        assert r["first_load_s"] > 0 and r["load_s"]["n"] == 2 and r["load_s"]["median"] > 0
        assert len(r["decode_ms_by_repeat"]) == 2
        assert len(r["prompt_tokens_per_s_by_repeat"]) == 2
    # The probes run after each of gpt2cpu's repeats when it runs alone, and only there:
    # the compute probe after each prompt, the bandwidth probe after each decode.
    assert len(report["gpt2cpu"]["multiply_add_peak_by_repeat"]) == 2
    assert report["transformers"]["multiply_add_peak_by_repeat"] == []
    assert report["gpt2cpu_alongside"]["multiply_add_peak_by_repeat"] == []
    assert len(report["gpt2cpu"]["read_bandwidth_by_repeat"]) == 2
    assert report["transformers"]["read_bandwidth_by_repeat"] == []
    assert report["gpt2cpu_alongside"]["read_bandwidth_by_repeat"] == []
    # The ratios come from the repeats run in turn with transformers'.
    alongside, theirs = report["gpt2cpu_alongside"], report["transformers"]
    assert report["speedup"]["prompt"] == (
        alongside["prompt_tokens_per_s"]["median"] / theirs["prompt_tokens_per_s"]["median"]
    )
    assert report["speedup"]["decode"] > 0 and report["speedup"]["prompt"] > 0
    assert (
        report["decode_bandwidth_share"] > 0 and report["peak_rss_bytes"] > report["weight_bytes"]
    )
    # The positions' sequences are held at once: (3 + 16) + (40 + 16) positions of cache.
    assert report["kv_cache_bytes"] == 2 * SMALL["n_layer"] * SMALL["n_embd"] * 4 * (19 + 56)
    # The flops a prompt needs, counted from the checkpoint's matrices: all of every
    # block's but the last for each of the 20 positions, with causal attention (scores and
    # values, 2 x n_embd multiply-adds per key a layer); in the last block the key and
    # value columns of c_attn for every position, the rest for the last position only, as
    # for the tied LM head. (With this n_embd, not a multiple of 16, gpt2cpu computes the
    # last block's queries for every position too: the report counts what is needed.)
    last = f".h.{SMALL['n_layer'] - 1}."
    matrices = {n: p.numel() for n, p in reference.named_parameters() if p.dim() == 2}
    blocks = {n: size for n, size in matrices.items() if ".h." in n}
    every_position = 20 * sum(size for n, size in blocks.items() if last not in n)
    last_position = sum(size for n, size in blocks.items() if last in n)
    other_keys_values = 19 * blocks[f"transformer{last}attn.c_attn.weight"] * 2 // 3
    C, L = SMALL["n_embd"], SMALL["n_layer"]
    attention = 2 * C * ((L - 1) * (20 * 21 // 2) + 20)
    head = reference.transformer.wte.weight.numel()
    matmuls = every_position + last_position + other_keys_values + head
    assert report["prompt_flops"] == 2 * (matmuls + attention)
    ours = report["gpt2cpu"]
    assert report["prompt_flops_per_s"] == pytest.approx(
        report["prompt_flops"] * ours["prompt_tokens_per_s"]["median"] / 20
    )
    assert report["multiply_add_peak_flops_per_s"] > 0 and report["prompt_peak_share"] > 0


def test_text_report(hf_model_dir: HfModelDir) -> None:
    directory, _ = hf_model_dir(**SMALL)
    out = bench(
        "--model", str(directory), "--threads", "1", "--prompt-tokens", "8", "--new-tokens",
        "3", "--repeats", "1", "--positions", "5",
    )
    assert out.returncode == 0, out.stderr
    labels = [line.split()[0] for line in out.stdout.splitlines()[1:]]
    assert labels == [
        "load", "prompt", "prompt", "decode", "weight", "peak", "decode"
    ], out.stdout
    assert "of the multiply-add peak probed after each repeat" in out.stdout
    assert "of the read bandwidth probed after each repeat" in out.stdout
    assert "decode at position 5 " in out.stdout


@pytest.mark.parametrize(
    ("args", "fragment"),
    [
        # Longer than the context of 64: the error names the flag to lower.
        (["--prompt-tokens", "65"], "--prompt-tokens 65 is more than the model's context of 64"),
        (["--new-tokens", "49"], "--new-tokens 49 is more than the 48 that"),
        (["--positions", "5,49"], "--positions 49 is more than the 48 that"),
        (["--repeats", "0"], "--repeats must be at least 1"),
        (["--new-tokens", "0"], "--new-tokens must be at least 1"),
        (["--prompt-tokens", "0"], "--prompt-tokens must be at least 1"),
        (["--batch", "0,2"], "--batch must each be at least 1, got 0"),
        (["--batch", "1,,2"], "--batch must be integers separated by commas"),
        (["--batch", ","], "--batch must be integers separated by commas"),
    ],
)
def test_a_workload_error_names_its_flag(hf_model_dir: HfModelDir, args: list[str],
                                         fragment: str) -> None:
    directory, _ = hf_model_dir(**SMALL)
    out = bench("--model", str(directory), "--new-tokens", "5", "--repeats", "1", *args)
    assert out.returncode == 2
    assert out.stderr.startswith(f"gpt2cpu bench: error: {fragment}"), out.stderr
    assert len(out.stderr.splitlines()) == 1


def test_positions_are_timed_in_turn() -> None:
    from gpt2cpu.bench.measure import _decode_at_positions
    from gpt2cpu.progress import Progress

    feeds: list[tuple[int, int]] = []  # (tokens in the state before, tokens fed)

    class Recorder:
        def new(self, capacity: int) -> list[int]:
            return []

        def feed(self, state: list[int], ids: list[int]) -> list[int]:
            feeds.append((len(state), len(ids)))
            # Each sequence goes on with the tokens that follow its prompt.
            assert ids == list(range(len(state), len(state) + len(ids)))
            return state + ids

    ids = list(range(50))  # token i at position i
    with Progress(2, "test", enabled=False) as bar:
        ms = _decode_at_positions(Recorder(), ids, (3, 40, 3), 3, bar)
    assert sorted(ms) == [3, 40]
    # Both prompts first, then one step each in turn, the order reversed every step.
    assert feeds == [(0, 3), (0, 40), (3, 1), (40, 1), (41, 1), (4, 1), (5, 1), (42, 1)]
