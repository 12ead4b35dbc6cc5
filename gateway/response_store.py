"""Stored Responses API answers (``store: true``): retrieved, continued with
``previous_response_id``, deleted, each only by the tenant that made it.

With Redis every replica sees every stored response (``tn:resp:<tenant digest>:<id>``, with a TTL);
without it they stay in this process, bounded in bytes, oldest out first. The tenant is part of the
key, so another tenant's id is simply not there: a 404, with nothing to tell it exists. Calls go
through a :class:`~gateway.store_guard.StoreGuard`: a failing store never fails an answer (it is not
stored), and a read that cannot be served is a 503, not a hang.
"""

from __future__ import annotations

import hashlib
import logging
import time
from collections import OrderedDict
from typing import Any

from contracts.errors import StateStoreUnavailable
from gateway.store_guard import StoreGuard, StoreUnavailable

log = logging.getLogger("turnout")
STORE_TIMEOUT_S = 0.5


class ResponseStore:
    def __init__(self, redis: Any | None, ttl_s: int, max_bytes: int, memory_bytes: int) -> None:
        self._redis = redis
        self.ttl_s = ttl_s
        self.max_bytes = max_bytes
        self._memory_bytes = memory_bytes
        self._local: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._held = 0
        self._guard = StoreGuard("response store", STORE_TIMEOUT_S, lambda: None)

    async def put(self, tenant: str, response_id: str, record: bytes) -> bool:
        """Store ``record``; whether it was (too large, or the store failing: not). Never raises."""
        if len(record) > self.max_bytes:
            log.warning("response %s not stored: %d bytes, the limit is %d", response_id, len(record), self.max_bytes)
            return False
        key = _key(tenant, response_id)
        if self._redis is None:
            self._forget(key)
            self._local[key] = (time.monotonic() + self.ttl_s, record)
            self._held += len(record)
            while self._held > self._memory_bytes:
                self._forget(next(iter(self._local)))
            return True
        try:
            await self._guard.call(self._redis.set(key, record, ex=self.ttl_s))
        except StoreUnavailable:
            return False
        return True

    async def get(self, tenant: str, response_id: str) -> bytes | None:
        """The record, or ``None`` when there is none for this tenant; 503 when the store failed."""
        key = _key(tenant, response_id)
        if self._redis is None:
            found = self._local.get(key)
            if found is None or found[0] < time.monotonic():
                self._forget(key)
                return None
            return found[1]
        try:
            record: bytes | None = await self._guard.call(self._redis.get(key))
        except StoreUnavailable:
            raise StateStoreUnavailable("the response store (Redis) did not answer") from None
        return record

    async def delete(self, tenant: str, response_id: str) -> bool:
        """Whether a response of this tenant's was there to delete; 503 when the store failed."""
        key = _key(tenant, response_id)
        if self._redis is None:
            found = self._local.get(key)
            self._forget(key)
            return found is not None and found[0] >= time.monotonic()
        try:
            deleted: int = await self._guard.call(self._redis.delete(key))
        except StoreUnavailable:
            raise StateStoreUnavailable("the response store (Redis) did not answer") from None
        return deleted > 0

    def _forget(self, key: str) -> None:
        found = self._local.pop(key, None)
        if found is not None:
            self._held -= len(found[1])


def _key(tenant: str, response_id: str) -> str:
    """The tenant is hashed (a name may hold any character) and the id is the caller's: both bounded."""
    owner = hashlib.sha256(tenant.encode()).hexdigest()[:32]
    return f"tn:resp:{owner}:{hashlib.sha256(response_id.encode()).hexdigest()[:40]}"
