"""Where would this prompt go, and why: for ops, over HTTP and on the command line."""

from __future__ import annotations

from typing import Any

from backends.http_transport import HttpClients
from contracts.errors import ContentBlocked
from contracts.wire import ChatCompletionRequest
from gateway.guardrails.engine import Guardrails, Ledger, Result
from gateway.guardrails.kinds import Asked
from gateway.guardrails.stages import check_request, external_request
from gateway.rules import Rules
from gateway.settings import Settings
from gateway.snapshot import guardrails_only, routing_only
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
        "examples": [neighbour.to_dict() for neighbour in decision.nearest],
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
    """Explain without serving: only the routing and the guardrails of ``rules`` are built
    (:func:`routing_only`, :func:`guardrails_only`)."""
    body: dict[str, object] = {"model": model, "messages": [{"role": "user", "content": prompt}]}
    request = ChatCompletionRequest.model_validate(body | ({"user": user} if user else {}))
    async with routing_only(rules, HttpClients(), Settings(router_max_batch=1)) as routing:
        explained = await explain(routing.selector, routing.router.description, request, RoutingContext(tenant))
    async with guardrails_only(rules, HttpClients()) as guardrails:
        explained["guardrails"] = await explain_guardrails(guardrails, explained["route"], request, tenant)
    return explained


async def explain_guardrails(
    guardrails: Guardrails, route: str, request: ChatCompletionRequest, tenant: str
) -> dict[str, Any] | None:
    """The route's input checks run on the request: each result, whether it would be refused, and the
    last user message as self-hosted and as external backends would be sent it (when redacted)."""
    guards = guardrails.for_route(route)
    if guards is None:
        return None
    ledger = Ledger()
    asked = Asked("input", route, tenant)
    blocked_by = None
    sent = external = None
    try:
        checked = await check_request(guards, request, asked, ledger, _unobserved)
        redacted = await external_request(guards, checked, asked, ledger, _unobserved)
        if checked is not request:
            sent = checked.last_user_text()
        if redacted is not None:
            external = redacted.last_user_text()
    except ContentBlocked:
        blocked_by = next(r.guardrail for r in ledger.results if r.result == "block")
    return {
        "input": [{"guardrail": r.guardrail, "result": r.result, "detail": r.detail} for r in ledger.results],
        "output": [c.name for c in guards.output],
        "blocked_by": blocked_by,
        "sent": sent,
        "sent_external": external,
    }


def _unobserved(result: Result) -> None:
    """An explanation is not traffic: nothing is counted."""
