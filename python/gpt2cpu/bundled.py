"""The demo model shipped inside the package: the default of every command."""

from __future__ import annotations

from pathlib import Path

DEFAULT_MODEL_DIR = Path(__file__).parent / "models" / "tiny-shakespeare"


def default_model_dir() -> Path:
    if not (DEFAULT_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled model is missing from {DEFAULT_MODEL_DIR}; pass --model DIR"
        )
    return DEFAULT_MODEL_DIR
