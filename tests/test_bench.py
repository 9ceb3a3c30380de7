"""`gpt2cpu bench` on a small model: what it reports, for gpt2cpu and transformers alike.
Figures are not checked for speed (benchmarks do that), only for being measured."""

from __future__ import annotations

import json
import subprocess
import sys

from hf_models import SMALL


def bench(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "gpt2cpu", "bench", *args], capture_output=True, text=True
    )


def test_reports_both_engines_on_the_same_workload(hf_model_dir) -> None:
    directory, _ = hf_model_dir(**SMALL)
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
    # The bandwidth probe runs after each of gpt2cpu's decode repeats, and only there.
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
    assert report["kv_cache_bytes"] == 2 * SMALL["n_layer"] * SMALL["n_embd"] * 4 * (40 + 16)


def test_a_workload_longer_than_the_context_is_refused(hf_model_dir) -> None:
    directory, _ = hf_model_dir(**SMALL)
    out = bench("--model", str(directory), "--prompt-tokens", "65", "--new-tokens", "5")
    assert out.returncode == 2
    assert "65 positions" in out.stderr and "64" in out.stderr and "Traceback" not in out.stderr
