"""Turning a batch of texts or id lists into checked token ids, naming the bad element."""

from __future__ import annotations

from collections.abc import Sequence as Seq
from typing import TYPE_CHECKING, Any

import numpy as np

from ..engine.ids import IdsLike, as_ids

if TYPE_CHECKING:
    from ..model import Model


def batch_ids(
    model: Model, texts: Seq[str | IdsLike], name: str, *, most: int, least: int = 1
) -> list[np.ndarray[Any, np.dtype[np.int64]]]:
    """The token ids of each element of texts (a string is encoded with the model's
    tokenizer), each holding least..most tokens; ValueError or TypeError naming the
    element otherwise."""
    if isinstance(texts, (str, bytes, np.ndarray)) or not isinstance(texts, Seq):
        raise TypeError(
            f"{name} must be a list of strings or of token id lists, got {type(texts).__name__}"
        )
    if not texts:
        raise ValueError(f"{name} must not be empty")
    out: list[np.ndarray[Any, np.dtype[np.int64]]] = []
    for i, item in enumerate(texts):
        where = f"{name}[{i}]"
        if isinstance(item, str):
            if model.tokenizer is None:
                raise ValueError(
                    f"{where} is text but this model has no tokenizer files; pass token ids"
                )
            ids = np.array(model.tokenizer.encode(item), dtype=np.int64)
        else:
            ids = as_ids(item, model.config.vocab_size, where)
        if not least <= ids.size <= most:
            raise ValueError(
                f"{where} holds {ids.size} tokens; it must hold {least} to {most} "
                f"(the model's context is {model.config.n_positions} tokens)"
            )
        out.append(ids)
    return out
