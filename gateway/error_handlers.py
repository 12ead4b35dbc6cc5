"""Every failure leaves the gateway as a JSON error in its API's shape, never a bare trace: OpenAI's
everywhere, Anthropic's (``{"type": "error", ...}``, its statuses) under ``/v1/messages``."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import GatewayError, InvalidRequest, RequestError, anthropic_error
from gateway.redaction import Redactor

log = logging.getLogger("turnout")


ANTHROPIC_PATHS = "/v1/messages"


def error_response(error: GatewayError, redactor: Redactor | None = None, is_anthropic: bool = False) -> Response:
    status, body = anthropic_error(error) if is_anthropic else (error.status, error.body())
    body = body if redactor is None else redactor.bytes(body)
    return Response(body, status_code=status, media_type="application/json", headers=error.headers)


def shaped(request: Request, error: GatewayError) -> Response:
    snapshot = getattr(request.state, "snapshot", None)  # none when the app is not serving yet
    redactor = snapshot.redactor if snapshot is not None else None
    return error_response(error, redactor, request.url.path.startswith(ANTHROPIC_PATHS))


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    return shaped(request, exc)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else None
    error = RequestError(f"{request.method} {request.url.path}: {exc.detail}", code=code)
    error.status = exc.status_code
    return shaped(request, error)


async def on_invalid_parameters(request: Request, exc: Exception) -> Response:
    """FastAPI's own checks of path and query parameters, in the error shape every other error has."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
    return shaped(request, InvalidRequest(message, param=where))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return shaped(request, GatewayError("internal error in the gateway; it has been logged"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_invalid_parameters)
    app.add_exception_handler(Exception, on_unexpected)
