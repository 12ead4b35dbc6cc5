"""How a backend sends HTTP: one small seam, two clients behind it.

A backend that owns its connection pool sends straight through aiohttp (``AiohttpUpstream``):
profiling the pinned path put httpx's request and response models, laid over an aiohttp transport,
at 30 % of its CPU (bench/results/profile-pinned.txt). ``HttpxUpstream`` serves a client handed in
(tests put a ``MockTransport`` there, an embedding program its own client) and
``TURNOUT_UPSTREAM_TRANSPORT=httpx``. Failures are translated by ``http_transport.translated_errors``
whichever client raised them.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from dataclasses import dataclass
from types import TracebackType
from typing import Protocol

import aiohttp
import httpx
from yarl import URL

READ_PART_BYTES = 64 * 1024


@dataclass(frozen=True, slots=True)
class UpstreamAnswer:
    """An answer whose head is in and whose body is read on demand, whichever client got it."""

    status: int
    reason: str
    headers: Mapping[str, str]
    """Looked up case-insensitively (both clients' header maps are)."""
    parts: Callable[[], AsyncIterator[bytes]]
    """The body, decoded, as it arrives."""


class Exchange(Protocol):
    """``async with``: the answer; leaving it releases the connection (dropped if the body was
    not read to its end)."""

    async def __aenter__(self) -> UpstreamAnswer: ...

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None: ...


class UpstreamHttp(Protocol):
    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Exchange: ...

    async def aclose(self) -> None:
        """Closes the pool if this client opened it."""
        ...


class AiohttpUpstream:
    """A pool of its own, sized by the backend's ``max_connections``. No timeouts of aiohttp's own:
    the caller bounds each exchange by the request's budget."""

    def __init__(self, max_connections: int) -> None:
        connector = aiohttp.TCPConnector(limit=max_connections, limit_per_host=0)
        no_timeouts = aiohttp.ClientTimeout(total=None, connect=None, sock_read=None, sock_connect=None)
        self._session = aiohttp.ClientSession(connector=connector, timeout=no_timeouts, trust_env=False)
        self._urls: dict[str, URL] = {}

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Exchange:
        parsed = self._urls.get(url)
        if parsed is None:
            parsed = self._urls[url] = URL(url)
        return _AiohttpExchange(self._session.request(method, parsed, data=body, headers=headers))

    async def aclose(self) -> None:
        await self._session.close()


class _AiohttpExchange:
    __slots__ = ("_pending", "_response")

    def __init__(self, pending: Awaitable[aiohttp.ClientResponse]) -> None:
        self._pending = pending
        self._response: aiohttp.ClientResponse | None = None

    async def __aenter__(self) -> UpstreamAnswer:
        response = self._response = await self._pending
        return UpstreamAnswer(response.status, response.reason or "", response.headers, self._parts)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is None:
            return
        if exc is None:
            self._response.release()  # back to the pool when the body was read to its end
        else:
            self._response.close()

    def _parts(self) -> AsyncIterator[bytes]:
        assert self._response is not None
        return self._response.content.iter_chunked(READ_PART_BYTES)  # no async generator of our own


class HttpxUpstream:
    """An httpx client: the caller's (``is_owned=False``, closed by the caller) or one of its own."""

    def __init__(self, client: httpx.AsyncClient, is_owned: bool = False) -> None:
        self.client = client
        self._is_owned = is_owned
        self._urls: dict[str, httpx.URL] = {}

    @classmethod
    def pooled(cls, max_connections: int) -> HttpxUpstream:
        limits = httpx.Limits(max_connections=max_connections, max_keepalive_connections=max_connections)
        return cls(httpx.AsyncClient(limits=limits, trust_env=False), is_owned=True)

    def send(self, method: str, url: str, body: bytes | None, headers: Mapping[str, str]) -> Exchange:
        parsed = self._urls.get(url)
        if parsed is None:
            # Parsed once: a URL's parse (its host checked as an IP address) was 15 % of the pinned
            # path's CPU when done per request (bench/results/profile-pinned.txt).
            parsed = self._urls[url] = httpx.URL(url)
        request = self.client.build_request(method, parsed, content=body, headers=headers)
        return _HttpxExchange(self.client, request)

    async def aclose(self) -> None:
        if self._is_owned:
            await self.client.aclose()


class _HttpxExchange:
    __slots__ = ("_client", "_request", "_response")

    def __init__(self, client: httpx.AsyncClient, request: httpx.Request) -> None:
        self._client = client
        self._request = request
        self._response: httpx.Response | None = None

    async def __aenter__(self) -> UpstreamAnswer:
        response = self._response = await self._client.send(self._request, stream=True)
        return UpstreamAnswer(response.status_code, response.reason_phrase, response.headers, response.aiter_bytes)

    async def __aexit__(
        self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._response is not None:
            await self._response.aclose()


def open_upstream(max_connections: int, transport: str = "aiohttp") -> UpstreamHttp:
    """A pool of the backend's own (call it inside the event loop that will use it)."""
    if transport == "httpx":
        return HttpxUpstream.pooled(max_connections)
    return AiohttpUpstream(max_connections)
