"""gpt2cpu's exception types, importable without the C++ engine."""

from __future__ import annotations


class TokenizerFormatError(ValueError):
    """A tokenizer file is missing a piece, malformed, or not GPT-2 byte-level BPE.

    The message starts with the path of the offending file.
    """


class ModelFormatError(ValueError):
    """A model file (config.json, a safetensors file or its index) is malformed or does not
    match the configuration. The message names the file and the field or tensor at fault.
    """


class ConfigError(ModelFormatError):
    """config.json is missing, not JSON, lacks a field, or holds values no model can have."""
