"""The variant report's arithmetic: percentiles from bucket counts, rows of every replica summed."""

from __future__ import annotations

import random

import pytest

from gateway.observe.reports import Outcome, ReportBook, deltas_of
from gateway.observe.spread import bucket_of, percentile
from gateway.observe.variant_report import ARM_COLUMNS, flat, variant_report


def test_a_percentile_read_from_buckets_is_within_7_percent() -> None:
    draw = random.Random(3)
    latencies = sorted(draw.lognormvariate(4, 1) for _ in range(5000))
    counts: dict[int, float] = {}
    for ms in latencies:
        counts[bucket_of(ms)] = counts.get(bucket_of(ms), 0) + 1
    for q in (0.5, 0.95, 0.99):
        true = latencies[int(q * len(latencies))]
        assert percentile(counts, q) == pytest.approx(true, rel=0.07)
    assert percentile({}, 0.5) is None
    assert bucket_of(0.2) == 0
    assert bucket_of(10**9) == bucket_of(10**10)  # the last bucket holds the rest


async def test_two_books_rows_add_up_per_variant() -> None:
    one, two = ReportBook(None), ReportBook(None)
    for book, ms in ((one, 10.0), (two, 30.0)):
        for cache in ("miss", "miss", "hit", "error"):
            outcome = Outcome("sum", "a", "t", cache, 10, 5, 0.01, 0.02, "chat", "current", latency_ms=ms)
            book.record(outcome)
    rows = await one.totals(3600)
    for key, values in (await two.totals(3600)).items():
        merged = rows.setdefault(key, {})
        for name, value in values.items():
            merged[name] = merged.get(name, 0.0) + value
    (current,) = variant_report(rows)["sum"]["variants"]
    assert current["requests"] == 8
    assert current["error_rate"] == 0.25
    assert current["hit_ratio"] == round(2 / 6, 4)
    assert current["p50_ms"] == pytest.approx(10, rel=0.07)
    assert current["p95_ms"] == pytest.approx(30, rel=0.07)
    assert current["cost_usd"] == pytest.approx(0.04)  # misses cost; hits saved; errors nothing
    assert [row["arm"] for row in flat(variant_report(rows))] == ["current"]
    assert list(flat(variant_report(rows))[0]) == list(ARM_COLUMNS)


def test_a_request_without_a_latency_adds_no_bucket() -> None:
    assert not [name for name in deltas_of(Outcome("r", "b", "t", "miss")) if name.startswith("ms:")]
