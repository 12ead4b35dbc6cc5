"""The gateway's own request and answer, whichever API the caller spoke.

Each API (:mod:`gateway.apis`) decodes its wire format into a :class:`Call` and encodes the answer
back with its :class:`Encoder`. Everything between (routing, the rules, the router, the cache,
limits, budgets, fallback, hedging, reports and the access log) sees only the call.

The internal request is the chat-completions request, validated: messages with text, image and
tool parts, tools and tool choice, sampling settings, stream or not, and the caller's extras. It is
also what every backend kind speaks upstream, so a call is sent without a second translation, and
its cache key is the same whichever API asked. The internal answer is a whole completion, or a
stream of completion chunks (deltas of text and tool calls, then the finish reason and usage).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, Protocol

from contracts.errors import GatewayError
from contracts.wire import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest

Endpoint = Literal["chat", "responses", "messages", "embeddings"]


@dataclass(frozen=True)
class Call:
    endpoint: Endpoint
    chat: ChatCompletionRequest
    """What routing, the cache and the backends read."""

    @property
    def stream(self) -> bool:
        return self.chat.stream


class StreamEncoder(Protocol):
    """One stream's events in an API's wire format; it may keep state from chunk to chunk."""

    def opening(self, first: ChatCompletionChunk) -> bytes:
        """The events that open the stream, the first chunk's included."""
        ...

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        """The events one chunk makes (possibly none: ``b""``)."""
        ...

    def closing(self) -> bytes:
        """The events that tell the client the answer is whole."""
        ...

    def failure(self, error: GatewayError) -> bytes:
        """The events that tell the client the stream was cut, and why."""
        ...


class Encoder(Protocol):
    """One request's answer in an API's wire format."""

    def whole(self, completion: ChatCompletion) -> bytes:
        """The JSON body of a whole answer."""
        ...

    def stream(self) -> StreamEncoder:
        """A fresh encoder for the answer's stream."""
        ...

    async def keep(self, completion: ChatCompletion) -> None:
        """What the API keeps of a whole answer once it is sent (the Responses API stores it);
        the answer it is given is the one the client saw, streamed or not. Never raises."""
        ...
