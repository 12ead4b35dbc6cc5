"""The OpenAI-compatible endpoints: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

import asyncio
import time

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.access_log import log_access
from gateway.chat import ChatCall, route_headers
from gateway.deadline import BUDGET_HEADER
from gateway.disconnect import unless_disconnected
from gateway.errors import GatewayError
from gateway.request_body import parse_body, read_body
from gateway.schemas import EmbeddingRequest, ModelCard, ModelList
from gateway.state import gateway_state
from routers.decision import RoutingContext

router = APIRouter()
JSON = "application/json"


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    call = ChatCall(gateway_state(request), request)
    try:
        return await call.respond()
    except GatewayError as exc:
        call.observe(exc.status)
        raise
    except asyncio.CancelledError:
        call.observe(499)
        raise
    except Exception:
        call.observe(500)  # answered by the catch-all handler; metrics and reports must show it too
        raise


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    state = gateway_state(request)
    started = time.monotonic()
    route = backend = "-"
    try:
        principal = state.keyring.authenticate(request.headers)
        await state.limits.admit(principal)
        embedding = parse_body(EmbeddingRequest, await read_body(request, state.settings.max_body_bytes))
        context = RoutingContext(principal.tenant, request.headers)
        decision = await state.selector.select(embedding.model, request.headers.get("x-turnout-route"), None, context)
        route = decision.route
        principal.require_route(route)
        deadline = state.deadline(route, request.headers.get(BUDGET_HEADER), started)
        backend, answer = await unless_disconnected(request, state.dispatcher.embed(decision, embedding, deadline))
    except GatewayError as exc:
        _observe(request, "embeddings", route, backend, exc.status, started)
        raise
    _observe(request, "embeddings", route, backend, 200, started)
    body = answer.__pydantic_serializer__.to_json(answer, exclude_unset=True)
    return Response(body, media_type=JSON, headers=route_headers(decision, backend))


@router.get("/v1/models")
async def models(request: Request) -> Response:
    state = gateway_state(request)
    principal = state.keyring.authenticate(request.headers)
    rules = state.rules
    cards = [ModelCard(id="auto", description="the router picks the route")]
    cards += [
        ModelCard(id=name, description=spec.description)
        for name, spec in rules.routes.items()
        if principal.may_use(name)
    ]
    cards += [
        ModelCard(id=alias, description=f"pinned to backend {backend}")
        for alias, backend in rules.aliases.items()
        if principal.may_use(alias)
    ]
    return Response(ModelList(data=cards).model_dump_json(), media_type=JSON)


def _observe(request: Request, endpoint: str, route: str, backend: str, status: int, started: float) -> None:
    elapsed = time.monotonic() - started
    gateway_state(request).metrics.observe_request(endpoint, route, backend, status, elapsed)
    log_access(
        {
            "request_id": getattr(request.state, "request_id", "-"),
            "endpoint": endpoint,
            "route": route,
            "backend": backend,
            "status": status,
            "ms": round(elapsed * 1000, 1),
        }
    )
