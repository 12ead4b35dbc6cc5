"""Anthropic Messages' request shape, checked strictly: a wrong type, an unknown block type or a
missing ``max_tokens`` is a 400 in Anthropic's error shape, never a 500 further down."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Field, StrictBool, StrictStr, model_validator

from contracts.wire import Int64, Number, RequestPassthrough, Wire

MAX_MESSAGES = 10_000


class TextBlock(Wire):
    type: Literal["text"]
    text: StrictStr


class Base64Source(Wire):
    type: Literal["base64"]
    media_type: StrictStr
    data: StrictStr


class UrlSource(Wire):
    type: Literal["url"]
    url: StrictStr


class ImageBlock(Wire):
    type: Literal["image"]
    source: Annotated[Base64Source | UrlSource, Field(discriminator="type")]


class ToolUseBlock(Wire):
    type: Literal["tool_use"]
    id: StrictStr
    name: StrictStr
    input: dict[str, Any]


class ToolResultBlock(Wire):
    type: Literal["tool_result"]
    tool_use_id: StrictStr
    content: StrictStr | list[Annotated[TextBlock | ImageBlock, Field(discriminator="type")]] | None = None
    is_error: StrictBool | None = None


Block = Annotated[TextBlock | ImageBlock | ToolUseBlock | ToolResultBlock, Field(discriminator="type")]


class Message(Wire):
    role: Literal["user", "assistant"]
    content: StrictStr | Annotated[list[Block], Field(min_length=1)]
    """A list holds at least one block, as Anthropic's API requires."""


class Tool(Wire):
    type: Literal["custom"] | None = None
    name: StrictStr = Field(min_length=1, max_length=128)
    description: StrictStr | None = None
    input_schema: dict[str, Any]


class ToolChoice(Wire):
    type: Literal["auto", "any", "tool", "none"]
    name: StrictStr | None = Field(None, min_length=1)
    """The tool to call: required with ``type: tool``, refused with any other type."""
    disable_parallel_tool_use: StrictBool | None = None

    @model_validator(mode="after")
    def _names_a_tool_only_when_forced(self) -> ToolChoice:
        if (self.type == "tool") != (self.name is not None):
            raise ValueError("name is required with type 'tool' and only with it")
        return self


class Metadata(Wire):
    user_id: StrictStr | None = None


class MessagesRequest(RequestPassthrough):
    model: StrictStr = Field(min_length=1)
    max_tokens: Int64 = Field(ge=1)
    """Required, as Anthropic requires it."""
    messages: list[Message] = Field(min_length=1, max_length=MAX_MESSAGES)
    system: StrictStr | list[TextBlock] | None = None
    stop_sequences: list[StrictStr] | None = Field(None, max_length=16)
    temperature: Number | None = Field(None, ge=0, le=1)
    top_p: Number | None = Field(None, ge=0, le=1)
    top_k: Int64 | None = Field(None, ge=0)
    tools: list[Tool] | None = None
    tool_choice: ToolChoice | None = None
    metadata: Metadata | None = None
    stream: StrictBool = False


class CountTokensRequest(MessagesRequest):
    """What ``/v1/messages/count_tokens`` takes: a message request without ``max_tokens``."""

    max_tokens: Int64 = Field(1, ge=1)
