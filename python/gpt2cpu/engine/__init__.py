"""The engine's Python face: the batched forward step every higher layer (generation,
scoring, embeddings, task heads) runs through."""

from __future__ import annotations

from .batch import StepOutputs, step

__all__ = ["StepOutputs", "step"]
