"""Cost reports: what every request cost, and what the cache and the router saved.

Requests are tallied in process (no I/O on the request path) per hour, route, backend, tenant,
endpoint (the API that was asked: chat, responses, messages, embeddings) and variant (a rollout's
arm, ``-`` on a route without variants), with their latencies as bucket counts
(:mod:`gateway.observe.spread`) for the variant report's percentiles. With Redis the tally
is flushed every second into one hash per hour (``HINCRBYFLOAT``), so all replicas add into the
same figures; without Redis the tally is the report. A flush that
fails keeps its deltas for the next one.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import secrets
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

from contracts.errors import StateStoreUnavailable
from gateway.observe.periodic import Periodic
from gateway.observe.spread import bucket_of
from gateway.redis_client import REDIS_FAILURES, close_redis, redis_client
from gateway.store_guard import StoreGuard, StoreUnavailable

log = logging.getLogger("turnout")
FIELDS = (
    "requests", "hits", "misses", "bypasses", "offs", "errors",
    "prompt_tokens", "completion_tokens", "cost_usd", "saved_tokens", "saved_usd", "routing_saved_usd",
    "shadow_usd", "guardrail_blocked", "guardrail_redacted", "guardrail_flagged", "guardrail_fell_back",
)  # fmt: skip
COUNTS = frozenset(name for name in FIELDS if not name.endswith("_usd"))
"""Requests and tokens: whole numbers, summed as floats (HINCRBYFLOAT) and reported as integers."""
DIMENSIONS = ("hour", "route", "backend", "tenant", "endpoint", "variant")
SEPARATOR = "\x1f"
KEEP_S = 40 * 24 * 3600
FLUSH_MARK_S = 600
"""How long Redis remembers a flush it applied, so a resent one (its answer was lost) is not counted
twice; a flush is resent every second until it is answered."""
FLUSH_SCRIPT = """
if not redis.call('SET', KEYS[2], '1', 'NX', 'EX', ARGV[2]) then
  return 0
end
for i = 3, #ARGV, 2 do
  redis.call('HINCRBYFLOAT', KEYS[1], ARGV[i], ARGV[i + 1])
end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
"""
Key = tuple[str, str, str, str, str, str]  # hour, route, backend, tenant, endpoint, variant
OLDER_ENDPOINT = "chat"
"""The endpoint of rows tallied before reports named one: chat completions, then the only API."""
NO_VARIANT = "-"
"""The variant of a route without variants, and of rows tallied before reports named one."""
LATENCY, FIRST_CHUNK = "ms:", "ttft_ms:"
"""Prefixes of the latency bucket counts: the whole request, and a stream's first chunk."""


GUARDRAIL_FIELDS = {
    "blocked": "guardrail_blocked",
    "redacted": "guardrail_redacted",
    "flagged": "guardrail_flagged",
    "fell_back": "guardrail_fell_back",
}


@dataclass(slots=True)
class Outcome:
    route: str
    backend: str
    tenant: str
    cache: str
    """hit, miss, bypass or off; ``error`` for a failed request."""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    """What the answer cost when it was generated (a hit costs nothing now: this is what it saved)."""
    reference_cost_usd: float = 0.0
    """What the same tokens would have cost on the reference (most expensive) backend."""
    endpoint: str = OLDER_ENDPOINT
    variant: str = NO_VARIANT
    latency_ms: float | None = None
    first_chunk_ms: float | None = None
    """A stream's time to its first chunk from the backend."""
    guardrails: str = "none"
    """The gravest guardrail result on the request: blocked, fell_back, redacted, flagged, errored,
    passed, or none (no guardrail ran); the first four are counted."""


@functools.lru_cache(maxsize=256)
def _period_label(index: int, period_s: int) -> str:
    """Hours read ``2026-12-03T15``, minutes ``2026-12-03T15:04``: labels sort as their times do."""
    return time.strftime("%Y-%m-%dT%H" if period_s >= 3600 else "%Y-%m-%dT%H:%M", time.gmtime(index * period_s))


def period_of(timestamp: float, period_s: int = 3600) -> str:
    return _period_label(int(timestamp // period_s), period_s)


def deltas_of(outcome: Outcome) -> dict[str, float]:
    tokens = outcome.prompt_tokens + outcome.completion_tokens
    counted = {"hit": "hits", "miss": "misses", "bypass": "bypasses", "off": "offs", "error": "errors"}
    deltas = {"requests": 1.0, counted[outcome.cache]: 1.0}
    if outcome.guardrails in GUARDRAIL_FIELDS:
        deltas[GUARDRAIL_FIELDS[outcome.guardrails]] = 1.0
    if outcome.latency_ms is not None:
        deltas[f"{LATENCY}{bucket_of(outcome.latency_ms)}"] = 1.0
    if outcome.first_chunk_ms is not None:
        deltas[f"{FIRST_CHUNK}{bucket_of(outcome.first_chunk_ms)}"] = 1.0
    if outcome.cache == "hit":
        return deltas | {"saved_tokens": tokens, "saved_usd": outcome.cost_usd}
    if outcome.cache == "error":
        return deltas
    routing_saved = max(outcome.reference_cost_usd - outcome.cost_usd, 0.0)
    return deltas | {
        "prompt_tokens": outcome.prompt_tokens,
        "completion_tokens": outcome.completion_tokens,
        "cost_usd": outcome.cost_usd,
        "routing_saved_usd": routing_saved,
    }


class ReportBook:
    def __init__(
        self,
        redis: Any | None,
        flush_interval_s: float = 1.0,
        call_timeout_s: float = 1.0,
        owns_client: bool = False,
        period_s: int = 3600,
        prefix: str = "tn:r",
        keep_s: int = KEEP_S,
    ) -> None:
        """``redis``: the process's shared client (``None``: the tally stays in this process, its
        rows older than ``keep_s`` dropped). Rows are tallied per ``period_s`` (an hour for the cost
        report, a minute for the traffic view) into one hash per period under ``prefix``."""
        self._period_s, self._prefix, self._keep_s = period_s, prefix, keep_s
        self._current = ""
        self._pending: defaultdict[Key, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._local: defaultdict[Key, defaultdict[str, float]] = defaultdict(lambda: defaultdict(float))
        self._redis = redis
        self._owns_client = owns_client
        self._timeout_s = call_timeout_s
        self._flushing = Periodic(self.flush, flush_interval_s)
        self._unsent: list[tuple[str, defaultdict[Key, defaultdict[str, float]]]] = []
        self._guard = StoreGuard("report store", call_timeout_s, lambda: None)
        """Flushes not yet answered by Redis, oldest first, each with its id."""

    def record(self, outcome: Outcome, now: float | None = None) -> None:
        labels = (outcome.route, outcome.backend, outcome.tenant, outcome.endpoint, outcome.variant)
        self.add(labels, deltas_of(outcome), now)

    def add(self, labels: tuple[str, str, str, str, str], deltas: dict[str, float], now: float | None = None) -> None:
        """Add ``deltas`` to the row of ``labels`` (route, backend, tenant, endpoint, variant) this period."""
        now = now or time.time()
        period = period_of(now, self._period_s)
        if period != self._current:
            self._current = period
            if self._redis is None:
                self._forget_older_than(period_of(now - self._keep_s, self._period_s))
        row = (self._pending if self._redis else self._local)[(period, *labels)]
        for name, value in deltas.items():
            row[name] += value

    def _forget_older_than(self, oldest: str) -> None:
        for key in [key for key in self._local if key[0] < oldest]:
            del self._local[key]

    @classmethod
    def from_url(cls, url: str, flush_interval_s: float = 1.0) -> ReportBook:
        """A book with a Redis client of its own (the gateway shares the process's client instead)."""
        return cls(redis_client(url), flush_interval_s, owns_client=True)

    def start(self) -> None:
        if self._redis is not None:
            self._flushing.start()

    async def aclose(self) -> None:
        await self._flushing.stop()
        if self._redis is not None:
            await self.flush()
            if self._owns_client:
                await close_redis(self._redis)

    async def flush(self) -> None:
        """Add this process's pending deltas to Redis, once: each flush has an id that Redis records
        as it applies it (one script per hour's hash), and a flush whose answer was lost is resent
        with the same id, so it never counts twice. On failure it waits for the next flush."""
        if self._redis is None:
            return
        if self._pending:
            self._unsent.append((secrets.token_hex(8), self._pending))
            self._pending = defaultdict(lambda: defaultdict(float))
        while self._unsent:
            flush_id, pending = self._unsent[0]
            try:  # the request path's store policy: one log line an outage, a back-off, no hammering
                await self._guard.call(self._send(flush_id, pending))
            except StoreUnavailable:
                return  # sent again with the next flush
            self._unsent.pop(0)

    async def _send(self, flush_id: str, pending: defaultdict[Key, defaultdict[str, float]]) -> None:
        assert self._redis is not None
        by_hour: defaultdict[str, list[object]] = defaultdict(list)
        for (hour, *labels), values in pending.items():
            for name, value in values.items():
                by_hour[hour] += [SEPARATOR.join((*labels, name)), value]
        for hour, increments in by_hour.items():
            report = f"{self._prefix}:{{{hour}}}"
            mark = f"{report}:flushed:{flush_id}"  # one Cluster slot
            await self._redis.eval(FLUSH_SCRIPT, 2, report, mark, self._keep_s, FLUSH_MARK_S, *increments)

    async def totals(self, since_s: float, now: float | None = None) -> dict[Key, dict[str, float]]:
        """Every (period, route, backend, tenant, endpoint, variant) row since ``since_s`` seconds ago."""
        now = now or time.time()
        hours = sorted({period_of(t, self._period_s) for t in _period_starts(now - since_s, now, self._period_s)})
        if self._redis is None:
            return {key: dict(values) for key, values in self._local.items() if key[0] in hours}
        await self.flush()
        pipe = self._redis.pipeline(transaction=False)
        for hour in hours:
            pipe.hgetall(f"{self._prefix}:{{{hour}}}")
            pipe.hgetall(f"{self._prefix}:{hour}")  # written before flushes were made idempotent
        try:
            async with asyncio.timeout(self._timeout_s):
                answers = await pipe.execute()
        except (*REDIS_FAILURES, TimeoutError) as exc:
            raise StateStoreUnavailable(f"the report store (Redis) did not answer: {exc or 'timed out'}") from None
        rows: defaultdict[Key, dict[str, float]] = defaultdict(dict)
        for hour, (found, older) in zip(hours, zip(answers[::2], answers[1::2], strict=True), strict=True):
            for field, value in [*found.items(), *older.items()]:
                *labels, name = field.decode().split(SEPARATOR)
                row = rows[(hour, *_with_older_labels(labels))]
                row[name] = row.get(name, 0.0) + float(value)
        return dict(rows)


def _with_older_labels(labels: list[str]) -> tuple[str, str, str, str, str]:
    """A stored row's labels; one written before a dimension existed gets that dimension's older value."""
    if len(labels) == 3:
        labels = [*labels, OLDER_ENDPOINT]
    if len(labels) == 4:
        labels = [*labels, NO_VARIANT]
    route, backend, tenant, endpoint, variant = labels
    return route, backend, tenant, endpoint, variant


def _period_starts(start: float, end: float, period_s: int) -> list[float]:
    first = start - start % period_s
    return [first + period_s * i for i in range(int((end - first) // period_s) + 1)]


def group(rows: dict[Key, dict[str, float]], by: list[str]) -> list[dict[str, object]]:
    """Sum rows over the dimensions not in ``by``; add the hit ratio."""
    grouped: dict[tuple[str, ...], dict[str, float]] = {}
    for key, values in rows.items():
        label = tuple(key[DIMENSIONS.index(d)] for d in by)
        target = grouped.setdefault(label, dict.fromkeys(FIELDS, 0.0))
        for name, value in values.items():
            if name in target:  # the cost fields; latency buckets and the rest are other reports'
                target[name] += value
    out: list[dict[str, object]] = []
    for label, values in sorted(grouped.items()):
        cacheable = values["hits"] + values["misses"]
        row: dict[str, object] = dict(zip(by, label, strict=True))
        row |= {name: round(value) if name in COUNTS else round(value, 6) for name, value in values.items()}
        row["hit_ratio"] = round(values["hits"] / cacheable, 4) if cacheable else 0.0
        out.append(row)
    return out
