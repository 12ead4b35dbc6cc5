"""OpenAI wire shapes at the gateway's edge.

Requests keep unknown fields (``tools``, ``response_format``, ``seed``, vendor
extensions) and send them upstream untouched; responses are checked for the
fields the gateway reads and otherwise passed through as they came.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field


class Passthrough(BaseModel):
    model_config = ConfigDict(extra="allow")


class ChatMessage(Passthrough):
    role: str = Field(min_length=1)
    content: str | list[Any] | None = None


class ChatCompletionRequest(Passthrough):
    model: str = Field(min_length=1)
    messages: list[ChatMessage] = Field(min_length=1)
    stream: bool = False
    temperature: float | None = Field(None, ge=0, le=2)
    top_p: float | None = Field(None, ge=0, le=1)
    max_tokens: int | None = Field(None, ge=1)
    n: int | None = Field(None, ge=1, le=128)

    def upstream_body(self, model: str) -> bytes:
        """The request as the backend should see it: the same fields, its own model name."""
        return self.model_copy(update={"model": model}).model_dump_json(exclude_unset=True).encode()

    def last_user_text(self) -> str:
        for message in reversed(self.messages):
            if message.role == "user":
                return _text_of(message.content)
        return ""


class EmbeddingRequest(Passthrough):
    model: str = Field(min_length=1)
    input: str | list[str] | list[int] | list[list[int]]

    def upstream_body(self, model: str) -> bytes:
        return self.model_copy(update={"model": model}).model_dump_json(exclude_unset=True).encode()


class Usage(Passthrough):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class Choice(Passthrough):
    index: int = 0
    finish_reason: str | None = None


class ChatCompletion(Passthrough):
    id: str = ""
    object: str = "chat.completion"
    created: int = 0
    model: str = ""
    choices: list[Choice] = Field(min_length=1)
    usage: Usage | None = None


class ChatCompletionChunk(Passthrough):
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


def _text_of(content: str | list[Any] | None) -> str:
    if isinstance(content, str):
        return content
    parts = [p.get("text", "") for p in content or [] if isinstance(p, dict) and p.get("type") == "text"]
    return "\n".join(parts)
