"""The demo model shipped inside the package: the default of every command and of
`Model.from_pretrained()`."""

from __future__ import annotations

from pathlib import Path

BUNDLED_MODEL_DIR = Path(__file__).parent.parent / "models" / "tiny-shakespeare"


def default_model_dir() -> Path:
    if not (BUNDLED_MODEL_DIR / "config.json").is_file():
        raise FileNotFoundError(
            f"the bundled model is missing from {BUNDLED_MODEL_DIR}; pass a model directory "
            "(--model DIR on the command line)"
        )
    return BUNDLED_MODEL_DIR
