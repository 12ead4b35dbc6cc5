"""The pooled upstream HTTP client and the translation of its failures.

httpx is the API; aiohttp is the transport underneath (``httpx-aiohttp``) unless
``TURNOUT_UPSTREAM_TRANSPORT=httpx``. ``bench/transport.sh`` measures both through the
whole gateway; the figures are in ``bench/results/transport.txt``.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import aiohttp
import httpx
from httpx_aiohttp import AiohttpTransport

from gateway.errors import (
    BackendBadResponse,
    BackendError,
    BackendRateLimited,
    BackendRejected,
    BackendTimeout,
    BackendUnavailable,
)

# Looked up along the exception's MRO, most specific class first.
HTTPX_ERRORS: dict[type[Exception], type[BackendError]] = {
    # httpx-aiohttp reports a connection dropped by the peer as ConnectTimeout.
    httpx.ConnectTimeout: BackendUnavailable,
    httpx.ConnectError: BackendUnavailable,
    httpx.PoolTimeout: BackendUnavailable,
    httpx.TimeoutException: BackendTimeout,
    TimeoutError: BackendTimeout,
    httpx.RemoteProtocolError: BackendBadResponse,
    httpx.NetworkError: BackendUnavailable,
    httpx.HTTPError: BackendBadResponse,
    aiohttp.ClientError: BackendBadResponse,
}

# Statuses that mean the backend (not the caller) is wrong: bad credentials, wrong model.
BACKEND_FAULT_STATUSES = {401, 403, 404}


def open_http_client(max_connections: int, transport: str = "aiohttp") -> httpx.AsyncClient:
    limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
    if transport == "httpx":
        return httpx.AsyncClient(limits=limits, trust_env=False)
    return httpx.AsyncClient(transport=AiohttpTransport(limits=limits, trust_env=False), trust_env=False)


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
        if cls in HTTPX_ERRORS:
            return HTTPX_ERRORS[cls]
    return None


def raise_for_status(backend: str, response: httpx.Response) -> None:
    status = response.status_code
    if status < 400:
        return
    error = status_error(backend, status, upstream_message(response), response.headers.get("retry-after"))
    error.upstream_status = status
    raise error


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


def upstream_message(response: httpx.Response) -> str:
    try:
        error = response.json().get("error")
    except (ValueError, AttributeError):
        return response.text[:200] or response.reason_phrase
    if isinstance(error, dict):
        return str(error.get("message", error))[:500]
    return str(error)[:500]
