"""The OpenAI-compatible endpoints: chat completions (JSON and SSE), embeddings, models."""

from __future__ import annotations

from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from contracts.wire import EmbeddingRequest, ModelCard, ModelList
from gateway.chat import ChatCall, route_headers
from gateway.disconnect import unless_disconnected
from gateway.outcome import request_outcome
from gateway.request_body import parse_body, read_body
from gateway.resilience.deadline import BUDGET_HEADER
from gateway.state import gateway_state, request_snapshot
from routers.decision import RoutingContext

router = APIRouter()
JSON = "application/json"


@router.post("/v1/chat/completions")
async def chat_completions(request: Request) -> Response:
    return await ChatCall(gateway_state(request).resources, request_snapshot(request), request).respond()


@router.post("/v1/embeddings")
async def embeddings(request: Request) -> Response:
    resources, snapshot = gateway_state(request).resources, request_snapshot(request)
    outcome = request_outcome(request, "embeddings")
    principal = snapshot.keyring.authenticate(request.headers)
    outcome.tenant = principal.tenant
    await resources.limits.admit(principal)
    embedding = parse_body(EmbeddingRequest, await read_body(request, resources.settings.max_body_bytes))
    context = RoutingContext(principal.tenant, request.headers)
    decision = await snapshot.selector.select(embedding.model, request.headers.get("x-turnout-route"), None, context)
    outcome.route, outcome.decided_by = decision.route, decision.decided_by
    principal.require_route(decision.route)
    deadline = snapshot.deadline(decision.route, request.headers.get(BUDGET_HEADER), outcome.started)
    embedded = snapshot.dispatcher.embed(decision, embedding, deadline)
    outcome.backend, answer = await unless_disconnected(request, embedded)
    usage = answer.usage
    outcome.priced(snapshot, max(usage.prompt_tokens, usage.total_tokens) if usage else 0, 0)
    await resources.limits.spend_tokens(principal, outcome.prompt_tokens)
    body = answer.__pydantic_serializer__.to_json(answer, exclude_unset=True)
    return Response(body, media_type=JSON, headers=route_headers(decision, outcome.backend))


@router.get("/v1/models")
async def models(request: Request) -> Response:
    snapshot = request_snapshot(request)
    principal = snapshot.keyring.authenticate(request.headers)
    rules = snapshot.rules
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
