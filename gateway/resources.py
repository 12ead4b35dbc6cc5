"""What lives as long as the process, whatever the rules say: the upstream HTTP pool, one Redis
client (shared by the cache, rate limits, reports and rules, each bounding its own calls; the cache
gets a second one only when it is given a Redis of its own), metrics and the cost report book."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import httpx

from backends.http_transport import open_http_client
from gateway.admin.reports import ReportBook
from gateway.cache.response_cache import ResponseCache
from gateway.cache.store import open_store, warm_up
from gateway.live.samples import RoutingSamples
from gateway.metrics import Metrics
from gateway.rate_limits import RateLimiter, open_rate_limiter
from gateway.redis_client import close_redis, redis_client
from gateway.rules import Rules
from gateway.settings import Settings


@dataclass(frozen=True)
class Resources:
    settings: Settings
    http: httpx.AsyncClient
    owns_http: bool
    redis: Any | None
    """The process's Redis client for state that must not be evicted (rate limits, reports, rules);
    ``None`` in the embedded default (no Redis)."""
    cache_redis: Any | None
    """The cache's client: ``redis`` itself, unless ``TURNOUT_CACHE_REDIS_URL`` names another Redis."""
    metrics: Metrics
    cache: ResponseCache
    limits: RateLimiter
    reports: ReportBook
    samples: RoutingSamples
    """Recent requests' routing inputs, for dry runs of new rules."""


async def open_resources(settings: Settings, rules: Rules, http_client: httpx.AsyncClient | None) -> Resources:
    """``rules`` sizes the HTTP pool (the first rules' backends); ``http_client`` replaces the pool."""
    max_connections = sum(getattr(spec, "max_connections", 64) for spec in rules.backends.values())
    http = http_client or open_http_client(max_connections, settings.upstream_transport)
    metrics = Metrics()
    timeout_s = settings.cache_timeout_ms / 1000
    redis = redis_client(settings.redis_url) if settings.redis_url else None
    cache_redis = redis_client(settings.cache_redis_url) if settings.cache_redis_url else redis
    store = open_store(cache_redis)
    await warm_up(store)
    cache = ResponseCache(store, metrics, timeout_s)
    reports = ReportBook(redis)
    reports.start()
    return Resources(
        settings=settings,
        http=http,
        owns_http=http_client is None,
        redis=redis,
        cache_redis=cache_redis,
        metrics=metrics,
        cache=cache,
        limits=open_rate_limiter(redis, metrics, timeout_s),
        reports=reports,
        samples=RoutingSamples(
            settings.dry_run_samples, settings.dry_run_ttl_s, frozenset(settings.dry_run_exclude_tenants)
        ),
    )


async def close_resources(resources: Resources) -> None:
    await resources.limits.aclose()
    await resources.cache.store.aclose()
    await resources.reports.aclose()
    if resources.cache_redis is not None and resources.cache_redis is not resources.redis:
        await close_redis(resources.cache_redis)
    if resources.redis is not None:
        await close_redis(resources.redis)
    if resources.owns_http:
        await resources.http.aclose()
