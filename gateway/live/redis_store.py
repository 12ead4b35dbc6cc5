"""Rules versions in Redis, shared by every replica: a compare-and-set append in one script,
announced on pub/sub; every call bounded, and a failing Redis is 503 ``state_store_unavailable``."""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from typing import Any

from contracts.errors import StateStoreUnavailable
from gateway.live.store import AUDIT_KEPT, Subscription, VersionMoved
from gateway.live.versions import AuditEntry, Proposal, RulesVersion
from gateway.redis_client import REDIS_FAILURES

log = logging.getLogger("turnout")

PREFIX = "tn:{rules}:"  # one hash tag: every key in one Cluster slot, as the append script needs
CHANNEL = "tn:rules:applied"
# ARGV: expected (-1: any), the document, and the server time (ms) after which the write must not
# land: a write its writer already reported as failed (timed out while Redis was paused) never does.
APPEND_SCRIPT = """
local now = redis.call('TIME')
if tonumber(now[1]) * 1000 + math.floor(tonumber(now[2]) / 1000) > tonumber(ARGV[3]) then
  return {2, 0}
end
local latest = tonumber(redis.call('GET', KEYS[1])) or 0
local expected = tonumber(ARGV[1])
if expected >= 0 and latest ~= expected then return {0, latest} end
local version = latest + 1
redis.call('SET', KEYS[2] .. version, ARGV[2])
redis.call('SET', KEYS[1], version)
return {1, version}
"""
RESTORE_SCRIPT = """
local latest = tonumber(redis.call('GET', KEYS[1])) or 0
local version = tonumber(ARGV[1])
if latest >= version then return 0 end
redis.call('SET', KEYS[2] .. version, ARGV[2])
redis.call('SET', KEYS[1], version)
return 1
"""


class RedisSubscription:
    def __init__(self, pubsub: Any) -> None:
        self._pubsub = pubsub

    async def next_version(self, wait_s: float) -> int | None:
        message = await self._pubsub.get_message(ignore_subscribe_messages=True, timeout=wait_s)
        if message is None or message.get("type") != "message":
            return None
        return int(message["data"])

    async def aclose(self) -> None:
        with contextlib.suppress(Exception):
            await self._pubsub.aclose()


class RedisRulesStore:
    """Versions in Redis over the process's shared client, each call bounded by ``timeout_s``."""

    def __init__(self, client: Any, timeout_s: float = 2.0) -> None:
        self._redis = client
        self._timeout_s = timeout_s
        self._append_script = client.register_script(APPEND_SCRIPT)
        self._restore_script = client.register_script(RESTORE_SCRIPT)

    async def _call(self, work: Any) -> Any:
        """Every call bounded; a failing or unreachable Redis is 503 ``state_store_unavailable``."""
        try:
            async with asyncio.timeout(self._timeout_s):
                return await work
        except (*REDIS_FAILURES, TimeoutError) as exc:
            if asyncio.iscoroutine(work):
                work.close()
            raise StateStoreUnavailable(f"the rules store (Redis) did not answer: {exc or 'timed out'}") from None

    async def latest_version(self) -> int:
        found = await self._call(self._redis.get(PREFIX + "latest"))
        try:
            return int(found or 0)
        except ValueError:
            log.warning("the rules store's latest version is not a number (%r); taken as none", found[:40])
            return 0

    async def get(self, version: int) -> RulesVersion | None:
        found = await self._call(self._redis.get(f"{PREFIX}v:{version}"))
        return None if found is None else RulesVersion.parsed(found, version)

    async def history(self, limit: int) -> list[RulesVersion]:
        newest = await self.latest_version()
        numbers = list(range(newest, max(newest - limit, 0), -1))
        if not numbers:
            return []
        found = await self._call(self._redis.mget([f"{PREFIX}v:{v}" for v in numbers]))
        versions = (RulesVersion.parsed(item, v) for v, item in zip(numbers, found, strict=True) if item is not None)
        return [version for version in versions if version is not None]

    async def append(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        stored = proposal.stored_as(0)
        document = {k: v for k, v in stored.document().items() if k != "version"}
        keys = [PREFIX + "latest", PREFIX + "v:"]
        seconds, microseconds = await self._call(self._redis.time())  # Redis's clock, not this host's
        not_after_ms = int(seconds) * 1000 + int(microseconds) // 1000 + int(self._timeout_s * 1000)
        args = [-1 if expected is None else expected, json.dumps(document), not_after_ms]
        outcome, version = await self._call(self._append_script(keys=keys, args=args))
        if outcome == 2:
            raise StateStoreUnavailable("the rules store answered too late; nothing was stored")
        if not outcome:
            raise VersionMoved(-1 if expected is None else expected, int(version))
        await self._announce(int(version))
        return RulesVersion.from_dict({**document, "version": int(version)})

    async def restore(self, version: RulesVersion) -> bool:
        document = {k: v for k, v in version.document().items() if k != "version"}
        keys = [PREFIX + "latest", PREFIX + "v:"]
        is_restored = bool(
            await self._call(self._restore_script(keys=keys, args=[version.version, json.dumps(document)]))
        )
        if is_restored:
            await self._announce(version.version)
        return is_restored

    async def _announce(self, version: int) -> None:
        with contextlib.suppress(StateStoreUnavailable):  # the others poll too: a lost announcement only delays
            await self._call(self._redis.publish(CHANNEL, str(version)))

    async def record(self, entry: AuditEntry) -> None:
        pipe = self._redis.pipeline(transaction=False)
        pipe.lpush(PREFIX + "audit", json.dumps(entry.to_dict()))
        pipe.ltrim(PREFIX + "audit", 0, AUDIT_KEPT - 1)
        await self._call(pipe.execute())

    async def audit(self, limit: int) -> list[AuditEntry]:
        found = await self._call(self._redis.lrange(PREFIX + "audit", 0, limit - 1))
        entries = (AuditEntry.parsed(item) for item in found)
        return [entry for entry in entries if entry is not None]

    async def subscribe(self) -> Subscription | None:
        if not hasattr(self._redis, "pubsub"):  # the asyncio Cluster client has no pub/sub: polling only
            return None
        pubsub = self._redis.pubsub()
        try:
            await self._call(pubsub.subscribe(CHANNEL))
        except BaseException:
            await pubsub.aclose()
            raise
        return RedisSubscription(pubsub)

    async def aclose(self) -> None:
        return None
