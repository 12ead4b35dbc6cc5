"""What lives as long as the process, whatever the rules say: how backends get HTTP clients, one Redis
client (shared by the cache, rate limits, reports and rules, each bounding its own calls; the cache
gets a second one only when it is given a Redis of its own), metrics and the cost report book."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import httpx

from backends.http_transport import HttpClients
from gateway.cache.response_cache import ResponseCache
from gateway.cache.store import open_store, warm_up
from gateway.observe import traffic as traffic_view
from gateway.observe.feedback import FeedbackBook
from gateway.observe.metrics import Metrics
from gateway.observe.reports import ReportBook
from gateway.observe.samples import RoutingSamples
from gateway.observe.tracing import Tracing, open_tracing
from gateway.rate_limits import RateLimiter, open_rate_limiter
from gateway.redis_client import close_redis, redis_client
from gateway.response_store import ResponseStore
from gateway.rollouts.agreement import Agreement
from gateway.rollouts.shadow import ShadowRunner
from gateway.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    clients: HttpClients
    """Each backend opens its own pool, sized from its spec (or shares an injected client)."""
    redis: Any | None
    """The process's Redis client for state that must not be evicted (rate limits, reports, rules);
    ``None`` in the embedded default (no Redis)."""
    cache_redis: Any | None
    """The cache's client: ``redis`` itself, unless ``TURNOUT_CACHE_REDIS_URL`` names another Redis."""
    metrics: Metrics
    cache: ResponseCache
    limits: RateLimiter
    reports: ReportBook
    traffic: ReportBook
    """Per-minute tallies for the console's traffic view (two days)."""
    feedback: FeedbackBook
    """What served each recent request, for scores sent back through ``POST /v1/feedback``."""
    samples: RoutingSamples
    """Recent requests' routing inputs, for dry runs of new rules."""
    agreement: Agreement
    """Whether two answers agree (shadow pairs, golden rows' ``similar_to``); its encoder loads on first use."""
    shadows: ShadowRunner
    """Shadow calls of sampled answered requests, in the background."""
    tracing: Tracing
    """OpenTelemetry traces when configured; otherwise a no-op."""
    responses: ResponseStore
    """Stored Responses API answers."""


async def open_resources(settings: Settings, http_client: httpx.AsyncClient | None) -> Resources:
    """``http_client``, when given, is shared by every backend instead of a pool of each one's own."""
    metrics = Metrics()
    tracing = open_tracing(settings.otel_endpoint, settings.otel_capture_content)
    timeout_s = settings.cache_timeout_ms / 1000
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    cache_redis = redis_client(settings.cache_redis_url) if settings.cache_redis_url else redis
    store = open_store(cache_redis)
    await warm_up(store)
    cache = ResponseCache(store, metrics, timeout_s)
    reports = ReportBook(redis)
    reports.start()
    traffic = ReportBook(redis, period_s=traffic_view.PERIOD_S, prefix="tn:t", keep_s=traffic_view.KEEP_S)
    traffic.start()
    agreement = Agreement(settings.router_threads)
    feedback = FeedbackBook(redis, reports, settings.feedback_ttl_s, settings.feedback_max_ids)
    feedback.start()
    return Resources(
        settings=settings,
        clients=HttpClients(settings.upstream_transport, shared=http_client),
        redis=redis,
        cache_redis=cache_redis,
        metrics=metrics,
        cache=cache,
        limits=open_rate_limiter(redis, metrics, timeout_s),
        reports=reports,
        traffic=traffic,
        feedback=feedback,
        samples=RoutingSamples(
            settings.dry_run_samples, settings.dry_run_ttl_s, frozenset(settings.dry_run_exclude_tenants)
        ),
        agreement=agreement,
        shadows=ShadowRunner(metrics, reports, agreement),
        tracing=tracing,
        responses=ResponseStore(
            redis, settings.responses_ttl_s, settings.responses_max_bytes, settings.responses_memory_bytes
        ),
    )


async def close_resources(resources: Resources) -> None:
    await resources.limits.aclose()
    await resources.cache.store.aclose()
    await resources.shadows.aclose()
    await asyncio.to_thread(
        resources.tracing.shutdown
    )  # flushes what is queued, off the event loop  # cancels what runs: before the reports it books into
    await resources.feedback.aclose()
    await resources.reports.aclose()
    await resources.traffic.aclose()
    if resources.cache_redis is not None and resources.cache_redis is not resources.redis:
        await close_redis(resources.cache_redis)
    if resources.redis is not None:
        await close_redis(resources.redis)
