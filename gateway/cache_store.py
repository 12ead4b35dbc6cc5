"""Where cache entries live: in this process (the embedded default) or in Redis.

Both implement :class:`CacheStore` and pass the same tests. Stores raise on failure;
:class:`gateway.response_cache.ResponseCache` turns failures into serving uncached.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from typing import Protocol

from gateway.redis_client import close_redis, redis_client


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The entry, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` for ``ttl_s`` seconds from now."""
        ...

    async def lock(self, key: str, ttl_ms: int) -> bool:
        """Take a short lock named ``key``; ``False`` when someone else holds it."""
        ...

    async def unlock(self, key: str) -> None: ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """An LRU bounded by total bytes, with per-entry expiry; not shared between processes."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._locks: dict[str, float] = {}

    async def get(self, key: str) -> bytes | None:
        found = self._entries.get(key)
        if found is None:
            return None
        expires, value = found
        if expires <= time.monotonic():
            self._drop(key)
            return None
        self._entries.move_to_end(key)
        return value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        if len(value) > self._max_bytes:
            return
        self._drop(key)
        self._entries[key] = (time.monotonic() + ttl_s, value)
        self._bytes += len(value)
        while self._bytes > self._max_bytes:
            self._drop(next(iter(self._entries)))

    async def lock(self, key: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        if self._locks.get(key, 0) > now:
            return False
        self._locks[key] = now + ttl_ms / 1000
        return True

    async def unlock(self, key: str) -> None:
        self._locks.pop(key, None)

    async def aclose(self) -> None:
        self._entries.clear()

    def _drop(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1])


class RedisStore:
    """Redis, standalone, Sentinel or Cluster (see :mod:`gateway.redis_client`), with millisecond timeouts."""

    def __init__(self, url: str, timeout_s: float) -> None:
        self._redis = redis_client(url, timeout_s)

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._redis.set(key, value, ex=ttl_s)

    async def lock(self, key: str, ttl_ms: int) -> bool:
        return bool(await self._redis.set(key, b"1", nx=True, px=ttl_ms))

    async def unlock(self, key: str) -> None:
        await self._redis.delete(key)

    async def aclose(self) -> None:
        await close_redis(self._redis)


def open_store(redis_url: str | None, timeout_s: float) -> CacheStore:
    """Redis when a URL is set; otherwise the in-process store, the embedded default."""
    if redis_url is None:
        return MemoryStore()
    return RedisStore(redis_url, timeout_s)
