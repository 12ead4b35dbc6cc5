"""Every failure leaves the gateway as an OpenAI-style JSON error, never a bare trace."""

from __future__ import annotations

import logging

from fastapi import FastAPI
from fastapi.exceptions import RequestValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import GatewayError, InvalidRequest, RequestError
from gateway.redaction import Redactor

log = logging.getLogger("turnout")


def error_response(error: GatewayError, redactor: Redactor | None = None) -> Response:
    body = error.body() if redactor is None else redactor.bytes(error.body())
    return Response(body, status_code=error.status, media_type="application/json", headers=error.headers)


async def on_gateway_error(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, GatewayError)
    snapshot = getattr(request.state, "snapshot", None)  # none when the app is not serving yet
    return error_response(exc, snapshot.redactor if snapshot is not None else None)


async def on_http_exception(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    code = "not_found" if exc.status_code == 404 else None
    error = RequestError(f"{request.method} {request.url.path}: {exc.detail}", code=code)
    error.status = exc.status_code
    return error_response(error)


async def on_invalid_parameters(request: Request, exc: Exception) -> Response:
    """FastAPI's own checks of path and query parameters, in the error shape every other error has."""
    assert isinstance(exc, RequestValidationError)
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ())[1:]) or None
    message = f"{where}: {first.get('msg', 'invalid')}" if where else str(first.get("msg", "invalid request"))
    return error_response(InvalidRequest(message, param=where))


async def on_unexpected(request: Request, exc: Exception) -> Response:
    log.exception("unexpected error on %s %s", request.method, request.url.path)
    return error_response(GatewayError("internal error in the gateway; it has been logged"))


def install_error_handlers(app: FastAPI) -> None:
    app.add_exception_handler(GatewayError, on_gateway_error)
    app.add_exception_handler(HTTPException, on_http_exception)
    app.add_exception_handler(RequestValidationError, on_invalid_parameters)
    app.add_exception_handler(Exception, on_unexpected)
