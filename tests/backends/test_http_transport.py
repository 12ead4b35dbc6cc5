from __future__ import annotations

import asyncio
import inspect
from collections.abc import AsyncIterator

import aiohttp
import httpx
import pytest

from backends.http_transport import error_class_for, translated_errors
from backends.openai_compat import OpenAICompatBackend
from backends.upstream_http import open_upstream
from contracts.errors import BackendBadResponse, BackendError, BackendUnavailable
from contracts.wire import ChatCompletionRequest
from gateway.resilience.fallback import failure_kind
from support.ports import free_port

CHAT = ChatCompletionRequest.model_validate({"model": "m", "messages": [{"role": "user", "content": "hi"}]})


def test_every_httpx_error_class_is_mapped() -> None:
    classes = [c for _, c in inspect.getmembers(httpx, inspect.isclass) if issubclass(c, httpx.HTTPError)]
    assert len(classes) > 10
    unmapped = [cls.__name__ for cls in classes if error_class_for(cls.__new__(cls)) is None]
    assert unmapped == []


def test_every_aiohttp_error_class_is_mapped() -> None:
    classes = [c for _, c in inspect.getmembers(aiohttp, inspect.isclass) if issubclass(c, aiohttp.ClientError)]
    assert len(classes) > 10
    unmapped = [cls.__name__ for cls in classes if error_class_for(cls.__new__(cls)) is None]
    assert unmapped == []


def test_unknown_exception_is_not_swallowed() -> None:
    with pytest.raises(KeyError), translated_errors("b"):
        raise KeyError("a bug stays a bug")


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_real_transport_maps_refused_connection_to_503(transport: str) -> None:
    backend = OpenAICompatBackend("down", f"http://127.0.0.1:{free_port()}/v1", "m", open_upstream(4, transport), None)
    try:
        with pytest.raises(BackendUnavailable):
            await backend.complete(CHAT, 5)
    finally:
        await backend.aclose()


@pytest.fixture
async def cutting_server() -> AsyncIterator[str]:
    """Answers headers promising 1,000 bytes, sends 10 and closes the connection."""

    async def handle(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        await reader.readuntil(b"\r\n\r\n")
        writer.write(b'HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: 1000\r\n\r\n{"choices"')
        await writer.drain()
        writer.close()

    server = await asyncio.start_server(handle, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    yield f"http://127.0.0.1:{port}/v1"
    server.close()


@pytest.mark.parametrize("transport", ["aiohttp", "httpx"])
async def test_real_transport_maps_body_cut_short_to_backend_error(cutting_server: str, transport: str) -> None:
    backend = OpenAICompatBackend("cut", cutting_server, "m", open_upstream(4, transport), None)
    try:
        with pytest.raises(BackendError) as caught:
            await backend.complete(CHAT, 5)
        assert isinstance(caught.value, BackendBadResponse | BackendUnavailable)
        assert failure_kind(caught.value) is not None  # the next backend may be tried
    finally:
        await backend.aclose()
