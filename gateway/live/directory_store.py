"""Rules versions in a state directory: ``<dir>/rules/v00000001.json`` ... and ``audit.jsonl``.

History survives a restart without Redis. A version file is written whole, then hard-linked into
place, which fails if the name exists, so two processes on one directory cannot both store the
same version. What is not a readable version (a stray file, a truncated newest one) is skipped.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import tempfile
from pathlib import Path

from gateway.live.store import Subscription, VersionMoved
from gateway.live.versions import AuditEntry, Proposal, RulesVersion

VERSION_FILE = re.compile(r"v([0-9]{1,12})\.json")


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
