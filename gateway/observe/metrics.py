"""Prometheus metrics, one registry per app (no process globals)."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

if TYPE_CHECKING:
    from gateway.resilience.upstreams import Upstream

BREAKER_STATES = {"closed": 0, "half_open": 1, "open": 2}
LATENCY_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120)


@dataclass(frozen=True)
class Instrument:
    name: str
    help: str
    labels: tuple[str, ...] = ()
    buckets: tuple[float, ...] = ()
    """Histograms only."""


COUNTERS = {
    "requests": Instrument(
        "turnout_requests",
        "Requests answered, by API, route, variant, backend and HTTP status.",
        ("endpoint", "route", "variant", "backend", "status"),
    ),
    "attempts": Instrument(
        "turnout_backend_attempts", "Calls to backends, by outcome (ok or the error code).", ("backend", "outcome")
    ),
    "decisions": Instrument(
        "turnout_router_decisions", "Routing decisions, by route and what decided.", ("route", "decided_by")
    ),
    "cache": Instrument(
        "turnout_cache_requests", "Cache outcomes (hit, miss, bypass, off) by route.", ("route", "status")
    ),
    "cache_errors": Instrument("turnout_cache_errors", "Failed calls to the cache store."),
    "saved_tokens": Instrument("turnout_cache_saved_tokens", "Tokens not generated thanks to cache hits.", ("route",)),
    "saved_usd": Instrument("turnout_cache_saved_usd", "Dollars not spent thanks to cache hits.", ("route",)),
    "hedges": Instrument("turnout_hedges", "Hedged attempts started, by route.", ("route",)),
    "rate_limited": Instrument(
        "turnout_rate_limited", "Requests refused by a per-key limit, by tenant and limit.", ("tenant", "limit")
    ),
    "limit_errors": Instrument(
        "turnout_rate_limit_errors", "Failed calls to the rate-limit store (the request was let through)."
    ),
    "shadow": Instrument(
        "turnout_shadow_calls",
        "Shadow calls by route, shadow backend and outcome: agreed, disagreed, error, or dropped at the bound.",
        ("route", "backend", "outcome"),
    ),
    "guardrails": Instrument(
        "turnout_guardrail_results",
        "Guardrail checks by guardrail, stage (input, output) and result (pass, block, redact, flag, fallback, error).",
        ("guardrail", "stage", "result"),
    ),
    "golden_runs": Instrument(
        "turnout_golden_runs",
        "Golden set runs by route, why they ran (gate, drift) and result (pass, fail).",
        ("route", "kind", "result"),
    ),
    "warmups": Instrument(
        "turnout_backend_warmups",
        "Synthetic warm-up requests, by backend, why (change, idle) and outcome (ok or the error code).",
        ("backend", "reason", "outcome"),
    ),
    "rules_refused": Instrument(
        "turnout_rules_refused",
        "Rules changes refused (invalid, or not servable here), by source: api, file or store.",
        ("source",),
    ),
}
HISTOGRAMS = {
    "latency": Instrument(
        "turnout_request_duration_seconds",
        "Time from request to the last byte of the answer.",
        ("endpoint", "route", "variant", "backend"),
        LATENCY_BUCKETS,
    ),
    "cold": Instrument(
        "turnout_backend_cold_seconds",
        "A backend's answer (or first chunk) to the first client request after it was idle cold_after_s.",
        ("backend",),
        LATENCY_BUCKETS,
    ),
    "confidence": Instrument(
        "turnout_router_confidence",
        "The router's confidence in the label it chose.",
        ("route",),
        (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99, 1.0),
    ),
}
GAUGES = {
    "golden_pass_ratio": Instrument(
        "turnout_golden_pass_ratio", "The last golden set run's pass ratio, by route and backend.", ("route", "backend")
    ),
    "rules_version": Instrument("turnout_rules_version", "The rules version this process serves."),
    "in_flight": Instrument(
        "turnout_in_flight_requests",
        "Requests and streams being answered when scraped (the scrape itself not counted).",
    ),
}


class Metrics:
    """The instruments of :data:`COUNTERS`, :data:`HISTOGRAMS` and :data:`GAUGES` in a registry of
    their own, and one method per thing observed."""

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=False)
        registry = self.registry
        self._counters = {k: Counter(i.name, i.help, i.labels, registry=registry) for k, i in COUNTERS.items()}
        self._histograms = {
            k: Histogram(i.name, i.help, i.labels, buckets=i.buckets, registry=registry) for k, i in HISTOGRAMS.items()
        }
        self._gauges = {k: Gauge(i.name, i.help, i.labels, registry=registry) for k, i in GAUGES.items()}
        self._children: dict[tuple[str, ...], tuple[Counter, Histogram]] = {}
        self._counter_children: dict[tuple[str, ...], Counter] = {}

    def observe_request(
        self, endpoint: str, route: str, variant: str, backend: str, status: int, seconds: float
    ) -> None:
        key = (endpoint, route, variant, backend, str(status))
        children = self._children.get(key)
        if children is None:  # label lookups cost more than the increments: keep the children
            children = (
                self._counters["requests"].labels(*key),
                self._histograms["latency"].labels(endpoint, route, variant, backend),
            )
            self._children[key] = children
        children[0].inc()
        children[1].observe(seconds)

    def observe_decision(self, route: str, decided_by: str, score: float | None) -> None:
        self._child("decisions", route, decided_by.partition(":")[0]).inc()
        if score is not None:
            self._histograms["confidence"].labels(route).observe(score)

    def observe_cache(self, route: str, status: str, saved_tokens: int = 0, saved_usd: float = 0.0) -> None:
        self._child("cache", route, status).inc()
        if saved_tokens:
            self._counters["saved_tokens"].labels(route).inc(saved_tokens)
            self._counters["saved_usd"].labels(route).inc(saved_usd)

    def observe_cache_error(self) -> None:
        self._counters["cache_errors"].inc()

    def observe_attempt(self, backend: str, outcome: str) -> None:
        self._child("attempts", backend, outcome).inc()

    def observe_hedge(self, route: str) -> None:
        self._child("hedges", route).inc()

    def observe_shadow(self, route: str, backend: str, outcome: str) -> None:
        self._child("shadow", route, backend, outcome).inc()

    def observe_guardrail(self, guardrail: str, stage: str, result: str) -> None:
        self._child("guardrails", guardrail, stage, result).inc()

    def observe_golden_run(self, route: str, backend: str, kind: str, passed: bool, pass_ratio: float) -> None:
        self._counters["golden_runs"].labels(route, kind, "pass" if passed else "fail").inc()
        self._gauges["golden_pass_ratio"].labels(route, backend).set(pass_ratio)

    def observe_cold(self, backend: str, seconds: float) -> None:
        self._histograms["cold"].labels(backend).observe(seconds)

    def observe_warmup(self, backend: str, reason: str, outcome: str) -> None:
        self._counters["warmups"].labels(backend, reason, outcome).inc()

    def observe_rate_limited(self, tenant: str, limit: str) -> None:
        self._counters["rate_limited"].labels(tenant, limit).inc()

    def observe_rate_limit_error(self) -> None:
        self._counters["limit_errors"].inc()

    def observe_in_flight(self, count: int) -> None:
        self._gauges["in_flight"].set(count)

    def observe_rules_version(self, version: int) -> None:
        self._gauges["rules_version"].set(version)

    def observe_rules_refused(self, source: str) -> None:
        self._counters["rules_refused"].labels(source).inc()

    def watch_upstreams(self, upstreams: Callable[[], Mapping[str, Upstream]]) -> None:
        """Breaker states and requests in flight of the backends ``upstreams()`` gives (those of the
        rules serving now), read when Prometheus scrapes."""
        self.registry.register(_UpstreamCollector(upstreams))

    def _child(self, counter: str, *labels: str) -> Counter:
        """The counter's child for ``labels``, looked up once: label lookups cost more than increments."""
        key = (counter, *labels)
        child = self._counter_children.get(key)
        if child is None:
            child = self._counter_children[key] = self._counters[counter].labels(*labels)
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
