"""OpenAI wire shapes at the gateway's edge.

Requests keep unknown fields (``tools``, ``response_format``, ``seed``, vendor
extensions) and send them upstream untouched; responses are checked for the
fields the gateway reads and otherwise passed through as they came, less the fields a model
server adds that are not OpenAI's (llama.cpp's ``timings``, vLLM's token ids): clients get the same
answer shape whichever server is behind the route, and no server internals.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import orjson
from pydantic import BaseModel, ConfigDict, Field, StrictBool, StrictStr, model_validator

INT64_MIN, INT64_MAX = -(2**63), 2**63 - 1
Int64 = Annotated[int, Field(strict=True, ge=INT64_MIN, le=INT64_MAX)]
Number = Annotated[float, Field(strict=True, allow_inf_nan=False)]


class Passthrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class RequestPassthrough(Passthrough):
    """A caller's model: unknown fields are kept and sent upstream, but numbers among them must fit
    JSON's 64-bit integers, or the cache key and the upstream body could not be written. (Upstream
    answers are not checked: that would cost every stream chunk a walk of its extras.)"""

    @model_validator(mode="after")
    def _extras_fit_64_bits(self) -> RequestPassthrough:
        for name, value in (self.model_extra or {}).items():
            if not fits_64_bits(value):
                raise ValueError(f"field {name!r} holds an integer outside the 64-bit range")
        return self


class Wire(BaseModel):
    """A part of a request whose shape the OpenAI API fixes: wrong types are errors, not coerced."""

    model_config = ConfigDict(extra="allow", strict=True)


class ContentPart(Wire):
    """One part of a message's content; the field its ``type`` names must be there."""

    type: Literal["text", "image_url", "input_audio", "file", "refusal"]
    text: StrictStr | None = None
    refusal: StrictStr | None = None
    image_url: dict[str, Any] | None = None
    input_audio: dict[str, Any] | None = None
    file: dict[str, Any] | None = None

    @model_validator(mode="after")
    def _has_its_payload(self) -> ContentPart:
        if getattr(self, self.type) is None:
            raise ValueError(f"a {self.type!r} content part needs its {self.type!r} field")
        return self


Role = Literal["system", "developer", "user", "assistant", "tool", "function"]


class ChatMessage(RequestPassthrough):
    role: Role
    content: StrictStr | list[ContentPart] | None = None


class StreamOptions(Wire):
    include_usage: StrictBool | None = None


class ChatCompletionRequest(RequestPassthrough):
    model: StrictStr = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: StrictBool = False
    stream_options: StreamOptions | None = None
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    max_tokens: Int64 | None = Field(None, ge=1)
    max_completion_tokens: Int64 | None = Field(None, ge=1)
    n: Int64 | None = Field(None, ge=1, le=128)
    seed: Int64 | None = None
    logprobs: StrictBool | None = None
    parallel_tool_calls: StrictBool | None = None
    presence_penalty: Number | None = Field(None, ge=-2, le=2)
    frequency_penalty: Number | None = Field(None, ge=-2, le=2)

    def upstream_body(self, model: str) -> bytes:
        """The request as the backend should see it: the same fields, its own model name."""
        return with_model(self, model)

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return text_of(message.content)
        return ""

    def conversation_text(self) -> str:
        """Every message's text, in order."""
        return " ".join(text_of(m.content) for m in self.messages)


class EmbeddingRequest(RequestPassthrough):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[StrictStr] | list[Int64] | list[list[Int64]]
    dimensions: Int64 | None = Field(None, ge=1)

    def upstream_body(self, model: str) -> bytes:
        return with_model(self, model)


class Usage(Passthrough):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Choice(Passthrough):
    index: int = 0
    finish_reason: str | None = None


SERVER_EXTRAS = frozenset({"timings", "prompt_token_ids", "prompt_logprobs", "kv_transfer_params"})
"""Top-level fields model servers add to answers that OpenAI's API does not have; dropped."""


class Answer(Passthrough):
    """An answer or a chunk as a model server sent it, less :data:`SERVER_EXTRAS`."""

    @model_validator(mode="after")
    def _without_server_extras(self) -> Answer:
        extra = self.__pydantic_extra__
        if extra:
            for name in SERVER_EXTRAS.intersection(extra):
                del extra[name]
        return self


class ChatCompletion(Answer):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = Field(min_length=1)
    usage: Usage | None = None


class ChatCompletionChunk(Answer):
    id: str = ""
    object: str = "chat.completion.chunk"
    created: int = 0
    model: str = ""
    choices: list[Choice] = []
    usage: Usage | None = None


class EmbeddingResponse(Passthrough):
    object: Literal["list"] = "list"
    data: list[Passthrough] = Field(min_length=1)
    model: str = ""
    usage: Usage | None = None


class ModelCard(BaseModel):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "turnout"
    description: str = ""


class ModelList(BaseModel):
    object: Literal["list"] = "list"
    data: list[ModelCard]


def fits_64_bits(value: object) -> bool:
    """Whether every integer in a parsed JSON value fits a signed 64-bit integer."""
    if isinstance(value, bool) or not isinstance(value, int | list | dict):
        return True
    if isinstance(value, int):
        return INT64_MIN <= value <= INT64_MAX
    items = value.values() if isinstance(value, dict) else value
    return all(fits_64_bits(item) for item in items)


def text_of(content: str | list[ContentPart] | None) -> str:
    """The text a message says: a string, or its text parts joined by newlines."""
    if isinstance(content, str):
        return content
    return "\n".join(part.text for part in content or [] if part.type == "text" and part.text is not None)


def with_model(request: BaseModel, model: str) -> bytes:
    """``request``'s JSON (the fields it was given) with ``model`` in place of its own: the rest
    written once by pydantic and the model spliced in front, not the request copied to change one
    field (half the cost, on every upstream call)."""
    rest = request.__pydantic_serializer__.to_json(request, exclude_unset=True, exclude={"model"})
    head = b'{"model":' + orjson.dumps(model)
    return head + b"}" if rest == b"{}" else head + b"," + rest[1:]
