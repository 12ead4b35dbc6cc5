"""One replica's part in live rules: it stores changes, serves the newest version, and follows.

- **Writes** (API apply, rollback, rules file change) are checked completely, built into a snapshot,
  appended to the store with a compare-and-set on the version, and only then installed: nothing
  half-applied is ever served and nothing is stored that this replica could not serve. Every write,
  refused ones too, goes to the audit.
- **Following**: a replica installs a newer stored version when it is announced (Redis pub/sub),
  and compares versions every ``TURNOUT_RULES_POLL_S`` and on each reconnect, so a missed
  announcement only delays it.
- **The rules file** is checked on the same interval (a Kubernetes ConfigMap update swaps a
  symlink: the path is stat'ed through it). A change whose text is not already the newest version
  becomes a version with source ``file``; an invalid one is logged, counted and audited, and the
  running version stays. The newest write wins, whichever way it came, and all appear in history.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from pathlib import Path

from contracts.errors import StateStoreUnavailable
from gateway.live.checks import build_failure, check_rules
from gateway.live.store import RedisRulesStore, RulesStore, VersionMoved, latest
from gateway.live.versions import AuditEntry, Proposal, RulesVersion, Source, unified_diff
from gateway.metrics import Metrics
from gateway.redis_client import REDIS_FAILURES
from gateway.rules import Rules, RulesInvalid, parse_rules
from gateway.snapshot import RulesSnapshot
from gateway.state import GatewayState

log = logging.getLogger("turnout")
RECONNECT_S = 0.5
"""How often the announcement loop wakes (to see a close) and how long it waits before subscribing
again after a lost connection."""
RETRIES = 3
"""Writes without If-Match (the file, rollbacks) re-read the newest version this often when another
writer got in between."""


class RulesFile:
    """The rules file as last seen: a change is a different stat (through symlinks) and a different text."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stat: tuple[int, ...] | None = None
        self.text: str | None = None

    def read(self) -> str | None:
        """The file's text when it changed since the last call; ``None`` otherwise or when unreadable."""
        try:
            found = os.stat(self.path)
            stat = (found.st_dev, found.st_ino, found.st_mtime_ns, found.st_size)
            if stat == self._stat:
                return None
            text = self.path.read_text()
        except OSError as exc:
            log.warning("rules file %s cannot be read: %s", self.path, exc.strerror)
            return None
        self._stat = stat
        if text == self.text:
            return None
        self.text = text
        return text


class LiveRules:
    def __init__(self, state: GatewayState, store: RulesStore, rules_file: Path | None, poll_s: float) -> None:
        self.state = state
        self.store = store
        self.file = RulesFile(rules_file) if rules_file is not None else None
        self._poll_s = poll_s
        self._writing = asyncio.Lock()
        self._refused: int | None = None
        """A stored version this replica failed to build: not retried every poll."""
        self._poller: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        """Set on close: the announcement loop ends at its next wake-up (a Redis pub/sub read can
        swallow a cancellation, so it is not cancelled unless it overstays)."""

    @property
    def metrics(self) -> Metrics:
        return self.state.resources.metrics

    async def check(self, text: str) -> Rules:
        return await check_rules(text, self.state)

    async def apply(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        """Check, build, store (``expected`` must still be the newest version), install."""
        serving = self.state.snapshot.version
        try:
            rules = await check_rules(proposal.yaml, self.state)
        except RulesInvalid as exc:
            await self._audit_refused(proposal, str(exc))
            raise
        async with self._writing:
            for attempt in range(RETRIES):
                newest = expected if expected is not None else await self.store.latest_version()
                stored: list[RulesVersion] = []

                async def append(
                    built: RulesSnapshot, newest: int = newest, stored: list[RulesVersion] = stored
                ) -> None:
                    stored.append(await self.store.append(proposal, newest))

                try:
                    await self.state.apply(rules, newest + 1, append)
                except VersionMoved as exc:
                    if expected is not None or attempt == RETRIES - 1:
                        await self._audit_refused(proposal, exc.message)
                        raise
                    continue
                except RulesInvalid:
                    raise
                except (*REDIS_FAILURES, TimeoutError) as exc:
                    raise StateStoreUnavailable(f"the rules store did not answer: {exc or 'timed out'}") from None
                except Exception as exc:
                    if stored:
                        raise
                    failure = build_failure(exc, self.state.snapshot)
                    await self._audit_refused(proposal, str(failure))
                    raise failure from exc
                version = stored[0]
                await self._audit_applied(version, serving)
                self.metrics.observe_rules_version(version.version)
                log.info(
                    "rules version %d (%s by %s) serving: %s",
                    version.version,
                    version.source,
                    version.author,
                    version.message,
                )
                return version
        raise AssertionError("unreachable")

    async def rollback(self, version: int, author: str, message: str) -> RulesVersion:
        target = await self.store.get(version)
        if target is None:
            raise VersionNotFound(version)
        note = message or f"rollback to version {version}"
        return await self.apply(Proposal(target.yaml, author, note, "rollback"), None)

    async def catch_up(self) -> None:
        """Serve the store's newest version if it is newer than this replica's (and store the rules
        this replica started with, if the store did not answer then)."""
        if self.state.snapshot.version == 0:
            await self._bootstrap_late()
        newest = await self.store.latest_version()
        if newest <= self.state.snapshot.version or newest == self._refused:
            return
        async with self._writing:
            if newest <= self.state.snapshot.version:
                return
            found = await self.store.get(newest)
            if found is None:
                return
            try:
                rules = await asyncio.to_thread(parse_rules, found.yaml, f"rules version {newest}")
                await self.state.apply(rules, newest)
            except Exception as exc:
                self._refused = newest
                self.metrics.observe_rules_refused("store")
                log.error(
                    "rules version %d cannot be served here; version %d keeps serving: %s",
                    newest,
                    self.state.snapshot.version,
                    exc,
                )
                return
        self.metrics.observe_rules_version(newest)
        log.info("rules version %d serving (caught up from the store)", newest)

    async def _bootstrap_late(self) -> None:
        started_with = self.file.text if self.file is not None else None
        async with self._writing:
            if self.state.snapshot.version == 0 and started_with is not None:
                stored = await bootstrap(self.store, started_with)
                if stored.yaml == started_with:
                    rules = await asyncio.to_thread(parse_rules, stored.yaml, f"rules version {stored.version}")
                    await self.state.apply(rules, stored.version)
                    log.info("the rules store answers: serving stored version %d", stored.version)

    async def file_changed(self, text: str) -> None:
        """A new text of the rules file: a version unless it already is the newest."""
        newest = await latest(self.store)
        if newest is not None and newest.yaml == text:
            return
        proposal = Proposal(text, "file", f"rules file {self.file.path if self.file else ''} changed", "file")
        try:
            await self.apply(proposal, None)
        except RulesInvalid as exc:
            log.error("the rules file is invalid; version %d keeps serving\n%s", self.state.snapshot.version, exc)

    async def reload_file(self) -> None:
        """SIGHUP: read the rules file now, changed or not since the last look."""
        if self.file is None:
            return
        try:
            text = await asyncio.to_thread(self.file.path.read_text)
        except OSError as exc:
            log.error("SIGHUP: %s cannot be read: %s", self.file.path, exc.strerror)
            return
        self.file.text = text
        await self.file_changed(text)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._poller = loop.create_task(self._poll_forever())
        self._follower = loop.create_task(self._follow_announcements())

    async def aclose(self) -> None:
        self._stopping = True
        tasks = [task for task in (self._poller, self._follower) if task is not None]
        if self._poller is not None:
            self._poller.cancel()
        if tasks:
            _, overstaying = await asyncio.wait(tasks, timeout=RECONNECT_S * 4)
            for task in overstaying:
                task.cancel()
        await self.store.aclose()

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.catch_up()
                if self.file is not None and (text := await asyncio.to_thread(self.file.read)) is not None:
                    await self.file_changed(text)
            except Exception as exc:  # the store is down: the next round tries again
                log.warning("rules: checking the store failed: %s", exc)

    async def _follow_announcements(self) -> None:
        """Installs announced versions at once; on a lost connection, subscribes again and catches up."""
        while not self._stopping:
            try:
                subscription = await self.store.subscribe()
            except Exception as exc:
                log.warning("rules announcements: cannot subscribe (%s); polling meanwhile", exc)
                subscription = None
            if subscription is None and not isinstance(self.store, RedisRulesStore):
                return  # a store that cannot announce: polling alone
            try:
                if subscription is not None:
                    await self.catch_up()  # what was missed while not listening
                    while not self._stopping:
                        version = await subscription.next_version(RECONNECT_S)
                        if version is not None and version > self.state.snapshot.version:
                            await self.catch_up()
            except Exception as exc:
                log.warning("rules announcements lost (%s); reconnecting, polling meanwhile", exc)
            finally:
                if subscription is not None:
                    await subscription.aclose()
            if not self._stopping:
                await asyncio.sleep(min(self._poll_s, RECONNECT_S))

    async def _audit_applied(self, version: RulesVersion, serving: int) -> None:
        before = await self.store.get(version.version - 1)
        diff = unified_diff(before, version) if before is not None else ""
        entry = AuditEntry(
            time.time(), version.author, "applied", version.source, version.message, version.version, diff
        )
        await self._record(entry)

    async def _audit_refused(self, proposal: Proposal, why: str) -> None:
        self.metrics.observe_rules_refused(proposal.source)
        entry = AuditEntry(
            time.time(),
            proposal.author,
            "rejected",
            proposal.source,
            proposal.message,
            self.state.snapshot.version,
            why,
        )
        await self._record(entry)

    async def _record(self, entry: AuditEntry) -> None:
        try:
            await self.store.record(entry)
        except Exception as exc:
            log.warning("the rules audit could not be written (%s): %s", exc, entry)


async def start_from_store(store: RulesStore, file_text: str | None) -> RulesVersion:
    """:func:`bootstrap`, or, when the store does not answer, the rules file as version 0 (not
    stored): the gateway starts and serves; it stores the file and follows once the store answers."""
    try:
        return await bootstrap(store, file_text)
    except (*REDIS_FAILURES, TimeoutError) as exc:
        if file_text is None:
            raise
        log.error("the rules store does not answer (%s): serving the rules file as version 0 until it does", exc)
        return RulesVersion(0, file_text, "file", time.time(), "rules store unreachable at start-up", "file")


class VersionNotFound(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(f"rules version {version} does not exist")
        self.version = version


async def bootstrap(store: RulesStore, file_text: str | None, source: Source = "bootstrap") -> RulesVersion:
    """The version a starting replica serves: the newest stored; the rules file as version 1 when
    none is. A rules file that changed while no replica watched it (its text is not the newest
    ``file``/``bootstrap`` version's) is stored as a new version, if it parses."""
    newest = await latest(store)
    if newest is None:
        if file_text is None:
            raise RuntimeError("no rules: neither a stored version nor a rules file")
        with contextlib.suppress(VersionMoved):  # another replica stored version 1 first
            return await store.append(Proposal(file_text, "bootstrap", "first start", source), 0)
        newest = await latest(store)
        assert newest is not None
        return newest
    if file_text is None or await _is_known_file_text(store, file_text):
        return newest
    try:
        parse_rules(file_text, "rules file")
    except RulesInvalid as exc:
        log.error(
            "the rules file changed while stopped but is invalid; serving stored version %d\n%s", newest.version, exc
        )
        return newest
    with contextlib.suppress(VersionMoved):
        return await store.append(
            Proposal(file_text, "file", "rules file changed while stopped", "file"), newest.version
        )
    found = await latest(store)
    assert found is not None
    return found


async def _is_known_file_text(store: RulesStore, text: str) -> bool:
    """Whether ``text`` is the newest version's or the last one that came from the file."""
    for version in await store.history(100):
        if version.yaml == text:
            return True
        if version.source in ("file", "bootstrap"):
            return False
    return False
