"""``POST /v1/messages/count_tokens``: the prompt's tokens as the route's first backend counts them
(llama.cpp and vLLM offer their tokenizer), else an estimate that says it is one."""

from __future__ import annotations

import math

import orjson
from starlette.requests import Request
from starlette.responses import Response

from gateway.apis.messages import chat_request
from gateway.apis.messages_wire import CountTokensRequest
from gateway.request_body import parse_body, read_body
from gateway.serving.answer import JSON
from gateway.serving.path import admit, arrive
from routers.decision import RoutingContext

COUNT_TIMEOUT_S = 5.0
CHARS_PER_TOKEN = 4
"""The estimate's ratio: about right for English under the common BPE tokenizers, and said to be one."""


async def count_tokens(request: Request) -> Response:
    arrival = arrive(request, "messages")
    snapshot = arrival.snapshot
    principal = await admit(arrival)
    asked = parse_body(CountTokensRequest, await read_body(request, arrival.resources.settings.max_body_bytes))
    chat = chat_request(asked)
    context = RoutingContext(principal.tenant, request.headers)
    decision = await snapshot.selector.select(chat.model, request.headers.get("x-turnout-route"), chat, context)
    principal.require_route(decision.route)
    primary = decision.backends[0]
    counted = await snapshot.upstreams[primary].backend.count_tokens(chat, COUNT_TIMEOUT_S)
    if counted is not None:
        return Response(
            orjson.dumps({"input_tokens": counted}),
            media_type=JSON,
            headers={"x-turnout-token-count": f"backend:{primary}"},
        )
    text = chat.model_dump_json(include={"messages", "tools"}, exclude_unset=True)
    estimate = {"input_tokens": math.ceil(len(text) / CHARS_PER_TOKEN), "estimated": True}
    return Response(orjson.dumps(estimate), media_type=JSON, headers={"x-turnout-token-count": "estimate"})
