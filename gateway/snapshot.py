"""One validated rules document made ready to serve: an immutable value, swapped whole.

A snapshot holds what the rules decide (routes, backends with their upstream state, router,
selector, keyring, prices, cache identities, health-check plan) and nothing that lives as long as
the process (the HTTP pool, Redis, metrics, reports: :class:`gateway.resources.Resources`).
``build_snapshot`` reuses what a rules change left alone: a backend whose definition is unchanged
keeps its breaker, latencies, requests in flight and last health check; a loaded router model is
kept while its directory and settings are the same.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from backends.base import Backend
from backends.http_transport import HttpClients
from backends.registry import open_backend
from gateway.admin_keys import AdminKeys
from gateway.auth import KeyRing
from gateway.cache.semantic import SemanticCache, open_semantic
from gateway.golden.warmup import warm_up
from gateway.guardrails.engine import Guardrails, build_guardrails
from gateway.guardrails.specs import LlmGuardrail
from gateway.redaction import Redactor
from gateway.resilience.deadline import Deadline, requested_budget_ms
from gateway.resilience.dispatch import Dispatcher
from gateway.resilience.health_checks import HealthChecker
from gateway.resilience.upstreams import Upstream, open_upstream
from gateway.resources import Resources
from gateway.rules import BackendSpec, Rules, backend_identity
from gateway.settings import Settings
from routers.factory import RouterHandle, build_router
from routers.selector import RouteSelector
from routers.specs import LLMRouterSpec

log = logging.getLogger("turnout")
Closer = Callable[[], Awaitable[None]]


def model_identity(spec: BackendSpec) -> str:
    """What answers a request on this backend: a change of model or server changes cache keys."""
    where = getattr(spec, "endpoint", None) or getattr(spec, "api_base", None) or getattr(spec, "gguf", None)
    return f"{spec.kind}|{where}|{spec.model}"


@dataclass
class Leases:
    """Requests reading a snapshot now; its own resources are closed only once none is left."""

    count: int = 0
    retired: bool = False


@dataclass(frozen=True)
class Semantic:
    cache: SemanticCache
    close: Callable[[], None]


@dataclass(frozen=True, eq=False)
class RulesSnapshot:
    version: int
    rules: Rules
    upstreams: Mapping[str, Upstream]
    router: RouterHandle
    selector: RouteSelector
    keyring: KeyRing
    admins: AdminKeys
    dispatcher: Dispatcher
    identities: Mapping[str, str]
    """Backend name to :func:`model_identity`, part of every cache key."""
    redactor: Redactor
    health: HealthChecker
    semantic: Semantic | None
    guardrails: Guardrails
    externals: frozenset[str]
    """Backends that are a third party's API (``applies_to: external`` guardrails rewrite what they get)."""
    leases: Leases = field(default_factory=Leases)

    @functools.cached_property
    def version_header(self) -> tuple[bytes, bytes]:
        """``x-turnout-rules-version``, encoded once, for every response this snapshot answers."""
        return b"x-turnout-rules-version", str(self.version).encode()

    @property
    def semantic_cache(self) -> SemanticCache | None:
        return self.semantic.cache if self.semantic else None

    def price(self, backend: str, prompt_tokens: int, completion_tokens: int) -> float:
        spec = self.rules.backends.get(backend)
        if spec is None:
            return 0.0
        return (prompt_tokens * spec.price.input_per_mtok + completion_tokens * spec.price.output_per_mtok) / 1e6

    @functools.cached_property
    def _dearest_prices(self) -> list[tuple[float, float]]:
        """Each distinct (input, output) price per million tokens: the reference is the dearest for the tokens."""
        return list({(s.price.input_per_mtok, s.price.output_per_mtok) for s in self.rules.backends.values()})

    def reference_price(self, prompt_tokens: int, completion_tokens: int) -> float:
        """The same tokens on the dearest backend of the rules: what routing elsewhere saved."""
        return max(prompt_tokens * i + completion_tokens * o for i, o in self._dearest_prices) / 1e6

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

    def owned(self) -> dict[int, Closer]:
        """What closing this snapshot would close, by object identity: backends, router models and
        the semantic encoder. A resource shared with another snapshot has the same identity there."""
        found: dict[int, Closer] = {id(u.backend): u.backend.aclose for u in self.upstreams.values()}
        found |= {id(model): _in_thread(model.close) for model in self.router.models.values()}
        if self.semantic is not None:
            found[id(self.semantic)] = _in_thread(self.semantic.close)
        found |= {id(model): _in_thread(model.close) for model in self.guardrails.models.values()}
        if self.guardrails.client is not None:
            found[id(self.guardrails.client)] = self.guardrails.client.aclose
        return found


async def build_snapshot(
    rules: Rules, resources: Resources, previous: RulesSnapshot | None, version: int | None = None
) -> RulesSnapshot:
    """The snapshot of ``rules`` as ``version`` (unset: one more than ``previous``), reusing what is
    unchanged since ``previous``. Slow work (loading models, hashing keys) runs in a thread, off the
    event loop. On failure nothing it opened stays open and nothing of ``previous`` is touched."""
    kept = _unchanged_upstreams(rules, previous)
    opened: dict[str, Backend] = {}
    try:
        for name, spec in rules.backends.items():
            if name not in kept:
                opened[name] = await open_backend(name, spec, resources.clients)
                log.info("backend %s (%s) ready", name, spec.kind)
        upstreams = {name: kept.get(name) or open_upstream(opened[name], spec) for name, spec in rules.backends.items()}
        await warm_up(rules, opened, resources.metrics, resources.reports)  # before it serves: never met cold
        warmed = time.monotonic()
        for name in opened:
            upstreams[name].last_warm = warmed
        version = version if version is not None else previous.version + 1 if previous else 1
        snapshot = await asyncio.to_thread(_assemble, rules, resources, previous, upstreams, version)
    except BaseException:
        await asyncio.gather(*(backend.aclose() for backend in opened.values()), return_exceptions=True)
        raise
    log.info("rules version %d: router %s", snapshot.version, snapshot.router.description)
    return snapshot


def _unchanged_upstreams(rules: Rules, previous: RulesSnapshot | None) -> dict[str, Upstream]:
    """The previous snapshot's upstreams whose backend keeps its identity: as they were when the
    whole spec is the same, under the new policy otherwise. Only an identity change reopens one."""
    if previous is None:
        return {}
    kept: dict[str, Upstream] = {}
    for name, spec in rules.backends.items():
        before = previous.rules.backends.get(name)
        if before is None or backend_identity(before) != backend_identity(spec):
            continue
        upstream = previous.upstreams[name]
        kept[name] = upstream if before == spec else upstream.with_policy(spec, before)
    return kept


def _assemble(
    rules: Rules, resources: Resources, previous: RulesSnapshot | None, upstreams: dict[str, Upstream], version: int
) -> RulesSnapshot:
    settings = resources.settings
    backends = {name: upstream.backend for name, upstream in upstreams.items()}
    kept_models = previous.router.models if previous else {}
    router = build_router(rules, backends, settings.router_threads, settings.router_max_batch, kept_models)
    semantic: Semantic | None = None
    guardrails: Guardrails | None = None
    kept_guard_models = previous.guardrails.models if previous else {}
    try:
        keyring = KeyRing.from_config(rules, settings)
        semantic = _semantic(rules, resources, previous)
        guardrails = build_guardrails(
            rules.guardrails,
            {route: spec.guardrails for route, spec in rules.routes.items()},
            rules.default_guardrails,
            backends,
            kept_guard_models,
            settings.router_threads,
            resources.clients.shared,
        )
        return RulesSnapshot(
            version=version,
            rules=rules,
            upstreams=upstreams,
            router=router,
            selector=RouteSelector(rules, router.router),
            keyring=keyring,
            admins=AdminKeys.from_config(rules, settings),
            dispatcher=Dispatcher(rules, upstreams, resources.metrics, resources.tracing),
            identities={name: model_identity(spec) for name, spec in rules.backends.items()},
            redactor=Redactor.for_rules(rules),
            health=HealthChecker(upstreams, {name: spec.health_check for name, spec in rules.backends.items()}),
            semantic=semantic,
            guardrails=guardrails,
            externals=rules.external_backends(),
        )
    except BaseException:
        for key, model in router.models.items():
            if kept_models.get(key) is not model:
                model.close()
        if semantic is not None and (previous is None or previous.semantic is not semantic):
            semantic.close()
        for model_dir, guard_model in (guardrails.models if guardrails is not None else {}).items():
            if kept_guard_models.get(model_dir) is not guard_model:
                guard_model.close()
        raise


@dataclass(frozen=True)
class Routing:
    """Only what deciding a route needs: for explaining a prompt and for a dry run of new rules."""

    rules: Rules
    router: RouterHandle
    selector: RouteSelector


@asynccontextmanager
async def routing_only(
    rules: Rules, clients: HttpClients, settings: Settings, previous: RulesSnapshot | None = None
) -> AsyncIterator[Routing]:
    """The routing of ``rules`` without serving them: no serving backend is opened, only the one an
    LLM router asks. Models loaded by ``previous`` are borrowed, not loaded again; whatever this
    loaded or opened is closed on exit."""
    opened: dict[str, Backend] = {}
    kept_models = previous.router.models if previous else {}
    try:
        if isinstance(rules.router, LLMRouterSpec):
            name = rules.router.backend
            opened[name] = await open_backend(name, rules.backends[name], clients)
        router = await asyncio.to_thread(
            build_router, rules, opened, settings.router_threads, settings.router_max_batch, kept_models
        )
        try:
            yield Routing(rules, router, RouteSelector(rules, router.router))
        finally:
            for key, model in router.models.items():
                if kept_models.get(key) is not model:
                    await asyncio.to_thread(model.close)
    finally:
        await asyncio.gather(*(backend.aclose() for backend in opened.values()), return_exceptions=True)


@asynccontextmanager
async def guardrails_only(rules: Rules, clients: HttpClients) -> AsyncIterator[Guardrails]:
    """The guardrails of ``rules`` without serving them (to explain a prompt offline): the backends
    their judges ask are opened, and closed on exit with the models loaded and the webhook client."""
    judges = {spec.backend for spec in rules.guardrails.values() if isinstance(spec, LlmGuardrail)}
    opened: dict[str, Backend] = {}
    try:
        for name in sorted(judges):
            opened[name] = await open_backend(name, rules.backends[name], clients)
        per_route = {route: spec.guardrails for route, spec in rules.routes.items()}
        guardrails = await asyncio.to_thread(
            build_guardrails, rules.guardrails, per_route, rules.default_guardrails, opened, {}
        )
        try:
            yield guardrails
        finally:
            for model in guardrails.models.values():
                await asyncio.to_thread(model.close)
            if guardrails.client is not None:
                await guardrails.client.aclose()
    finally:
        await asyncio.gather(*(backend.aclose() for backend in opened.values()), return_exceptions=True)


@asynccontextmanager
async def backend_of(
    rules: Rules, name: str, clients: HttpClients, serving: RulesSnapshot | None = None
) -> AsyncIterator[Backend]:
    """Backend ``name`` of ``rules``, to ask outside the request path (a golden set): the serving
    snapshot's when its identity is unchanged there, else one opened for the scope and closed on exit."""
    spec = rules.backends[name]
    before = serving.rules.backends.get(name) if serving is not None else None
    if serving is not None and before is not None and backend_identity(before) == backend_identity(spec):
        yield serving.upstreams[name].backend
        return
    backend = await open_backend(name, spec, clients)
    try:
        yield backend
    finally:
        await backend.aclose()


def _semantic(rules: Rules, resources: Resources, previous: RulesSnapshot | None) -> Semantic | None:
    """The semantic cache if any route asks for it; its encoder is loaded once and kept across swaps."""
    if not any(route.cache.semantic_threshold for route in rules.routes.values()):
        return None
    if previous is not None and previous.semantic is not None:
        return previous.semantic
    cache, close = open_semantic(resources.cache.store, resources.cache.guard, resources.settings.router_threads)
    return Semantic(cache, close)


def _in_thread(close: Callable[[], None]) -> Closer:
    async def closing() -> None:
        await asyncio.to_thread(close)

    return closing
