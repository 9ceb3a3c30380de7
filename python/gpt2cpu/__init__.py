"""gpt2cpu: fast CPU inference for GPT-2-architecture language models.

The C++ engine is loaded on first use of `Model`, so tokenizer-only users and the
command line's light commands start without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# OpenMP threads that spin while waiting for each other make a busy machine (a laptop with
# other work, several engines on one server) slower: measured here with one core taken by
# another process, a 124M decode step took 384 ms instead of 29 ms under libgomp's default
# spin. This policy governs the engine's OpenMP regions (a prompt's operators, loading);
# a decode step runs in one region whose own barrier spins only while the machine is not
# busy (csrc/src/parallel.cpp). Set before the engine (and libgomp) loads; a policy or spin
# count the user chose is kept.
if "OMP_WAIT_POLICY" not in os.environ and "GOMP_SPINCOUNT" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"

# The cores this process may run on, read before the engine loads: with OMP_PROC_BIND set,
# libgomp binds the importing thread to one core as it starts, and an affinity read after
# that would make one thread the default on any machine (engine/threads.py).
try:
    _affinity_at_import: frozenset[int] | None = frozenset(os.sched_getaffinity(0))
except (AttributeError, OSError):
    _affinity_at_import = None

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .generation.loop import GenerationConfig, GenerationResult, GenerationStream
    from .generation.sampling import Sampler, SamplingParams
    from .loading.bundled import BUNDLED_MODEL_DIR
    from .model import DTYPES, KV_DTYPES, Model, Sequence
    from .tokenizer.tokenizer import Tokenizer

_LAZY = {
    "DTYPES": "model",
    "KV_DTYPES": "model",
    "Model": "model",
    "Sequence": "model",
    "Tokenizer": "tokenizer.tokenizer",
    "GenerationConfig": "generation.loop",
    "GenerationResult": "generation.loop",
    "GenerationStream": "generation.loop",
    "Sampler": "generation.sampling",
    "SamplingParams": "generation.sampling",
    "BUNDLED_MODEL_DIR": "loading.bundled",
}

__all__ = [
    "BUNDLED_MODEL_DIR",
    "DTYPES",
    "GenerationConfig",
    "GenerationResult",
    "GenerationStream",
    "KV_DTYPES",
    "Model",
    "Sampler",
    "SamplingParams",
    "Sequence",
    "Tokenizer",
    "__version__",
    "available_isas",
]


def available_isas() -> list[str]:
    """The kernel sets this CPU (and OS) can run, best last: the values `isa=` of
    `Model.from_pretrained` and the GPT2CPU_ISA environment variable accept."""
    from . import _core

    return list(_core.available_isas())


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt2cpu' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    # The lazy names are not in globals() until first used; dir() and tab completion
    # should list them from the start.
    return sorted(set(__all__) | {name for name in globals() if name.startswith("__")})
