from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator, Callable

import httpx
import pytest

from backends.openai_compat import OpenAICompatBackend
from backends.upstream_http import HttpxUpstream
from contracts.errors import (
    BackendBadResponse,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
)
from contracts.wire import ChatCompletionRequest, EmbeddingRequest
from gateway.resilience.fallback import failure_kind

COMPLETION = {
    "id": "c1",
    "object": "chat.completion",
    "created": 1,
    "model": "m",
    "choices": [{"index": 0, "message": {"role": "assistant", "content": "hello"}, "finish_reason": "stop"}],
    "usage": {"prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4},
}
Handler = Callable[[httpx.Request], httpx.Response]


def chunk(content: str, finish: str | None = None) -> bytes:
    body = {"id": "c1", "object": "chat.completion.chunk", "created": 1, "model": "m",
            "choices": [{"index": 0, "delta": {"content": content}, "finish_reason": finish}]}  # fmt: skip
    return b"data: " + json.dumps(body).encode() + b"\n\n"


def backend_for(handler: Handler | Callable[[httpx.Request], object]) -> OpenAICompatBackend:
    client = httpx.AsyncClient(transport=httpx.MockTransport(handler))  # type: ignore[arg-type]
    return OpenAICompatBackend("up", "http://upstream/v1", "served-model", HttpxUpstream(client), api_key="sk-up")


def chat(**extra: object) -> ChatCompletionRequest:
    return ChatCompletionRequest.model_validate(
        {"model": "auto", "messages": [{"role": "user", "content": "hi"}], **extra}
    )


async def collect(chunks: AsyncIterator[object]) -> list[object]:
    return [c async for c in chunks]


async def test_complete_sends_backend_model_and_unknown_fields_untouched() -> None:
    seen: dict[str, object] = {}

    def handler(request: httpx.Request) -> httpx.Response:
        seen.update(json.loads(request.content), auth=request.headers["authorization"], url=str(request.url))
        return httpx.Response(200, json=COMPLETION)

    tools = [{"type": "function", "function": {"name": "f", "parameters": {"type": "object"}}}]
    answer = await backend_for(handler).complete(chat(tools=tools, seed=7, response_format={"type": "json_object"}), 5)

    assert answer.choices[0].model_extra == {"message": {"role": "assistant", "content": "hello"}}
    assert seen["model"] == "served-model"
    assert seen["tools"] == tools
    assert seen["seed"] == 7
    assert seen["response_format"] == {"type": "json_object"}
    assert seen["auth"] == "Bearer sk-up"
    assert seen["url"] == "http://upstream/v1/chat/completions"


@pytest.mark.parametrize(
    ("status", "error"),
    [
        (500, BackendBadResponse),
        (502, BackendBadResponse),
        (503, BackendUnavailable),
        (504, BackendTimeout),
        (401, BackendBadResponse),
        (404, BackendBadResponse),
        (400, BackendRejected),
        (422, BackendRejected),
    ],
)
async def test_complete_maps_upstream_status_to_gateway_error(status: int, error: type[Exception]) -> None:
    backend = backend_for(lambda r: httpx.Response(status, json={"error": {"message": "boom"}}))
    with pytest.raises(error, match="boom"):
        await backend.complete(chat(), 5)


async def test_complete_keeps_upstream_status_when_request_is_rejected() -> None:
    backend = backend_for(lambda r: httpx.Response(422, json={"error": {"message": "bad tools"}}))
    with pytest.raises(BackendRejected) as caught:
        await backend.complete(chat(), 5)
    assert caught.value.status == 422
    assert failure_kind(caught.value) is None


async def test_complete_passes_on_rate_limit_with_retry_after() -> None:
    backend = backend_for(lambda r: httpx.Response(429, headers={"retry-after": "7"}, json={"error": "slow down"}))
    with pytest.raises(BackendRateLimited) as caught:
        await backend.complete(chat(), 5)
    assert caught.value.status == 429
    assert caught.value.headers == {"retry-after": "7"}


@pytest.mark.parametrize("body", [b"<html>oops</html>", b'{"choices": []}', b'{"choices": "x"}', b""])
async def test_complete_rejects_malformed_upstream_body_with_502(body: bytes) -> None:
    backend = backend_for(lambda r: httpx.Response(200, content=body))
    with pytest.raises(BackendBadResponse) as caught:
        await backend.complete(chat(), 5)
    assert caught.value.status == 502


async def test_complete_maps_connection_refused_to_503() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    with pytest.raises(BackendUnavailable):
        await backend_for(handler).complete(chat(), 5)


async def test_complete_gives_up_on_hanging_upstream_at_timeout() -> None:
    async def handler(request: httpx.Request) -> httpx.Response:
        await asyncio.sleep(30)
        return httpx.Response(200, json=COMPLETION)

    with pytest.raises(BackendTimeout):
        await backend_for(handler).complete(chat(), 0.2)


async def test_stream_yields_chunks_until_done() -> None:
    body = chunk("Hel") + chunk("lo", "stop") + b"data: [DONE]\n\n"
    backend = backend_for(lambda r: httpx.Response(200, content=body))
    chunks = await collect(backend.stream(chat(stream=True), 5))
    assert [c.choices[0].model_extra["delta"]["content"] for c in chunks] == ["Hel", "lo"]  # type: ignore[attr-defined]


async def test_stream_cut_midway_raises_bad_response_after_first_chunks() -> None:
    backend = backend_for(lambda r: httpx.Response(200, content=chunk("Hel") + chunk("lo")))
    received: list[object] = []

    async def drain() -> None:
        async for c in backend.stream(chat(stream=True), 5):
            received.append(c)

    with pytest.raises(BackendBadResponse, match="ended before"):
        await drain()
    assert len(received) == 2


async def test_stream_with_malformed_event_raises_bad_response() -> None:
    backend = backend_for(lambda r: httpx.Response(200, content=chunk("a") + b"data: {not json\n\n"))
    with pytest.raises(BackendBadResponse, match="malformed"):
        await collect(backend.stream(chat(stream=True), 5))


async def test_stream_with_error_event_raises_bad_response() -> None:
    backend = backend_for(lambda r: httpx.Response(200, content=b'data: {"error": {"message": "oom"}}\n\n'))
    with pytest.raises(BackendBadResponse, match="oom"):
        await collect(backend.stream(chat(stream=True), 5))


async def test_stream_that_stalls_times_out_instead_of_hanging() -> None:
    async def stalled() -> AsyncIterator[bytes]:
        yield chunk("a")
        await asyncio.sleep(30)

    backend = backend_for(lambda r: httpx.Response(200, content=stalled()))
    with pytest.raises(BackendTimeout):
        await collect(backend.stream(chat(stream=True), 0.2))


async def test_stream_error_status_before_first_chunk_is_mapped() -> None:
    backend = backend_for(lambda r: httpx.Response(503, json={"error": {"message": "loading"}}))
    with pytest.raises(BackendUnavailable, match="loading"):
        await collect(backend.stream(chat(stream=True), 5))


async def test_embed_parses_vectors() -> None:
    answer = {"object": "list", "data": [{"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}], "model": "m"}
    backend = backend_for(lambda r: httpx.Response(200, json=answer))
    result = await backend.embed(EmbeddingRequest(model="auto", input="hi"), 5)
    assert result.data[0].model_extra == {"object": "embedding", "index": 0, "embedding": [0.1, 0.2]}


async def test_health_reports_failure_without_raising() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("refused", request=request)

    health = await backend_for(handler).health(1)
    assert not health.is_healthy
    assert "refused" in health.detail


async def test_health_ok_when_models_answers() -> None:
    health = await backend_for(lambda r: httpx.Response(200, json={"data": []})).health(1)
    assert health.is_healthy
