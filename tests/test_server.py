"""`gpt2cpu serve` through the real `openai` client and raw HTTP, on a free loopback port:
outputs equal the library's `generate` at the same seed, logprobs equal log_softmax of the
model's logits, errors come in OpenAI's shape, and the engine batches, cancels and reuses
prefixes as it claims to."""

from __future__ import annotations

import asyncio
import json
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest

pytest.importorskip("fastapi", reason="the server needs its extra: pip install '.[server]'")
pytest.importorskip("uvicorn", reason="the server needs its extra: pip install '.[server]'")
openai = pytest.importorskip("openai", reason="the server tests use the openai client")
httpx = pytest.importorskip("httpx", reason="the server tests use httpx")

import gpt2cpu  # noqa: E402
from gpt2cpu.server.engine import advance, wait_until  # noqa: E402
from served import Served, serve  # noqa: E402


@pytest.fixture(scope="module")
def model() -> gpt2cpu.Model:
    return gpt2cpu.Model.from_pretrained(threads=1)


@pytest.fixture(scope="module")
def server(model: gpt2cpu.Model) -> Iterator[Served]:
    with serve(model, model_name="tiny", max_batch=8) as served:
        yield served


@pytest.fixture(scope="module")
def client(server: Served) -> Any:
    return openai.OpenAI(base_url=server.v1, api_key="unused", max_retries=0, timeout=60)


def reference_log_softmax(logits: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    x = logits.astype(np.float64)
    top = x.max(axis=-1, keepdims=True)
    logprobs: np.ndarray[Any, Any] = x - top - np.log(np.exp(x - top).sum(axis=-1, keepdims=True))
    return logprobs


def test_completion_matches_generate(model: gpt2cpu.Model, client: Any) -> None:
    tokenizer = model.tokenizer
    assert tokenizer is not None
    for seed, temperature in ((5, 0.9), (11, 1.3), (0, 0.0)):
        want = model.generate("ROMEO:", max_new_tokens=24, temperature=temperature, seed=seed)
        got = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=24,
                                        temperature=temperature, seed=seed, logprobs=0)
        choice = got.choices[0]
        assert choice.text == want.text
        assert choice.logprobs.tokens == [tokenizer.decode([t]) for t in want.token_ids]
        assert choice.finish_reason == {"eos": "stop"}.get(want.finish_reason, want.finish_reason)
        assert got.usage.completion_tokens == len(want.token_ids)
        assert got.usage.prompt_tokens == want.prompt_tokens


def test_stream_matches_generate_and_hides_the_stop(model: gpt2cpu.Model, client: Any) -> None:
    # "ou" is held back at every "o" until the next piece shows whether a "u" follows.
    options: dict[str, Any] = dict(max_new_tokens=60, temperature=1.0, top_k=40, seed=7,
                                   stop=["ou", "\n\n"])
    want = model.generate("JULIET:", **options)
    pieces, reasons = [], []
    for chunk in client.completions.create(
        model="tiny", prompt="JULIET:", max_tokens=60, temperature=1.0, seed=7,
        extra_body={"top_k": 40},
        stop=["ou", "\n\n"], stream=True,
    ):
        pieces.append(chunk.choices[0].text)
        reasons.append(chunk.choices[0].finish_reason)
    assert "".join(pieces) == want.text
    assert all("ou" not in p for p in pieces)
    assert reasons[-1] == "stop" and want.finish_reason == "stop"


def test_chat_matches_generate_with_the_plain_template(model: gpt2cpu.Model, client: Any
                                                       ) -> None:
    messages = [{"role": "system", "content": "Speak as Romeo."},
                {"role": "user", "content": "Who goes there?"}]
    prompt = "System: Speak as Romeo.\nUser: Who goes there?\nAssistant:"
    want = model.generate(prompt, max_new_tokens=30, seed=3, stop=["\nUser:"])
    got = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30, seed=3)
    assert got.choices[0].message.content == want.text
    assert got.choices[0].message.role == "assistant"
    streamed = client.chat.completions.create(model="tiny", messages=messages, max_tokens=30,
                                              seed=3, stream=True)
    text = "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
    assert text == want.text


def test_echo_with_max_tokens_0_scores_the_prompt(model: gpt2cpu.Model, client: Any) -> None:
    tokenizer = model.tokenizer
    assert tokenizer is not None
    ids = tokenizer.encode("KING RICHARD III:\nNow is the winter of our discontent")
    got = client.completions.create(model="tiny", prompt=ids, max_tokens=0, echo=True,
                                    logprobs=2, temperature=0)
    scores = got.choices[0].logprobs
    want = reference_log_softmax(model.forward(ids))
    assert scores.token_logprobs[0] is None and scores.top_logprobs[0] is None
    expected = [want[i, ids[i + 1]] for i in range(len(ids) - 1)]
    np.testing.assert_allclose(scores.token_logprobs[1:], expected, rtol=0, atol=1e-5)
    for i, top in enumerate(scores.top_logprobs[1:]):
        assert len(top) == 2
        assert max(top.values()) == pytest.approx(want[i].max(), abs=1e-5)
    assert got.choices[0].text == tokenizer.decode(ids)
    echoed = client.completions.create(model="tiny", prompt="ROMEO:", max_tokens=6, echo=True,
                                       seed=2)
    want_text = model.generate("ROMEO:", max_new_tokens=6, seed=2).text
    assert echoed.choices[0].text == "ROMEO:" + want_text
    offsets = scores.text_offset
    assert offsets[0] == 0 and offsets == sorted(offsets)


def test_text_offset_counts_a_character_split_over_tokens_once(model: gpt2cpu.Model,
                                                               server: Served) -> None:
    from gpt2cpu.server.responses import TextOffsets

    tokenizer = model.tokenizer
    assert tokenizer is not None
    text = "ROMEO: \U0001f642 \u00e9 x"  # the emoji is 4 byte tokens, the accent 2
    ids = tokenizer.encode(text)
    # Where each token's character starts: a character's later byte tokens share it.
    want = [0, 5, 6, 7, 7, 7, 7, 8, 9, 9, 10, 11]
    assert len(ids) == len(want)
    body = {"prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0}
    got = httpx.post(server.v1 + "/completions", json=body, timeout=60).json()["choices"][0]
    assert got["text"] == text and got["logprobs"]["text_offset"] == want
    with httpx.stream("POST", server.v1 + "/completions", json={**body, "stream": True},
                      timeout=60) as response:
        chunks = [json.loads(line[6:]) for line in response.iter_lines()
                  if line.startswith("data: {")]
    streamed = [o for c in chunks for ch in c["choices"] if ch["logprobs"]
                for o in ch["logprobs"]["text_offset"]]
    assert streamed == want
    # Tokens whose text a stop string cut off start no further than the text's end.
    offsets = TextOffsets()
    scored = offsets.completion_logprobs(tokenizer, ids, [None] * len(ids), text[:8])
    assert scored["text_offset"] == [min(o, 8) for o in want]


def test_prompt_scoring_survives_chunked_prefill(model: gpt2cpu.Model) -> None:
    # A prompt longer than the prefill chunk is scored across chunk boundaries.
    tokenizer = model.tokenizer
    assert tokenizer is not None
    ids = tokenizer.encode("To be, or not to be, that is the question: " * 6)[:120]
    with serve(model, prefill_chunk=16) as served:
        got = httpx.post(served.v1 + "/completions", json={
            "prompt": ids, "max_tokens": 0, "echo": True, "logprobs": 0}, timeout=60).json()
    want = reference_log_softmax(model.forward(ids))
    expected = [want[i, ids[i + 1]] for i in range(len(ids) - 1)]
    np.testing.assert_allclose(got["choices"][0]["logprobs"]["token_logprobs"][1:], expected,
                               rtol=0, atol=1e-4)


def test_generated_logprobs_are_raw_log_softmax(model: gpt2cpu.Model, client: Any) -> None:
    got = client.completions.create(model="tiny", prompt="HAMLET:", max_tokens=12,
                                    temperature=0, logprobs=3)
    scores = got.choices[0].logprobs
    for token, value, top in zip(scores.tokens, scores.token_logprobs, scores.top_logprobs,
                                 strict=True):
        assert len(top) == 3
        assert value == pytest.approx(max(top.values()), abs=1e-9)  # greedy: the argmax
        assert top[token] == pytest.approx(value, abs=1e-9)
    chat = client.chat.completions.create(model="tiny", messages=[{"role": "user",
                                          "content": "Hi"}], max_tokens=5, temperature=0,
                                          logprobs=True, top_logprobs=2)
    entries = chat.choices[0].logprobs.content
    assert entries and all(len(e.top_logprobs) == 2 for e in entries)
    assert all(e.logprob == pytest.approx(e.top_logprobs[0].logprob) for e in entries)
    joined = b"".join(bytes(e.bytes) for e in entries)
    assert joined.startswith(chat.choices[0].message.content.encode())


def test_n_and_several_prompts_seed_each_choice(model: gpt2cpu.Model, client: Any) -> None:
    got = client.completions.create(model="tiny", prompt=["ROMEO:", "JULIET:"], n=2,
                                    max_tokens=10, seed=20)
    texts = {c.index: c.text for c in got.choices}
    assert sorted(texts) == [0, 1, 2, 3]
    # Choice k of a prompt is the library's sample k: what generate(n=2) gives.
    want = model.generate(["ROMEO:", "JULIET:"], n=2, max_new_tokens=10, seed=20)
    assert isinstance(want, list)
    assert [texts[i] for i in range(4)] == [r.text for r in want]
    assert texts[0] == model.generate("ROMEO:", max_new_tokens=10, seed=20).text


def test_prefix_cache_reuses_a_shared_prompt(model: gpt2cpu.Model, client: Any) -> None:
    header = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n"
    first = client.completions.create(model="tiny", prompt=header + "Speak, speak.",
                                      max_tokens=4, temperature=0)
    second = client.completions.create(model="tiny", prompt=header + "Resolved.",
                                       max_tokens=8, temperature=0)
    tokenizer = model.tokenizer
    assert tokenizer is not None
    header_tokens = len(tokenizer.encode(header))
    cached = second.usage.prompt_tokens_details.cached_tokens
    assert first.usage.prompt_tokens_details.cached_tokens < header_tokens
    assert header_tokens - 2 <= cached < second.usage.prompt_tokens
    want = model.generate(header + "Resolved.", max_new_tokens=8, temperature=0)
    assert second.choices[0].text == want.text


def test_requests_running_at_once_share_a_cached_prefix(model: gpt2cpu.Model) -> None:
    """A cached header serves a request while another that took it still runs: the second
    gets a fork of the cached sequence rather than computing the header again.

    The step hook holds the first request's steps, not the clock: while it runs alone they
    wait for the second to queue, and once the second has run beside it and left, for the
    test to release it, so the first is running throughout the second's admission and run."""
    armed, joined, release = threading.Event(), threading.Event(), threading.Event()

    def hold_the_first(items: list[Any]) -> list[Any]:
        if armed.is_set() and len(items) == 1:
            if not joined.is_set():  # the first alone, the second not yet admitted
                wait_until(lambda: served.engine.queue_length > 0, 30)
            else:  # the first alone again: the second has finished
                release.wait(30)
        elif armed.is_set() and len(items) == 2:
            joined.set()
        return advance(items)

    header = "First Citizen:\nBefore we proceed any further, hear me speak.\n\nAll:\n"
    tokenizer = model.tokenizer
    assert tokenizer is not None
    header_tokens = len(tokenizer.encode(header))
    with serve(model, step=hold_the_first) as served:
        url = served.v1 + "/completions"
        assert httpx.post(url, json={"prompt": header + "Speak.", "max_tokens": 1}).is_success
        armed.set()
        answers: list[Any] = []
        first = threading.Thread(target=lambda: answers.append(httpx.post(url, json={
            "prompt": header + "Resolved.", "max_tokens": 30, "ignore_eos": True},
            timeout=60).json()))
        first.start()
        try:
            assert wait_until(lambda: len(served.engine._running) == 1, 10)
            second = httpx.post(url, json={"prompt": header + "You are all resolved.",
                                           "max_tokens": 2, "temperature": 0}, timeout=60).json()
            assert joined.is_set()  # the two ran in one batch
            # The second has left the batch (its engine bookkeeping may trail its answer by
            # an instant); the first, held, still runs.
            assert wait_until(lambda: len(served.engine._running) == 1, 10)
            assert served.engine._running[0].prompt == tokenizer.encode(header + "Resolved.")
        finally:
            release.set()
            first.join(60)
    for got in (answers[0], second):
        assert got["usage"]["prompt_tokens_details"]["cached_tokens"] >= header_tokens - 2
    assert answers[0]["usage"]["completion_tokens"] == 30
    want = model.generate(header + "You are all resolved.", max_new_tokens=2, temperature=0)
    assert second["choices"][0]["text"] == want.text


def test_models_health_and_metrics(server: Served, client: Any) -> None:
    assert [m.id for m in client.models.list().data] == ["tiny"]
    assert client.models.retrieve("tiny").id == "tiny"
    with pytest.raises(openai.NotFoundError):
        client.models.retrieve("gpt-4")
    assert _error(httpx.get(server.v1 + "/models/org/gpt-4"), 404)["code"] == "model_not_found"
    assert httpx.get(server.url + "/health").json() == {"status": "ok"}
    client.completions.create(model="tiny", prompt="A", max_tokens=2)
    text = httpx.get(server.url + "/metrics").text
    for name in ("gpt2cpu_requests_total", "gpt2cpu_generation_tokens_total",
                 "gpt2cpu_queue_length", "gpt2cpu_batch_size_bucket",
                 "gpt2cpu_time_to_first_token_seconds_count"):
        assert name in text
    ok = [line for line in text.splitlines()
          if line.startswith('gpt2cpu_requests_total{endpoint="/v1/completions",status="200"}')]
    assert ok and int(ok[0].split()[-1]) >= 1


def test_embeddings_are_the_models_mean_pooled_hidden_states(model: gpt2cpu.Model,
                                                             server: Served, client: Any
                                                             ) -> None:
    response = httpx.post(server.v1 + "/embeddings", json={"input": ["ROMEO:", "JULIET:"]})
    data = response.json()["data"]
    assert response.status_code == 200 and len(data) == 2
    want = model.embed(["ROMEO:", "JULIET:"], pooling="mean")
    for item, vector in zip(data, want, strict=True):
        np.testing.assert_array_equal(np.array(item["embedding"], np.float32), vector)
    # The client's default call asks for base64 (float32 bytes) and decodes it.
    got = client.embeddings.create(model="tiny", input=["ROMEO:", "JULIET:"])
    for item, vector in zip(got.data, want, strict=True):
        np.testing.assert_array_equal(np.array(item.embedding, np.float32), vector)


def test_a_large_embeddings_request_lets_the_streams_step(model: gpt2cpu.Model,
                                                         monkeypatch: Any) -> None:
    """An embeddings request runs on the engine thread in the library's batches of
    ROWS_PER_STEP tokens, one an iteration: a running stream advances between them rather
    than waiting for the whole request, and the vectors are Model.embed's."""
    from gpt2cpu.tasks.embedding import ROWS_PER_STEP

    tokenizer = model.tokenizer
    assert tokenizer is not None
    ids = tokenizer.encode("Now is the winter of our discontent. " * 30)[:200]
    inputs = [[*ids[i:], *ids[:i]] for i in range(40)]  # 8,000 tokens: 8 batches
    want = model.embed(inputs, pooling="mean")
    log: list[str] = []
    embed = model.embed

    def logged_embed(*args: Any, **kwargs: Any) -> Any:
        log.append("embed")
        return embed(*args, **kwargs)

    def logged_step(items: list[Any]) -> list[Any]:
        log.append("step")
        time.sleep(0.02)  # 250 tokens outlast the embeddings; the stream is left before
        return advance(items)

    monkeypatch.setattr(model, "embed", logged_embed)
    body = {"prompt": "A", "max_tokens": 250, "ignore_eos": True, "stream": True,
            "temperature": 0}  # greedy: the first token is whole text, sent at once
    with serve(model, step=logged_step) as served, httpx.Client(timeout=60) as http, \
            http.stream("POST", served.v1 + "/completions", json=body) as response:
        lines = response.iter_lines()  # kept: a closed iterator closes the stream
        assert next(lines).startswith("data: ")
        got = http.post(served.v1 + "/embeddings", json={"input": inputs})
        assert got.status_code == 200
        assert len(served.engine._running) == 1  # the stream ran all along
    for item, vector in zip(got.json()["data"], want, strict=True):
        np.testing.assert_array_equal(np.array(item["embedding"], np.float32), vector)
    # Each batch was a call of its own, and the stream stepped between each two.
    assert 200 * 5 <= ROWS_PER_STEP < 200 * 6 and log.count("embed") == 8
    between = "".join("e" if entry == "embed" else "s" for entry in log).strip("s")
    assert "ee" not in between, log


def _error(response: Any, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    body = response.json()["error"]
    assert set(body) == {"message", "type", "param", "code"} and body["message"]
    return dict(body)


def test_errors_in_openai_shape(model: gpt2cpu.Model, server: Served, client: Any) -> None:
    url = server.v1 + "/completions"
    assert _error(httpx.post(url, content=b"{not json", headers={
        "content-type": "application/json"}), 400)["code"] == "invalid_json"
    assert _error(httpx.post(url, json={"prompt": "A", "max_tokens": "many"}), 400)["param"] \
        .startswith("max_tokens")
    assert _error(httpx.post(url, json={"prompt": "A", "temperature": -1}), 400)["param"] \
        .startswith("temperature")
    assert _error(httpx.post(url, json={"prompt": [5, 10 ** 9]}), 400)["param"] == "prompt"
    assert _error(httpx.post(url, json={"prompt": "A", "top_k": True}), 400)
    long = [1] * (model.config.n_positions + 1)
    error = _error(httpx.post(url, json={"prompt": long, "max_tokens": 1}), 400)
    assert error["code"] == "context_length_exceeded" and error["param"] == "prompt"
    # Advice that works over HTTP: the library's truncate=True is no field of the API.
    assert error["message"].endswith("; shorten it") and "truncate" not in error["message"]
    assert _error(httpx.post(url, json={"prompt": "A", "logit_bias": {"x": 1}}), 400)
    assert _error(httpx.post(url, json={"prompt": "A", "model": "gpt-4"}), 404)["code"] \
        == "model_not_found"
    assert _error(httpx.get(server.v1 + "/nothing"), 404)
    assert _error(httpx.post(url, content=b"x" * (2 << 20)), 413)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="tiny", prompt="A", max_tokens=-1)
    assert _error(httpx.post(url, json={"prompt": "A", "n": 0}), 400)["param"] == "n"
    # A union's member ("stop.str") is no parameter of the request.
    assert _error(httpx.post(url, json={"prompt": "A", "stop": ["x"] * 17}), 400)["param"] \
        == "stop"
    # A token outside the vocabulary: refused before anything runs, streamed or not.
    vocab = model.config.vocab_size
    for stream in (False, True):
        body = {"prompt": "A", "max_tokens": 2, "stream": stream, "logit_bias": {str(vocab): 1}}
        error = _error(httpx.post(url, json=body), 400)
        assert error["param"] == "logit_bias" and f"[0, {vocab})" in error["message"]
    assert _error(httpx.post(server.v1 + "/chat/completions", json={"messages": []}), 400)
    assert _error(httpx.post(server.v1 + "/chat/completions", json={
        "messages": [{"role": "wizard", "content": "x"}]}), 400)
    assert httpx.get(server.url + "/health").status_code == 200


def test_api_key(model: gpt2cpu.Model) -> None:
    with serve(model, api_key="sesame") as served:
        wrong = openai.OpenAI(base_url=served.v1, api_key="open", max_retries=0)
        with pytest.raises(openai.AuthenticationError):
            wrong.completions.create(model="tiny-shakespeare", prompt="A", max_tokens=1)
        right = openai.OpenAI(base_url=served.v1, api_key="sesame", max_retries=0)
        assert right.completions.create(model="tiny-shakespeare", prompt="A", max_tokens=1)
        body = {"prompt": "A", "max_tokens": 1}
        for header, status in (("bearer sesame", 200), ("BEARER sesame", 200),
                               ("Bearer Sesame", 401), ("Basic sesame", 401), ("sesame", 401)):
            answer = httpx.post(served.v1 + "/completions", json=body,
                                headers={"Authorization": header})
            assert answer.status_code == status, header  # the scheme's case does not matter
        assert httpx.get(served.url + "/health").status_code == 200  # not behind the key


class Gate:
    """An engine step that waits until the test opens it: requests pile up
    deterministically in front of a step that cannot run."""

    def __init__(self) -> None:
        self.open = threading.Event()

    def __call__(self, items: list[Any]) -> list[Any]:
        self.open.wait(30)
        return advance(items)


def test_full_queue_answers_429_at_once(model: gpt2cpu.Model) -> None:
    gate = Gate()
    with serve(model, max_batch=1, max_queue=1, step=gate) as served:
        body = {"prompt": "A", "max_tokens": 3}
        answers: list[int] = []

        def post() -> None:
            answers.append(httpx.post(served.v1 + "/completions", json=body,
                                      timeout=30).status_code)

        # One at a time: two sent together may both find the queue not yet emptied.
        pending = [threading.Thread(target=post) for _ in range(2)]
        pending[0].start()
        assert wait_until(lambda: len(served.engine._running) == 1, 10)
        pending[1].start()
        assert wait_until(lambda: served.engine.queue_length == 1, 10), answers
        started = time.monotonic()
        refused = httpx.post(served.v1 + "/completions", json=body, timeout=30)
        assert time.monotonic() - started < 2
        assert _error(refused, 429)["code"] == "queue_full"
        gate.open.set()
        for t in pending:
            t.join(30)
        assert answers == [200, 200]


def test_more_choices_than_the_queue_holds_is_a_400_naming_n(model: gpt2cpu.Model) -> None:
    with serve(model, max_queue=2) as served:  # idle: a 429 here could never clear
        refused = httpx.post(served.v1 + "/completions", timeout=30,
                             json={"prompt": "A", "max_tokens": 1, "n": 3})
        error = _error(refused, 400)
        assert error["param"] == "n" and "--max-queue" in error["message"]
        fits = httpx.post(served.v1 + "/completions", timeout=30,
                          json={"prompt": "A", "max_tokens": 1, "n": 2})
        assert fits.status_code == 200


def test_disconnect_cancels_within_a_step(model: gpt2cpu.Model) -> None:
    """A client that leaves mid-stream has its request dropped at the engine's next step.

    The step hook holds the request once its first token is out until the server has seen
    the client leave and cancelled it (on the HTTP thread, which the hold does not stall), so
    however slow the machine it cannot run out its 200 tokens first. Were the cancel never
    to come, the hold gives up after 10 s and the request runs on: the checks below fail
    rather than hang."""
    steps_after_cancel: list[int] = []

    def hold_until_cancelled(items: list[Any]) -> list[Any]:
        job = served.engine._running[0]
        if job.generated:
            job.cancelled.wait(10)
        if job.cancelled.is_set():
            steps_after_cancel.append(len(job.generated))
        return advance(items)

    with serve(model, step=hold_until_cancelled) as served:
        # Greedy, so that the first token is the same every time and whole text (" man"),
        # which goes out at once: a held-back piece would leave the client waiting.
        body = {"prompt": "A", "max_tokens": 200, "ignore_eos": True, "stream": True,
                "temperature": 0}
        with httpx.Client(timeout=30) as http, http.stream(
            "POST", served.v1 + "/completions", json=body
        ) as response:
            lines = response.iter_lines()
            assert next(lines).startswith("data: ")
        assert wait_until(lambda: not served.engine._running, 5)
        # At most the step that was held when the cancel came ran after it.
        assert len(steps_after_cancel) <= 1, steps_after_cancel
        metrics = httpx.get(served.url + "/metrics").text
        assert 'gpt2cpu_sequences_total{outcome="cancelled"} 1' in metrics
        assert 'gpt2cpu_sequences_total{outcome="finished"} 0' in metrics

        def gauge(name: str) -> int:
            text = httpx.get(served.url + "/metrics").text
            return int(next(line.split()[1] for line in text.splitlines()
                            if line.startswith(f"gpt2cpu_{name} ")))

        # The batch emptied without a step after it: the gauges still say so.
        assert wait_until(lambda: gauge("running_sequences") == 0, 5)
        assert gauge("queue_length") == 0 and gauge("kv_cache_bytes") == 0


def test_a_non_streaming_client_that_leaves_cancels_its_request(model: gpt2cpu.Model) -> None:
    """A client that drops a non-streaming request is noticed while its tokens keep coming.

    Each step is short, so that events never stop arriving for long: a server that checked
    its client only after a pause in them would run all 250 tokens out ("finished")."""
    def steady(items: list[Any]) -> list[Any]:
        time.sleep(0.02)
        return advance(items)

    with serve(model, step=steady) as served:
        engine = served.engine
        for path, body in (
            ("/completions", {"prompt": "A"}),
            ("/chat/completions", {"messages": [{"role": "user", "content": "A"}]}),
        ):
            payload = json.dumps({**body, "max_tokens": 250, "ignore_eos": True}).encode()
            with socket.create_connection(("127.0.0.1", int(served.url.rsplit(":", 1)[1]))
                                          ) as sock:
                sock.sendall(b"POST /v1" + path.encode() + b" HTTP/1.1\r\nHost: x\r\n"
                             b"Content-Type: application/json\r\nContent-Length: "
                             + str(len(payload)).encode() + b"\r\n\r\n" + payload)
                assert wait_until(lambda: bool(engine._running)
                                  and bool(engine._running[0].generated), 10)
            assert wait_until(lambda: not engine._running, 5), path
        metrics = httpx.get(served.url + "/metrics").text
        assert 'gpt2cpu_sequences_total{outcome="cancelled"} 2' in metrics
        assert 'gpt2cpu_sequences_total{outcome="finished"} 0' in metrics


def test_shutdown_ends_open_requests_with_a_503(model: gpt2cpu.Model) -> None:
    """Stopping the server fails what runs before it drains the connections: a stream ends
    with an error event and [DONE], a non-streaming request gets a 503, neither is cut
    mid-body nor runs its 250 tokens out first (the steps are slowed so that they cannot)."""
    from gpt2cpu.server.engine import ShuttingDown

    def slow(items: list[Any]) -> list[Any]:
        time.sleep(0.02)
        return advance(items)

    body = {"prompt": "A", "max_tokens": 250, "ignore_eos": True}
    streamed: list[str] = []
    answers: list[Any] = []

    def stream() -> None:
        with httpx.stream("POST", served.v1 + "/completions", json={**body, "stream": True},
                          timeout=30) as response:
            streamed.extend(line for line in response.iter_lines() if line)

    def post() -> None:
        answers.append(httpx.post(served.v1 + "/completions", json=body, timeout=30))

    with serve(model, step=slow) as served:
        clients = [threading.Thread(target=stream), threading.Thread(target=post)]
        for t in clients:
            t.start()
        assert wait_until(lambda: len(served.engine._running) == 2
                          and all(j.generated for j in served.engine._running), 10)
        served.server.should_exit = True
        for t in clients:
            t.join(10)
    assert streamed[-1] == "data: [DONE]"
    error = json.loads(streamed[-2][len("data: "):])["error"]
    assert error["type"] == "service_unavailable_error" and "shutting down" in error["message"]
    assert _error(answers[0], 503)["message"] == "the server is shutting down"
    # Nothing waits on a stopped engine.
    with pytest.raises(ShuttingDown):
        served.engine.submit([])
    with pytest.raises(ShuttingDown):
        served.engine.call(lambda: None).result(1)


def test_a_newcomer_starts_before_eight_streams_finish(model: gpt2cpu.Model) -> None:
    """A request that comes while 8 streams run joins their batch and finishes while they
    still run: it does not wait for them.

    The step hook holds the long streams, not the clock: before the newcomer has joined, a
    step in which every running one has its first token out waits for the next request to
    queue (not to join: the engine admits on this thread, after the step), and once the
    newcomer has run beside the 8 and left, they wait for the test to see it done. So none of the 8
    can run out its tokens first however slow the machine, and if the newcomer is made to
    wait for them, nothing holds them and the order shows it."""
    long = 150
    joined, release = threading.Event(), threading.Event()

    def hold_the_long_ones(items: list[Any]) -> list[Any]:
        running = served.engine._running
        if len(running) == 9:
            joined.set()
        elif all(job.max_tokens == long and job.generated for job in running):
            if not joined.is_set():
                wait_until(lambda: served.engine.queue_length > 0, 30)
            else:  # the 8 alone again: the newcomer has finished
                release.wait(30)
        return advance(items)

    async def scenario(url: str) -> None:
        started: list[int] = []  # the newcomer is sent once all 8 stream
        ended: list[int] = []  # each stream's max_tokens as it ends: the order is the test

        async def stream(client: Any, tokens: int) -> None:
            # Greedy: the first token is whole text (" man") and reaches the client at once.
            body = {"prompt": "A", "max_tokens": tokens, "ignore_eos": True, "stream": True,
                    "temperature": 0}
            first = True
            async with client.stream("POST", url, json=body) as response:
                async for line in response.aiter_lines():
                    if line.startswith("data: {") and first:
                        first = False
                        started.append(tokens)
            ended.append(tokens)

        async with httpx.AsyncClient(timeout=60) as client:
            streams = [asyncio.create_task(stream(client, long)) for _ in range(8)]
            try:
                assert await asyncio.to_thread(wait_until, lambda: len(started) >= 8, 30)
                await stream(client, 2)
                assert joined.is_set()  # it ran in the 8's batch
                assert ended == [2]  # and ended while they still ran
            finally:
                release.set()
                await asyncio.gather(*streams, return_exceptions=True)
        assert ended == [2] + [long] * 8

    with serve(model, step=hold_the_long_ones, max_batch=16) as served:
        asyncio.run(scenario(served.v1 + "/completions"))


def test_stream_ends_with_done_and_usage(server: Served) -> None:
    body = {"prompt": "A", "max_tokens": 5, "stream": True,
            "stream_options": {"include_usage": True}}
    with httpx.stream("POST", server.v1 + "/completions", json=body, timeout=30) as response:
        lines = [line for line in response.iter_lines() if line]
    assert lines[-1] == "data: [DONE]"
    last = json.loads(lines[-2][len("data: "):])
    assert last["choices"] == [] and last["usage"]["completion_tokens"] <= 5


def test_kv_budget_queues_what_does_not_fit(model: gpt2cpu.Model) -> None:
    one = 64 * model.kv_bytes_per_position  # the smallest sequence the engine allocates
    gate = Gate()
    with serve(model, max_kv_bytes=one + one // 2, prefix_cache_entries=0, step=gate) as served:
        answers: list[int] = []

        def post() -> None:
            answers.append(httpx.post(served.v1 + "/completions", json={
                "prompt": "A", "max_tokens": 3}, timeout=30).status_code)

        threads = [threading.Thread(target=post) for _ in range(2)]
        for t in threads:
            t.start()
        # One runs, the other waits for its memory rather than failing.
        assert wait_until(lambda: served.engine.queue_length == 1
                          and len(served.engine._running) == 1, 10)
        too_big = httpx.post(served.v1 + "/completions", json={"prompt": "A", "max_tokens": 200})
        assert _error(too_big, 400)["code"] == "kv_budget_exceeded"
        gate.open.set()
        for t in threads:
            t.join(30)
        assert answers == [200, 200]


def test_chat_templates(model: gpt2cpu.Model, tmp_path: Any) -> None:
    import shutil

    from gpt2cpu.server.chat import load_template
    from gpt2cpu.server.schemas import ChatMessage

    messages = [ChatMessage(role="user", content="Hi"), ChatMessage(role="assistant",
                content="Hello"), ChatMessage(role="user", content="Bye")]

    def chat_is_generate(served_model: gpt2cpu.Model, name: str, ids: list[int]) -> None:
        with serve(served_model, model_name=name) as served:
            got = openai.OpenAI(base_url=served.v1, api_key="x", max_retries=0).chat \
                .completions.create(model=name, messages=[m.model_dump() for m in messages],
                                    max_tokens=6, seed=1)
            assert got.choices[0].message.content == served_model.generate(
                ids, max_new_tokens=6, seed=1).text

    tokenizer = model.tokenizer
    assert tokenizer is not None and model.path is not None
    eos = tokenizer.eos_token_id
    assert eos is not None
    encode = tokenizer.encode
    assert load_template(model, "eos").prompt_ids(model, messages) == [
        *encode("Hi"), eos, *encode("Hello"), eos, *encode("Bye"), eos]
    assert load_template(model).kind == "plain"  # the bundled model has no template

    directory = tmp_path / "with-template"
    shutil.copytree(model.path, directory)
    config = json.loads((directory / "tokenizer_config.json").read_text())
    config["chat_template"] = ("{% for m in messages %}<{{ m.role }}>{{ m.content }}"
                               "{{ eos_token }}{% endfor %}{% if add_generation_prompt %}"
                               "<assistant>{% endif %}")
    (directory / "tokenizer_config.json").write_text(json.dumps(config))
    templated = gpt2cpu.Model.from_pretrained(directory, threads=1)
    ids = load_template(templated).prompt_ids(templated, messages)
    assert ids == encode("<user>Hi") + [eos] + encode("<assistant>Hello") + [eos] \
        + encode("<user>Bye") + [eos] + encode("<assistant>")
    chat_is_generate(templated, "t", ids)

    # transformers' environment: loop controls, its tojson, {% generation %}, strftime_now.
    def rendered(source: str) -> str:
        path = tmp_path / "template.jinja"
        path.write_text(source)
        return tokenizer.decode(load_template(model, str(path)).prompt_ids(model, messages))

    assert rendered("{% for m in messages %}{% if loop.index > 1 %}{% break %}{% endif %}"
                    "{{ m.content }}{% endfor %}") == "Hi"
    assert rendered("{{ messages[:1] | tojson }}") == '[{"role": "user", "content": "Hi"}]'
    assert rendered("{% generation %}<{{ messages[1].content }}>{% endgeneration %}") == \
        "<Hello>"
    assert rendered("{{ strftime_now('%Y') | length }}") == "4"
    # The template's own failure is the request's fault (400), found when it renders; one
    # that does not compile is found when the server starts.
    with pytest.raises(ValueError, match="the chat template failed: TypeError"):
        rendered("{{ messages[0]['content'] + 1 }}")
    with pytest.raises(ValueError, match="refused the messages: no"):
        rendered("{{ raise_exception('no') }}")
    with pytest.raises(ValueError, match="does not compile"):
        rendered("{% for m in messages %}")

    # A checkpoint named DialoGPT (microsoft/DialoGPT-small's folder) joins turns with EOS.
    dialog = tmp_path / "DialoGPT-small"
    shutil.copytree(model.path, dialog)
    dialogpt = gpt2cpu.Model.from_pretrained(dialog, threads=1)
    assert load_template(dialogpt).kind == "eos"
    joined = [*encode("Hi"), eos, *encode("Hello"), eos, *encode("Bye"), eos]
    chat_is_generate(dialogpt, "d", joined)


def test_serve_command(tmp_path: Any) -> None:
    import os
    import subprocess
    import sys

    from served import free_port

    port = free_port()
    process = subprocess.Popen(
        [sys.executable, "-m", "gpt2cpu", "serve", "--port", str(port), "--threads", "1",
         "--max-batch", "2", "--max-queue", "4", "--max-kv-memory", "64M", "--api-key", "k"],
        stderr=subprocess.PIPE, text=True, env={**os.environ, "PYTHONUNBUFFERED": "1"})
    try:
        assert process.stderr is not None
        assert f"127.0.0.1:{port}" in process.stderr.readline()
        url = f"http://127.0.0.1:{port}"
        assert wait_until(lambda: _up(url), 20)
        metrics = httpx.get(url + "/metrics").text
        assert f"gpt2cpu_kv_cache_budget_bytes {64 << 20}" in metrics
        got = httpx.post(url + "/v1/completions", json={"prompt": "A", "max_tokens": 2},
                         headers={"Authorization": "Bearer k"}).json()
        assert got["usage"]["completion_tokens"] <= 2
    finally:
        process.terminate()
        process.wait(20)
    command = [sys.executable, "-m", "gpt2cpu", "serve", "--threads", "1", "--port"]
    refused = subprocess.run([*command, "99999"], capture_output=True, text=True, timeout=60)
    assert refused.returncode == 2 and "a port is 0 to 65535, got 99999" in refused.stderr
    assert "Traceback" not in refused.stderr
    # A busy port: the error, and no banner saying the server is up.
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        taken = subprocess.run([*command, str(busy.getsockname()[1])], capture_output=True,
                               text=True, timeout=60)
    assert taken.returncode != 0 and "address already in use" in taken.stderr
    assert "gpt2cpu serve:" not in taken.stderr and "Traceback" not in taken.stderr


def _up(url: str) -> bool:
    try:
        return bool(httpx.get(url + "/health", timeout=1).status_code == 200)
    except httpx.HTTPError:
        return False


def test_a_long_prompt_is_prefilled_in_chunks_beside_the_decoders(model: gpt2cpu.Model
                                                                  ) -> None:
    """Every step advances each decoding stream by one token while a long prompt joins, and
    runs at most PREFILL_FLOOR decode rows' worth of prompt tokens (3 decoders are fewer):
    the prompt at most doubles the others' step. Alone, it runs in chunks of --prefill-chunk."""
    from gpt2cpu.server.engine import PREFILL_FLOOR

    steps: list[list[int]] = []

    def recording(items: list[Any]) -> list[Any]:
        steps.append([len(item.tokens) for item in items])
        time.sleep(0.005)
        return advance(items)

    tokenizer = model.tokenizer
    assert tokenizer is not None
    long_prompt = tokenizer.encode("Now is the winter of our discontent. " * 30)[:200]
    with serve(model, step=recording, prefill_chunk=32) as served:
        streams = [threading.Thread(target=httpx.post, args=(served.v1 + "/completions",),
                                    kwargs={"json": {"prompt": "A", "max_tokens": 240,
                                                     "ignore_eos": True}, "timeout": 60})
                   for _ in range(3)]
        for t in streams:
            t.start()
        assert wait_until(lambda: len(served.engine._running) == 3 and all(
            not j.prefilling for j in served.engine._running), 10)
        mark = len(steps)
        got = httpx.post(served.v1 + "/completions", json={"prompt": long_prompt,
                                                           "max_tokens": 1}, timeout=60)
        assert got.status_code == 200
        for t in streams:
            t.join(60)
    during = [s for s in steps[mark:] if max(s) > 1]  # the steps that read the long prompt
    assert len(during) >= 200 // PREFILL_FLOOR
    for step in during:
        assert sum(n for n in step if n > 1) <= PREFILL_FLOOR < 32
        assert step.count(1) == 3  # and the three streams advanced by a token each
    chunks = [max(s) for s in during]
    assert chunks[-1] < chunks[0]  # later prompt tokens attend to more: fewer a step
    steps.clear()
    with serve(model, step=recording, prefill_chunk=16) as served:
        assert httpx.post(served.v1 + "/completions", json={"prompt": long_prompt,
                                                            "max_tokens": 1}).status_code == 200
    assert [s[0] for s in steps] == [16] * (200 // 16) + [200 % 16]


def test_a_padded_vocabulary_never_serves_an_undecodable_id(tmp_path: Any) -> None:
    """The ids past the tokenizer's vocabulary (nanoGPT pads 50257 to 50304) have no text:
    the server's choices come from the library's one sampling path, which never picks them,
    and equal `generate`'s at the same seed even when a logit_bias makes them favourites."""
    import shutil
    from pathlib import Path

    from gpt2cpu.server import build
    from gpt2cpu.server.job import Delta
    from model_files import TINY, model_dir

    bundled = Path(gpt2cpu.__file__).parent / "models" / "tiny-shakespeare"
    for name in ("vocab.json", "merges.txt", "tokenizer_config.json"):
        shutil.copyfile(bundled / name, tmp_path / name)
    words = gpt2cpu.Tokenizer.from_pretrained(tmp_path).vocab_size
    config = dict(TINY, vocab_size=words + 47, n_positions=64)
    del config["bos_token_id"], config["eos_token_id"]
    padded = gpt2cpu.Model.from_pretrained(model_dir(tmp_path, config), threads=1)
    favoured = {str(i): 30.0 for i in range(words, words + 47)}
    body = {"prompt": "To be", "max_tokens": 30, "temperature": 3.0, "seed": 5,
            "logit_bias": favoured, "ignore_eos": True, "n": 2}
    expected = padded.generate("To be", max_new_tokens=30, temperature=3.0, seed=5, n=2,
                               logit_bias={int(k): v for k, v in favoured.items()},
                               ignore_eos=True)
    assert isinstance(expected, list) and padded.tokenizer is not None
    with serve(padded, max_batch=4) as served:
        got = httpx.post(served.v1 + "/completions", json=body, timeout=60).json()
        assert [c["text"] for c in got["choices"]] == [r.text for r in expected]
        assert got["usage"]["completion_tokens"] == 60
        # The ids themselves, as the engine hands them to the HTTP side.
        seen: list[int] = []
        done = threading.Event()

        def emit(index: int, event: Any) -> None:
            if isinstance(event, Delta):
                seen.extend(event.tokens)
            elif type(event).__name__ in ("Finished", "Failed"):
                done.set()

        config_ = build.config_for(padded, build_request(body), 30)
        served.engine.submit(build.jobs_for([padded.tokenizer.encode("To be")], config_, 1,
                                            30, padded, emit, None, False))
        assert done.wait(30)
    assert len(seen) == 30 and max(seen) < words


def build_request(body: dict[str, Any]) -> Any:
    from gpt2cpu.server.schemas import CompletionRequest

    return CompletionRequest.model_validate(body)
