"""The engine's Python face: the batched forward step every higher layer (generation,
scoring, embeddings, task heads) runs through."""

from __future__ import annotations

from .step import StepOutputs, step

__all__ = ["StepOutputs", "step"]
