"""Run-time choices: the kernel set (GPT2CPU_ISA) and the default thread count; processes
forked after the engine ran on several threads."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from gpt2cpu.engine import threads
from model_files import TINY, model_dir

# Big enough that a prompt's operators and a decode step open regions of two threads.
MEDIUM = dict(TINY, n_layer=2, n_embd=256, n_head=4, n_positions=64, vocab_size=1001)


def run_python(code: str, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env={**os.environ, **env}
    )


def run_with_timeout(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    """Runs a child in a session of its own and kills the whole session (its pool workers
    too) if it runs past timeout, so that a hang fails the test instead of eating CI."""
    process = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                               start_new_session=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        stdout, stderr = process.communicate()
        pytest.fail(f"hung for {timeout} s (killed): {stdout[-2000:]} {stderr[-2000:]}")
    return subprocess.CompletedProcess(args, process.returncode, stdout, stderr)


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


@pytest.mark.parametrize("first", ["step", "prompt", "kernel"])
def test_unknown_isa_env_is_a_value_error_when_a_model_runs_first(tmp_path: Path,
                                                                  first: str) -> None:
    """The first thing the process does is run the model: a one-token step (whose operators
    run inside one parallel region, where an exception would call std::terminate), a prompt,
    or a kernel in a team. Each must end in ValueError, not an abort."""
    directory = model_dir(tmp_path / "model", MEDIUM)
    run = {
        "step": "gpt2cpu.Model.from_pretrained(path, threads=2).new_sequence().append([1])",
        "prompt": "gpt2cpu.Model.from_pretrained(path, threads=2).forward(list(range(40)))",
        "kernel": "_core.testing.PackedWeight(np.ones((8, 16), np.float32)).matmul("
                  "np.ones((1, 8), np.float32), threads=2, team=True)",
    }[first]
    code = (
        "import numpy as np, gpt2cpu\nfrom gpt2cpu import _core\n"
        f"path = {str(directory)!r}\n"
        f"try:\n    {run}\nexcept ValueError as e:\n    print('error:', e)"
    )
    out = run_python(code, GPT2CPU_ISA="avx9000")
    assert out.returncode == 0, out.stderr[-3000:]
    assert "error: GPT2CPU_ISA: unknown ISA 'avx9000'" in out.stdout


FORK_SCRIPT = """
import multiprocessing, os, sys, warnings
import numpy as np, gpt2cpu
from gpt2cpu import _core

path = sys.argv[1]
model = gpt2cpu.Model.from_pretrained(path, threads=2)
IDS = [int(i) for i in np.random.default_rng(0).integers(0, 1001, 48)]
# Both ways the engine spreads work: a region per operator (a prompt), one region per step.
want_prompt = model.forward(IDS)
sequence = model.new_sequence()
sequence.append(IDS[:5])
want_step = sequence.append([7])

def child(_):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        prompt = model.forward(IDS)
        sequence = model.new_sequence()
        sequence.append(IDS[:5])
        step = sequence.append([7])
        loaded = gpt2cpu.Model.from_pretrained(path, threads=2).forward(IDS)
    warned = sum("forked" in str(w.message) for w in caught)
    same = [np.array_equal(prompt, want_prompt), np.array_equal(step, want_step),
            np.array_equal(loaded, want_prompt)]
    return os.getpid(), all(same), _core.forked_after_threads(), warned

if __name__ == "__main__":
    for method in sys.argv[2:]:
        with multiprocessing.get_context(method).Pool(2) as pool:
            for pid, same, forked, warned in pool.map(child, range(4)):
                print(method, pid, same, forked, warned)
"""


def test_a_process_forked_after_the_engine_ran_computes_the_same(tmp_path: Path) -> None:
    """libgomp's thread pool does not survive fork: a child forked after the parent ran on
    two threads used to wait forever in its first region. It computes on one thread now,
    with the same logits, and warns once; a forkserver's children keep their threads."""
    directory = model_dir(tmp_path / "model", MEDIUM)
    script = tmp_path / "fork_script.py"
    script.write_text(FORK_SCRIPT)
    out = run_with_timeout([sys.executable, str(script), str(directory), "fork", "forkserver"],
                           timeout=120)
    assert out.returncode == 0, out.stderr[-3000:]
    rows = [line.split() for line in out.stdout.splitlines()]
    assert len(rows) == 8, out.stdout
    warnings_per_process: dict[tuple[str, str], int] = {}
    for method, pid, same, forked, warned in rows:
        assert same == "True", f"{method}: the child's logits differ from the parent's"
        assert forked == str(method == "fork")
        key = (method, pid)
        warnings_per_process[key] = warnings_per_process.get(key, 0) + int(warned)
    for (method, _), count in warnings_per_process.items():
        assert count == (1 if method == "fork" else 0)


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


def test_threads_take_any_integer_type_and_nothing_else() -> None:
    import numpy as np

    assert threads.check_threads(np.int64(2)) == 2
    assert type(threads.check_threads(np.int32(1))) is int
    for bad in (True, np.bool_(True), 2.0, np.float64(2), "2", None):
        with pytest.raises(TypeError) as info:
            threads.check_threads(bad)
        assert str(info.value) == f"threads must be an integer, got {bad!r}"


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity") or len(os.sched_getaffinity(0)) < 2,
                    reason="needs a process that may run on 2 or more cores")
def test_openmp_binding_does_not_shrink_the_default_threads() -> None:
    """With OMP_PROC_BIND, libgomp binds the importing thread to one core as the engine
    loads; the default is still every core the process had."""
    out = run_python(
        "import os, gpt2cpu\nfrom gpt2cpu import _core\n"
        "from gpt2cpu.engine.threads import default_threads\n"
        "print(len(os.sched_getaffinity(0)), default_threads())",
        OMP_PROC_BIND="true",
    )
    bound, default = map(int, out.stdout.split())
    assert (bound, default) == (1, len(os.sched_getaffinity(0))), out.stderr


def test_cgroup_quota_caps_the_cores(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cpu_max = tmp_path / "cpu.max"
    cpu_max.write_text("150000 100000\n")  # 1.5 CPUs: rounded up to 2
    real_path = Path  # what threads.Path is

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


def test_a_bad_isa_argument_is_named_before_any_file_is_read(
        monkeypatch: pytest.MonkeyPatch) -> None:
    import gpt2cpu

    def never(*args: object) -> None:
        raise AssertionError("the checkpoint was opened")

    monkeypatch.setattr("gpt2cpu.model.open_checkpoint", never)
    isas = ", ".join(gpt2cpu.available_isas())
    with pytest.raises(TypeError, match=rf"^isa must be a string, one of {isas} or 'auto'; "
                                        r"got 2$"):
        gpt2cpu.Model.from_pretrained(isa=2)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=rf"^unknown ISA 'avx9000'; this CPU can run: {isas}$"):
        gpt2cpu.Model.from_pretrained(isa="avx9000")
