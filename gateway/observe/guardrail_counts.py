"""Guardrail results per minute and route, in the traffic view's rows (from every replica), for
the console's Guardrails view: how often each check passed, blocked, redacted, flagged, fell back
or could not answer."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping

from gateway.observe.reports import DIMENSIONS, Key

GUARD = "guard:"


def with_guardrails(deltas: dict[str, float], results: Iterable[tuple[str, str, str]]) -> None:
    """Add each ``(guardrail, stage, result)`` of one request to its traffic ``deltas``."""
    for guardrail, stage, result in results:
        field = f"{GUARD}{guardrail}:{stage}:{result}"
        deltas[field] = deltas.get(field, 0.0) + 1.0


Counts = dict[str, dict[str, dict[str, dict[str, int]]]]
"""Route → guardrail → stage → result → requests."""


def guardrail_counts(rows: Mapping[Key, Mapping[str, float]]) -> Counts:
    at = DIMENSIONS.index("route")
    summed: defaultdict[str, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
    for key, values in rows.items():
        for field, value in values.items():
            if field.startswith(GUARD):
                summed[key[at]][field[len(GUARD) :]] += value
    counts: Counts = {}
    for route, fields in summed.items():
        for field, value in fields.items():
            guardrail, stage, result = field.rsplit(":", 2)
            by_stage = counts.setdefault(route, {}).setdefault(guardrail, {}).setdefault(stage, {})
            by_stage[result] = by_stage.get(result, 0) + round(value)
    return counts
