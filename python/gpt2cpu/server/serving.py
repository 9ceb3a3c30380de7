"""uvicorn's server, told about the engine: it says it is up only once it listens, and on
shutdown fails the engine's open requests before draining the connections.

    server = Server(uvicorn.Config(app, host=..., port=...), engine, on_started=print_banner)
    server.run()
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

import uvicorn

if TYPE_CHECKING:
    from .engine import Engine


class Server(uvicorn.Server):
    def __init__(self, config: uvicorn.Config, engine: Engine,
                 on_started: Callable[[int], None] | None = None) -> None:
        super().__init__(config)
        self.engine = engine
        self.on_started = on_started

    async def startup(self, sockets: list[socket.socket] | None = None) -> None:
        await super().startup(sockets)  # a port it cannot bind exits here, said by uvicorn
        if self.on_started is not None and not self.should_exit and self.servers:
            listening = self.servers[0].sockets
            if listening:  # the port bound, not the one asked: --port 0 picks one
                self.on_started(int(listening[0].getsockname()[1]))

    async def shutdown(self, sockets: list[socket.socket] | None = None) -> None:
        # uvicorn waits for the responses in progress, then cuts what is left mid-body.
        # Stopped first, the engine fails every open request (503), so each ends the way
        # an error does (a stream with an error event and [DONE]) before the wait runs out.
        await asyncio.to_thread(self.engine.stop)
        await super().shutdown(sockets)
