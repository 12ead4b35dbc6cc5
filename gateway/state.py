"""Everything the request path needs, opened together in the lifespan and closed together."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from dataclasses import dataclass

import httpx
from starlette.requests import Request

from backends.base import Backend
from backends.http_transport import open_http_client
from backends.registry import open_backend
from gateway.admin.reports import ReportBook
from gateway.auth import KeyRing
from gateway.cache.response_cache import ResponseCache
from gateway.cache.semantic import SemanticCache, open_semantic
from gateway.cache.store import open_store, warm_up
from gateway.metrics import Metrics
from gateway.rate_limits import RateLimiter, open_rate_limiter
from gateway.redaction import Redactor
from gateway.resilience.deadline import Deadline, requested_budget_ms
from gateway.resilience.dispatch import Dispatcher
from gateway.resilience.health_checks import HealthChecker
from gateway.resilience.upstreams import open_upstreams
from gateway.rules import BackendSpec, Rules
from gateway.settings import Settings
from routers.factory import RouterHandle, build_router
from routers.selector import RouteSelector

log = logging.getLogger("turnout")


def model_identity(spec: BackendSpec) -> str:
    """What answers a request on this backend: a change of model or server changes cache keys."""
    where = getattr(spec, "endpoint", None) or getattr(spec, "api_base", None) or getattr(spec, "gguf", None)
    return f"{spec.kind}|{where}|{spec.model}"


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
    cache: ResponseCache
    health: HealthChecker
    limits: RateLimiter
    reports: ReportBook
    semantic: SemanticCache | None
    close_semantic: Callable[[], None]
    redactor: Redactor

    def price(self, backend: str, prompt_tokens: int, completion_tokens: int) -> float:
        spec = self.rules.backends.get(backend)
        if spec is None:
            return 0.0
        return (prompt_tokens * spec.price.input_per_mtok + completion_tokens * spec.price.output_per_mtok) / 1e6

    def deadline(self, route: str, budget_header: str | None, received: float) -> Deadline:
        """The request's deadline: its route's budgets (a pinned backend's timeout for an alias),
        tightened by the client's ``x-turnout-budget-ms``, counted from ``received``
        (``time.monotonic()``), so reading the body and routing spend the budget too."""
        spec = self.rules.routes.get(route)
        if spec is None:
            budget_ms, first_chunk_ms = round(self.rules.backends[self.rules.aliases[route]].timeout_s * 1000), None
        else:
            budget_ms, first_chunk_ms = spec.latency_budget_ms, spec.ttft_budget_ms
        asked_ms = requested_budget_ms(budget_header, budget_ms)
        return Deadline.start(asked_ms, first_chunk_ms, now=received, is_tightened=asked_ms < budget_ms)

    def reference_price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The same tokens on the dearest backend of the rules: what routing elsewhere saved."""
        return max(self.price(name, prompt_tokens, completion_tokens) for name in self.rules.backends)


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
    reports = ReportBook(settings.redis_url)
    reports.start()
    metrics = Metrics()
    upstreams = open_upstreams(rules, backends)
    metrics.watch_upstreams(upstreams)
    health = HealthChecker(upstreams, {name: spec.health_check for name, spec in rules.backends.items()})
    health.start()
    store = open_store(settings.redis_url, settings.cache_timeout_ms / 1000)
    await warm_up(store)
    cache = ResponseCache(
        store,
        {name: model_identity(spec) for name, spec in rules.backends.items()},
        metrics,
        settings.cache_timeout_ms / 1000,
    )
    semantic, close_semantic = await asyncio.to_thread(
        open_semantic, rules, cache.store, cache.guard, settings.router_threads
    )
    return GatewayState(
        settings=settings,
        rules=rules,
        keyring=keyring,
        selector=RouteSelector(rules, router.router),
        router=router,
        cache=cache,
        semantic=semantic,
        close_semantic=close_semantic,
        health=health,
        limits=open_rate_limiter(cache.store, metrics, settings.cache_timeout_ms / 1000),
        reports=reports,
        dispatcher=Dispatcher(rules, upstreams, metrics),
        metrics=metrics,
        backends=backends,
        http=http,
        owns_http=http_client is None,
        redactor=Redactor.for_rules(rules),
    )


async def close_state(state: GatewayState) -> None:
    await state.health.aclose()
    await state.limits.aclose()
    state.router.close()
    state.close_semantic()
    await state.cache.store.aclose()
    await state.reports.aclose()
    await close_backends(state.backends, state.http if state.owns_http else None)


async def close_backends(backends: dict[str, Backend], http: httpx.AsyncClient | None) -> None:
    await asyncio.gather(*(backend.aclose() for backend in backends.values()), return_exceptions=True)
    if http is not None:
        await http.aclose()


def gateway_state(request: Request) -> GatewayState:
    """The one way handlers reach the app's clients."""
    state: GatewayState = request.app.state.gateway
    return state
