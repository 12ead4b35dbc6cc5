"""OpenAI embeddings: admitted and routed as every other API (``auto`` means the default route,
there being no prompt to read), dispatched down the route's backends, priced by input tokens."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from contracts.wire import EmbeddingRequest
from gateway.disconnect import unless_disconnected
from gateway.request_body import parse_body, read_body
from gateway.resilience.deadline import BUDGET_HEADER
from gateway.serving.answer import JSON, route_headers
from gateway.serving.outcome import Tokens
from gateway.serving.path import admit, arrive
from routers.decision import RoutingContext


async def embed(request: Request) -> Response:
    arrival = arrive(request, "embeddings")
    resources, snapshot = arrival.resources, arrival.snapshot
    principal = await admit(arrival)
    embedding = parse_body(EmbeddingRequest, await read_body(request, resources.settings.max_body_bytes))
    context = RoutingContext(principal.tenant, request.headers)
    decision = await snapshot.selector.select(embedding.model, request.headers.get("x-turnout-route"), None, context)
    arrival.outcome.decision = decision
    principal.require_route(decision.route)
    deadline = snapshot.deadline(decision.route, request.headers.get(BUDGET_HEADER), arrival.outcome.started)
    backend, answer = await unless_disconnected(request, snapshot.dispatcher.embed(decision, embedding, deadline))
    arrival.outcome.backend = backend
    usage = answer.usage
    prompt = max(usage.prompt_tokens, usage.total_tokens) if usage else 0
    arrival.outcome.tokens = Tokens(prompt, 0, snapshot.price(backend, prompt, 0))
    await resources.limits.spend_tokens(principal, prompt)
    body = answer.__pydantic_serializer__.to_json(answer, exclude_unset=True)
    return Response(body, media_type=JSON, headers=route_headers(decision, backend))
