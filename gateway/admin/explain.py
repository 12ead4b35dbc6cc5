"""Where would this prompt go, and why: for ops, over HTTP and on the command line."""

from __future__ import annotations

from typing import Any

from backends.http_transport import HttpClients
from contracts.wire import ChatCompletionRequest
from gateway.rules import Rules
from gateway.settings import Settings
from gateway.snapshot import routing_only
from routers.decision import RoutingContext
from routers.selector import RouteSelector


async def explain(
    selector: RouteSelector, router: str, request: ChatCompletionRequest, context: RoutingContext
) -> dict[str, Any]:
    decision = await selector.select(request.model, context.headers.get("x-turnout-route"), request, context)
    rules = selector.rules.explain(request, context)
    return {
        "route": decision.route,
        "variant": decision.variant,
        "sticky": _sticky(selector, decision.route, decision.variant),
        "backends": list(decision.backends),
        "decided_by": decision.decided_by,
        "reason": decision.reason,
        "score": decision.score,
        "scores": decision.scores,
        "rules": [{"rule": name, "matched": failed is None, "failed": failed} for name, failed in rules],
        "router": router,
    }


def _sticky(selector: RouteSelector, route: str, variant: str | None) -> str | None:
    """What kept this caller in its variant, or that it was drawn at random (each request is)."""
    if variant is None:
        return None
    return selector.variants.sticky_of(route)


async def explain_offline(
    rules: Rules, prompt: str, model: str, tenant: str, user: str | None = None
) -> dict[str, Any]:
    """Explain without serving: only the routing of ``rules`` is built (:func:`routing_only`)."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    request = ChatCompletionRequest.model_validate(body | ({"user": user} if user else {}))
    async with routing_only(rules, HttpClients(), Settings(router_max_batch=1)) as routing:
        return await explain(routing.selector, routing.router.description, request, RoutingContext(tenant))
