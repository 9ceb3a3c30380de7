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

ids = st.lists(st.integers(0, 4095), min_size=1, max_size=8)
texts = st.text(st.characters(codec="utf-8"), max_size=30)
# In-range values for each field, and values around and beyond the ranges.
valid: dict[str, st.SearchStrategy[Any]] = {
    "prompt": texts | ids | st.lists(texts, min_size=1, max_size=3),
    "messages": st.lists(st.fixed_dictionaries({
        "role": st.sampled_from(["user", "system", "assistant"]), "content": texts}),
        min_size=1, max_size=3),
    "input": texts | ids,
    "max_tokens": st.integers(1, 8),
    "temperature": st.floats(0, 2),
    "top_p": st.floats(0.01, 1),
    "top_k": st.integers(0, 100),
    "min_p": st.floats(0, 1),
    "repetition_penalty": st.floats(0.5, 2),
    "n": st.integers(1, 3),
    "stop": texts | st.lists(st.text(min_size=1, max_size=3), max_size=3),
    "stream": st.booleans(),
    "logprobs": st.integers(0, 5),
    "top_logprobs": st.integers(0, 5),
    "echo": st.booleans(),
    "seed": st.integers(0, 2**32),
    "presence_penalty": st.floats(-2, 2),
    "frequency_penalty": st.floats(-2, 2),
    "logit_bias": st.dictionaries(st.integers(0, 4095).map(str), st.floats(-100, 100),
                                  max_size=3),
    "ignore_eos": st.booleans(),
    "model": st.just("tiny"),
}
wrong: dict[str, st.SearchStrategy[Any]] = {
    "prompt": st.lists(st.integers(-5, 10**6), max_size=4) | st.just([]),
    "messages": st.lists(st.fixed_dictionaries({
        "role": st.sampled_from(["robot", ""]), "content": st.none() | texts}), max_size=2),
    "input": st.just([]) | st.lists(st.integers(-5, 10**6), max_size=3),
    "max_tokens": st.integers(-2, 0) | st.integers(10**6, 2**70),
    "temperature": st.floats(-1, 0, exclude_max=True) | st.floats(100.5, 1e300),
    "top_p": st.floats(-1, 0) | st.floats(1, 3, exclude_min=True),
    "top_k": st.integers(-3, -1),
    "min_p": st.floats(1, 3, exclude_min=True),
    "repetition_penalty": st.floats(-1, 0),
    "n": st.integers(-1, 0) | st.integers(17, 100),
    "stop": st.lists(st.integers(), max_size=2) | st.just([""]),
    "stream": st.integers(),
    "logprobs": st.integers(21, 99) | st.integers(-5, -1),
    "top_logprobs": st.integers(21, 99),
    "echo": st.text(max_size=3),
    "seed": st.integers(-5, -1) | st.integers(2**63, 2**70),
    "presence_penalty": st.floats(2, 10, exclude_min=True),
    "frequency_penalty": st.floats(-10, -2, exclude_max=True),
    "logit_bias": st.dictionaries(st.text(max_size=3) | st.integers(4096, 10**6).map(str),
                                  st.floats(-300, 300), max_size=3),
    "ignore_eos": st.integers(),
    "model": st.sampled_from(["other", ""]),
}
ENDPOINTS = {
    "/completions": ["prompt", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                     "repetition_penalty", "n", "stop", "stream", "logprobs", "echo", "seed",
                     "presence_penalty", "frequency_penalty", "logit_bias", "ignore_eos",
                     "model"],
    "/chat/completions": ["messages", "max_tokens", "temperature", "top_p", "top_k", "min_p",
                          "repetition_penalty", "n", "stop", "stream", "logprobs",
                          "top_logprobs", "seed", "presence_penalty", "frequency_penalty",
                          "logit_bias", "ignore_eos", "model"],
    "/embeddings": ["input", "model"],
}
REQUIRED = {"/completions": "prompt", "/chat/completions": "messages", "/embeddings": "input"}


def bodies(endpoint: str) -> st.SearchStrategy[dict[str, Any]]:
    """Mostly valid bodies: each field present is in range 4 times in 5, else out of range
    or any JSON value; the required field is present 19 times in 20."""
    fields = ENDPOINTS[endpoint]

    def value(name: str) -> st.SearchStrategy[Any]:
        good = st.booleans() if (endpoint, name) == ("/chat/completions", "logprobs") else \
            valid[name]
        return st.integers(0, 9).flatmap(
            lambda roll: good if roll < 8 else wrong[name] if roll == 8 else json_values)

    @st.composite
    def body(draw: Any) -> dict[str, Any]:
        names = draw(st.lists(st.sampled_from(fields), unique=True, max_size=6))
        required = REQUIRED[endpoint]
        if draw(st.integers(0, 19)) > 0 and required not in names:
            names.append(required)
        return {name: draw(value(name)) for name in names}

    return body()


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


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow,
          HealthCheck.function_scoped_fixture])
@given(data=st.data())
def test_random_bodies_get_a_success_or_an_openai_error(server: Served, data: Any) -> None:
    # Embeddings answer 501 until Model.embed exists: fewer of them.
    endpoint = data.draw(st.sampled_from(["/completions", "/chat/completions"] * 2
                                         + ["/embeddings"]))
    # One body in 20 is any JSON at all.
    any_json = data.draw(st.integers(0, 19)) == 0
    body = data.draw(json_values) if any_json else data.draw(bodies(endpoint))
    if isinstance(body, dict) and not isinstance(body.get("max_tokens"), int):
        body["max_tokens"] = 4  # bounded work (the default runs to the end of the context)
    raw = json.dumps(body).encode()
    with httpx.Client(timeout=60) as http:
        response = http.post(server.v1 + endpoint, content=raw,
                             headers={"content-type": "application/json"})
        response.read()
        check(response)
        if response.status_code == 200 and isinstance(body, dict) and body.get("stream"):
            assert response.text.rstrip().endswith("data: [DONE]")


@settings(max_examples=25, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(raw=st.binary(max_size=64), path=st.sampled_from(["/v1/completions", "/v1/models",
                                                          "/v1/x", "/", "/metrics"]))
def test_raw_bytes_and_paths(server: Served, raw: bytes, path: str) -> None:
    response = httpx.post(server.url + path, content=raw, timeout=30)
    assert response.status_code in ALLOWED | {405}
    assert httpx.get(server.url + "/health", timeout=30).status_code == 200


def test_the_fuzzed_fields_are_the_specs(server: Served) -> None:
    """The fields fuzzed above are fields of the server's OpenAPI spec, and the spec has few
    others (so a new field is fuzzed or consciously left out here)."""
    spec = httpx.get(server.url + "/openapi.json", timeout=30).json()
    schemas = spec["components"]["schemas"]
    unfuzzed = {"user", "stream_options", "encoding_format", "max_completion_tokens"}
    for endpoint, fields in ENDPOINTS.items():
        body = spec["paths"]["/v1" + endpoint]["post"]["requestBody"]["content"]
        name = body["application/json"]["schema"]["$ref"].rsplit("/", 1)[-1]
        properties = set(schemas[name]["properties"])
        assert set(fields) <= properties
        assert properties - set(fields) <= unfuzzed, properties - set(fields)
