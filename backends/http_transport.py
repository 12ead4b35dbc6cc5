"""Where backends get their HTTP clients, and the translation of the clients' failures.

Each backend sends through an ``UpstreamHttp`` of its own (``backends/upstream_http.py``):
aiohttp by default, httpx with ``TURNOUT_UPSTREAM_TRANSPORT=httpx``, or the client the app was
handed. (litellm backends use theirs for health checks; litellm has clients of its own for calls.)
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

import aiohttp
import httpx
import orjson

from backends.upstream_http import HttpxUpstream, UpstreamAnswer, UpstreamHttp, open_upstream
from contracts.errors import (
    BackendBadResponse,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
    ResponseTooLarge,
)

# Looked up along the exception's MRO, most specific class first.
TRANSPORT_ERRORS: dict[type[Exception], type[BackendError]] = {
    httpx.ConnectTimeout: BackendUnavailable,
    httpx.ConnectError: BackendUnavailable,
    httpx.PoolTimeout: BackendUnavailable,
    httpx.TimeoutException: BackendTimeout,
    TimeoutError: BackendTimeout,
    httpx.RemoteProtocolError: BackendBadResponse,
    httpx.NetworkError: BackendUnavailable,
    httpx.HTTPError: BackendBadResponse,
    # aiohttp's own, as their httpx counterparts: a dropped connection or a cut body is unavailable.
    aiohttp.ServerTimeoutError: BackendTimeout,
    aiohttp.ClientConnectionError: BackendUnavailable,
    aiohttp.ClientPayloadError: BackendUnavailable,
    aiohttp.ClientError: BackendBadResponse,
}

ERROR_BODY_BYTES = 64 * 1024
"""Of an error answer only this much is read: its message is all the gateway relays."""

# Statuses that mean the backend (not the caller) is wrong: bad credentials, wrong model.
BACKEND_FAULT_STATUSES = {401, 403, 404}


@dataclass(frozen=True)
class HttpClients:
    """Where backends get their HTTP client: each one a pool of its own, sized from its own spec, so
    a slow backend holds only its own connections and a rules change resizes a pool by reopening
    that backend alone. An app that injects a client (tests, an embedding program) shares it."""

    transport: str = "aiohttp"
    shared: httpx.AsyncClient | None = None

    def upstream(self, max_connections: int) -> UpstreamHttp:
        """What a backend sends through; closed with it (a shared client is not)."""
        if self.shared is not None:
            return HttpxUpstream(self.shared)
        return open_upstream(max_connections, self.transport)


@contextmanager
def translated_errors(backend: str) -> Iterator[None]:
    """Re-raise transport failures as the gateway's own backend errors."""
    try:
        yield
    except BackendError:
        raise
    except Exception as exc:
        error = error_class_for(exc)
        if error is None:
            raise
        raise error(f"backend {backend!r}: {type(exc).__name__}: {exc}".rstrip(": ")) from exc


def error_class_for(exc: BaseException) -> type[BackendError] | None:
    for cls in type(exc).__mro__:
        if cls in TRANSPORT_ERRORS:
            return TRANSPORT_ERRORS[cls]
    return None


async def read_body(backend: str, response: UpstreamAnswer, limit: int) -> bytes:
    """An answer's whole (decoded) body; ``ResponseTooLarge`` past ``limit`` bytes. The caller's
    exchange drops the connection when the body was not read to its end."""
    declared = response.headers.get("content-length") or ""
    if declared.isascii() and declared.isdigit() and int(declared) > limit:
        raise too_large(backend, limit)
    body = bytearray()
    async for part in response.parts():
        body += part
        if len(body) > limit:
            body.clear()  # now, not when the traceback holding this frame is collected
            raise too_large(backend, limit)
    return bytes(body)


def too_large(backend: str, limit: int) -> ResponseTooLarge:
    return ResponseTooLarge(f"backend {backend!r} answered more than its max_response_bytes ({limit})")


async def read_head(response: UpstreamAnswer, limit: int) -> bytes:
    """At most the first ``limit`` bytes of a body: enough to tell what went wrong."""
    head = bytearray()
    async for part in response.parts():
        head += part[: limit - len(head)]
        if len(head) >= limit:
            break
    return bytes(head)


async def raise_for_status(backend: str, response: UpstreamAnswer) -> None:
    """Nothing below 400; else the error, reading at most ``ERROR_BODY_BYTES`` of the body."""
    status = response.status
    if status < 400:
        return
    detail = upstream_message(await read_head(response, ERROR_BODY_BYTES), response.reason)
    error = status_error(backend, status, detail, response.headers.get("retry-after"))
    error.upstream_status = status
    raise error


async def check_models(
    upstream: UpstreamHttp, backend: str, url: str, headers: dict[str, str], timeout_s: float
) -> None:
    """``GET {url}`` as a health check: raises the backend error unless it answers below 400."""
    with translated_errors(backend):
        async with asyncio.timeout(timeout_s), upstream.send("GET", url, None, headers) as response:
            await raise_for_status(backend, response)


def status_error(backend: str, status: int, detail: str, retry_after: str | None) -> BackendError:
    message = f"backend {backend!r} answered {status}: {detail}"
    if status == 429:
        return BackendRateLimited(message, headers={"retry-after": retry_after} if retry_after else None)
    if status in (408, 504):
        return BackendTimeout(message)
    if status == 503:
        return BackendUnavailable(message)
    if status >= 500 or status in BACKEND_FAULT_STATUSES:
        return BackendBadResponse(message)
    return BackendRejected(message, status=status)


def upstream_message(body: bytes, reason: str) -> str:
    try:
        error = orjson.loads(body).get("error")
    except (orjson.JSONDecodeError, AttributeError):
        return body[:200].decode("utf-8", "replace") or reason
    if isinstance(error, dict):
        return str(error.get("message", error))[:500]
    return str(error)[:500]
