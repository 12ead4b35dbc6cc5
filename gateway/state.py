"""Everything the request path needs, opened together in the lifespan and closed together."""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

import httpx
from starlette.requests import Request

from backends.base import Backend
from backends.http_transport import open_http_client
from backends.registry import open_backend
from gateway.auth import KeyRing
from gateway.dispatch import Dispatcher
from gateway.metrics import Metrics
from gateway.rules import Rules
from gateway.settings import Settings
from routers.factory import RouterHandle, build_router
from routers.selector import RouteSelector

log = logging.getLogger("switchyard")


@dataclass
class GatewayState:
    settings: Settings
    rules: Rules
    keyring: KeyRing
    selector: RouteSelector
    dispatcher: Dispatcher
    metrics: Metrics
    router: RouterHandle
    backends: dict[str, Backend]
    http: httpx.AsyncClient
    owns_http: bool


async def open_state(settings: Settings, rules: Rules, http_client: httpx.AsyncClient | None = None) -> GatewayState:
    keyring = KeyRing.from_config(rules, settings)
    max_connections = sum(getattr(spec, "max_connections", 64) for spec in rules.backends.values())
    http = http_client or open_http_client(max_connections, settings.upstream_transport)
    backends: dict[str, Backend] = {}
    try:
        for name, spec in rules.backends.items():
            backends[name] = await open_backend(name, spec, http)
            log.info("backend %s (%s) ready", name, spec.kind)
    except BaseException:
        await close_backends(backends, http if http_client is None else None)
        raise
    try:
        router = await asyncio.to_thread(
            build_router, rules, backends, settings.router_threads, settings.router_max_batch
        )
    except BaseException:
        await close_backends(backends, http if http_client is None else None)
        raise
    log.info("router: %s", router.description)
    metrics = Metrics()
    timeouts = {name: spec.timeout_s for name, spec in rules.backends.items()}
    return GatewayState(
        settings=settings,
        rules=rules,
        keyring=keyring,
        selector=RouteSelector(rules, router.router),
        router=router,
        dispatcher=Dispatcher(backends, timeouts, metrics),
        metrics=metrics,
        backends=backends,
        http=http,
        owns_http=http_client is None,
    )


async def close_state(state: GatewayState) -> None:
    state.router.close()
    await close_backends(state.backends, state.http if state.owns_http else None)


async def close_backends(backends: dict[str, Backend], http: httpx.AsyncClient | None) -> None:
    await asyncio.gather(*(backend.aclose() for backend in backends.values()), return_exceptions=True)
    if http is not None:
        await http.aclose()


def gateway_state(request: Request) -> GatewayState:
    """The one way handlers reach the app's clients."""
    state: GatewayState = request.app.state.gateway
    return state
