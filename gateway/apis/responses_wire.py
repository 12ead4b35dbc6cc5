"""The OpenAI Responses API's request shape, checked strictly: a wrong type or an unknown item type
is a 422 naming the field, never a 500 further down."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import Discriminator, Field, StrictBool, StrictStr, Tag

from contracts.wire import Int64, Number, RequestPassthrough, Wire

MAX_ITEMS = 10_000
MAX_METADATA_KEYS = 16


class InputText(Wire):
    type: Literal["input_text"]
    text: StrictStr


class OutputText(Wire):
    """Text an earlier answer gave, sent back as history."""

    type: Literal["output_text"]
    text: StrictStr


class Refusal(Wire):
    type: Literal["refusal"]
    refusal: StrictStr


class InputImage(Wire):
    type: Literal["input_image"]
    image_url: StrictStr | None = None
    file_id: StrictStr | None = None
    detail: Literal["low", "high", "auto"] | None = None


ContentPart = Annotated[InputText | OutputText | Refusal | InputImage, Field(discriminator="type")]


class MessageItem(Wire):
    type: Literal["message"] = "message"
    role: Literal["user", "assistant", "system", "developer"]
    content: StrictStr | list[ContentPart]
    id: StrictStr | None = None
    status: StrictStr | None = None


class FunctionCallItem(Wire):
    """A tool call an earlier answer made, sent back before its output."""

    type: Literal["function_call"]
    call_id: StrictStr
    name: StrictStr
    arguments: StrictStr
    id: StrictStr | None = None
    status: StrictStr | None = None


class FunctionCallOutputItem(Wire):
    type: Literal["function_call_output"]
    call_id: StrictStr
    output: StrictStr | list[ContentPart]
    id: StrictStr | None = None
    status: StrictStr | None = None


def _item_type(item: Any) -> str | None:
    """Messages may leave out ``type`` (the "easy" input form)."""
    if isinstance(item, dict):
        kind = item.get("type", "message")
        return kind if isinstance(kind, str) else None
    return getattr(item, "type", None)


InputItem = Annotated[
    Annotated[MessageItem, Tag("message")]
    | Annotated[FunctionCallItem, Tag("function_call")]
    | Annotated[FunctionCallOutputItem, Tag("function_call_output")],
    Discriminator(
        _item_type,
        custom_error_type="unknown_item_type",
        custom_error_message="unknown input item type: want message, function_call or function_call_output",
    ),
]


class FunctionTool(Wire):
    type: Literal["function"]
    name: StrictStr = Field(min_length=1, max_length=128)
    description: StrictStr | None = None
    parameters: dict[str, Any] | None = None
    strict: StrictBool | None = None


class NamedFunction(Wire):
    type: Literal["function"]
    name: StrictStr


class TextFormat(Wire):
    type: Literal["text", "json_object", "json_schema"]
    name: StrictStr | None = None
    schema_: dict[str, Any] | None = Field(None, alias="schema")
    description: StrictStr | None = None
    strict: StrictBool | None = None


class TextConfig(Wire):
    format: TextFormat | None = None


class ResponsesRequest(RequestPassthrough):
    model: StrictStr = Field(min_length=1)
    input: StrictStr | list[InputItem] = Field(max_length=MAX_ITEMS)
    instructions: StrictStr | None = None
    tools: list[FunctionTool] | None = None
    tool_choice: Literal["auto", "none", "required"] | NamedFunction | None = None
    parallel_tool_calls: StrictBool | None = None
    max_output_tokens: Int64 | None = Field(None, ge=1)
    temperature: Number | None = Field(None, ge=0, le=2)
    top_p: Number | None = Field(None, ge=0, le=1)
    text: TextConfig | None = None
    metadata: dict[StrictStr, StrictStr] | None = Field(None, max_length=MAX_METADATA_KEYS)
    user: StrictStr | None = None
    store: StrictBool = True
    previous_response_id: StrictStr | None = Field(None, min_length=1, max_length=256)
    stream: StrictBool = False
    background: Literal[False] | None = None
    """Background responses are not served; asking for one is a 422, not a silent foreground answer."""
