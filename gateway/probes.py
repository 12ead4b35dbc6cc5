"""Liveness, readiness and metrics for orchestrators and Prometheus."""

from __future__ import annotations

import asyncio

import orjson
from fastapi import APIRouter
from starlette.requests import Request
from starlette.responses import Response

from gateway.state import gateway_state

router = APIRouter()


@router.get("/healthz")
async def healthz() -> Response:
    return Response(b'{"status":"ok"}', media_type="application/json")


@router.get("/readyz")
async def readyz(request: Request) -> Response:
    """Ready when a backend of the default route answers now and its breaker is not open, so
    ``auto`` can be served. The detail covers every backend: breaker, requests in flight, last check."""
    state = gateway_state(request)
    names = state.rules.routes[state.rules.default_route].backends
    timeout = state.settings.health_timeout_s
    # Checked here and now, but not fed to the breakers: a probe must not change what it observes.
    checks = dict(zip(names, await asyncio.gather(*(state.backends[n].health(timeout) for n in names)), strict=True))
    upstreams = state.dispatcher.upstreams
    is_ready = any(check.is_healthy and upstreams[name].breaker.state != "open" for name, check in checks.items())
    backends: dict[str, dict[str, object]] = {}
    for name, upstream in upstreams.items():
        backends[name] = {"breaker": upstream.breaker.state, "in_flight": upstream.in_flight}
        if name in checks:
            backends[name] |= {"healthy": checks[name].is_healthy, "detail": checks[name].detail}
        if (last := state.health.last.get(name)) is not None:
            backends[name]["last_check"] = {"healthy": last.health.is_healthy, "at": last.checked_at}
    body = {"ready": is_ready, "default_route": state.rules.default_route, "backends": backends}
    return Response(orjson.dumps(body), status_code=200 if is_ready else 503, media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(gateway_state(request).metrics.render(), media_type="text/plain; version=0.0.4")
