"""Every API's endpoints: OpenAI chat completions, embeddings, models and Responses, and Anthropic
Messages. Each hands its API's adapter to the one request path (:func:`gateway.serving.path.serve`).

The fixed paths are served by :class:`gateway.front.Gateway` straight from the request scope; all
are plain Starlette routes too (no dependency solving or parameter models, which cost about 5 % of
the pinned path's CPU, bench/results/profile-pinned.txt), which answer the paths with parameters
and tell a wrong method (405) from a wrong path (404). The admin API keeps FastAPI's."""

from __future__ import annotations

from collections.abc import Awaitable, Callable

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import GatewayError
from contracts.wire import ModelCard, ModelList
from gateway.apis.chat import ChatApi
from gateway.apis.count_tokens import count_tokens
from gateway.apis.embeddings import embed
from gateway.apis.feedback import feedback
from gateway.apis.messages import MessagesApi
from gateway.apis.responses import ResponsesApi
from gateway.serving.answer import JSON
from gateway.serving.path import serve
from gateway.state import gateway_state, request_snapshot

router = APIRouter()
CHAT, RESPONSES, MESSAGES = ChatApi(), ResponsesApi(), MessagesApi()
MAX_ID_CHARS = 256


class ResponseNotFound(GatewayError):
    status = 404
    error_type = "invalid_request_error"
    default_code = "not_found"


async def chat_completions(request: Request) -> Response:
    return await serve(CHAT, request)


async def embeddings(request: Request) -> Response:
    return await embed(request)


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


async def create_response(request: Request) -> Response:
    return await serve(RESPONSES, request)


async def get_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    tenant = await _owner(request, response_id)
    record = await gateway_state(request).resources.responses.get(tenant, response_id)
    if record is None:
        raise _not_found(response_id)
    return Response(orjson.dumps(orjson.loads(record)["response"]), media_type=JSON)


async def delete_response(request: Request) -> Response:
    response_id = request.path_params["response_id"]
    tenant = await _owner(request, response_id)
    if not await gateway_state(request).resources.responses.delete(tenant, response_id):
        raise _not_found(response_id)
    return Response(orjson.dumps({"id": response_id, "object": "response.deleted", "deleted": True}), media_type=JSON)


async def messages(request: Request) -> Response:
    return await serve(MESSAGES, request)


async def messages_count_tokens(request: Request) -> Response:
    return await count_tokens(request)


Endpoint = Callable[[Request], Awaitable[Response]]
ENDPOINTS: list[tuple[str, str, Endpoint]] = [
    ("POST", "/v1/chat/completions", chat_completions),
    ("POST", "/v1/embeddings", embeddings),
    ("GET", "/v1/models", models),
    ("POST", "/v1/responses", create_response),
    ("GET", "/v1/responses/{response_id}", get_response),
    ("DELETE", "/v1/responses/{response_id}", delete_response),
    ("POST", "/v1/messages", messages),
    ("POST", "/v1/messages/count_tokens", messages_count_tokens),
    ("POST", "/v1/feedback", feedback),
]
for method, path, endpoint in ENDPOINTS:
    router.add_route(path, endpoint, methods=[method])
HOT: dict[tuple[str, str], Endpoint] = {(method, path): e for method, path, e in ENDPOINTS if "{" not in path}
"""The endpoints :class:`gateway.front.Gateway` serves without FastAPI's routing: every fixed path."""


async def _owner(request: Request, response_id: str) -> str:
    """The tenant asking: only its own responses are there for it."""
    principal = request_snapshot(request).keyring.authenticate(request.headers)
    await gateway_state(request).resources.limits.admit(principal)
    if len(response_id) > MAX_ID_CHARS:
        raise _not_found(response_id[:MAX_ID_CHARS] + "...")
    return principal.tenant


def _not_found(response_id: str) -> ResponseNotFound:
    return ResponseNotFound(
        f"no response {response_id!r} (it may have expired, or belong to another key)", param="response_id"
    )
