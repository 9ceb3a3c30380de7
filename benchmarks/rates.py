"""Throughput figures for a benchmark's extra_info, from its median time."""

from __future__ import annotations

from typing import Any


def record_rate(benchmark: Any, unit: str, work: float) -> float | None:
    """extra_info[unit] = work per second at the median time, which it returns. Under
    --benchmark-disable nothing is timed: records nothing and returns None."""
    if benchmark.stats is None:
        return None
    median = float(benchmark.stats.stats.median)
    benchmark.extra_info[unit] = round(work / median, 2)
    return median
