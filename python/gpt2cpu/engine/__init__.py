"""The engine's Python face: the batched forward step every higher layer (generation,
scoring, embeddings, task heads) runs through; ids.py: the token ids every entry point
takes (as_ids); holding.py: a call's hold on its sequences; threads.py: how many threads
it uses by default."""

from __future__ import annotations

from .batch import StepOutputs, step

__all__ = ["StepOutputs", "step"]
