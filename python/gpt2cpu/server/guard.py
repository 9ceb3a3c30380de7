"""What every request passes before a handler: the API key, the body-size limit, and the
request counter of /metrics. A plain ASGI middleware, so that a body over the limit is
refused while it arrives rather than after it was read whole."""

from __future__ import annotations

import hmac

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from .errors import error_body
from .metrics import Metrics

# Endpoints counted by name in /metrics; anything else is "other", so that a scan of random
# paths cannot grow the metric's label set without bound.
_KNOWN = {"/v1/completions", "/v1/chat/completions", "/v1/embeddings", "/v1/models",
          "/health", "/metrics"}


class Guard:
    def __init__(self, app: ASGIApp, *, api_key: str | None, max_body_bytes: int,
                 metrics: Metrics) -> None:
        self.app = app
        self.api_key = api_key
        self.max_body_bytes = max_body_bytes
        self.metrics = metrics

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        endpoint = path if path in _KNOWN else (
            "/v1/models/{model}" if path.startswith("/v1/models/") else "other")

        async def counted(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.metrics.request(endpoint, int(message["status"]))
            await send(message)

        async def refuse(status: int, message: str, code: str) -> None:
            await JSONResponse(error_body(status, message, code=code),
                               status_code=status)(scope, receive, counted)

        headers = {k.decode("latin-1").lower(): v.decode("latin-1")
                   for k, v in scope.get("headers", [])}
        if self.api_key is not None and path.startswith("/v1/"):
            scheme, _, given = headers.get("authorization", "").partition(" ")
            # The scheme is case-insensitive (RFC 7235); the key is not.
            right = scheme.lower() == "bearer" and hmac.compare_digest(
                given.strip(" ").encode(), self.api_key.encode())
            if not right:
                await refuse(401, "missing or wrong API key (Authorization: Bearer KEY)",
                             "invalid_api_key")
                return
        limit = self.max_body_bytes
        declared = headers.get("content-length")
        if declared is not None and (not declared.isdigit() or int(declared) > limit):
            await refuse(413, f"the request body exceeds {limit} bytes", "body_too_large")
            return
        body = bytearray()
        more = scope["method"] in ("POST", "PUT", "PATCH")
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return
            body += message.get("body", b"")
            more = bool(message.get("more_body", False))
            if len(body) > limit:
                await refuse(413, f"the request body exceeds {limit} bytes", "body_too_large")
                return
        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if not replayed:
                replayed = True
                return {"type": "http.request", "body": bytes(body), "more_body": False}
            return await receive()  # after the body: the disconnect, when it comes

        await self.app(scope, replay, counted)


