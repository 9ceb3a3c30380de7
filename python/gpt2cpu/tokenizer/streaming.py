"""Decoding ids one at a time, for printing text while it is generated."""

from __future__ import annotations

import codecs
from collections.abc import Callable


class StreamDecoder:
    """Turns ids into text as they arrive, holding back a character whose bytes are split
    across tokens until its last byte comes.

    `push` returns only text that is complete; `flush` ends the stream and returns what is
    left, with U+FFFD for bytes that never became a character. The pieces concatenate to
    exactly `Tokenizer.decode` of the same ids: both run the same bytes through Python's
    UTF-8 decoder with errors="replace", one incrementally, one at once. After `flush` the
    decoder starts a new stream.
    """

    def __init__(self, token_bytes: Callable[[int], bytes]) -> None:
        self._token_bytes = token_bytes
        self._utf8 = codecs.getincrementaldecoder("utf-8")(errors="replace")

    def push(self, token_id: int) -> str:
        """Adds one id; returns the text it completes (often "", never a partial character)."""
        return self._utf8.decode(self._token_bytes(token_id))

    def flush(self) -> str:
        """Ends the stream: the held-back bytes, as U+FFFD for each invalid sequence."""
        rest = self._utf8.decode(b"", final=True)
        self._utf8.reset()
        return rest
