"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.state import gateway_state, request_snapshot

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when a backend of the default route has its breaker not open and did not fail its last
    periodic health check, so ``auto`` can be served. Served from what the checker last saw: a probe
    calls no backend, and says nothing of their errors (``GET /admin/backends`` has the detail)."""
    state = gateway_state(request)
    snapshot = request_snapshot(request)
    backends: dict[str, dict[str, object]] = {}
    for name, upstream in snapshot.upstreams.items():
        backends[name] = {"breaker": upstream.breaker.state}
        if (check := upstream.last_check) is not None and check.health.is_probed:
            backends[name]["healthy"] = check.health.is_healthy
    default_route = snapshot.rules.default_route
    is_ready = not state.draining and any(
        backends[name]["breaker"] != "open" and backends[name].get("healthy", True)
        for chain in snapshot.rules.routes[default_route].chains().values()
        for name in chain
    )
    body = {
        "ready": is_ready,
        "draining": state.draining,
        "rules_version": snapshot.version,
        "default_route": default_route,
        "backends": backends,
    }
    return Response(orjson.dumps(body), status_code=200 if is_ready else 503, media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    state = gateway_state(request)
    state.resources.metrics.observe_in_flight(state.in_flight - 1)  # this scrape holds a lease too
    return Response(state.resources.metrics.render(), media_type="text/plain; version=0.0.4")
