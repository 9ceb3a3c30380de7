"""The HTTP application: OpenAI's endpoints over one `Engine`.

    app = create_app(model, engine, Settings(model_name="gpt2"))

Handlers turn requests into the engine's jobs and its events into OpenAI's responses; they
never run the model themselves (embeddings go to the engine thread between steps).
"""

from __future__ import annotations

import asyncio
import base64
import functools
import json
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response, StreamingResponse

from .. import __version__
from ..engine.batch import row_batches
from ..tasks.embedding import ROWS_PER_STEP
from . import build
from .chat import ChatTemplate, load_template
from .engine import ShuttingDown
from .errors import ApiError, error_body
from .errors import install as install_errors
from .guard import Guard
from .job import Delta, Finished, PromptScored
from .responses import (
    FINISH,
    Choice,
    TextOffsets,
    chat_logprobs,
    envelope,
    new_id,
    usage,
)
from .run import Run
from .schemas import ChatRequest, CompletionRequest, EmbeddingRequest

if TYPE_CHECKING:
    from ..model import Model
    from .engine import Engine


@dataclass(frozen=True)
class Settings:
    model_name: str
    api_key: str | None = None
    max_body_bytes: int = 1 << 20
    chat_template: str = "auto"


def _sse(payload: dict[str, Any]) -> str:
    return f"data: {json.dumps(payload, ensure_ascii=False)}\n\n"


def _encoded(vector: Any, encoding_format: str) -> list[float] | str:
    """An embedding as JSON numbers, or as base64 of its little-endian float32 bytes (what
    the openai client asks for by default, as OpenAI and vLLM send it)."""
    if encoding_format == "base64":
        return base64.b64encode(np.asarray(vector, dtype="<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]


def create_app(model: Model, engine: Engine, settings: Settings) -> FastAPI:
    app = FastAPI(title="gpt2cpu", version=__version__,
                  description="OpenAI-compatible API over one gpt2cpu model.")
    install_errors(app)
    app.add_middleware(Guard, api_key=settings.api_key, max_body_bytes=settings.max_body_bytes,
                       metrics=engine.metrics)
    template: ChatTemplate = load_template(model, settings.chat_template)
    tokenizer = model.tokenizer
    context = model.config.n_positions
    created = int(time.time())

    def unknown_model(name: str) -> ApiError:
        return ApiError(404, f"the model {name!r} does not exist; this server serves "
                        f"{settings.model_name!r}", "model", "model_not_found")

    def check_model(name: str | None) -> None:
        if name not in (None, "", settings.model_name):
            raise unknown_model(name)

    @app.get("/health")
    async def health() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/metrics")
    async def metrics() -> Response:
        return PlainTextResponse(engine.metrics.render(),
                                 media_type="text/plain; version=0.0.4")

    card = {"id": settings.model_name, "object": "model", "created": created,
            "owned_by": "gpt2cpu", "max_model_len": context}

    @app.get("/v1/models")
    async def models() -> Response:
        return JSONResponse({"object": "list", "data": [card]})

    # `path`: a model name may hold slashes ("openai-community/gpt2").
    @app.get("/v1/models/{model_id:path}")
    async def model_card(model_id: str) -> Response:
        if model_id != settings.model_name:
            raise unknown_model(model_id)
        return JSONResponse(card)

    @app.post("/v1/completions")
    async def completions(body: CompletionRequest, request: Request) -> Response:
        check_model(body.model)
        config = build.config_for(model, body, body.max_tokens)
        prompts = [build.encode(model, p, config, body.max_tokens, "prompt")
                   for p in build.completion_prompts(body)]
        score_prompt = body.echo and body.logprobs is not None
        run = Run(engine)
        run.submit(build.jobs_for(prompts, config, body.n, body.max_tokens, model, run.emit,
                                  body.logprobs, score_prompt))
        echoed = [tokenizer.decode(ids) if tokenizer and body.echo else "" for ids in prompts]
        rid = new_id("cmpl")
        if body.stream:
            return StreamingResponse(_stream_completion(run, body, prompts, echoed, rid),
                                     media_type="text/event-stream")
        choices = await run.collect(request)
        out = envelope("text_completion", rid, settings.model_name)
        out["choices"] = [
            _completion_choice(i, c, echoed[i // body.n], body.logprobs, prompts[i // body.n])
            for i, c in enumerate(choices)
        ]
        out["usage"] = usage(prompts, choices, body.n)
        return JSONResponse(out)

    def _completion_choice(index: int, choice: Choice, echo: str, logprobs: int | None,
                           prompt: list[int]) -> dict[str, Any]:
        scores: dict[str, Any] | None = None
        if logprobs is not None:
            offsets = TextOffsets()
            tokens, values = list(choice.tokens), list(choice.logprobs)
            text = "".join(choice.text)
            if choice.prompt_logprobs is not None:
                tokens, values = prompt + tokens, [*choice.prompt_logprobs, *values]
                text = echo + text
            elif echo:
                offsets.position = offsets.shown = len(echo)
            scores = offsets.completion_logprobs(tokenizer, tokens, values, text)
        reason = choice.finished.reason if choice.finished else "length"
        return {"index": index, "text": echo + "".join(choice.text), "logprobs": scores,
                "finish_reason": FINISH[reason]}

    async def _stream_completion(run: Run, body: CompletionRequest, prompts: list[list[int]],
                                 echoed: list[str], rid: str) -> AsyncIterator[str]:
        head = envelope("text_completion", rid, settings.model_name)
        offsets = [TextOffsets() for _ in run.jobs]
        choices = [Choice() for _ in run.jobs]
        try:
            if body.echo and body.logprobs is None:  # with logprobs, when the scores come
                for index in range(len(run.jobs)):
                    yield _sse({**head, "choices": [{
                        "index": index, "text": echoed[index // body.n], "logprobs": None,
                        "finish_reason": None}]})
            async for index, event in run.events():
                piece: dict[str, Any] = {"index": index, "text": "", "logprobs": None,
                                         "finish_reason": None}
                if isinstance(event, PromptScored):
                    ids = prompts[index // body.n]
                    piece["text"] = echoed[index // body.n]
                    piece["logprobs"] = offsets[index].completion_logprobs(
                        tokenizer, ids, event.logprobs, piece["text"])
                elif isinstance(event, Delta):
                    choices[index].add(event)
                    piece["text"] = event.text
                    if body.logprobs is not None:
                        piece["logprobs"] = offsets[index].completion_logprobs(
                            tokenizer, event.tokens, event.logprobs, event.text)
                elif isinstance(event, Finished):
                    choices[index].finished = event
                    piece["finish_reason"] = FINISH[event.reason]
                yield _sse({**head, "choices": [piece]})
            if body.stream_options is not None and body.stream_options.include_usage:
                yield _sse({**head, "choices": [], "usage": usage(prompts, choices, body.n)})
            yield "data: [DONE]\n\n"
        except ApiError as exc:  # the status line is sent: the error goes in the stream
            yield _sse(error_body(exc.status, exc.message, exc.param, exc.code))
            yield "data: [DONE]\n\n"
        finally:
            run.cancel()

    @app.post("/v1/chat/completions")
    async def chat_completions(body: ChatRequest, request: Request) -> Response:
        check_model(body.model)
        max_tokens = body.max_completion_tokens or body.max_tokens
        config = build.config_for(model, body, max_tokens, template.stop)
        try:
            ids = template.prompt_ids(model, body.messages)
        except ValueError as exc:
            raise ApiError(400, str(exc), "messages") from None
        prompt = build.encode(model, ids, config, max_tokens, "messages")
        top = (body.top_logprobs or 0) if body.logprobs else None
        if body.top_logprobs and not body.logprobs:
            raise ApiError(400, "top_logprobs needs logprobs: true", "top_logprobs")
        run = Run(engine)
        run.submit(build.jobs_for([prompt], config, body.n, max_tokens, model, run.emit,
                                  top, False))
        rid = new_id("chatcmpl")
        if body.stream:
            return StreamingResponse(_stream_chat(run, body, [prompt], rid, top),
                                     media_type="text/event-stream")
        choices = await run.collect(request)
        out = envelope("chat.completion", rid, settings.model_name)
        out["choices"] = [{
            "index": i,
            "message": {"role": "assistant", "content": "".join(c.text)},
            "logprobs": chat_logprobs(tokenizer, c.tokens, c.logprobs) if top is not None
            else None,
            "finish_reason": FINISH[c.finished.reason if c.finished else "length"],
        } for i, c in enumerate(choices)]
        out["usage"] = usage([prompt], choices, body.n)
        return JSONResponse(out)

    async def _stream_chat(run: Run, body: ChatRequest, prompts: list[list[int]], rid: str,
                           top: int | None) -> AsyncIterator[str]:
        head = envelope("chat.completion.chunk", rid, settings.model_name)
        choices = [Choice() for _ in run.jobs]
        try:
            for index in range(len(run.jobs)):
                yield _sse({**head, "choices": [{"index": index, "delta": {
                    "role": "assistant", "content": ""}, "logprobs": None,
                    "finish_reason": None}]})
            async for index, event in run.events():
                piece: dict[str, Any] = {"index": index, "delta": {}, "logprobs": None,
                                         "finish_reason": None}
                if isinstance(event, Delta):
                    choices[index].add(event)
                    piece["delta"] = {"content": event.text}
                    if top is not None:
                        piece["logprobs"] = chat_logprobs(tokenizer, event.tokens,
                                                          event.logprobs)
                elif isinstance(event, Finished):
                    choices[index].finished = event
                    piece["finish_reason"] = FINISH[event.reason]
                else:
                    continue
                yield _sse({**head, "choices": [piece]})
            if body.stream_options is not None and body.stream_options.include_usage:
                yield _sse({**head, "choices": [], "usage": usage(prompts, choices, body.n)})
            yield "data: [DONE]\n\n"
        except ApiError as exc:
            yield _sse(error_body(exc.status, exc.message, exc.param, exc.code))
            yield "data: [DONE]\n\n"
        finally:
            run.cancel()

    @app.post("/v1/embeddings")
    async def embeddings(body: EmbeddingRequest, request: Request) -> Response:
        check_model(body.model)
        inputs = build.embedding_inputs(model, body.input)
        # Mean-pooled final hidden states (after ln_f), in the library's own batches, one per
        # engine iteration: the next is queued only once the last is done, so the running
        # streams step between them instead of waiting for the whole request. The batches
        # are the ones Model.embed forms itself, so the vectors are the same.
        vectors: list[Any] = []
        for group in row_batches([len(ids) for ids in inputs], ROWS_PER_STEP):
            if vectors and await request.is_disconnected():
                return Response(status_code=204)  # nobody reads it: only stop the work
            piece = [inputs[i] for i in group]
            future = engine.call(functools.partial(model.embed, piece, pooling="mean"))
            try:
                vectors.extend(await asyncio.wrap_future(future))
            except (ValueError, TypeError) as exc:
                raise ApiError(400, str(exc), "input") from None
            except ShuttingDown as exc:
                raise ApiError(503, str(exc)) from None
        count = sum(len(i) for i in inputs)
        return JSONResponse({
            "object": "list", "model": settings.model_name,
            "data": [{"object": "embedding", "index": i,
                      "embedding": _encoded(v, body.encoding_format)}
                     for i, v in enumerate(vectors)],
            "usage": {"prompt_tokens": count, "total_tokens": count},
        })

    # Handlers that failed unexpectedly: a 500 in OpenAI's shape, the server keeps serving.
    @app.exception_handler(Exception)
    async def unexpected(request: Request, exc: Exception) -> JSONResponse:
        return JSONResponse(error_body(500, f"internal error: {type(exc).__name__}: {exc}"),
                            status_code=500)

    return app
