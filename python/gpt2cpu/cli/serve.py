"""`gpt2cpu serve`: the OpenAI-compatible HTTP server (gpt2cpu.server)."""

from __future__ import annotations

import argparse
import re
import sys
from typing import Any

from . import CliError
from .common import (
    add_dtype_arguments,
    add_model_argument,
    add_threads_argument,
    load_model,
    positive_int,
)

DESCRIPTION = """\
Serve the model over HTTP with OpenAI's API: /v1/completions, /v1/chat/completions,
/v1/embeddings, /v1/models, plus /health and /metrics (Prometheus). Concurrent requests
are batched: every running request advances one token per engine step. Needs the server
extra: pip install "gpt2cpu[server]"."""

_UNITS = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}


def memory_size(text: str) -> int:
    """"2G", "512M", "1048576": bytes."""
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([kmg]?)i?b?\s*", text.lower())
    if match is None:
        raise argparse.ArgumentTypeError(f"not a size: {text!r} (e.g. 2G, 512M)")
    return int(float(match.group(1)) * _UNITS[match.group(2)])


def port_number(text: str) -> int:
    """0-65535; 0: any free port (the banner says which)."""
    try:
        port = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a port number: {text!r}") from None
    if not 0 <= port <= 65535:
        raise argparse.ArgumentTypeError(f"a port is 0 to 65535, got {port}")
    return port


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser(
        "serve", help="serve the model with an OpenAI-compatible HTTP API",
        description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_model_argument(parser)
    add_dtype_arguments(parser)
    add_threads_argument(parser)
    parser.add_argument("--host", default="127.0.0.1",
                        help="address to listen on (default 127.0.0.1: this machine only)")
    parser.add_argument("--port", type=port_number, default=8000,
                        help="port (default 8000; 0: any free one)")
    parser.add_argument("--api-key", default=None, metavar="KEY",
                        help="require 'Authorization: Bearer KEY' on /v1/ endpoints")
    parser.add_argument("--max-batch", type=positive_int, default=32, metavar="B",
                        help="choices (a request has n) advanced together per step "
                        "(default 32)")
    parser.add_argument("--max-queue", type=positive_int, default=256, metavar="Q",
                        help="choices waiting beyond the batch; a request that would pass "
                        "this is answered 429 at once (default 256)")
    parser.add_argument("--max-kv-memory", type=memory_size, default=None, metavar="SIZE",
                        help="KV-cache budget, e.g. 2G (default: half the memory available "
                        "at start)")
    parser.add_argument("--prefill-chunk", type=positive_int, default=256, metavar="N",
                        help="most prompt tokens run per step, shared by the prompts being "
                        "read; while others decode, fewer (see the README), so that a long "
                        "prompt at most doubles their step (default 256)")
    parser.add_argument("--prefix-cache", type=int, default=16, metavar="N",
                        help="finished requests' sequences kept for prompts that share "
                        "their prefix (default 16; 0: off)")
    parser.add_argument("--model-name", default=None,
                        help="the model id clients send and /v1/models lists (default: the "
                        "model directory's name)")
    parser.add_argument("--chat-template", default="auto", metavar="auto|plain|eos|FILE",
                        help="how chat messages become a prompt (default auto: "
                        "tokenizer_config.json's template, else eos for DialoGPT, else plain)")
    parser.add_argument("--max-body", type=memory_size, default=1 << 20, metavar="SIZE",
                        help="largest request body accepted, else 413 (default 1M)")
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    try:
        import uvicorn

        from ..server import build_server
        from ..server.serving import Server
    except ImportError as exc:
        from ..server import MISSING

        raise CliError(f"{MISSING}; missing: {exc.name}") from None

    model = load_model(args)
    app, engine = build_server(
        model, model_name=args.model_name, api_key=args.api_key, max_body_bytes=args.max_body,
        chat_template=args.chat_template, max_batch=args.max_batch, max_queue=args.max_queue,
        max_kv_bytes=args.max_kv_memory, prefill_chunk=args.prefill_chunk,
        prefix_cache_entries=args.prefix_cache,
    )
    name = args.model_name or (model.path.name if model.path else "gpt2cpu")

    host = f"[{args.host}]" if ":" in args.host else args.host

    def started(port: int) -> None:
        # Only once the port is bound: a busy port is uvicorn's error, not a false banner.
        print(f"gpt2cpu serve: {name} on http://{host}:{port}/v1 (Ctrl-C stops)",
              file=sys.stderr, flush=True)

    server = Server(uvicorn.Config(app, host=args.host, port=args.port, log_level="warning",
                                   timeout_graceful_shutdown=5), engine, on_started=started)
    engine.start()
    try:
        server.run()
    finally:
        engine.stop()
    return 0
