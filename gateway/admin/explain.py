"""Where would this prompt go, and why: for ops, over HTTP and on the command line."""

from __future__ import annotations

import asyncio
from typing import Any

from backends.base import Backend
from backends.http_transport import open_http_client
from backends.registry import open_backend
from contracts.wire import ChatCompletionRequest
from gateway.rules import Rules
from routers.decision import RoutingContext
from routers.factory import build_router
from routers.selector import RouteSelector
from routers.specs import LLMRouterSpec


async def explain(
    selector: RouteSelector, router: str, request: ChatCompletionRequest, context: RoutingContext
) -> dict[str, Any]:
    decision = await selector.select(request.model, context.headers.get("x-turnout-route"), request, context)
    rules = selector.rules.explain(request, context)
    return {
        "route": decision.route,
        "backends": list(decision.backends),
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "score": decision.score,
        "scores": decision.scores,
        "rules": [{"rule": name, "matched": failed is None, "failed": failed} for name, failed in rules],
        "router": router,
    }


async def explain_offline(rules: Rules, prompt: str, model: str, tenant: str) -> dict[str, Any]:
    """Explain without serving: builds only the router (and, for the LLM router, the backends it asks)."""
    http = open_http_client(8)
    backends: dict[str, Backend] = {}
    try:
        if isinstance(rules.router, LLMRouterSpec):
            name = rules.router.backend
            backends[name] = await open_backend(name, rules.backends[name], http)
        handle = await asyncio.to_thread(build_router, rules, backends, None, 1)
        try:
            request = ChatCompletionRequest.model_validate(
                {"model": model, "messages": [{"role": "user", "content": prompt}]}
            )
            return await explain(
                RouteSelector(rules, handle.router), handle.description, request, RoutingContext(tenant)
            )
        finally:
            handle.close()
    finally:
        await asyncio.gather(*(b.aclose() for b in backends.values()))
        await http.aclose()
