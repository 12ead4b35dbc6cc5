"""The traffic view: per minute, per route or backend, what the console draws as lines over time.

Each request adds to a minute's row (a :class:`~gateway.observe.reports.ReportBook` with one-minute
periods, kept two days, flushed into Redis by every replica as the cost report is): requests,
errors, cache hits and misses, latency and first-chunk buckets, dollars spent and saved, and who
decided the route, with the router's confidence.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from gateway.observe.reports import DIMENSIONS, FIRST_CHUNK, LATENCY, Key
from gateway.observe.spread import percentile

PERIOD_S = 60
KEEP_S = 2 * 24 * 3600
DECIDED = "decided:"
MIN_LATENCY_SAMPLES = 5
"""Fewer answers than this in a minute: the percentiles are shown as too few to say."""


def with_decision(deltas: dict[str, float], decided_by: str, score: float | None) -> None:
    """Add to a request's ``deltas`` (:func:`~gateway.observe.reports.deltas_of`) who decided its
    route, and the router's confidence when a model did."""
    deltas[f"{DECIDED}{decided_by.partition(':')[0]}"] = 1.0
    if score is not None:
        deltas["confidence_sum"], deltas["confidences"] = score, 1.0


def traffic_series(rows: Mapping[Key, Mapping[str, float]], by: str) -> list[dict[str, object]]:
    """One point per minute and route (or backend), oldest first."""
    at, period_at = DIMENSIONS.index(by), 0
    summed: defaultdict[tuple[str, str], defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key, values in rows.items():
        if key[at] == "-":
            continue
        point = summed[(key[period_at], key[at])]
        for name, value in values.items():
            point[name] += value
    return [_point(minute, series, values) for (minute, series), values in sorted(summed.items())]


def _point(minute: str, series: str, values: Mapping[str, float]) -> dict[str, object]:
    latency = {int(n[len(LATENCY) :]): c for n, c in values.items() if n.startswith(LATENCY)}
    first = {int(n[len(FIRST_CHUNK) :]): c for n, c in values.items() if n.startswith(FIRST_CHUNK)}
    answered = sum(latency.values())
    cacheable = values.get("hits", 0.0) + values.get("misses", 0.0)
    confidences = values.get("confidences", 0.0)
    return {
        "minute": minute,
        "series": series,
        "requests": round(values.get("requests", 0.0)),
        "errors": round(values.get("errors", 0.0)),
        "latency_samples": round(answered),
        "p50_ms": percentile(latency, 0.5) if answered >= MIN_LATENCY_SAMPLES else None,
        "p95_ms": percentile(latency, 0.95) if answered >= MIN_LATENCY_SAMPLES else None,
        "p50_first_chunk_ms": percentile(first, 0.5) if sum(first.values()) >= MIN_LATENCY_SAMPLES else None,
        "hit_ratio": round(values.get("hits", 0.0) / cacheable, 4) if cacheable else None,
        "decided_by": {n[len(DECIDED) :]: round(c) for n, c in values.items() if n.startswith(DECIDED)},
        "mean_confidence": round(values.get("confidence_sum", 0.0) / confidences, 4) if confidences else None,
        "cost_usd": round(values.get("cost_usd", 0.0), 6),
        "saved_usd": round(values.get("saved_usd", 0.0), 6),
        "routing_saved_usd": round(values.get("routing_saved_usd", 0.0), 6),
    }
