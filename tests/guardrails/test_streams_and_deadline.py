"""Streams over real sockets: a span that fails a check never reaches the client; and the deadline
holds while guardrails send a request from backend to backend."""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Iterator
from urllib.parse import urlsplit

import httpx
import pytest
from fastapi import FastAPI, Request
from fastapi.responses import StreamingResponse

from gateway.app import create_app
from gateway.rules import parse_rules
from gateway.settings import Settings
from tests.gateway.harness import KEY, completion, gateway
from tests.guardrails.rules import AUTH, rules
from tests.servers import serving

PREAMBLE = "Here is what you asked about, in a few words. " * 6
ANSWER = PREAMBLE + "The vault code is TOP-SECRET-777. " + "And more. " * 40


def chunk(content: str | None, finish: str | None = None) -> bytes:
    delta = {"content": content} if content is not None else {}
    event = {"id": "u1", "object": "chat.completion.chunk", "created": 1, "model": "u",
             "choices": [{"index": 0, "delta": delta, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(event).encode() + b"\n\n"


@pytest.fixture(scope="module")
def upstream() -> Iterator[str]:
    """A model server that streams ``ANSWER`` a few characters at a time, slowly enough that the
    client has read everything released before the next piece."""
    app = FastAPI()

    @app.post("/v1/chat/completions")
    async def chat(request: Request) -> StreamingResponse:
        async def pieces() -> AsyncIterator[bytes]:
            yield chunk("")
            for start in range(0, len(ANSWER), 5):
                await asyncio.sleep(0.002)
                yield chunk(ANSWER[start : start + 5])
            yield chunk(None, "stop")
            yield b"data: [DONE]\n\n"

        return StreamingResponse(pieces(), media_type="text/event-stream")

    with serving(app) as url:
        yield url + "/v1"


def streamed_text(received: bytes) -> str:
    """The text of the stream's chunks (the HTTP chunked framing lines skipped)."""
    streamed = ""
    for line in received.decode().splitlines():
        if line.startswith("data: {"):
            for choice in json.loads(line[6:])["choices"]:
                streamed += choice["delta"].get("content") or ""
    return streamed


async def raw_exchange(base: str, body: dict[str, object]) -> bytes:
    """Every byte the gateway wrote to the client's socket, read until it closed."""
    where = urlsplit(base)
    reader, writer = await asyncio.open_connection(where.hostname, where.port)
    payload = json.dumps(body).encode()
    writer.write(
        b"POST /v1/chat/completions HTTP/1.1\r\nhost: gw\r\ncontent-type: application/json\r\n"
        + f"authorization: Bearer {KEY}\r\ncontent-length: {len(payload)}\r\nconnection: close\r\n\r\n".encode()
        + payload
    )
    await writer.drain()
    received = await asyncio.wait_for(reader.read(-1), 60)
    writer.close()
    await writer.wait_closed()
    return received


def streamed_over_a_socket(upstream: str, pattern: str, attached: str) -> bytes:
    """Every byte a client's socket received for one stream through a gateway (uvicorn on a real
    port) whose route checks the answer against ``pattern`` with ``attached`` options."""
    text = rules(
        f'  vault: {{kind: pattern, patterns: ["{pattern}"], action: block}}',
        f"  general: {{backends: [local], guardrails: {{output: [vault]{attached}}}}}",
    ).replace('"http://local/v1"', f'"{upstream}"')
    body = {"model": "general", "stream": True, "messages": [{"role": "user", "content": "tell"}]}
    with serving(create_app(Settings(), parse_rules(text))) as base:
        return asyncio.run(raw_exchange(base, body))


def test_a_span_that_fails_a_check_never_reaches_the_clients_socket(upstream: str) -> None:
    received = streamed_over_a_socket(upstream, "TOP-SECRET-[0-9]+", ", holdback_chars: 64")
    assert b"TOP-SECRET" not in received
    assert b"TOP-" not in received
    assert b"SECRET" not in received
    released = streamed_text(received)
    assert len(released) > 100
    assert PREAMBLE.startswith(released)
    assert b'"finish_reason":"content_filter"' in received
    assert received.endswith(b"data: [DONE]\n\n\r\n0\r\n\r\n")  # the stream ended whole, not cut


def test_a_clean_stream_reaches_the_client_whole_and_in_order(upstream: str) -> None:
    received = streamed_over_a_socket(upstream, "NEVER-THERE", "")
    assert streamed_text(received) == ANSWER
    assert b'"finish_reason":"stop"' in received


async def test_the_deadline_holds_when_a_fallback_guardrail_moves_on_to_a_slow_backend() -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "second":
            await asyncio.sleep(5)
        return httpx.Response(200, json=completion("As an AI language model, no."))

    text = rules(
        '  boilerplate: {kind: pattern, patterns: ["(?i)as an ai language model"], action: fallback}',
        "  general: {backends: [local, second], latency_budget_ms: 400, guardrails: {output: [boilerplate]}}",
    )
    async with gateway(upstream, text) as client:  # type: ignore[arg-type]
        started = asyncio.get_running_loop().time()
        response = await client.post(
            "/v1/chat/completions",
            json={"model": "general", "messages": [{"role": "user", "content": "hi"}]},
            headers=AUTH,
        )
        took = asyncio.get_running_loop().time() - started
    assert response.status_code == 504
    assert response.json()["error"]["code"] == "budget_exceeded"
    assert took < 4  # it did not wait for the slow backend's answer


async def test_a_judge_that_errors_follows_on_error() -> None:
    async def upstream(request: httpx.Request) -> httpx.Response:
        if request.url.host == "second":
            return httpx.Response(500, json={"error": {"message": "judge down"}})
        return httpx.Response(200, json=completion("fine"))

    judged = """
  lenient: {kind: llm, backend: second, budget_ms: 500, on_error: allow, action: block}
  strict: {kind: llm, backend: second, budget_ms: 500, on_error: block, action: block}
"""
    for name, status in (("lenient", 200), ("strict", 400)):
        text = rules(judged, f"  general: {{backends: [local], guardrails: {{input: [{name}]}}}}")
        async with gateway(upstream, text) as client:  # type: ignore[arg-type]
            response = await client.post(
                "/v1/chat/completions",
                json={"model": "general", "messages": [{"role": "user", "content": "hi"}]},
                headers=AUTH,
            )
        assert response.status_code == status
        if status == 200:
            assert response.headers["x-turnout-guardrails"] == "lenient=error"


async def test_healthz_answers_while_thousands_of_messages_are_redacted() -> None:
    from tests.gateway.test_loop_stalls import HEALTHZ_LIMIT_S, slowest_healthz_while

    text = rules("  pii: {kind: pii, action: redact}", "  general: {backends: [local], guardrails: {input: [pii]}}")
    messages = [{"role": "user", "content": f"call +1 415 555 {2000 + i % 7000:04d} now"} for i in range(3000)]
    async with gateway(lambda request: httpx.Response(200, json=completion("ok")), text) as client:
        body = {"model": "general", "messages": messages}
        redacting = asyncio.create_task(client.post("/v1/chat/completions", json=body, headers=AUTH))
        slowest = await slowest_healthz_while(client, redacting)
        response = await redacting
    assert response.status_code == 200
    assert response.headers["x-turnout-guardrails"] == "pii=redact"
    assert slowest < HEALTHZ_LIMIT_S, f"/healthz took {slowest * 1000:.0f} ms while the messages were redacted"
