"""The variant report: each route's variants, and its shadow, side by side over the same window,
from the report rows every replica flushed (:mod:`gateway.observe.reports`).

Per variant: requests, error rate, p50 and p95 latency, p50 time to a stream's first chunk,
tokens, dollars, cache hit ratio, feedback count and mean score. Per shadow backend: pairs
compared, agreement rate, median similarity, latency and cost against the answers it shadowed,
errors, samples dropped at the in-flight bound, and what it cost.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping

from gateway.observe.reports import DIMENSIONS, FIRST_CHUNK, LATENCY, Key
from gateway.observe.spread import percentile

SHADOW = "~shadow:"
"""The variant label of a shadow backend's rows starts so (no variant name can: names start with a
letter or digit), and ends with the primary it shadowed."""
SIMILARITY = "sim:"
"""Prefix of the shadow pairs' similarity counts, in twentieths (``sim:17``: 0.85 to 0.90)."""
SIMILARITY_STEPS = 20
ARM_COLUMNS = (
    "route", "arm", "requests", "error_rate", "p50_ms", "p95_ms", "p50_first_chunk_ms", "prompt_tokens",
    "completion_tokens", "cost_usd", "hit_ratio", "feedback", "mean_score", "pairs", "agreement",
    "median_similarity", "latency_ratio", "cost_ratio", "shadow_errors", "shadow_dropped",
)  # fmt: skip
"""The flat columns (CSV, table): a variant's figures, or a shadow's."""


Report = dict[str, dict[str, list[dict[str, object]]]]


def shadow_labels(route: str, shadow: str, tenant: str, endpoint: str, primary: str) -> tuple[str, str, str, str, str]:
    """The report row a shadow pair of ``primary`` books into: under the shadow backend, variant
    :data:`SHADOW` and the primary, so its spend is shadow spend."""
    return route, shadow, tenant, endpoint, f"{SHADOW}{primary}"


def similarity_field(similarity: float) -> str:
    """The count a pair's similarity adds to (its twentieth)."""
    return f"{SIMILARITY}{max(min(int(similarity * SIMILARITY_STEPS), SIMILARITY_STEPS - 1), 0)}"


def variant_report(rows: Mapping[Key, Mapping[str, float]], route: str | None = None) -> Report:
    """``{route: {"variants": [figures], "shadows": [figures]}}``: a variant's figures name it
    (``-`` on a route without variants), a shadow's name its backend and the primary it shadowed."""
    arms: defaultdict[tuple[str, str, str], defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    route_at, backend_at, variant_at = (DIMENSIONS.index(d) for d in ("route", "backend", "variant"))
    for key, values in rows.items():
        if key[route_at] == "-" or (route is not None and key[route_at] != route):
            continue
        arm = (key[route_at], key[variant_at], key[backend_at] if key[variant_at].startswith(SHADOW) else "")
        for name, value in values.items():
            arms[arm][name] += value
    report: Report = {}
    for (route_name, variant, backend), values in sorted(arms.items()):
        entry = report.setdefault(route_name, {"variants": [], "shadows": []})
        if variant.startswith(SHADOW):
            named = {"backend": backend, "primary": variant.removeprefix(SHADOW)}
            entry["shadows"].append(named | _shadow_figures(values))
        else:
            entry["variants"].append({"variant": variant} | _variant_figures(values))
    return report


def flat(report: Report) -> list[dict[str, object]]:
    """One row per variant and per shadow, in :data:`ARM_COLUMNS`."""
    out: list[dict[str, object]] = []
    for route, entry in report.items():
        for figures in entry["variants"]:
            out.append(dict.fromkeys(ARM_COLUMNS) | figures | {"route": route, "arm": figures["variant"]})
        for figures in entry["shadows"]:
            arm = f"shadow {figures['backend']} of {figures['primary']}"
            out.append(dict.fromkeys(ARM_COLUMNS) | figures | {"route": route, "arm": arm})
    return [{column: row[column] for column in ARM_COLUMNS} for row in out]


def _variant_figures(values: Mapping[str, float]) -> dict[str, object]:
    requests = values.get("requests", 0.0)
    cacheable = values.get("hits", 0.0) + values.get("misses", 0.0)
    feedback = values.get("feedback", 0.0)
    return {
        "requests": round(requests),
        "error_rate": _ratio(values.get("errors", 0.0), requests),
        "p50_ms": percentile(_buckets(values, LATENCY), 0.5),
        "p95_ms": percentile(_buckets(values, LATENCY), 0.95),
        "p50_first_chunk_ms": percentile(_buckets(values, FIRST_CHUNK), 0.5),
        "prompt_tokens": round(values.get("prompt_tokens", 0.0)),
        "completion_tokens": round(values.get("completion_tokens", 0.0)),
        "cost_usd": round(values.get("cost_usd", 0.0), 6),
        "hit_ratio": _ratio(values.get("hits", 0.0), cacheable),
        "feedback": round(feedback),
        "mean_score": _ratio(values.get("feedback_score", 0.0), feedback),
    }


def _shadow_figures(values: Mapping[str, float]) -> dict[str, object]:
    pairs = values.get("shadow_pairs", 0.0)
    similarity = _buckets(values, SIMILARITY)
    median = _median_step(similarity)
    return {
        "pairs": round(pairs),
        "agreement": _ratio(values.get("shadow_agreed", 0.0), pairs),
        "median_similarity": None if median is None else round(median, 3),
        "latency_ratio": _ratio(values.get("shadow_ms", 0.0), values.get("shadowed_ms", 0.0)),
        "cost_ratio": _ratio(values.get("shadow_usd", 0.0), values.get("shadowed_usd", 0.0)),
        "shadow_errors": round(values.get("shadow_errors", 0.0)),
        "shadow_dropped": round(values.get("shadow_dropped", 0.0)),
        "cost_usd": round(values.get("shadow_usd", 0.0), 6),
    }


def _buckets(values: Mapping[str, float], prefix: str) -> dict[int, float]:
    return {int(name[len(prefix) :]): count for name, count in values.items() if name.startswith(prefix) and count}


def _median_step(counts: Mapping[int, float]) -> float | None:
    """The median similarity, as the middle of its twentieth."""
    total = sum(counts.values())
    if not total:
        return None
    seen = 0.0
    for step in sorted(counts):
        seen += counts[step]
        if seen >= total / 2:
            return (step + 0.5) / SIMILARITY_STEPS
    return None


def _ratio(part: float, whole: float) -> float | None:
    return round(part / whole, 4) if whole else None
