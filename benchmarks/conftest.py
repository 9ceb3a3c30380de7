from __future__ import annotations

import sys
from pathlib import Path

import pytest
from gpt2cpu.engine.threads import available_cores

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))


def thread_counts() -> list[int]:
    """1 thread, and all usable cores when there are more."""
    cores = available_cores()
    return [1] if cores == 1 else [1, cores]


@pytest.fixture(params=thread_counts(), ids=lambda t: f"{t}threads")
def threads(request: pytest.FixtureRequest) -> int:
    return int(request.param)
