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
    """Ready when at least one backend of the default route answers, so ``auto`` can be served."""
    state = gateway_state(request)
    names = state.rules.routes[state.rules.default_route].backends
    timeout = state.settings.health_timeout_s
    checks = await asyncio.gather(*(state.backends[name].health(timeout) for name in names))
    backends = {name: {"healthy": c.is_healthy, "detail": c.detail} for name, c in zip(names, checks, strict=True)}
    is_ready = any(c.is_healthy for c in checks)
    body = {"ready": is_ready, "default_route": state.rules.default_route, "backends": backends}
    return Response(orjson.dumps(body), status_code=200 if is_ready else 503, media_type="application/json")


@router.get("/metrics")
async def metrics(request: Request) -> Response:
    return Response(gateway_state(request).metrics.render(), media_type="text/plain; version=0.0.4")
