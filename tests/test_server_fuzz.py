"""Random requests against the server's POST endpoints: whatever the body, the answer is a
success or an OpenAI error with a 4xx status (never a 500, never a dead server).

Bodies mix valid values with wrong types, out-of-range numbers and random JSON for each
field the OpenAPI spec names, so both the validation and the engine's own checks are hit.
Bounded: a fixed number of examples, each request with a small max_tokens or a timeout.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest

pytest.importorskip("fastapi", reason="the server needs its extra: pip install '.[server]'")
pytest.importorskip("uvicorn", reason="the server needs its extra: pip install '.[server]'")
httpx = pytest.importorskip("httpx", reason="the fuzz test talks HTTP through httpx")
import gpt2cpu  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from served import Served, serve  # noqa: E402

ALLOWED = {200, 400, 404, 413, 429, 501}

json_values = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70)
    | st.floats(allow_nan=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                 max_size=4),
    max_leaves=8,
)

small_ids = st.lists(st.integers(-5, 5000), min_size=0, max_size=8)
plausible = {
    "prompt": st.text(max_size=30) | small_ids | st.lists(st.text(max_size=10), max_size=3),
    "messages": st.lists(st.fixed_dictionaries({
        "role": st.sampled_from(["user", "system", "assistant", "robot"]),
        "content": st.text(max_size=30) | st.none()}), max_size=3),
    "input": st.text(max_size=20) | small_ids,
    "max_tokens": st.integers(-2, 8),
    "temperature": st.floats(-1, 3, allow_nan=False),
    "top_p": st.floats(-0.5, 1.5, allow_nan=False),
    "top_k": st.integers(-3, 100),
    "min_p": st.floats(-0.5, 1.5, allow_nan=False),
    "repetition_penalty": st.floats(-1, 3, allow_nan=False),
    "n": st.integers(-1, 3),
    "stop": st.text(max_size=3) | st.lists(st.text(max_size=3), max_size=3),
    "stream": st.booleans(),
    "logprobs": st.integers(-1, 25) | st.booleans(),
    "top_logprobs": st.integers(-1, 25),
    "echo": st.booleans(),
    "seed": st.integers(-5, 2**64),
    "presence_penalty": st.floats(-3, 3, allow_nan=False),
    "frequency_penalty": st.floats(-3, 3, allow_nan=False),
    "logit_bias": st.dictionaries(st.text(max_size=5) | st.integers(-1, 5000).map(str),
                                  st.floats(-200, 200, allow_nan=False), max_size=3),
    "ignore_eos": st.booleans(),
    "model": st.sampled_from(["tiny", "other", ""]),
}


def bodies(fields: list[str]) -> st.SearchStrategy[dict[str, Any]]:
    chosen = st.lists(st.sampled_from(fields), unique=True, max_size=len(fields))
    return chosen.flatmap(lambda names: st.fixed_dictionaries(
        {name: plausible[name] | json_values for name in names}))


ENDPOINTS = {
    "/completions": ["prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                     "repetition_penalty", "n", "stop", "stream", "logprobs", "echo", "seed",
                     "presence_penalty", "frequency_penalty", "logit_bias", "ignore_eos",
                     "model"],
    "/chat/completions": ["messages", "max_tokens", "temperature", "top_p", "n", "stop",
                          "stream", "logprobs", "top_logprobs", "seed", "logit_bias",
                          "model"],
    "/embeddings": ["input", "model"],
}


@pytest.fixture(scope="module")
def server() -> Iterator[Served]:
    model = gpt2cpu.Model.from_pretrained(threads=1)
    with serve(model, model_name="tiny", max_body_bytes=4096) as served:
        yield served


def check(response: Any) -> None:
    assert response.status_code in ALLOWED, (response.status_code, response.text[:500])
    if response.status_code != 200:
        error = response.json()["error"]
        assert set(error) == {"message", "type", "param", "code"}


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bodies_get_a_success_or_an_openai_error(server: Served, data: Any) -> None:
    endpoint = data.draw(st.sampled_from(sorted(ENDPOINTS)))
    body = data.draw(bodies(ENDPOINTS[endpoint]) | json_values)
    if isinstance(body, dict) and isinstance(body.get("max_tokens"), int):
        body["max_tokens"] = min(body["max_tokens"], 8)  # bounded work per example
    elif isinstance(body, dict):
        body["max_tokens"] = 4
    raw = json.dumps(body).encode()
    with httpx.Client(timeout=60) as http:
        response = http.post(server.v1 + endpoint, content=raw,
                             headers={"content-type": "application/json"})
        response.read()
        check(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("stream"):
            assert response.text.rstrip().endswith("data: [DONE]")


@settings(max_examples=40, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64), path=st.sampled_from(["/v1/completions", "/v1/models",
                                                          "/v1/x", "/", "/metrics"]))
def test_raw_bytes_and_paths(server: Served, raw: bytes, path: str) -> None:
    response = httpx.post(server.url + path, content=raw, timeout=30)
    assert response.status_code in ALLOWED | {405}
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200
