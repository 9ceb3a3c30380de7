"""gpt2cpu: fast CPU inference for GPT-2-architecture language models.

The C++ engine is loaded on first use of `Model`, so tokenizer-only users and the
command line's light commands start without it.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING, Any

# OpenMP threads that spin while waiting for each other make a busy machine (a laptop with
# other work, several engines on one server) many times slower: measured here, a 124M
# decode step took 384 ms instead of 29 ms with one core taken by another process. Passive
# waiting costs about 2% on an idle machine. Set before the engine (and libgomp) loads;
# a value the user chose is kept.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

__version__ = "0.1.0"

if TYPE_CHECKING:
    from .generation import GenerationConfig, GenerationResult, GenerationStream
    from .model import Model, Sequence
    from .sampling import SamplingParams
    from .tokenizer import Tokenizer

_LAZY = {
    "Model": "model",
    "Sequence": "model",
    "Tokenizer": "tokenizer",
    "GenerationConfig": "generation",
    "GenerationResult": "generation",
    "GenerationStream": "generation",
    "SamplingParams": "sampling",
}

__all__ = [
    "GenerationConfig",
    "GenerationResult",
    "GenerationStream",
    "Model",
    "SamplingParams",
    "Sequence",
    "Tokenizer",
    "__version__",
]


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpt2cpu' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(f".{module}", __name__), name)
    globals()[name] = value
    return value
