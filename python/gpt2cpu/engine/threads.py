"""How many threads the engine uses by default: the cores this process may actually run on."""

from __future__ import annotations

import math
import operator
import os
import warnings
from pathlib import Path

from .. import _affinity_at_import

ENV_VAR = "GPT2CPU_NUM_THREADS"
MAX_THREADS = 4096


class OversubscriptionWarning(UserWarning):
    """More compute threads were asked for than this process has cores to run them on."""


_warned_oversubscription = False


def check_threads(threads: object, name: str = "threads") -> int:
    """threads, checked; warns (once a process) when it exceeds the usable cores."""
    # Any integer type (numpy's too: operator.index refuses its bool), never a bool or float.
    try:
        if isinstance(threads, bool):
            raise TypeError
        threads = operator.index(threads)  # type: ignore[arg-type]
    except TypeError:
        raise TypeError(f"{name} must be an integer, got {threads!r}") from None
    if not 1 <= threads <= MAX_THREADS:
        raise ValueError(f"{name} must be in [1, {MAX_THREADS}], got {threads}")
    global _warned_oversubscription
    cores = available_cores()
    # Threads beyond the cores wait at every barrier for a descheduled peer: 64 threads on
    # 2 cores ran 10x slower. Once is enough: a server would otherwise repeat it per load.
    if threads > cores and not _warned_oversubscription:
        _warned_oversubscription = True
        warnings.warn(
            f"{name}={threads} is more than the {cores} usable cores; the extra threads "
            "make every step slower (each waits for threads the cores cannot run)",
            OversubscriptionWarning,
            stacklevel=3,
        )
    return threads


def _cgroup_cpu_limit() -> int | None:
    """CPUs granted by a cgroup quota (containers), rounded up; None when unlimited."""
    try:  # cgroup v2: "max 100000" or "<quota> <period>"
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()[:2]
        if quota != "max" and int(period) > 0:
            return max(1, math.ceil(int(quota) / int(period)))
        return None
    except (OSError, ValueError):
        pass
    try:  # cgroup v1
        quota_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_quota_us").read_text())
        period_us = int(Path("/sys/fs/cgroup/cpu/cpu.cfs_period_us").read_text())
        if quota_us > 0 and period_us > 0:
            return max(1, math.ceil(quota_us / period_us))
    except (OSError, ValueError):
        pass
    return None


def available_cores() -> int:
    """Cores this process may use: its CPU affinity, capped by any cgroup quota."""
    try:
        cores = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        cores = os.cpu_count() or 1
    # Under OMP_PROC_BIND, libgomp has bound this thread to one of the cores the process
    # had when gpt2cpu was imported: those are the cores (a later sched_setaffinity of the
    # user's own is kept otherwise).
    bind = os.environ.get("OMP_PROC_BIND", "").strip().lower()
    if bind not in ("", "false") and _affinity_at_import is not None:
        cores = len(_affinity_at_import)
    limit = _cgroup_cpu_limit()
    return max(1, min(cores, limit) if limit else cores)


def default_threads() -> int:
    """GPT2CPU_NUM_THREADS if set, else available_cores()."""
    env = os.environ.get(ENV_VAR, "").strip()
    if env:
        try:
            value = int(env)
        except ValueError:
            raise ValueError(f"{ENV_VAR} must be an integer, got {env!r}") from None
        return check_threads(value, ENV_VAR)
    return available_cores()
