"""gpt2cpu's exception types, importable without the C++ engine."""

from __future__ import annotations


class TokenizerFormatError(ValueError):
    """A tokenizer file is missing a piece, malformed, or not GPT-2 byte-level BPE.

    The message starts with the path of the offending file.
    """
