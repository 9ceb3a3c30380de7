"""Stop strings over streamed text: find them across token boundaries, and hold back text
that might be the start of one so that no part of a stop string is ever emitted."""

from __future__ import annotations

from array import array
from collections.abc import Iterable

# Far beyond any useful stop string, while the matcher's tables stay a few megabytes.
MAX_STOP_CHARS = 1 << 20


def stop_strings(stop: object) -> tuple[str, ...]:
    """Normalises the `stop` argument: one string, several, or None. Raises ValueError."""
    if stop is None:
        return ()
    if isinstance(stop, str):
        items: list[object] = [stop]
    elif isinstance(stop, Iterable) and not isinstance(stop, (bytes, bytearray)):
        items = list(stop)
    else:
        raise ValueError(f"stop must be a string or a list of strings, got {stop!r}")
    strings: list[str] = []
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"stop must be a string or a list of strings, got {item!r}")
        if not item:
            raise ValueError("stop strings must not be empty")
        strings.append(item)
    unique = tuple(dict.fromkeys(strings))  # drop duplicates, keep the order
    total = sum(map(len, unique))
    if total > MAX_STOP_CHARS:
        raise ValueError(
            f"stop strings must hold at most {MAX_STOP_CHARS:,} characters in all, got {total:,}"
        )
    return unique


def _prefix_function(pattern: str) -> array[int]:
    """KMP's table: entry i is the length of the longest proper prefix of pattern[: i + 1]
    that is also its suffix."""
    table = array("i", bytes(4 * len(pattern)))
    k = 0
    for i in range(1, len(pattern)):
        while k and pattern[i] != pattern[k]:
            k = table[k - 1]
        if pattern[i] == pattern[k]:
            k += 1
        table[i] = k
    return table


class StopMatcher:
    """Feed it text as it is produced; it returns what may be shown and reports a stop.

    Invariant: the text held back is the longest tail of everything fed so far that is a
    proper prefix of some stop string. Any occurrence of a stop string therefore starts
    inside the held-back text or the new text. Each stop string has a Knuth-Morris-Pratt
    matcher whose state is the length of that tail for it, so the work and memory are
    linear in the text and the stop strings' lengths (a set of every prefix, or a search
    of the held-back text per piece, would be quadratic in a long stop string).
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(stops)
        self._tables = [_prefix_function(s) for s in self.stops]
        self._states = [0] * len(self.stops)
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Adds text; returns the part now known to precede any stop string. After a stop
        string is found (`matched` is set) it returns the text before it and then only "".
        Of the stop strings the text so far holds, the one that starts first counts."""
        if self.matched is not None:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        base = len(self._held)
        best: tuple[int, int] | None = None  # (start in buffer, which stop)
        for which, stop in enumerate(self.stops):
            table, state, length = self._tables[which], self._states[which], len(stop)
            for i, char in enumerate(text):
                while state and stop[state] != char:
                    state = table[state - 1]
                if stop[state] == char:
                    state += 1
                if state == length:
                    start = base + i + 1 - length
                    if best is None or start < best[0]:
                        best = (start, which)
                    break  # only this stop's first occurrence can start first
            self._states[which] = state
        if best is not None:
            self.matched = self.stops[best[1]]
            self._held = ""
            return buffer[: best[0]]
        hold = max(self._states)
        self._held = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        """The end of the text: whatever was held back is not a stop string after all."""
        held, self._held = self._held, ""
        self._states = [0] * len(self.stops)
        return held
