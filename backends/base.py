"""The adapter seam: what every kind of backend offers the gateway."""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Protocol

from contracts.wire import (
    ChatCompletion,
    ChatCompletionChunk,
    ChatCompletionRequest,
    EmbeddingRequest,
    EmbeddingResponse,
)


@dataclass(frozen=True)
class Health:
    is_healthy: bool
    detail: str = ""
    is_probed: bool = True
    """False when nothing was asked (a paid public API): no evidence either way for the breaker."""


class Backend(Protocol):
    """One model endpoint. Implementations raise only :class:`contracts.errors.BackendError`."""

    name: str

    async def complete(self, request: ChatCompletionRequest, timeout_s: float) -> ChatCompletion:
        """Answer a chat completion in one piece within ``timeout_s`` seconds."""
        ...

    def stream(self, request: ChatCompletionRequest, timeout_s: float) -> AsyncIterator[ChatCompletionChunk]:
        """Yield the answer's chunks; raise ``BackendBadResponse`` if the stream ends unfinished.

        ``timeout_s`` bounds the wait for each chunk, the first one included.
        Closing the iterator early closes the upstream connection.
        """
        ...

    async def embed(self, request: EmbeddingRequest, timeout_s: float) -> EmbeddingResponse:
        """Embed the request's input."""
        ...

    async def health(self, timeout_s: float) -> Health:
        """A cheap check that the backend answers; never raises."""
        ...

    async def count_tokens(self, request: ChatCompletionRequest, timeout_s: float) -> int | None:
        """The request's prompt tokens as the backend's own template and tokenizer count them;
        ``None`` when the backend offers no way to count. Never raises."""
        ...

    async def aclose(self) -> None:
        """Release connections, servers and threads."""
        ...
