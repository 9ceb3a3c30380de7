"""Run-time choices: the kernel set (GPT2CPU_ISA) and the default thread count."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from gpt2cpu import threads


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )


def test_isa_env_forces_the_portable_kernels() -> None:
    out = run_python("from gpt2cpu import _core; print(_core.testing.isa())", GPT2CPU_ISA="generic")
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "generic"


def test_isa_env_rejects_unknown_names_with_a_clear_error() -> None:
    code = (
        "from gpt2cpu import _core\n"
        "try:\n    _core.testing.isa()\nexcept ValueError as e:\n    print('error:', e)"
    )
    out = run_python(code, GPT2CPU_ISA="avx9000")
    assert out.returncode == 0, out.stderr
    assert "GPT2CPU_ISA" in out.stdout and "avx9000" in out.stdout


def test_a_bad_isa_env_is_a_value_error_when_the_engine_loads() -> None:
    code = "import gpt2cpu.model"
    out = run_python(code, GPT2CPU_ISA="avx9000")
    assert out.returncode == 1
    assert "ValueError: GPT2CPU_ISA: unknown ISA 'avx9000'" in out.stderr, out.stderr


def test_a_bad_isa_env_never_reaches_a_parallel_region() -> None:
    """The first use of the engine a one-row product in a team (a decode step's shape): the
    table is taken before the region opens, so the error is a ValueError, not terminate."""
    code = (
        "import numpy as np\n"
        "from gpt2cpu import _core\n"
        "a = np.ones((1, 8), np.float32)\n"
        "for call in (lambda: _core.testing.matmul(a, np.ones((8, 8), np.float32), threads=2,"
        " team=True), lambda: _core.Model(_core.Config(), 2)):\n"
        "    try:\n        call()\n    except ValueError as e:\n        print('error:', e)"
    )
    out = run_python(code, GPT2CPU_ISA="avx9000")
    assert out.returncode == 0, out.stderr
    assert out.stdout.count("error: GPT2CPU_ISA: unknown ISA 'avx9000'") == 2, out.stdout


def test_available_isas_and_kernel_info() -> None:
    import gpt2cpu
    from gpt2cpu import _core

    isas = gpt2cpu.available_isas()
    assert isas[0] == "generic" and set(isas) <= {"generic", "avx2", "avx512", "neon"}
    features = _core.cpu_features()
    if features.get("avx512f") and features.get("avx512bw") and features.get("os_saves_zmm"):
        assert "avx512" in isas


def test_default_is_the_best_isa_the_cpu_has() -> None:
    out = run_python(
        "from gpt2cpu import _core; k = _core.testing; print(k.isa() == k.available_isas()[-1])",
        GPT2CPU_ISA="",
    )
    assert out.stdout.strip() == "True", out.stderr


def test_default_threads_follow_affinity_and_the_env_var(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(threads.ENV_VAR, raising=False)
    assert threads.default_threads() == threads.available_cores() <= len(os.sched_getaffinity(0))
    monkeypatch.setenv(threads.ENV_VAR, "3")
    assert threads.default_threads() == 3


def test_cgroup_quota_caps_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: rounded up to 2
    real_path = threads.Path

    def fake_path(p: str) -> Path:
        return cpu_max if p == "/sys/fs/cgroup/cpu.max" else real_path(p)

    monkeypatch.setattr(threads, "Path", fake_path)
    monkeypatch.setattr(os, "sched_getaffinity", lambda pid: set(range(64)))
    assert threads.available_cores() == 2
    cpu_max.write_text("max 100000\n")
    assert threads.available_cores() == 64


@pytest.mark.parametrize(
    ("env", "policy"),
    [
        ({}, "PASSIVE"),
        ({"OMP_WAIT_POLICY": "ACTIVE"}, "ACTIVE"),
        ({"GOMP_SPINCOUNT": "1000"}, None),  # a spin count asked for is not overridden
    ],
)
def test_openmp_threads_wait_passively_unless_the_user_chose(
    env: dict[str, str], policy: str | None
) -> None:
    base = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "GOMP_SPINCOUNT")}
    out = subprocess.run(
        [sys.executable, "-c", "import os, gpt2cpu; print(os.environ.get('OMP_WAIT_POLICY'))"],
        capture_output=True, text=True, env={**base, **env},
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == str(policy)
