"""The admin API, behind its own key (``TURNOUT_ADMIN_KEY``): for ops, not for callers."""

from __future__ import annotations

import asyncio
import functools
from pathlib import Path

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from contracts.errors import InvalidRequest
from gateway.admin.explain import explain, explain_guardrails
from gateway.admin.headers import console_policy
from gateway.admin.report_format import parse_by, parse_since, to_csv
from gateway.apis.decoding import internal_request
from gateway.observe import traffic as traffic_view
from gateway.observe.reports import Key, group
from gateway.observe.traffic import traffic_series
from gateway.observe.variant_report import ARM_COLUMNS, flat, variant_report
from gateway.request_body import parse_json, read_body
from gateway.resilience.latency_window import MIN_SAMPLES
from gateway.rules import RouteSpec
from gateway.state import gateway_state, request_snapshot
from routers.decision import RoutingContext

router = APIRouter(prefix="/admin")
ADMIN_PAGE = Path(__file__).parent / "static" / "admin.html"


def require_admin(request: Request) -> None:
    """Any admin key, viewer or editor: everything here only reads."""
    request_snapshot(request).admins.authenticate(request.headers)


@router.post("/route/explain")
async def route_explain(request: Request, api: str | None = None) -> Response:
    """Where a request would go, and why; nothing is sent to a backend. The body is any API's
    (``api``: chat, responses or messages; unset: responses when it has ``input``, else chat), or
    ``{"prompt": ..., "user": ...}``; ``model`` defaults to ``auto``. A route with variants says which
    one this caller gets (by its ``user``, tenant or header, as the route sticks).

    ``x-turnout-tenant`` sets the tenant that rules see; other headers are seen as sent.
    """
    state = gateway_state(request)
    require_admin(request)
    payload = parse_json(await read_body(request, state.settings.max_body_bytes))
    if isinstance(payload, dict) and "prompt" in payload and "messages" not in payload and "input" not in payload:
        prompt = {"model": payload.get("model", "auto"), "messages": [{"role": "user", "content": payload["prompt"]}]}
        payload = prompt | ({"user": payload["user"]} if "user" in payload else {})
    elif isinstance(payload, dict):
        payload.setdefault("model", "auto")
    chat = internal_request(
        api or ("responses" if isinstance(payload, dict) and "input" in payload else "chat"), payload
    )
    context = RoutingContext(request.headers.get("x-turnout-tenant", "anonymous"), request.headers)
    snapshot = request_snapshot(request)
    answer = await explain(snapshot.selector, snapshot.router.description, chat, context)
    answer["guardrails"] = await explain_guardrails(snapshot.guardrails, answer["route"], chat, context.tenant)
    return Response(orjson.dumps(answer), media_type="application/json")


@router.get("/backends")
async def backends(request: Request) -> Response:
    """Each backend as the gateway sees it: breaker, requests in flight, and its last health check
    with the upstream's own words (secrets redacted), which ``/readyz`` keeps from the public; the
    routes; and each route's last golden drift check (``golden``: route to backend to result)."""
    require_admin(request)
    found: dict[str, dict[str, object]] = {}
    snapshot = request_snapshot(request)
    for name, upstream in snapshot.upstreams.items():
        found[name] = {
            "kind": snapshot.rules.backends[name].kind,
            "priced": snapshot.price(name, 1_000_000, 1_000_000) > 0,
            "breaker": upstream.breaker.state,
            "in_flight": upstream.in_flight,
            "answers": upstream.answers.count(),
            "min_answers": MIN_SAMPLES,
            "p50_ms": _ms(upstream.answers.percentile(0.5)),
            "p95_ms": _ms(upstream.answers.percentile(0.95)),
        }
        if (check := upstream.last_check) is not None:
            found[name]["last_check"] = {
                "healthy": check.health.is_healthy,
                "probed": check.health.is_probed,
                "detail": snapshot.redactor.text(check.health.detail),
                "at": check.checked_at,
            }
    routes = {
        name: {"backends": spec.chain, "description": spec.description} | _rollout(spec)
        for name, spec in snapshot.rules.routes.items()
    }
    live = getattr(request.app.state, "live_rules", None)
    golden = await live.drift.last_results() if live is not None else {}
    body = {"rules_version": snapshot.version, "backends": found, "routes": routes, "golden": golden}
    return Response(orjson.dumps(body), media_type="application/json")


def _rollout(spec: RouteSpec) -> dict[str, object]:
    """A route's variants (weights and chains), what keeps callers in one, and its shadow."""
    found: dict[str, object] = {}
    if spec.variants:
        found["variants"] = {name: variant.model_dump() for name, variant in spec.variants.items()}
        found["sticky"] = spec.sticky
    if spec.shadow is not None:
        found["shadow"] = spec.shadow.model_dump()
    return found


def _ms(seconds: float | None) -> float | None:
    return None if seconds is None else round(seconds * 1000, 1)


@router.get("/reports/cache")
async def cache_report(request: Request, since: str = "24h", by: str = "route", format: str = "json") -> Response:
    """Requests, hits, tokens and dollars (spent, saved by the cache, saved by routing), grouped ``by``
    any of hour, route, backend, tenant; ``format`` json or csv."""
    state = gateway_state(request)
    require_admin(request)
    dimensions = parse_by(by)
    if format not in ("json", "csv"):
        raise InvalidRequest(f"format={format!r}: choose json or csv", param="format")
    found = await state.resources.reports.totals(parse_since(since))
    # Many tenants over many hours make many rows: grouping and writing them is no work for the loop.
    if format == "csv":
        return Response(await asyncio.to_thread(_report_csv, found, dimensions), media_type="text/csv")
    return Response(await asyncio.to_thread(_report_json, found, since, dimensions), media_type="application/json")


def _report_csv(found: dict[Key, dict[str, float]], dimensions: list[str]) -> str:
    return to_csv(group(found, dimensions), dimensions)


def _report_json(found: dict[Key, dict[str, float]], since: str, dimensions: list[str]) -> bytes:
    totals = group(found, [])
    body = {"since": since, "by": dimensions, "rows": group(found, dimensions), "totals": totals[0] if totals else {}}
    return orjson.dumps(body)


@router.get("/reports/traffic")
async def traffic_report(request: Request, since: str = "6h", by: str = "route") -> Response:
    """Per minute and route (or backend), from every replica, over ``since`` (at most two days):
    requests, errors, p50/p95 latency and first chunk, hit ratio, who decided and the router's mean
    confidence, dollars spent and saved (:mod:`gateway.observe.traffic`)."""
    state = gateway_state(request)
    require_admin(request)
    if by not in ("route", "backend"):
        raise InvalidRequest(f"by={by!r}: choose route or backend", param="by")
    found = await state.resources.traffic.totals(parse_since(since, traffic_view.KEEP_S))
    points = await asyncio.to_thread(traffic_series, found, by)
    body = {"since": since, "by": by, "minimum_latency_samples": traffic_view.MIN_LATENCY_SAMPLES, "points": points}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("/reports/variants")
async def variants_report(
    request: Request, since: str = "24h", route: str | None = None, format: str = "json"
) -> Response:
    """Each route's variants and shadow side by side (:mod:`gateway.observe.variant_report`), over
    ``since``, from every replica; ``route`` narrows it to one; ``format`` json or csv."""
    state = gateway_state(request)
    require_admin(request)
    if format not in ("json", "csv"):
        raise InvalidRequest(f"format={format!r}: choose json or csv", param="format")
    found = await state.resources.reports.totals(parse_since(since))
    report = await asyncio.to_thread(variant_report, found, route)
    if format == "csv":
        return Response(to_csv(flat(report), [], ARM_COLUMNS), media_type="text/csv")
    snapshot = request_snapshot(request)
    weights = {
        name: {variant: spec.weight for variant, spec in route_spec.variants.items()}
        for name, route_spec in snapshot.rules.routes.items()
        if route_spec.variants
    }
    body = {"since": since, "rules_version": snapshot.version, "weights": weights, "routes": report}
    return Response(orjson.dumps(body), media_type="application/json")


@router.get("")
async def admin_page() -> Response:
    """The ops console: health, the rules editor, dry run, history and rollback, explain, cost charts."""
    page, policy = console_page()
    return Response(
        page, media_type="text/html", headers={"content-security-policy": policy, "x-frame-options": "DENY"}
    )


@functools.cache
def console_page() -> tuple[bytes, str]:
    """The console page and its Content-Security-Policy, read and hashed once."""
    page = ADMIN_PAGE.read_bytes()
    return page, console_policy(page)
