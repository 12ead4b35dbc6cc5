"""What a starting replica serves: the store's newest rules version, the rules file stored first."""

from __future__ import annotations

import contextlib
import logging
import time

from contracts.errors import StateStoreUnavailable
from gateway.live.store import RulesStore, VersionMoved, latest
from gateway.live.versions import Proposal, RulesVersion
from gateway.redis_client import REDIS_FAILURES

log = logging.getLogger("turnout")


async def start_from_store(store: RulesStore, file_text: str, files: dict[str, str] | None = None) -> RulesVersion:
    """:func:`bootstrap`, or, when the store does not answer, the rules file as version 0 (not
    stored): the gateway starts and serves; it stores the file and follows once the store answers."""
    try:
        return await bootstrap(store, file_text, files or {})
    except (*REDIS_FAILURES, TimeoutError, StateStoreUnavailable) as exc:
        log.error("the rules store does not answer (%s): serving the rules file as version 0 until it does", exc)
        return RulesVersion(0, file_text, "file", time.time(), "rules store unreachable at start-up", "file")


async def bootstrap(store: RulesStore, file_text: str, files: dict[str, str] | None = None) -> RulesVersion:
    """The version a starting replica serves: the newest stored; the rules file (already validated
    by the caller) as version 1 when none is. A rules file that changed while no replica watched it
    (its text is not the newest ``file``/``bootstrap`` version's) is stored as a new version.
    ``files``: the hashes of the files the rules read, stored with a version this stores."""
    files = files or {}
    newest = await latest(store)
    if newest is None:
        with contextlib.suppress(VersionMoved):  # another replica stored version 1 first
            return await store.append(Proposal(file_text, "bootstrap", "first start", "bootstrap", golden=files), 0)
        newest = await latest(store)
        assert newest is not None
        return newest
    if await _is_known_file_text(store, file_text):
        return newest
    with contextlib.suppress(VersionMoved):
        return await store.append(
            Proposal(file_text, "file", "rules file changed while stopped", "file", golden=files), newest.version
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
