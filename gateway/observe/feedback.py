"""Feedback on answers: which route, variant and backend served each request id, for a while, and
the scores clients send back about them, added into the reports per route, variant and backend.

What served a request is remembered for ``TURNOUT_FEEDBACK_TTL_S`` (7 days; 0 turns feedback off).
With Redis every replica sees it: one key per answered request (``tn:fb:<digest of tenant and id>``,
about 200 bytes with Redis's own overhead, measured: a million requests a day kept 7 days is ~1.4 GB),
written in one pipeline per second off the request path. Without Redis the process keeps the last
``TURNOUT_FEEDBACK_MAX_IDS`` (oldest out first). The tenant is part of the key: another tenant's
request id is simply not there, which answers 404 exactly as an unknown or expired one does.

A score replaces the one before it for the same request (the reports move by the difference), so
a client may correct itself without counting twice.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

from contracts.errors import StateStoreUnavailable
from gateway.observe.periodic import Periodic
from gateway.observe.reports import ReportBook
from gateway.store_guard import StoreGuard, StoreUnavailable

log = logging.getLogger("turnout")
feedback_log = logging.getLogger("turnout.feedback")
SEPARATOR = "\x1f"
STORE_TIMEOUT_S = 0.5
FLUSH_INTERVAL_S = 1.0
MAX_PENDING = 100_000
"""Records waiting for the next flush; beyond it (Redis unreachable for long) the oldest are dropped."""


@dataclass(frozen=True, slots=True)
class Served:
    """What answered one request: where its feedback is added up."""

    route: str
    variant: str
    backend: str
    endpoint: str

    def encode(self) -> bytes:
        return SEPARATOR.join((self.route, self.variant, self.backend, self.endpoint)).encode()

    @classmethod
    def decode(cls, raw: bytes) -> Served:
        route, variant, backend, endpoint = raw.decode().split(SEPARATOR)
        return cls(route, variant, backend, endpoint)


@dataclass(slots=True)
class _Remembered:
    served: Served
    expires: float
    score: float | None = None


class FeedbackBook:
    def __init__(self, redis: Any | None, reports: ReportBook, ttl_s: int, max_ids: int) -> None:
        self._redis = redis
        self._reports = reports
        self.ttl_s = ttl_s
        self._max_ids = max_ids
        self._local: OrderedDict[tuple[str, str], _Remembered] = OrderedDict()
        """Without Redis: every remembered request. With Redis: those not yet flushed."""
        self._guard = StoreGuard("feedback store", STORE_TIMEOUT_S, lambda: None)
        self._flushing = Periodic(self.flush, FLUSH_INTERVAL_S)

    @property
    def is_on(self) -> bool:
        return self.ttl_s > 0

    def remember(self, tenant: str, request_id: str, served: Served) -> None:
        """Note what served ``request_id``; no I/O here (with Redis, the next flush writes it)."""
        if not self.is_on or request_id == "-":
            return
        key = (tenant, request_id)  # hashed into a store key only when flushed, off the request path
        self._local[key] = _Remembered(served, time.monotonic() + self.ttl_s)
        bound = self._max_ids if self._redis is None else MAX_PENDING
        while len(self._local) > bound:
            self._local.popitem(last=False)

    async def score(
        self, tenant: str, request_id: str, score: float, comment: str | None
    ) -> tuple[Served, bool] | None:
        """Record ``score`` for the tenant's request: what served it and whether a score was replaced;
        ``None`` when the tenant has no such request (unknown, expired or another's). 503 when the
        store did not answer."""
        key = _key(tenant, request_id)
        if self._redis is None or (tenant, request_id) in self._local:
            found = self._local.get((tenant, request_id))
            if found is None or found.expires < time.monotonic():
                return None
            previous, found.score = found.score, score
            if self._redis is not None:  # not flushed yet: the score goes to the store already
                previous = await self._swap_score(key, score, found.expires - time.monotonic())
            served = found.served
        else:
            served_raw = await self._read(key)
            if served_raw is None:
                return None
            served = Served.decode(served_raw)
            ttl = await self._read_ttl(key)
            previous = await self._swap_score(key, score, ttl)
        count = 0.0 if previous is not None else 1.0
        delta = score - (previous or 0.0)
        labels = (served.route, served.backend, tenant, served.endpoint, served.variant)
        self._reports.add(labels, {"feedback": count, "feedback_score": delta})
        feedback_log.info(
            "feedback",
            extra={"fields": {"request_id": request_id, "tenant": tenant, "route": served.route,
                              "variant": served.variant, "backend": served.backend, "score": score,
                              "replaced": previous is not None, "comment": comment or ""}},
        )  # fmt: skip
        return served, previous is not None

    @property
    def _store(self) -> Any:
        assert self._redis is not None, "only with Redis"
        return self._redis

    def start(self) -> None:
        if self._redis is not None and self.is_on:
            self._flushing.start()

    async def aclose(self) -> None:
        if self._flushing.is_running:
            await self._flushing.stop()
            await self.flush()

    async def flush(self) -> None:
        """Write what served the requests since the last flush, one pipeline; on failure they wait."""
        if self._redis is None or not self._local:
            return
        now = time.monotonic()
        batch = [(key, record) for key, record in self._local.items() if record.expires > now]
        pipe = self._redis.pipeline(transaction=False)
        for (tenant, request_id), record in batch:
            pipe.set(_key(tenant, request_id), record.served.encode(), ex=max(int(record.expires - now), 1))
        try:
            await self._guard.call(pipe.execute())
        except StoreUnavailable:
            return
        for key, record in batch:
            if self._local.get(key) is record:
                del self._local[key]

    async def _read(self, key: str) -> bytes | None:
        try:
            found: bytes | None = await self._guard.call(self._store.get(key))
        except StoreUnavailable:
            raise StateStoreUnavailable("the feedback store (Redis) did not answer") from None
        return found

    async def _read_ttl(self, key: str) -> float:
        try:
            ttl: int = await self._guard.call(self._store.ttl(key))
        except StoreUnavailable:
            raise StateStoreUnavailable("the feedback store (Redis) did not answer") from None
        return float(max(ttl, 1))

    async def _swap_score(self, key: str, score: float, ttl_s: float) -> float | None:
        """Store the request's score, answering the one it replaces."""
        try:
            previous: bytes | None = await self._guard.call(
                self._store.set(f"{key}:score", repr(score), ex=max(int(ttl_s), 1), get=True)
            )
        except StoreUnavailable:
            raise StateStoreUnavailable("the feedback store (Redis) did not answer") from None
        return float(previous) if previous is not None else None


def _key(tenant: str, request_id: str) -> str:
    """One digest of both (128 bits): the store names neither, and another tenant's id is not there."""
    return f"tn:fb:{hashlib.sha256(f'{tenant}{SEPARATOR}{request_id}'.encode()).hexdigest()[:32]}"
