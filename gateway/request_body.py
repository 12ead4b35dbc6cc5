"""Reading a request body within its size limit and parsing it into a schema."""

from __future__ import annotations

from typing import TypeVar

import orjson
from pydantic import BaseModel, ValidationError
from starlette.requests import Request

from contracts.errors import BodyTooLarge, ClientClosedRequest, InvalidRequest, MalformedJSON, RequestError

Schema = TypeVar("Schema", bound=BaseModel)


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and not (declared.isascii() and declared.isdigit()):
        raise RequestError(f"content-length must be a whole number of bytes, got {declared!r}", param="content-length")
    if declared is not None and int(declared) > limit:
        raise BodyTooLarge(f"request body is {declared} bytes; the limit is {limit}")
    body = bytearray()
    while True:  # the server's messages read directly: Starlette's stream() is an async generator
        message = await request.receive()
        if message["type"] == "http.disconnect":
            raise ClientClosedRequest("the client disconnected while sending its body")
        body += message.get("body", b"")
        if len(body) > limit:
            raise BodyTooLarge(f"request body exceeds the limit of {limit} bytes")
        if not message.get("more_body", False):
            return bytes(body)


def parse_body(schema: type[Schema], body: bytes) -> Schema:
    """JSON bytes to ``schema``: 400 for bad JSON, 422 naming the field for the wrong shape."""
    try:
        return schema.model_validate_json(body)
    except ValidationError as exc:
        raise request_error(exc) from exc


def parse_json(body: bytes) -> object:
    """For endpoints that reshape the body before validating it."""
    try:
        return orjson.loads(body)
    except orjson.JSONDecodeError as exc:
        raise MalformedJSON(f"request body is not valid JSON: {exc}") from exc


def validate_payload(schema: type[Schema], payload: object) -> Schema:
    try:
        return schema.model_validate(payload)
    except ValidationError as exc:
        raise request_error(exc) from exc


def request_error(exc: ValidationError) -> MalformedJSON | InvalidRequest:
    errors = exc.errors()
    if errors[0]["type"] == "json_invalid":
        return MalformedJSON(f"request body is not valid JSON: {errors[0]['msg']}")
    deepest = max(len(e["loc"]) for e in errors)
    fields = dict.fromkeys((_field_path(e["loc"]), e["msg"]) for e in errors if len(e["loc"]) == deepest)
    message = "; ".join(f"{where}: {msg}" for where, msg in fields)
    return InvalidRequest(f"invalid request: {message}", param=next(iter(fields))[0])


def _field_path(loc: tuple[int | str, ...]) -> str:
    """``messages.0.content`` from pydantic's location, without the union members it tried
    (``str``, ``list[ContentPart]``)."""
    kept = [str(p) for p in loc if not (isinstance(p, str) and (p in UNION_TAGS or "[" in p))]
    return ".".join(kept) or "body"


UNION_TAGS = {"str", "int", "float", "bool", "none", "list", "dict"}
