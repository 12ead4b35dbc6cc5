"""Where cache entries live: in this process (the embedded default) or in Redis.

Both implement :class:`CacheStore` and pass the same tests. Stores raise on failure;
:class:`gateway.cache.response_cache.ResponseCache` turns failures into serving uncached.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import time
from collections import OrderedDict
from typing import Any, Protocol

import numpy as np
import orjson
from numpy.typing import NDArray

from gateway.redis_client import close_redis, redis_client

MAX_VECTORS_PER_SPACE = 10_000


UNLOCK_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""

READ_OR_LOCK_SCRIPT = """
local entry = redis.call('GET', KEYS[1])
if entry then
  return {1, entry}
end
if redis.call('SET', KEYS[2], ARGV[1], 'NX', 'PX', ARGV[2]) then
  return {2}
end
return {0}
"""

WRITE_AND_UNLOCK_SCRIPT = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
if redis.call('GET', KEYS[2]) == ARGV[3] then
  redis.call('DEL', KEYS[2])
end
return 1
"""

RENEW_SCRIPT = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('PEXPIRE', KEYS[1], ARGV[2])
end
return 0
"""


class CacheStore(Protocol):
    async def get(self, key: str) -> bytes | None:
        """The entry, or ``None`` when absent or expired."""
        ...

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        """Store ``value`` for ``ttl_s`` seconds from now."""
        ...

    async def lock(self, key: str, ttl_ms: int) -> str | None:
        """Take a short lock named ``key``: its owner's token, or ``None`` when someone else holds it."""
        ...

    async def unlock(self, key: str, token: str) -> None:
        """Release the lock if ``token`` still owns it (it may have expired and been taken since)."""
        ...

    async def renew(self, key: str, token: str, ttl_ms: int) -> bool:
        """Extend the lock to ``ttl_ms`` from now if ``token`` still owns it; says whether it did."""
        ...

    async def read_or_lock(self, key: str, lock: str, ttl_ms: int) -> tuple[bytes | None, str | None]:
        """In one round trip: the entry if there is one; otherwise the lock's new token, or ``None``
        when someone else holds it."""
        ...

    async def write_and_unlock(self, key: str, value: bytes, ttl_s: int, lock: str, token: str) -> None:
        """In one round trip: store ``value`` and release the lock if ``token`` still owns it."""
        ...

    async def vadd(self, space: str, member: str, vector: NDArray[np.float32], tag: str, ttl_s: int) -> None:
        """Add a unit vector to the set ``space`` (which lives ``ttl_s`` from its latest addition)."""
        ...

    async def vsim(self, space: str, vector: NDArray[np.float32], count: int) -> list[tuple[str, float, str]]:
        """The nearest members: (member, cosine similarity, tag), best first."""
        ...

    async def aclose(self) -> None: ...


class MemoryStore:
    """An LRU bounded by total bytes, with per-entry expiry; not shared between processes."""

    def __init__(self, max_bytes: int = 256 * 1024 * 1024) -> None:
        self._max_bytes = max_bytes
        self._bytes = 0
        self._entries: OrderedDict[str, tuple[float, bytes]] = OrderedDict()
        self._locks: dict[str, tuple[float, str]] = {}
        """Lock name to (expiry, owner's token)."""
        self._vectors: dict[str, tuple[float, dict[str, tuple[NDArray[np.float32], str]]]] = {}

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

    async def lock(self, key: str, ttl_ms: int) -> str | None:
        now = time.monotonic()
        if self._locks.get(key, (0.0, ""))[0] > now:
            return None
        token = secrets.token_hex(16)
        self._locks[key] = (now + ttl_ms / 1000, token)
        return token

    async def unlock(self, key: str, token: str) -> None:
        if self._locks.get(key, (0.0, ""))[1] == token:
            del self._locks[key]

    async def read_or_lock(self, key: str, lock: str, ttl_ms: int) -> tuple[bytes | None, str | None]:
        entry = await self.get(key)
        return (entry, None) if entry is not None else (None, await self.lock(lock, ttl_ms))

    async def write_and_unlock(self, key: str, value: bytes, ttl_s: int, lock: str, token: str) -> None:
        await self.set(key, value, ttl_s)
        await self.unlock(lock, token)

    async def renew(self, key: str, token: str, ttl_ms: int) -> bool:
        now = time.monotonic()
        expires, owner = self._locks.get(key, (0.0, ""))
        if owner != token or expires <= now:
            return False
        self._locks[key] = (now + ttl_ms / 1000, token)
        return True

    async def vadd(self, space: str, member: str, vector: NDArray[np.float32], tag: str, ttl_s: int) -> None:
        members = self._vector_space(space)
        members[member] = (vector, tag)
        self._vectors[space] = (time.monotonic() + ttl_s, members)
        while len(members) > MAX_VECTORS_PER_SPACE:
            members.pop(next(iter(members)))

    async def vsim(self, space: str, vector: NDArray[np.float32], count: int) -> list[tuple[str, float, str]]:
        members = self._vector_space(space)
        scored = [(member, float(np.dot(v, vector)), tag) for member, (v, tag) in members.items()]
        return sorted(scored, key=lambda item: -item[1])[:count]

    def _vector_space(self, space: str) -> dict[str, tuple[NDArray[np.float32], str]]:
        expires, members = self._vectors.get(space, (0.0, {}))
        return members if expires > time.monotonic() else {}

    async def aclose(self) -> None:
        self._entries.clear()
        self._vectors.clear()

    def _drop(self, key: str) -> None:
        found = self._entries.pop(key, None)
        if found is not None:
            self._bytes -= len(found[1])


class RedisStore:
    """Redis, standalone, Sentinel or Cluster (see :mod:`gateway.redis_client`), with millisecond timeouts."""

    def __init__(self, client: Any, owns_client: bool = False) -> None:
        self._redis = client
        self._owns_client = owns_client

    @classmethod
    def from_url(cls, url: str, timeout_s: float) -> RedisStore:
        """A store with a client of its own (the gateway shares the process's client instead)."""
        return cls(redis_client(url, timeout_s), owns_client=True)

    @property
    def client(self) -> Any:
        return self._redis

    async def get(self, key: str) -> bytes | None:
        value = await self._redis.get(key)
        return value.encode() if isinstance(value, str) else value

    async def set(self, key: str, value: bytes, ttl_s: int) -> None:
        await self._redis.set(key, value, ex=ttl_s)

    async def lock(self, key: str, ttl_ms: int) -> str | None:
        token = secrets.token_hex(16)
        return token if await self._redis.set(key, token, nx=True, px=ttl_ms) else None

    async def unlock(self, key: str, token: str) -> None:
        """Compare-and-delete in one script: never another owner's lock."""
        await self._redis.eval(UNLOCK_SCRIPT, 1, key, token)

    async def read_or_lock(self, key: str, lock: str, ttl_ms: int) -> tuple[bytes | None, str | None]:
        token = secrets.token_hex(16)
        found = await self._redis.eval(READ_OR_LOCK_SCRIPT, 2, key, lock, token, ttl_ms)
        if found[0] == 1:
            entry = found[1]
            return (entry.encode() if isinstance(entry, str) else entry), None
        return None, (token if found[0] == 2 else None)

    async def write_and_unlock(self, key: str, value: bytes, ttl_s: int, lock: str, token: str) -> None:
        await self._redis.eval(WRITE_AND_UNLOCK_SCRIPT, 2, key, lock, value, ttl_s, token)

    async def renew(self, key: str, token: str, ttl_ms: int) -> bool:
        """Compare-and-extend in one script: never another owner's lock."""
        return bool(await self._redis.eval(RENEW_SCRIPT, 1, key, token, ttl_ms))

    async def vadd(self, space: str, member: str, vector: NDArray[np.float32], tag: str, ttl_s: int) -> None:
        blob = vector.astype("<f4").tobytes()
        await self._redis.execute_command("VADD", space, "FP32", blob, member, "SETATTR", orjson.dumps({"tag": tag}))
        await self._redis.expire(space, ttl_s)

    async def vsim(self, space: str, vector: NDArray[np.float32], count: int) -> list[tuple[str, float, str]]:
        blob = vector.astype("<f4").tobytes()
        found = await self._redis.execute_command(
            "VSIM", space, "FP32", blob, "WITHSCORES", "WITHATTRIBS", "COUNT", count
        )
        return [
            (member.decode(), 2 * float(score) - 1, orjson.loads(attrs)["tag"])
            for member, (score, attrs) in _triples(found)
        ]

    async def aclose(self) -> None:
        if self._owns_client:
            await close_redis(self._redis)


def _triples(found: object) -> list[tuple[bytes, tuple[bytes, bytes]]]:
    """VSIM ... WITHSCORES WITHATTRIBS answers a flat list (RESP2) or a map (RESP3)."""
    if isinstance(found, dict):
        return [(member, (value[0], value[1])) for member, value in found.items()]
    items = list(found) if isinstance(found, list) else []
    return [(items[i], (items[i + 1], items[i + 2])) for i in range(0, len(items), 3)]


async def warm_up(store: CacheStore, timeout_s: float = 2.0) -> None:
    """One read at start-up, outside the per-call budget of a few milliseconds: a Cluster client
    discovers its topology and every client opens its first connection here, not inside the first
    request's budget (which would serve it uncached). A failure is left for the guard to meet later."""
    with contextlib.suppress(Exception):
        async with asyncio.timeout(timeout_s):
            await store.get("tn:warm-up")


def open_store(redis: Any | None) -> CacheStore:
    """Redis over the process's shared client when there is one; otherwise the in-process store,
    the embedded default."""
    return MemoryStore() if redis is None else RedisStore(redis)
