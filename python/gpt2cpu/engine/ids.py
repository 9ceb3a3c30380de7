"""Token ids as every entry point takes them: IdsLike, and as_ids, which checks them. Here
in the engine, the lowest layer that takes ids (its step), so that it and every layer
above (tasks, generation, the server) check them with the same rule and messages."""

from __future__ import annotations

import operator
from collections.abc import Iterable
from typing import Any

import numpy as np

IdsLike = Iterable[int] | np.ndarray[Any, Any]
# A count or position the API takes: numpy's integers are integers too.
Int = int | np.integer[Any]


def as_ids(ids: IdsLike, vocab_size: int, name: str = "ids") -> np.ndarray[Any, np.dtype[np.int64]]:
    """Validate token ids: a 1-D sequence of integers in [0, vocab_size). Never modifies ids."""
    if isinstance(ids, (str, bytes)):
        raise TypeError(
            f"{name} must be a sequence of token ids, not {type(ids).__name__}; "
            "encode text with model.tokenizer first"
        )
    if isinstance(ids, np.ndarray):
        if ids.dtype == np.bool_ or not np.issubdtype(ids.dtype, np.integer):
            raise TypeError(f"{name} must hold integers, got an array of {ids.dtype}")
        if ids.ndim != 1:
            raise ValueError(f"{name} must be one-dimensional, got shape {ids.shape}")
        # Checked before the cast: a uint64 id past 2**63 would wrap to a negative int64.
        bad = np.flatnonzero((ids < 0) | (ids >= vocab_size))
        if bad.size:
            i = int(bad[0])
            raise ValueError(
                f"{name}[{i}] = {int(ids[i])} is outside the vocabulary [0, {vocab_size})"
            )
        return ids.astype(np.int64)  # a copy: the caller's array is left alone
    if not isinstance(ids, Iterable):
        raise TypeError(f"{name} must be a sequence of token ids, got {type(ids).__name__}")
    values = list(ids)
    for i, v in enumerate(values):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)):
            raise TypeError(f"{name}[{i}] must be an integer token id, got {v!r}")
        # Checked before numpy sees it: an int past int64 would raise OverflowError there.
        if not 0 <= v < vocab_size:
            raise ValueError(f"{name}[{i}] = {int(v)} is outside the vocabulary [0, {vocab_size})")
    return np.array([operator.index(v) for v in values], dtype=np.int64)


def int_in(value: object, name: str, low: int, high: int) -> int:
    """value as an int in [low, high]: any integer type (numpy's too), never a bool;
    ValueError naming the argument otherwise. One rule for the counts and positions the
    API takes (last_n, length, layer)."""
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)):
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    if not low <= int(value) <= high:
        raise ValueError(f"{name} must be an integer in [{low}, {high}], got {value!r}")
    return int(value)
