"""Fresh-process load time and load memory against issue 17's targets.

    python benchmarks/bench_load.py MODEL_DIR [--repeats 7] [--threads 2]
    python benchmarks/bench_load.py MODEL_DIR --compare /path/to/other/site-packages

Every sample is a new process, as a user's first load is: `import gpt2cpu`, then
`Model.from_pretrained(MODEL_DIR, threads, dtype)` timed (tokenizer and the imports it
triggers included), then two short generations (the first must not be slower than the
second: nothing may be deferred to it). Beside them, in fresh processes too, a bare
allocate-and-touch of as many bytes as the packed weights (mapped and written as the
engine's weight buffer is): the VM's cost of fresh memory, which the float targets allow
on top of 0.15 s. Samples are interleaved (dtype, build and alloc-touch in turn) so that a
busy machine weighs on all alike; medians are printed.

Memory: peak RSS minus RSS after `import gpt2cpu`, against 1.2 x (packed weights + a full
context's KV cache) + 40 MB.

--compare runs every sample a second time with that directory first on PYTHONPATH (an
install of another build, `pip install --no-deps --target DIR .`), for before/after figures
from one run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path

DTYPES = ("float32", "bfloat16", "int8", "int4")
LOAD_TARGET_S = {"float32": 0.15, "bfloat16": 0.15, "int8": 0.3, "int4": 0.3}
# Only the float types' target adds the time fresh memory takes.
PLUS_TOUCH = {"float32": True, "bfloat16": True, "int8": False, "int4": False}

CHILD = r"""
import json, os, sys, time

def rss():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

# VmHWM, not ru_maxrss: that one starts from the parent's peak when the child is spawned
# with vfork, as subprocess does.
def peak():
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmHWM:"))

directory, dtype, threads = sys.argv[1], sys.argv[2], int(sys.argv[3])
import gpt2cpu
after_import = rss()
t0 = time.perf_counter()
model = gpt2cpu.Model.from_pretrained(directory, threads=threads, dtype=dtype)
load_s = time.perf_counter() - t0
peak_load = peak()
gens = []
for _ in range(2):
    t0 = time.perf_counter()
    model.generate("The quick brown fox", max_new_tokens=8, temperature=0)
    gens.append(time.perf_counter() - t0)
c = model.config
print(json.dumps({
    "load_s": load_s, "gen1_s": gens[0], "gen2_s": gens[1],
    "after_import": after_import, "peak_load": peak_load,
    "peak_gen": peak(),
    "weight_bytes": int(model._core.weight_bytes),
    "kv_bytes": 2 * c.n_layer * c.n_positions * c.n_embd * 4,
}))
"""

# Mapped, huge-page advised and written like the engine's weight buffer (csrc/src/buffer.cpp).
TOUCH = r"""
import mmap, sys, time
import numpy as np
n = int(sys.argv[1])
t0 = time.perf_counter()
m = mmap.mmap(-1, n + (2 << 20))
if hasattr(mmap, "MADV_HUGEPAGE"):
    m.madvise(mmap.MADV_HUGEPAGE)
np.frombuffer(m, dtype=np.uint8).fill(1)
print(time.perf_counter() - t0)
"""


def run(code: str, args: list[str], pythonpath: str | None) -> str:
    env = dict(os.environ)
    if pythonpath:
        env["PYTHONPATH"] = pythonpath + os.pathsep + env.get("PYTHONPATH", "")
    done = subprocess.run([sys.executable, "-c", code, *args], env=env, check=True,
                          capture_output=True, text=True)
    return done.stdout.strip().splitlines()[-1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--dtypes", default=",".join(DTYPES))
    parser.add_argument("--compare", help="another build's install directory (PYTHONPATH)")
    args = parser.parse_args()
    dtypes = args.dtypes.split(",")
    builds: dict[str, str | None] = {"this": None}
    if args.compare:
        builds = {"compare": args.compare, "this": None}
    samples: dict[tuple[str, str], list[dict[str, float]]] = {}
    touch: dict[str, list[float]] = {}
    weight_bytes: dict[str, int] = {}
    for rep in range(args.repeats):
        for dtype in dtypes:
            for build, path in builds.items():
                out = json.loads(run(CHILD, [str(args.model), dtype, str(args.threads)], path))
                samples.setdefault((build, dtype), []).append(out)
                weight_bytes[dtype] = out["weight_bytes"]
            touch.setdefault(dtype, []).append(float(run(TOUCH, [str(weight_bytes[dtype])], None)))
        print(f"round {rep + 1}/{args.repeats} done", file=sys.stderr)

    mb = 1e6
    print(f"{args.model}, {args.threads} threads, medians of {args.repeats} fresh processes")
    for dtype in dtypes:
        t = statistics.median(touch[dtype])
        target = LOAD_TARGET_S[dtype] + (t if PLUS_TOUCH[dtype] else 0.0)
        print(f"{dtype}: packed {weight_bytes[dtype] / mb:.0f} MB, alloc-touch {t:.3f} s, "
              f"load target <= {target:.3f} s")
        for build in builds:
            rows = samples[(build, dtype)]
            med = {k: statistics.median(r[k] for r in rows) for k in rows[0]}
            allowed = 1.2 * (med["weight_bytes"] + med["kv_bytes"]) + 40 * mb
            grown = max(med["peak_load"], med["peak_gen"]) - med["after_import"]
            ratio = grown / (med["weight_bytes"] + med["kv_bytes"])
            print(f"  {build:8s} load {med['load_s']:.3f} s "
                  f"[{'ok' if med['load_s'] <= target else 'OVER'}]  "
                  f"generate 1st {med['gen1_s'] * 1e3:.0f} ms / 2nd {med['gen2_s'] * 1e3:.0f} ms  "
                  f"peak-import {grown / mb:.0f} MB = {ratio:.2f}x (packed+KV), "
                  f"allowed {allowed / mb:.0f} MB [{'ok' if grown <= allowed else 'OVER'}]")


if __name__ == "__main__":
    main()
