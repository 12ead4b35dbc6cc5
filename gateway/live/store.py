"""Where rules versions live.

- :class:`RedisRulesStore`: shared by every replica (``TURNOUT_REDIS_URL``); an append is a
  compare-and-set in one script, and announced on pub/sub.
- :class:`DirectoryRulesStore`: one file per version in ``TURNOUT_STATE_DIR``, so history survives
  a restart without Redis; a version file is created with a hard link, which fails if it exists, so
  two processes on one directory cannot both store the same version.
- :class:`MemoryRulesStore`: an app built in code from a rules object, with no file behind it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import re
import tempfile
from pathlib import Path
from typing import Any, Protocol

from contracts.errors import GatewayError, StateStoreUnavailable
from gateway.live.versions import AuditEntry, Proposal, RulesVersion
from gateway.redis_client import REDIS_FAILURES

log = logging.getLogger("turnout")

AUDIT_KEPT = 1000


class VersionMoved(GatewayError):
    """The store's newest version is not the one the writer read (``If-Match``)."""

    status = 412
    error_type = "invalid_request_error"
    default_code = "rules_version_moved"

    def __init__(self, expected: int, latest: int) -> None:
        super().__init__(
            f"the rules moved on: you edited version {expected}, the newest is {latest}; "
            "read it again (GET /admin/rules) and re-apply your change on top"
        )
        self.latest = latest
        self.details = {"latest_version": latest}


class Subscription(Protocol):
    async def next_version(self, wait_s: float) -> int | None:
        """An announced version, or ``None`` when none came within ``wait_s``; raises when the
        connection is lost (the caller subscribes again and catches up)."""
        ...

    async def aclose(self) -> None: ...


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


class RulesStore(Protocol):
    async def latest_version(self) -> int:
        """The newest version's number, 0 when none is stored: cheap, polled by every replica."""
        ...

    async def get(self, version: int) -> RulesVersion | None: ...

    async def history(self, limit: int) -> list[RulesVersion]:
        """Newest first."""
        ...

    async def append(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        """Store ``proposal`` as the next version. ``expected`` (unless ``None``) must be the newest
        version now, or :class:`VersionMoved` is raised and nothing is stored."""
        ...

    async def restore(self, version: RulesVersion) -> bool:
        """Store ``version`` under its own number if the store's newest is older (the store lost
        its data: a Redis restarted empty, a state directory wiped); says whether it did. Versions
        never go back: after it, the next append is one more than ``version``."""
        ...

    async def record(self, entry: AuditEntry) -> None: ...

    async def audit(self, limit: int) -> list[AuditEntry]:
        """Newest first."""
        ...

    async def subscribe(self) -> Subscription | None:
        """Announcements of versions as replicas store them, where the store can push them; ``None``
        otherwise (replicas then rely on polling)."""
        ...

    async def aclose(self) -> None: ...


async def latest(store: RulesStore) -> RulesVersion | None:
    number = await store.latest_version()
    return await store.get(number) if number else None


class MemoryRulesStore:
    def __init__(self) -> None:
        self._versions: list[RulesVersion] = []
        self._audit: list[AuditEntry] = []

    async def latest_version(self) -> int:
        return len(self._versions)

    async def get(self, version: int) -> RulesVersion | None:
        return self._versions[version - 1] if 0 < version <= len(self._versions) else None

    async def history(self, limit: int) -> list[RulesVersion]:
        return self._versions[::-1][:limit]

    async def append(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        if expected is not None and expected != len(self._versions):
            raise VersionMoved(expected, len(self._versions))
        stored = proposal.stored_as(len(self._versions) + 1)
        self._versions.append(stored)
        return stored

    async def restore(self, version: RulesVersion) -> bool:
        """An in-process store never loses what its own process wrote: nothing to restore."""
        return False

    async def record(self, entry: AuditEntry) -> None:
        self._audit = [*self._audit[-(AUDIT_KEPT - 1) :], entry]

    async def audit(self, limit: int) -> list[AuditEntry]:
        return self._audit[::-1][:limit]

    async def subscribe(self) -> Subscription | None:
        return None

    async def aclose(self) -> None:
        return None


class DirectoryRulesStore:
    """``<dir>/rules/v00000001.json`` ... and ``<dir>/rules/audit.jsonl``; file work runs in a thread."""

    def __init__(self, state_dir: Path) -> None:
        self._dir = state_dir / "rules"
        self._dir.mkdir(parents=True, exist_ok=True)

    def _path(self, version: int) -> Path:
        return self._dir / f"v{version:08d}.json"

    def _numbers(self) -> list[int]:
        """Stored version numbers, newest first; a file that is not a version is not one of them."""
        found = (VERSION_FILE.fullmatch(name) for name in os.listdir(self._dir))
        return sorted((int(match.group(1)) for match in found if match), reverse=True)

    def _latest(self) -> int:
        """The newest version that can be read: a truncated newest file (a crash mid-write on a
        filesystem without atomic links) is skipped, not fatal."""
        return next((n for n in self._numbers() if self._get(n) is not None), 0)

    async def latest_version(self) -> int:
        return await asyncio.to_thread(self._latest)

    def _get(self, version: int) -> RulesVersion | None:
        try:
            text = self._path(version).read_bytes()
        except (FileNotFoundError, IsADirectoryError):
            return None
        return RulesVersion.parsed(text, version)

    async def get(self, version: int) -> RulesVersion | None:
        return await asyncio.to_thread(self._get, version)

    def _history(self, limit: int) -> list[RulesVersion]:
        newest = self._latest()
        found = (self._get(v) for v in range(newest, max(newest - limit, 0), -1))
        return [v for v in found if v is not None]

    async def history(self, limit: int) -> list[RulesVersion]:
        return await asyncio.to_thread(self._history, limit)

    def _append(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        newest = self._latest()
        if expected is not None and expected != newest:
            raise VersionMoved(expected, newest)
        stored = proposal.stored_as(max(newest, self._highest_number()) + 1)
        try:
            self._write(stored)
        except FileExistsError:
            raise VersionMoved(newest if expected is None else expected, self._latest()) from None
        return stored

    def _highest_number(self) -> int:
        """Also an unreadable file's: its number is taken, a new version never reuses it."""
        return next(iter(self._numbers()), 0)

    def _write(self, version: RulesVersion) -> None:
        """Written whole, then linked into place: fails if another writer stored that number first."""
        fd, temporary = tempfile.mkstemp(dir=self._dir, prefix=".writing-")
        try:
            with os.fdopen(fd, "w") as out:
                json.dump(version.document(), out)
                out.flush()
                os.fsync(out.fileno())
            os.link(temporary, self._path(version.version))
        finally:
            os.unlink(temporary)

    async def append(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        return await asyncio.to_thread(self._append, proposal, expected)

    def _restore(self, version: RulesVersion) -> bool:
        if self._latest() >= version.version:
            return False
        self._write(version)
        return True

    async def restore(self, version: RulesVersion) -> bool:
        return await asyncio.to_thread(self._restore, version)

    def _record(self, entry: AuditEntry) -> None:
        line = (json.dumps(entry.to_dict()) + "\n").encode()
        fd = os.open(self._dir / "audit.jsonl", os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line)  # one write with O_APPEND: lines of two processes never interleave
        finally:
            os.close(fd)

    async def record(self, entry: AuditEntry) -> None:
        await asyncio.to_thread(self._record, entry)

    def _audit(self, limit: int) -> list[AuditEntry]:
        try:
            lines = (self._dir / "audit.jsonl").read_text().splitlines()
        except FileNotFoundError:
            return []
        found = (AuditEntry.parsed(line) for line in reversed(lines[-limit:]))
        return [entry for entry in found if entry is not None]

    async def audit(self, limit: int) -> list[AuditEntry]:
        return await asyncio.to_thread(self._audit, limit)

    async def subscribe(self) -> Subscription | None:
        return None

    async def aclose(self) -> None:
        return None


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
VERSION_FILE = re.compile(r"v([0-9]{1,12})\.json")


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


def open_rules_store(redis: Any | None, state_dir: Path | None) -> RulesStore:
    if redis is not None:
        return RedisRulesStore(redis)
    if state_dir is not None:
        return DirectoryRulesStore(state_dir)
    return MemoryRulesStore()
