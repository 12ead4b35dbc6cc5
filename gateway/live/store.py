"""Where rules versions live: the :class:`RulesStore` seam and the in-process store.

- :class:`gateway.live.redis_store.RedisRulesStore`: shared by every replica (``TURNOUT_REDIS_URL``);
  an append is a compare-and-set in one script, and announced on pub/sub.
- :class:`gateway.live.directory_store.DirectoryRulesStore`: one file per version in
  ``TURNOUT_STATE_DIR``, so history survives a restart without Redis.
- :class:`MemoryRulesStore`: an app built in code from a rules object, with no file behind it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Protocol

from contracts.errors import GatewayError
from gateway.live.versions import AuditEntry, Proposal, RulesVersion

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


def open_rules_store(redis: Any | None, state_dir: Path | None) -> RulesStore:
    # Imported here: both modules build on this one's seam.
    from gateway.live.directory_store import DirectoryRulesStore
    from gateway.live.redis_store import RedisRulesStore

    if redis is not None:
        return RedisRulesStore(redis)
    if state_dir is not None:
        return DirectoryRulesStore(state_dir)
    return MemoryRulesStore()
