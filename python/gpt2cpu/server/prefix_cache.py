"""Sequences of finished requests kept with their KV caches, so that a later prompt that
starts the same way (a system prompt, a few-shot header, a chat's history) skips computing
that prefix: the engine takes the cached sequence with the longest common prefix, truncates
it there and runs only the rest.

When the KV budget has room, the request gets a fork of the cached sequence (a copy of its
cache, one memcpy) and the cached one stays, so that requests running at once share a
prefix (many chats under one system prompt); else the cached sequence itself leaves the
cache for the request.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from ..model import Sequence


def common_prefix(a: list[int], b: list[int]) -> int:
    n = min(len(a), len(b))
    for i in range(n):
        if a[i] != b[i]:
            return i
    return n


class PrefixCache:
    """At most `entries` idle sequences, least recently used first out."""

    def __init__(self, entries: int) -> None:
        self.entries = entries
        self._idle: OrderedDict[int, Sequence] = OrderedDict()

    def __len__(self) -> int:
        return len(self._idle)

    def positions(self) -> int:
        """KV positions the idle sequences hold allocated (their capacities)."""
        return sum(s.capacity for s in self._idle.values())

    def put(self, sequence: Sequence) -> None:
        if self.entries <= 0 or sequence.closed or sequence.length == 0:
            sequence.close()
            return
        self._idle[id(sequence)] = sequence
        while len(self._idle) > self.entries:
            self.evict_one()

    def find(self, prompt: list[int], capacity: int) -> tuple[int, int, int] | None:
        """The idle sequence sharing the longest prefix with prompt that has room for
        `capacity` positions, as (key, tokens shared, its capacity), leaving at least the
        prompt's last token to run (for its logits); None if no sequence shares a token."""
        best: tuple[int, int, int] | None = None
        for key, sequence in self._idle.items():
            if sequence.capacity < capacity:
                continue
            shared = min(common_prefix(sequence.tokens, prompt), len(prompt) - 1)
            if shared > 0 and (best is None or shared > best[1]):
                best = (key, shared, sequence.capacity)
        return best

    def use(self, key: int, shared: int, *, copy: bool) -> Sequence:
        """The sequence `find` named, truncated to its `shared` tokens: a fork (the cached
        one stays, most recently used) or, without copy, the cached one itself."""
        if copy:
            cached = self._idle.pop(key)
            self._idle[key] = cached
            sequence = cached.fork()
        else:
            sequence = self._idle.pop(key)
        sequence.truncate(shared)
        return sequence

    def evict_one(self) -> bool:
        if not self._idle:
            return False
        _, sequence = self._idle.popitem(last=False)
        sequence.close()
        return True

    def clear(self) -> None:
        while self.evict_one():
            pass
