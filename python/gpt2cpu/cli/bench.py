"""`gpt2cpu bench`: speed of a model directory or of a random model of a GPT-2 shape."""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any

from ..bench.random_model import (
    CACHE_ENV,
    SHAPES,
    cache_dir,
    random_model_path,
    remove_random_models,
)
from . import CliError
from .common import (
    DTYPE_NAMES,
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    model_directory,
    require_stdout,
    threads_of,
    with_flag,
)

# The Workload fields a user sets, as the flags that set them.
_FLAGS = {
    "prompt_tokens": "--prompt-tokens",
    "new_tokens": "--new-tokens",
    "repeats": "--repeats",
    "positions": "--positions",
    "batches": "--batch",
}


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "bench",
        help="measure load, prompt and decode speed",
        description="Measure load time, prompt and decode throughput, peak memory, the "
        "share of the memory-bandwidth roofline that decode reaches and the share of the "
        "arithmetic peak that a prompt reaches.",
    )
    add_model_argument(p)
    add_dtype_arguments(p, allow_all=True)
    p.add_argument(
        "--shape",
        choices=sorted(SHAPES, key=lambda s: int(s[:-1])),
        help="benchmark a random-weight model of this GPT-2 shape instead of --model; it is "
        f"written on first use to {cache_dir()} (${CACHE_ENV}, else $XDG_CACHE_HOME/gpt2cpu, "
        "else ~/.cache/gpt2cpu; 0.5-6.3 GB a shape) and kept for the next run",
    )
    p.add_argument(
        "--remove-cache",
        action="store_true",
        help="delete the random models --shape wrote, and do nothing else",
    )
    add_threads_argument(p)
    p.add_argument(
        "--isa",
        default=None,
        help="kernel set to run (default: GPT2CPU_ISA, else the best this CPU has)",
    )
    p.add_argument(
        "--prompt-tokens",
        type=int,
        default=None,
        metavar="P",
        help="prompt length for the prompt-processing measurement (default 512, or the "
        "model's context where shorter)",
    )
    p.add_argument(
        "--new-tokens",
        type=int,
        default=128,
        metavar="N",
        help="tokens decoded per repeat after a 16-token prompt (default 128)",
    )
    p.add_argument("--repeats", type=int, default=3, help="repeats of each measurement (3)")
    p.add_argument(
        "--positions",
        default="",
        metavar="P1,P2",
        help="also time decode steps with this many tokens already in the cache",
    )
    p.add_argument(
        "--compare",
        choices=["transformers"],
        help="run the same workload through transformers + PyTorch and print ratios",
    )
    p.add_argument(
        "--batch",
        default="",
        metavar="B1,B2",
        help="also time decode of B sequences stepping together (e.g. 1,4,16,64): aggregate "
        "and per-sequence tokens/s",
    )
    p.add_argument("--json", action="store_true", help="print the results as JSON")
    p.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    from ..bench.measure import Workload, random_model_dir
    from ..bench.measure import run as run_bench

    require_stdout()
    if args.remove_cache:
        removed = remove_random_models()
        for path in removed:
            print(f"removed {path}")
        if not removed:
            print(f"no random models in {cache_dir()}")
        return 0
    if args.shape and args.model:
        raise ValueError("give --model or --shape, not both")
    if args.shape:
        # First, and on stderr so that --json output stays JSON: gigabytes written to the
        # user's disk deserve a line saying where, and how to get them back.
        place = random_model_path(args.shape)
        state = "cached" if (place / "config.json").is_file() else "writing it now"
        print(f"gpt2cpu bench: random GPT-2 {args.shape} model in {place} ({state}; "
              "gpt2cpu bench --remove-cache deletes it)", file=sys.stderr, flush=True)
    threads = threads_of(args)
    positions = _integers(args.positions, "--positions")
    batches = _integers(args.batch, "--batch")
    if args.dtype == "all":
        return run_every_dtype(args)
    work = Workload(
        threads=threads,
        dtype=args.dtype,
        kv_dtype=args.kv_dtype,
        prompt_tokens=512 if args.prompt_tokens is None else args.prompt_tokens,
        fit_prompt=args.prompt_tokens is None,
        new_tokens=args.new_tokens,
        repeats=args.repeats,
        positions=positions,
        isa=args.isa,
        batches=batches,
    )
    directory = random_model_dir(args.shape) if args.shape else model_directory(args)
    try:
        report = run_bench(directory, work, compare=args.compare)
    except ValueError as exc:
        raise CliError(with_flag(str(exc), _FLAGS)) from None
    print(json.dumps(report, indent=2) if args.json else format_report(report, args.shape))
    return 0


def _integers(value: str, flag: str) -> tuple[int, ...]:
    """A comma-separated list of integers; empty: none at all (the flag's default)."""
    if not value:
        return ()
    try:
        return tuple(int(p) for p in value.split(","))  # an empty item is an error too
    except ValueError:
        raise ValueError(f"{flag} must be integers separated by commas, got {value!r}") from None


def run_every_dtype(args: argparse.Namespace) -> int:
    """The same bench for each weight type in turn, each in a fresh process (so that its
    load time and peak memory are its own), then a table of them side by side."""
    import subprocess
    import sys

    argv = [a for a in args.argv if a != "--json"]
    at = argv.index("--dtype") if "--dtype" in argv else -1
    if at >= 0:
        del argv[at : at + 2]
    argv = [a for a in argv if not a.startswith("--dtype=")]
    reports = []
    for dtype in DTYPE_NAMES:
        print(f"gpt2cpu bench: running --dtype {dtype}", file=sys.stderr, flush=True)
        done = subprocess.run(
            [sys.executable, "-m", "gpt2cpu", *argv, "--dtype", dtype, "--json"],
            stdout=subprocess.PIPE, text=True,
        )
        if done.returncode > 0:
            return done.returncode  # the child has said why, on stderr
        if done.returncode < 0:
            raise CliError(f"the --dtype {dtype} run was killed by signal {-done.returncode}")
        reports.append(json.loads(done.stdout))
    if args.json:
        print(json.dumps(reports, indent=2))
    else:
        for r in reports:
            print(format_report(r, args.shape))
        print(format_dtype_table(reports))
    return 0


def format_dtype_table(reports: list[dict[str, Any]]) -> str:
    base = reports[0]["gpt2cpu"]["decode_tokens_per_s"]
    lines = [
        f"every dtype, side by side, {reports[0].get('kv_dtype', 'float32')} KV cache "
        "(medians; decode x: against the first row):",
        f"  {'dtype':<9} {'weights MB':>10} {'MB/token':>9} {'decode tok/s':>12} {'x':>6} "
        f"{'roofline':>8} {'prompt tok/s':>12} {'load s':>7} {'peak RSS MB':>11}",
    ]
    for r in reports:
        ours = r["gpt2cpu"]
        lines.append(
            f"  {r['dtype']:<9} {r['weight_bytes'] / 1e6:>10.1f} "
            f"{r['decode_bytes_per_token'] / 1e6:>9.1f} {ours['decode_tokens_per_s']:>12.1f} "
            f"{ours['decode_tokens_per_s'] / base:>5.2f}x {r['decode_bandwidth_share']:>8.0%} "
            f"{ours['prompt_tokens_per_s']['median']:>12.0f} {ours['first_load_s']:>7.2f} "
            f"{r['peak_rss_bytes'] / 1e6:>11.0f}"
        )
    return "\n".join(lines)


def format_report(r: dict[str, Any], shape: str | None) -> str:
    ours = r["gpt2cpu"]
    w = r["workload"]
    mb = 1e6
    what = f"random GPT-2 {shape}" if shape else r["model"]
    lines = [
        f"gpt2cpu bench: {what} ({r['parameters'] / 1e6:.1f}M parameters), "
        f"{w['threads']} thread{'' if w['threads'] == 1 else 's'}, {r['isa']} kernels, "
        f"{r['dtype']} weights, {r['kv_dtype']} KV cache",
        _load_line(ours),
        _prompt_line("prompt", ours, w),
        f"  prompt arithmetic    {r['prompt_flops_per_s'] / 1e9:.0f} GFLOP/s, "
        f"{r['prompt_peak_share']:.0%} of the multiply-add peak probed after each repeat "
        f"(median {r['multiply_add_peak_flops_per_s'] / 1e9:.0f} GFLOP/s; "
        f"{r['prompt_flops'] / 1e9:.1f} GFLOP a prompt)",
        _decode_line("decode", ours, w),
        f"  weight streaming     {r['decode_bytes_per_s'] / 1e9:.1f} GB/s, "
        f"{r['decode_bandwidth_share']:.0%} of the read bandwidth probed after each repeat "
        f"(median {r['read_bandwidth_bytes_per_s'] / 1e9:.1f} GB/s, roofline "
        f"{r['decode_roofline_tokens_per_s']:.1f} tokens/s)",
        f"  peak RSS             {r['peak_rss_bytes'] / mb:.0f} MB = "
        f"{r['peak_rss_bytes'] / (r['weight_bytes'] + r['kv_cache_bytes']):.2f}x (weights "
        f"{r['weight_bytes'] / mb:.0f} MB + the most KV cache held at once "
        f"{r['kv_cache_bytes'] / mb:.0f} MB)",
    ]
    for pos, ms in ours["decode_ms_at_position"].items():
        lines.append(f"  decode at position {pos:<5} {ms:.2f} ms/token")
    for b, rates in r.get("batch_decode", {}).items():
        lines.append(
            f"  decode batch {b:<4}      {rates['aggregate_tokens_per_s']:7.1f} tokens/s in "
            f"all, {rates['per_sequence_tokens_per_s']:.1f} per sequence"
        )
    ref = r.get("transformers")
    if ref:
        lines += [
            "transformers + PyTorch, same workload:",
            _load_line(ref),
            _prompt_line("prompt", ref, w),
            _decode_line("decode", ref, w),
        ]
        for pos, ms in ref["decode_ms_at_position"].items():
            lines.append(f"  decode at position {pos:<5} {ms:.2f} ms/token")
        alongside = r["gpt2cpu_alongside"]
        lines += [
            "gpt2cpu again, its repeats alternating with transformers':",
            _prompt_line("prompt", alongside, w),
            _decode_line("decode", alongside, w),
        ]
        s = r["speedup"]
        lines.append(
            f"gpt2cpu / transformers, repeat by repeat: decode {s['decode']:.2f}x, "
            f"prompt {s['prompt']:.2f}x"
        )
    return "\n".join(lines)


def _load_line(e: dict[str, Any]) -> str:
    warm = e["load_s"]
    return (
        f"  load                 {warm['median']:.3f} s warm (median of {warm['n']}, "
        f"p10-p90 {warm['p10']:.3f}-{warm['p90']:.3f}); first in the process "
        f"{e['first_load_s']:.3f} s"
    )


def _prompt_line(label: str, e: dict[str, Any], w: dict[str, Any]) -> str:
    p = e["prompt_tokens_per_s"]
    return (
        f"  {label} ({w['prompt_tokens']} tokens) {p['median']:7.0f} tokens/s "
        f"(median of {p['n']}, p10-p90 {p['p10']:.0f}-{p['p90']:.0f})"
    )


def _decode_line(label: str, e: dict[str, Any], w: dict[str, Any]) -> str:
    d = e["decode_ms_per_token"]
    return (
        f"  {label} ({w['decode_prompt_tokens']}+{w['new_tokens']})    "
        f"{e['decode_tokens_per_s']:7.1f} tokens/s, {d['median']:.2f} ms/token "
        f"(p10-p90 {d['p10']:.2f}-{d['p90']:.2f}, {d['n']} steps)"
    )
