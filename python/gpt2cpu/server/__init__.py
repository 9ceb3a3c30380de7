"""`gpt2cpu serve`: an OpenAI-compatible HTTP server over one model, with continuous
batching (one engine thread advances every request), admission by KV-cache memory and
prefix caching. Needs the `server` extra: `pip install "gpt2cpu[server]"`.

    from gpt2cpu.server import build_server
    app, engine = build_server(model, max_batch=16)   # engine.start() before serving
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from fastapi import FastAPI

    from ..model import Model
    from .engine import Engine

MISSING = (
    "the server needs its extra dependencies: pip install \"gpt2cpu[server]\" "
    "(FastAPI, uvicorn, jinja2)"
)


def build_server(model: Model, *, model_name: str | None = None, api_key: str | None = None,
                 max_body_bytes: int = 1 << 20, chat_template: str = "auto",
                 **engine_options: Any) -> tuple[FastAPI, Engine]:
    """The app and its engine (not started) for model; engine_options go to Engine."""
    from .app import Settings, create_app
    from .engine import Engine

    name = model_name or (model.path.name if model.path is not None else "gpt2cpu")
    engine = Engine(model, **engine_options)
    app = create_app(model, engine, Settings(model_name=name, api_key=api_key,
                                             max_body_bytes=max_body_bytes,
                                             chat_template=chat_template))
    return app, engine
