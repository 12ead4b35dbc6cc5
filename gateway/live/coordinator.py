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
import dataclasses
import logging
import time
from pathlib import Path

from contracts.errors import StateStoreUnavailable
from gateway.golden.warmup import keep_warm
from gateway.live.bootstrap import bootstrap, start_from_store
from gateway.live.checks import build_failure, check_rules
from gateway.live.drift import DriftChecks
from gateway.live.gate import GoldenFailed, described_change, file_hashes, run_gate
from gateway.live.redis_store import RedisRulesStore
from gateway.live.rules_file import RulesFile
from gateway.live.store import RulesStore, VersionMoved, latest, open_rules_store
from gateway.live.versions import AuditEntry, Proposal, RulesVersion, unified_diff
from gateway.observe.metrics import Metrics
from gateway.observe.periodic import Periodic
from gateway.redis_client import REDIS_FAILURES
from gateway.resources import Resources, close_resources
from gateway.rules import Rules, RulesInvalid, parse_rules
from gateway.settings import Settings
from gateway.snapshot import RulesSnapshot
from gateway.state import GatewayState, open_state

log = logging.getLogger("turnout")
RECONNECT_S = 0.5
"""How often the announcement loop wakes (to see a close) and how long it waits before subscribing
again after a lost connection."""
KEEP_WARM_TICK_S = 1.0
RETRIES = 3
"""Writes without If-Match (the file, rollbacks) re-read the newest version this often when another
writer got in between."""


class LiveRules:
    def __init__(
        self,
        state: GatewayState,
        store: RulesStore,
        started_with: str,
        rules_file: Path | None,
        poll_s: float,
        served: RulesVersion,
    ) -> None:
        """``started_with``: the rules document this process started with (the rules file's text);
        ``served``: the version it serves."""
        self.state = state
        self.store = store
        self.served = served
        """The stored version this replica serves, kept whole: what restores a store that lost it."""
        self.started_with = started_with
        self.file = RulesFile(rules_file, started_with) if rules_file is not None else None
        self._poll_s = poll_s
        self._writing = asyncio.Lock()
        self._refused: int | None = None
        """A stored version this replica failed to build: not retried every poll."""
        self._poller: asyncio.Task[None] | None = None
        self._follower: asyncio.Task[None] | None = None
        self._stopping = False
        self.drift = DriftChecks(state)
        self._newest_seen = 0
        """The newest stored version the last sameness check read: what an append builds on."""
        self._golden_seen: dict[str, str] | None = None
        """The golden sets' hashes of the rules this replica serves, as last read; ``None`` until read."""
        self._golden_refused: dict[str, str] | None = None
        """Changed sets whose gate refused them: not run again until the files change again."""
        self._keeping_warm = Periodic(self._keep_warm, KEEP_WARM_TICK_S)
        """Set on close: the announcement loop ends at its next wake-up (a Redis pub/sub read can
        swallow a cancellation, so it is not cancelled unless it overstays)."""

    @property
    def metrics(self) -> Metrics:
        return self.state.resources.metrics

    async def check(self, text: str) -> Rules:
        return await check_rules(text, self.state)

    async def apply(self, proposal: Proposal, expected: int | None) -> RulesVersion:
        """Check, build, store (``expected``, unless ``None``, must still be the newest version),
        install. Every refusal is audited. A document identical to the newest version's is not a
        change: the newest version is answered and nothing is built or stored."""
        if (unchanged := await self._newest_if_same(proposal, expected)) is not None:
            return unchanged
        try:
            rules = await check_rules(proposal.yaml, self.state)
            hashes = await asyncio.to_thread(file_hashes, rules)
            changed_sets = frozenset(r for r, sha in hashes.items() if (self._golden_seen or {}).get(r, sha) != sha)
            proposal = dataclasses.replace(proposal, golden=hashes)
            gate = await self._gate(rules, proposal, changed_sets)
            async with self._writing:
                await self.restore_if_lost()  # an apply to an emptied store continues from what serves
                for attempt in range(RETRIES):
                    # An identical write (a second SIGHUP, another replica seeing the same file) may
                    # have landed while this one was built: checked against the newest each try,
                    # and the append is a compare-and-set on that newest, so two never both land.
                    if (unchanged := await self._newest_if_same(proposal, expected)) is not None:
                        return unchanged
                    base = expected if expected is not None else self._newest_seen
                    try:
                        version = await self._store_and_install(rules, proposal, base)
                        break
                    except VersionMoved:
                        if expected is not None or attempt == RETRIES - 1:
                            raise
        except (RulesInvalid, VersionMoved, GoldenFailed) as exc:
            await self._audit_refused(proposal, str(exc))
            raise
        self._golden_seen = dict(version.golden)
        await self._audit_applied(version)
        if gate is not None:
            await self._audit_forced(version, proposal, gate)
        self.metrics.observe_rules_version(version.version)
        log.info(
            "rules version %d (%s by %s) serving: %s", version.version, version.source, version.author, version.message
        )
        return version

    async def _gate(self, rules: Rules, proposal: Proposal, changed_sets: frozenset[str]) -> GoldenFailed | None:
        """Run the golden sets the change calls for (not for a rollback); raise :class:`GoldenFailed`
        below the bar, unless the proposal forces it: then the refusal is answered, to be audited."""
        if proposal.source == "rollback":
            return None
        results = await run_gate(self.state, rules, changed_sets)
        for result in results:
            self.metrics.observe_golden_run(result.route, result.backend, "gate", result.passed, result.pass_ratio)
        if all(result.passed for result in results):
            return None
        refused = GoldenFailed(results)
        if not proposal.force_golden:
            raise refused
        log.warning("%s forced by %s: %s", refused, proposal.author, proposal.message)
        return refused

    async def _audit_forced(self, version: RulesVersion, proposal: Proposal, refused: GoldenFailed) -> None:
        why = f"{refused}; forced by {proposal.author}: {proposal.message}"
        entry = AuditEntry(
            time.time(), proposal.author, "golden_forced", proposal.source, proposal.message, version.version, why
        )
        await self._record(entry)

    async def _newest_if_same(self, proposal: Proposal, expected: int | None) -> RulesVersion | None:
        """The newest version when it holds ``text`` and is the one the writer read (a stale
        ``If-Match`` is still a 412, whatever the document)."""
        try:
            newest = await latest(self.store)
        except (*REDIS_FAILURES, TimeoutError) as exc:
            raise StateStoreUnavailable(f"the rules store did not answer: {exc or 'timed out'}") from None
        self._newest_seen = newest.version if newest is not None else 0
        if newest is None or newest.yaml != proposal.yaml or expected not in (None, newest.version):
            return None
        if proposal.golden and newest.golden != proposal.golden:
            return None  # the same document, but a golden set or the examples file changed: a change
        log.info("rules from %s by %s: the same as version %d; nothing stored", proposal.source, proposal.author,
                 newest.version)  # fmt: skip
        return newest

    async def _store_and_install(self, rules: Rules, proposal: Proposal, expected: int | None) -> RulesVersion:
        """One compare-and-set append against ``expected`` (``None``: the newest now), between the
        snapshot's build and its install."""
        stored: RulesVersion | None = None

        async def append(built: RulesSnapshot) -> None:
            nonlocal stored
            stored = await self.store.append(proposal, newest)

        try:
            newest = expected if expected is not None else await self.store.latest_version()
            await self.state.apply(rules, newest + 1, append)
        except (VersionMoved, StateStoreUnavailable):
            raise
        except (*REDIS_FAILURES, TimeoutError) as exc:
            raise StateStoreUnavailable(f"the rules store did not answer: {exc or 'timed out'}") from None
        except Exception as exc:
            if stored is not None:
                raise
            raise build_failure(exc, self.state.snapshot) from exc
        assert stored is not None
        self.served = stored
        return stored

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
        newest = await self.restore_if_lost()  # one read of the newest number per poll
        if newest <= self.state.snapshot.version or newest == self._refused:
            return
        async with self._writing:
            if newest <= self.state.snapshot.version:
                return
            found = await self.store.get(newest)
            if found is None:
                return
            try:
                await self._serve(found)
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
        """The store did not answer at start-up (version 0 serving): store the rules started with."""
        async with self._writing:
            if self.state.snapshot.version == 0:
                stored = await bootstrap(self.store, self.started_with)
                if stored.yaml == self.started_with:  # a newer stored version is left to catch_up
                    await self._serve(stored)
                    log.info("the rules store answers: serving stored version %d", stored.version)

    async def _serve(self, version: RulesVersion) -> None:
        rules = await asyncio.to_thread(parse_rules, version.yaml, f"rules version {version.version}")
        await self.state.apply(rules, version.version)
        self.served = version
        self._golden_seen = dict(version.golden) or await asyncio.to_thread(file_hashes, rules)

    async def restore_if_lost(self) -> int:
        """The store's newest version number. When it is older than the one this replica serves
        (Redis restarted empty, or restored from an old backup), the served version is stored back
        under its number first: the store never answers "no rules", versions never go back, and the
        other replicas follow."""
        served = self.served
        newest = await self.store.latest_version()
        if served.version == 0 or newest >= served.version:
            return newest
        if not await self.store.restore(served):  # another replica restored, or stored, meanwhile
            return await self.store.latest_version()
        log.warning("the rules store's newest version was %d: restored version %d from this replica", newest,
                    served.version)  # fmt: skip
        why = f"the store's newest version was {newest}; restored from a replica serving {served.version}"
        entry = AuditEntry(time.time(), served.author, "restored", served.source, served.message, served.version, why)
        await self._record(entry)
        return served.version

    async def file_changed(self, text: str) -> None:
        """A new text of the rules file: a version unless it already is the newest. When the store
        cannot take it (down), it is kept and tried again on the next poll, never lost."""
        assert self.file is not None
        self.file.unsaved = text
        proposal = Proposal(text, "file", f"rules file {self.file.path} changed", "file")
        try:
            await self.apply(proposal, None)  # an unchanged document stores nothing
        except RulesInvalid as exc:
            log.error("the rules file is invalid; version %d keeps serving\n%s", self.state.snapshot.version, exc)
        except GoldenFailed as exc:
            log.error("the rules file's change failed its golden sets; version %d keeps serving: %s",
                      self.state.snapshot.version, exc)  # fmt: skip
        self.file.unsaved = None

    def golden_seen_at_start(self, hashes: dict[str, str]) -> None:
        """The golden sets as this replica started: a later change of a file is a change."""
        self._golden_seen = dict(self.served.golden) or hashes

    async def golden_sets_changed(self) -> None:
        """A golden set or the examples file of the serving rules changed on disk: the same rules with
        the new file are a new version, a changed set gated against the live primaries (a refusal is
        kept, not retried)."""
        hashes = await asyncio.to_thread(file_hashes, self.state.snapshot.rules)
        if self._golden_seen is None:
            self._golden_seen = hashes  # what this replica started with: not a change
            return
        if hashes == self._golden_seen or hashes == self._golden_refused:
            return
        changed = sorted(r for r, sha in hashes.items() if self._golden_seen.get(r) != sha)
        described = described_change(self.state.snapshot.rules, hashes, changed)
        proposal = Proposal(self.served.yaml, "file", described, "file", golden=hashes)
        try:
            await self.apply(proposal, None)
        except GoldenFailed as exc:
            self._golden_refused = hashes
            log.error("a changed golden set fails the live primary; version %d keeps serving: %s",
                      self.state.snapshot.version, exc)  # fmt: skip
        except RulesInvalid as exc:
            self._golden_refused = hashes
            log.error("a changed golden set is invalid; version %d keeps serving\n%s", self.state.snapshot.version, exc)

    async def reload_file(self) -> None:
        """SIGHUP: read the rules file now, changed or not since the last look."""
        if self.file is None:
            return
        try:
            text = await asyncio.to_thread(self.file.read_now)
        except OSError as exc:
            log.error("SIGHUP: %s cannot be read: %s", self.file.path, exc.strerror)
            return
        self.file.text = text
        try:
            await self.file_changed(text)
        except Exception as exc:  # kept as unsaved: the next poll tries again
            log.warning("SIGHUP: the rules store did not take the file (%s); trying again with the next poll", exc)

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._poller = loop.create_task(self._poll_forever())
        self._follower = loop.create_task(self._follow_announcements())
        self.drift.start()
        self._keeping_warm.start()

    async def aclose(self) -> None:
        self._stopping = True
        await self.drift.aclose()
        await self._keeping_warm.stop()
        tasks = [task for task in (self._poller, self._follower) if task is not None]
        if self._poller is not None:
            self._poller.cancel()
        if tasks:
            _, overstaying = await asyncio.wait(tasks, timeout=RECONNECT_S * 4)
            for task in overstaying:
                task.cancel()
        await self.store.aclose()

    async def _keep_warm(self) -> None:
        snapshot = self.state.snapshot
        try:
            await keep_warm(snapshot.rules, snapshot.upstreams, self.metrics, self.state.resources.reports)
        except Exception:
            log.exception("keeping backends warm failed")

    async def _poll_forever(self) -> None:
        while True:
            await asyncio.sleep(self._poll_s)
            try:
                await self.catch_up()
                if self.file is not None:
                    text = await asyncio.to_thread(self.file.read) or self.file.unsaved
                    if text is not None:
                        await self.file_changed(text)
                await self.golden_sets_changed()
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

    async def _audit_applied(self, version: RulesVersion) -> None:
        before = await self.store.get(version.version - 1)
        diff = unified_diff(before, version) if before is not None else ""
        entry = AuditEntry(
            time.time(), version.author, "applied", version.source, version.message, version.version, diff
        )
        await self._record(entry)

    async def refused_write(self, author: str, what: str, why: str) -> None:
        """A write refused before it was read (a viewer's key): in the audit all the same."""
        await self._audit_refused(Proposal("", author, what, "api"), why)

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


class VersionNotFound(Exception):
    def __init__(self, version: int) -> None:
        super().__init__(f"rules version {version} does not exist")
        self.version = version


async def open_live_rules(
    resources: Resources, settings: Settings, started_with: str, initial: Rules, rules_file: Path | None
) -> LiveRules:
    """Opens the rules store, serves its newest version (storing ``started_with``, whose rules are
    ``initial``, when none is) and follows the store and the file. On failure the resources are closed."""
    store = open_rules_store(resources.redis, settings.state_dir)
    try:
        serving = await start_from_store(store, started_with, await asyncio.to_thread(file_hashes, initial))
        is_initial = serving.yaml == started_with
        chosen = initial if is_initial else parse_rules(serving.yaml, f"rules version {serving.version}")
    except BaseException:
        await close_resources(resources)
        raise
    state = await open_state(resources, chosen, serving.version)
    resources.metrics.observe_rules_version(serving.version)
    live = LiveRules(state, store, started_with, rules_file, settings.rules_poll_s, serving)
    live.golden_seen_at_start(await asyncio.to_thread(file_hashes, chosen))
    live.start()
    return live
