"""The gateway's outermost ASGI layer: the scope of every HTTP request, and the API endpoints
served straight from it.

Each request gets its id (the caller's ``x-request-id`` when valid, else a new one) and the current
rules snapshot, held until its response is wholly sent, a stream's last byte included; every
response says both. An API request's outcome is observed here, in one ``finally``, whichever way
the request ended.

The API endpoints (``POST /v1/chat/completions`` and the rest of :data:`gateway.apis.routes.HOT`)
are called from here directly, their errors shaped here: under load, Starlette's middleware layers,
each wrapping ``send``, and its routing cost the pinned path a fifth of its CPU
(bench/results/profile-pinned.txt). Everything else (other methods and paths, the admin API,
probes, the console) passes to FastAPI's stack under the same scope.
"""

from __future__ import annotations

from fastapi import FastAPI
from starlette.requests import Request
from starlette.types import Message, Receive, Scope, Send

from backends.request_context import REQUEST_ID
from contracts.errors import GatewayError
from gateway.apis.routes import HOT, Endpoint
from gateway.error_handlers import on_unexpected, shaped
from gateway.observe.access_log import REQUEST_ID_HEADER_BYTES, request_id_of
from gateway.observe.tracing import Span
from gateway.serving.outcome import RequestOutcome, status_of
from gateway.state import GatewayState


class Gateway(FastAPI):
    """FastAPI with the request scope above its stack, and the API endpoints in front of it."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        state: GatewayState | None = getattr(self.state, "gateway", None)
        if scope["type"] != "http" or state is None:
            await super().__call__(scope, receive, send)
            return
        request_id = request_id_of(scope)
        token = REQUEST_ID.set(request_id)
        try:
            async with state.leased() as snapshot:
                request_state = scope.setdefault("state", {})
                request_state["snapshot"], request_state["request_id"] = snapshot, request_id
                stamps = ((REQUEST_ID_HEADER_BYTES, request_id.encode()), snapshot.version_header)
                status = 500
                tracing = state.resources.tracing
                span, trace_token = (
                    tracing.request(scope["method"], scope["path"], scope["headers"])
                    if tracing.is_on and scope["path"].startswith("/v1/")
                    else (None, None)
                )
                if span is not None:
                    request_state["trace_id"] = span.trace_id()

                async def stamped(message: Message) -> None:
                    nonlocal status
                    if message["type"] == "http.response.start":
                        status = message["status"]
                        message["headers"] = [*message.get("headers", ()), *stamps]
                    await send(message)

                try:
                    endpoint = HOT.get((scope["method"], scope["path"]))
                    if endpoint is None:
                        await super().__call__(scope, receive, stamped)
                    else:
                        scope["app"] = self
                        await _serve(endpoint, scope, receive, stamped)
                except BaseException as exc:
                    status = status_of(exc)
                    raise
                finally:
                    outcome = request_state.get("outcome")
                    if outcome is not None:
                        await outcome.observe_once_settled(state.resources, snapshot, status)
                    if span is not None:
                        _end(span, status, outcome, snapshot.version)
                        tracing.leave(trace_token)
        finally:
            REQUEST_ID.reset(token)


def _end(span: Span, status: int, outcome: RequestOutcome | None, rules_version: int) -> None:
    """The request's SERVER span, once its answer is wholly sent: what it came to, under ``turnout.*``."""
    span.set({"http.response.status_code": status, "turnout.rules_version": rules_version})
    if outcome is not None:
        final = status if outcome.ended_status is None else outcome.ended_status
        span.set(
            {
                "http.response.status_code": final,
                "turnout.endpoint": outcome.endpoint,
                "turnout.route": outcome.route,
                "turnout.variant": outcome.variant,
                "turnout.backend": outcome.backend,
                "turnout.cache": outcome.cache,
                "turnout.tenant": outcome.tenant,
                "turnout.cost_usd": outcome.tokens.cost_usd,
                "turnout.request_id": outcome.request_id,
            }
        )
        status = final
    if status >= 500:
        span.fail(str(status))
    span.end()


async def _serve(endpoint: Endpoint, scope: Scope, receive: Receive, send: Send) -> None:
    """An API endpoint's answer, or its failure in the API's error shape."""
    request = Request(scope, receive)
    try:
        response = await endpoint(request)
    except GatewayError as exc:
        response = shaped(request, exc)
    except Exception as exc:
        response = await on_unexpected(request, exc)  # logged, and shaped as every other 500
    await response(scope, receive, send)
