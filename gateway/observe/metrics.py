"""Prometheus metrics, one registry per app (no process globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.resilience.upstreams import Upstream

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "turnout_requests",
            "Requests answered, by route, backend and HTTP status.",
            ["endpoint", "route", "backend", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "turnout_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ["endpoint", "route", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._attempts = Counter(
            "turnout_backend_attempts",
            "Calls to backends, by outcome (ok or the error code).",
            ["backend", "outcome"],
            registry=self.registry,
        )
        self._decisions = Counter(
            "turnout_router_decisions",
            "Routing decisions, by route and what decided.",
            ["route", "decided_by"],
            registry=self.registry,
        )
        self._confidence = Histogram(
            "turnout_router_confidence",
            "The router's confidence in the label it chose.",
            ["route"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=self.registry,
        )
        self._cache = Counter(
            "turnout_cache_requests",
            "Cache outcomes (hit, miss, bypass, off) by route.",
            ["route", "status"],
            registry=self.registry,
        )
        self._cache_errors = Counter("turnout_cache_errors", "Failed calls to the cache store.", registry=self.registry)
        self._saved_tokens = Counter(
            "turnout_cache_saved_tokens",
            "Tokens not generated thanks to cache hits.",
            ["route"],
            registry=self.registry,
        )
        self._saved_usd = Counter(
            "turnout_cache_saved_usd", "Dollars not spent thanks to cache hits.", ["route"], registry=self.registry
        )
        self._hedges = Counter(
            "turnout_hedges", "Hedged attempts started, by route.", ["route"], registry=self.registry
        )
        self._rate_limited = Counter(
            "turnout_rate_limited",
            "Requests refused by a per-key limit, by tenant and limit.",
            ["tenant", "limit"],
            registry=self.registry,
        )
        self._limit_errors = Counter(
            "turnout_rate_limit_errors",
            "Failed calls to the rate-limit store (the request was let through).",
            registry=self.registry,
        )
        self._rules_version = Gauge(
            "turnout_rules_version", "The rules version this process serves.", registry=self.registry
        )
        self._in_flight = Gauge(
            "turnout_in_flight_requests",
            "Requests and streams being answered when scraped (the scrape itself not counted).",
            registry=self.registry,
        )
        self._rules_refused = Counter(
            "turnout_rules_refused",
            "Rules changes refused (invalid, or not servable here), by source: api, file or store.",
            ["source"],
            registry=self.registry,
        )
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self._counter_children: dict[tuple[object, ...], Counter] = {}

    def observe_request(self, endpoint: str, route: str, backend: str, status: int, seconds: float) -> None:
        key = (endpoint, route, backend, str(status))
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the increments: keep the children
            children = (self._requests.labels(*key), self._latency.labels(endpoint, route, backend))
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_decision(self, route: str, decided_by: str, score: float | None) -> None:
        self._child(self._decisions, route, decided_by.partition(":")[0]).inc()
        if score is not None:
            self._confidence.labels(route).observe(score)

    def observe_cache(self, route: str, status: str, saved_tokens: int = 0, saved_usd: float = 0.0) -> None:
        self._child(self._cache, route, status).inc()
        if saved_tokens:
            self._saved_tokens.labels(route).inc(saved_tokens)
            self._saved_usd.labels(route).inc(saved_usd)

    def observe_cache_error(self) -> None:
        self._cache_errors.inc()

    def observe_attempt(self, backend: str, outcome: str) -> None:
        self._child(self._attempts, backend, outcome).inc()

    def observe_hedge(self, route: str) -> None:
        self._child(self._hedges, route).inc()

    def observe_rate_limited(self, tenant: str, limit: str) -> None:
        self._rate_limited.labels(tenant, limit).inc()

    def observe_rate_limit_error(self) -> None:
        self._limit_errors.inc()

    def observe_in_flight(self, count: int) -> None:
        self._in_flight.set(count)

    def observe_rules_version(self, version: int) -> None:
        self._rules_version.set(version)

    def observe_rules_refused(self, source: str) -> None:
        self._rules_refused.labels(source).inc()

    def watch_upstreams(self, upstreams: Callable[[], Mapping[str, Upstream]]) -> None:
        """Breaker states and requests in flight of the backends ``upstreams()`` gives (those of the
        rules serving now), read when Prometheus scrapes."""
        self.registry.register(_UpstreamCollector(upstreams))

    def _child(self, counter: Counter, *labels: str) -> Counter:
        key = (id(counter), *labels)
        child = self._counter_children.get(key)
        if child is None:
            child = self._counter_children[key] = counter.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)


class _UpstreamCollector(Collector):
    def __init__(self, upstreams: Callable[[], Mapping[str, Upstream]]) -> None:
        self._upstreams = upstreams

    def collect(self) -> Iterator[Metric]:
        states = GaugeMetricFamily(
            "turnout_backend_breaker_state",
            "Circuit breaker per backend: 0 closed, 1 half-open, 2 open.",
            labels=["backend"],
        )
        in_flight = GaugeMetricFamily(
            "turnout_backend_in_flight", "Requests in flight per backend.", labels=["backend"]
        )
        for name, upstream in self._upstreams().items():
            states.add_metric([name], BREAKER_STATES[upstream.breaker.state])
            in_flight.add_metric([name], upstream.in_flight)
        yield states
        yield in_flight
