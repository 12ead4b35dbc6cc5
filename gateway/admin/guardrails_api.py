"""``GET /admin/guardrails``: each route's guardrails and how often each fired, for the console."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.admin.api import require_admin
from gateway.admin.report_format import parse_since
from gateway.observe import traffic as traffic_view
from gateway.observe.guardrail_counts import guardrail_counts
from gateway.state import gateway_state, request_snapshot

router = APIRouter(prefix="/admin")


@router.get("/guardrails")
async def guardrails(request: Request, since: str = "1h") -> Response:
    """The guardrails defined (kind, action, where they apply), which each route runs on input and
    output (``default_guardrails`` included), and per route how many requests each check passed,
    blocked, redacted, flagged, fell back or errored over ``since`` (at most two days), from every
    replica."""
    state = gateway_state(request)
    require_admin(request)
    snapshot = request_snapshot(request)
    rules = snapshot.rules
    defined = {
        name: {
            "kind": spec.kind,
            "action": spec.action,
            "applies_to": spec.applies_to,
            "mode": spec.mode,
            "on_error": spec.on_error,
        }
        for name, spec in rules.guardrails.items()
    }
    routes = {}
    for route in rules.routes:
        guards = snapshot.guardrails.for_route(route)
        if guards is not None:
            routes[route] = {
                "input": [c.name for c in (*guards.input, *guards.external, *guards.later_input)],
                "output": [c.name for c in (*guards.output, *guards.later_output)],
                "holdback_chars": guards.holdback_chars,
            }
    found = await state.resources.traffic.totals(parse_since(since, traffic_view.KEEP_S))
    body = {"since": since, "defined": defined, "routes": routes, "counts": guardrail_counts(found)}
    return Response(orjson.dumps(body), media_type="application/json")
