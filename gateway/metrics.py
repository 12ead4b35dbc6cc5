"""Prometheus metrics, one registry per app (no process globals)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest

LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        self._requests = Counter(
            "switchyard_requests",
            "Requests answered, by route, backend and HTTP status.",
            ["endpoint", "route", "backend", "status"],
            registry=self.registry,
        )
        self._latency = Histogram(
            "switchyard_request_duration_seconds",
            "Time from request to the last byte of the answer.",
            ["endpoint", "route", "backend"],
            buckets=LATENCY_BUCKETS,
            registry=self.registry,
        )
        self._attempts = Counter(
            "switchyard_backend_attempts",
            "Calls to backends, by outcome (ok or the error code).",
            ["backend", "outcome"],
            registry=self.registry,
        )
        self._decisions = Counter(
            "switchyard_router_decisions",
            "Routing decisions, by route and what decided.",
            ["route", "decided_by"],
            registry=self.registry,
        )
        self._confidence = Histogram(
            "switchyard_router_confidence",
            "The router's confidence in the label it chose.",
            ["route"],
            buckets=(0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
            registry=self.registry,
        )
        self._cache = Counter(
            "switchyard_cache_requests",
            "Cache outcomes (hit, miss, bypass, off) by route.",
            ["route", "status"],
            registry=self.registry,
        )
        self._cache_errors = Counter(
            "switchyard_cache_errors", "Failed calls to the cache store.", registry=self.registry
        )
        self._saved_tokens = Counter(
            "switchyard_cache_saved_tokens",
            "Tokens not generated thanks to cache hits.",
            ["route"],
            registry=self.registry,
        )
        self._saved_usd = Counter(
            "switchyard_cache_saved_usd", "Dollars not spent thanks to cache hits.", ["route"], registry=self.registry
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

    def _child(self, counter: Counter, *labels: str) -> Counter:
        key = (id(counter), *labels)
        child = self._counter_children.get(key)
        if child is None:
            child = self._counter_children[key] = counter.labels(*labels)
        return child

    def render(self) -> bytes:
        return generate_latest(self.registry)
