"""A gpt2cpu server on a free loopback port, in a thread of the test process, for the
server's tests: `with serve(model, max_batch=4) as server: server.url ...`."""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any


@dataclass
class Served:
    url: str  # http://127.0.0.1:PORT
    engine: Any
    model_name: str
    server: Any  # gpt2cpu.server.serving.Server; should_exit = True shuts it down

    @property
    def v1(self) -> str:
        return self.url + "/v1"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@contextlib.contextmanager
def serve(model: Any, **options: Any) -> Iterator[Served]:
    import uvicorn
    from gpt2cpu.server import build_server
    from gpt2cpu.server.serving import Server

    app, engine = build_server(model, **options)
    engine.start()
    port = free_port()
    server = Server(uvicorn.Config(app, host="127.0.0.1", port=port, log_level="error",
                                   lifespan="off"), engine)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            raise RuntimeError("the test server did not start")
        time.sleep(0.01)
    try:
        yield Served(f"http://127.0.0.1:{port}", engine, app.title and options.get(
            "model_name") or (model.path.name if model.path else "gpt2cpu"), server)
    finally:
        server.should_exit = True
        thread.join(10)
        engine.stop()
