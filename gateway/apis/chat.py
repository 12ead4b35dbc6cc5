"""OpenAI chat completions: the wire format is the gateway's own, so decoding validates the body and
encoding writes the answer as the backend gave it (the usage chunk only when the caller asked)."""

from __future__ import annotations

from dataclasses import dataclass

from contracts.errors import GatewayError
from contracts.wire import ChatCompletion, ChatCompletionChunk, ChatCompletionRequest
from gateway.auth import Principal
from gateway.request_body import parse_body
from gateway.serving.answer import Arrival
from gateway.serving.call import Call, Endpoint
from gateway.serving.stream_assembly import as_the_caller_asked, asks_for_usage

DONE_EVENT = b"data: [DONE]\n\n"


class ChatApi:
    endpoint: Endpoint = "chat"

    async def decode(self, body: bytes, principal: Principal, arrival: Arrival) -> tuple[Call, ChatEncoder]:
        chat = parse_body(ChatCompletionRequest, body)
        return Call("chat", chat), ChatEncoder(asks_for_usage(chat))


@dataclass(frozen=True)
class ChatEncoder:
    asks_usage: bool
    """``stream_options.include_usage``: the stream's usage chunk is shown only when asked for."""

    def whole(self, completion: ChatCompletion) -> bytes:
        return completion.__pydantic_serializer__.to_json(completion, exclude_unset=True)

    def stream(self) -> ChatStreamEncoder:
        return ChatStreamEncoder(self.asks_usage)

    async def keep(self, completion: ChatCompletion) -> None:
        return None  # chat completions are not stored


@dataclass(frozen=True)
class ChatStreamEncoder:
    asks_usage: bool

    def opening(self, first: ChatCompletionChunk) -> bytes:
        return data_event(as_the_caller_asked(first, self.asks_usage) or first)

    def chunk(self, chunk: ChatCompletionChunk) -> bytes:
        shown = as_the_caller_asked(chunk, self.asks_usage)
        return b"" if shown is None else data_event(shown)

    def closing(self) -> bytes:
        return DONE_EVENT

    def failure(self, error: GatewayError) -> bytes:
        return b"data: " + error.body() + b"\n\n"


def data_event(chunk: ChatCompletionChunk) -> bytes:
    return b"data: " + chunk.__pydantic_serializer__.to_json(chunk, exclude_unset=True) + b"\n\n"
