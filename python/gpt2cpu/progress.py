"""A minimal progress line on stderr for long work (loading, benchmarks, perplexity).

Shown only where a person is watching (stderr is a terminal) unless forced, and redrawn at
most a few times a second so it never costs measurable time.
"""

from __future__ import annotations

import sys
import time
from typing import TextIO


class Progress:
    def __init__(
        self, total: float, label: str, *, enabled: bool | None = None, unit: str = "",
        stream: TextIO | None = None,
    ) -> None:
        self.stream = stream if stream is not None else sys.stderr
        if self.stream is None:  # no stderr at all (pythonw, 2>&-): nowhere to draw
            enabled = False
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.total = max(float(total), 1e-9)
        self.label = label
        self.unit = unit
        self.done = 0.0
        self.start = time.perf_counter()
        self._last_draw = 0.0

    def advance(self, amount: float = 1.0, note: str = "") -> None:
        self.done += amount
        now = time.perf_counter()
        if self.enabled and (now - self._last_draw > 0.2 or self.done >= self.total):
            self._last_draw = now
            self._draw(now, note)

    def _draw(self, now: float, note: str) -> None:
        frac = min(self.done / self.total, 1.0)
        elapsed = now - self.start
        eta = elapsed * (1 - frac) / frac if frac > 0 else float("nan")
        bar = "#" * int(frac * 24)
        line = f"\r{self.label} [{bar:<24}] {frac:6.1%}  {elapsed:5.1f}s elapsed, {eta:5.1f}s left"
        if note:
            line += f"  {note}"
        self.stream.write(line[:160])
        self.stream.flush()

    def close(self) -> None:
        if self.enabled:
            self.stream.write("\n")
            self.stream.flush()

    def __enter__(self) -> Progress:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
