"""What a proposed rules document would change: the routing of recent real requests, replayed.

Both sides are decided now, on the same sampled inputs: the serving rules and the proposed ones,
each through its rules engine, router, aliases and tenant permissions. No backend is called.
"""

from __future__ import annotations

from typing import Any

from backends.http_transport import HttpClients
from contracts.errors import GatewayError, InvalidRequest
from gateway.observe import RoutingSample
from gateway.rules import Rules
from gateway.settings import Settings
from gateway.snapshot import RulesSnapshot, routing_only
from routers.decision import RoutingContext
from routers.selector import RouteSelector
from routers.specs import LLMRouterSpec

Decision = dict[str, Any]


async def dry_run(
    serving: RulesSnapshot, proposed: Rules, samples: list[RoutingSample], clients: HttpClients, settings: Settings
) -> dict[str, Any]:
    if isinstance(serving.rules.router, LLMRouterSpec) or isinstance(proposed.router, LLMRouterSpec):
        raise InvalidRequest(
            "a dry run replays local routers only: an LLM router (router.kind: llm) would call its backend",
            code="dry_run_llm_router",
        )
    async with routing_only(proposed, clients, settings, serving) as routing:
        changes = []
        for sample in samples:
            before = await decide(serving.selector, serving.rules, sample)
            after = await decide(routing.selector, proposed, sample)
            if where(before) != where(after):
                changes.append(
                    {
                        "request_id": sample.request_id,
                        "tenant": sample.tenant,
                        "preview": sample.preview,
                        "from": before,
                        "to": after,
                    }
                )
    return {"sampled": len(samples), "changed": len(changes), "changes": changes}


async def decide(selector: RouteSelector, rules: Rules, sample: RoutingSample) -> Decision:
    """Where ``sample`` goes under ``rules``: route, variant (when the route has some) and first
    backend, or the error it would get. A variant drawn at random is drawn by the sample's request
    id, the same on both sides, so only a change of weights moves it."""
    context = RoutingContext(sample.tenant, sample.headers, draw_key=sample.request_id)
    try:
        decision = await selector.select(sample.model, sample.headers.get("x-turnout-route"), sample.request(), context)
    except GatewayError as exc:
        return {"route": None, "backend": None, "error": exc.code or type(exc).__name__}
    if not may_use(rules, sample.tenant, decision.route):
        return {"route": decision.route, "backend": None, "error": "permission_denied"}
    found = {"route": decision.route, "backend": decision.backends[0], "decided_by": decision.decided_by}
    return found if decision.variant is None else found | {"variant": decision.variant}


def where(decision: Decision) -> Decision:
    """What a change of routing is: the route, variant, backend or error, not what decided it."""
    return {key: value for key, value in decision.items() if key != "decided_by"}


def may_use(rules: Rules, tenant: str, route: str) -> bool:
    """Whether the tenant's keys in ``rules`` allow ``route``; a tenant with no key there (one from
    ``TURNOUT_API_KEYS``, or anonymous) is not limited by the file."""
    keys = [key for key in rules.api_keys if key.tenant == tenant]
    return not keys or any(key.routes is None or route in key.routes for key in keys)
