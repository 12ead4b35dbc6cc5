"""Sending a request down a route's backends in order until one answers."""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from typing import TypeVar

from backends.base import Backend
from gateway.errors import BackendBadResponse, BackendError
from gateway.metrics import Metrics
from gateway.schemas import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)
from routers.decision import RouteDecision

Answer = TypeVar("Answer")
Call = Callable[[Backend, float], Awaitable[Answer]]


class Dispatcher:
    def __init__(self, backends: Mapping[str, Backend], timeouts: Mapping[str, float], metrics: Metrics) -> None:
        self._backends = backends
        self._timeouts = timeouts
        self._metrics = metrics

    async def complete(self, decision: RouteDecision, request: ChatCompletionRequest) -> tuple[str, ChatCompletion]:
        return await self._first_answer(decision, lambda backend, timeout: backend.complete(request, timeout))

    async def embed(self, decision: RouteDecision, request: EmbeddingRequest) -> tuple[str, EmbeddingResponse]:
        return await self._first_answer(decision, lambda backend, timeout: backend.embed(request, timeout))

    async def open_stream(
        self, decision: RouteDecision, request: ChatCompletionRequest
    ) -> tuple[str, tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]]]:
        """Start a stream and wait for its first chunk, so that a failure before it can still fall back."""

        async def first_chunk(
            backend: Backend, timeout_s: float
        ) -> tuple[ChatCompletionChunk, AsyncIterator[ChatCompletionChunk]]:
            chunks = backend.stream(request, timeout_s)
            try:
                return await anext(chunks), chunks
            except StopAsyncIteration:
                raise BackendBadResponse(f"backend {backend.name!r} sent an empty stream") from None
            except BaseException:
                await chunks.aclose()  # type: ignore[attr-defined]
                raise

        return await self._first_answer(decision, first_chunk)

    async def _first_answer(self, decision: RouteDecision, call: Call[Answer]) -> tuple[str, Answer]:
        failures: list[tuple[str, BackendError]] = []
        for name in decision.backends:
            try:
                answer = await call(self._backends[name], self._timeouts[name])
            except BackendError as exc:
                self._metrics.observe_attempt(name, exc.code or "error")
                failures.append((name, exc))
                if not exc.is_retryable:
                    break
                continue
            self._metrics.observe_attempt(name, "ok")
            return name, answer
        raise exhausted(decision, failures)


def exhausted(decision: RouteDecision, failures: list[tuple[str, BackendError]]) -> BackendError:
    """The last failure, its message naming every attempt in order."""
    last = failures[-1][1]
    if len(failures) > 1:
        attempts = "; ".join(f"{name}: {exc.message}" for name, exc in failures)
        last.message = f"route {decision.route!r}: every backend failed ({attempts})"
    return last
