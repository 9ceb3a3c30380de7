"""Stop strings over streamed text: find them across token boundaries, and hold back text
that might be the start of one so that no part of a stop string is ever emitted."""

from __future__ import annotations

from collections.abc import Iterable


def stop_strings(stop: str | Iterable[str] | None) -> tuple[str, ...]:
    """Normalises the `stop` argument: one string, several, or None. Raises ValueError."""
    if stop is None:
        return ()
    items = [stop] if isinstance(stop, str) else list(stop)
    for item in items:
        if not isinstance(item, str):
            raise ValueError(f"stop must be a string or a list of strings, got {item!r}")
        if not item:
            raise ValueError("stop strings must not be empty")
    return tuple(dict.fromkeys(items))  # drop duplicates, keep the order


class StopMatcher:
    """Feed it text as it is produced; it returns what may be shown and reports a stop.

    Invariant: the text held back is the longest tail of everything fed so far that is a
    proper prefix of some stop string. Any occurrence of a stop string therefore starts
    inside the held-back text or the new text, so only those few characters are searched,
    never the whole output.
    """

    def __init__(self, stops: Iterable[str]) -> None:
        self.stops = tuple(stops)
        self._prefixes = {s[:i] for s in self.stops for i in range(1, len(s))}
        self._longest_prefix = max((len(s) - 1 for s in self.stops), default=0)
        self._held = ""
        self.matched: str | None = None

    def feed(self, text: str) -> str:
        """Adds text; returns the part now known to precede any stop string. After a stop
        string is found (`matched` is set) it returns the text before it and then only ""."""
        if self.matched is not None:
            return ""
        if not self.stops:
            return text
        buffer = self._held + text
        found = min(
            ((buffer.find(s), i) for i, s in enumerate(self.stops) if s in buffer),
            default=None,
        )
        if found is not None:
            position, which = found
            self.matched = self.stops[which]
            self._held = ""
            return buffer[:position]
        hold = 0
        for length in range(min(len(buffer), self._longest_prefix), 0, -1):
            if buffer[-length:] in self._prefixes:
                hold = length
                break
        self._held = buffer[len(buffer) - hold :]
        return buffer[: len(buffer) - hold]

    def flush(self) -> str:
        """The end of the text: whatever was held back is not a stop string after all."""
        held, self._held = self._held, ""
        return held
