"""The app's state: the process resources and exactly one current rules snapshot.

A request takes the current snapshot once, when it arrives (:class:`gateway.front.Gateway`), and uses it
to its end, streams included. ``apply`` builds a snapshot of new rules and installs it with one
assignment; the old one is closed (what it alone held) when its last request is done.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Iterable

from starlette.requests import Request

from gateway.resources import Resources, close_resources
from gateway.rules import Rules
from gateway.settings import Settings
from gateway.snapshot import Closer, RulesSnapshot, build_snapshot

log = logging.getLogger("turnout")
Committer = Callable[[RulesSnapshot], Awaitable[None]]


class GatewayState:
    def __init__(self, resources: Resources, snapshot: RulesSnapshot) -> None:
        self.resources = resources
        self.snapshot = snapshot
        """The rules serving new requests. Replaced whole, never changed in place."""
        self.draining = False
        """Set on SIGTERM: ``/readyz`` answers 503 while requests in flight finish."""
        self._retired: list[RulesSnapshot] = []
        """Snapshots replaced while requests still read them."""
        self._swap = asyncio.Lock()
        self._idle = asyncio.Event()
        self._idle.set()
        self._closing: set[asyncio.Task[None]] = set()

    @property
    def settings(self) -> Settings:
        return self.resources.settings

    async def apply(
        self, rules: Rules, version: int | None = None, before_install: Committer | None = None
    ) -> RulesSnapshot:
        """Serve ``rules`` from now on as ``version`` (unset: one more than the current) and return
        their snapshot. ``before_install`` runs once the snapshot is built (the rules store's append:
        nothing is stored that could not be served). A build or a ``before_install`` that fails
        raises and changes nothing: the current snapshot keeps serving."""
        async with self._swap:
            built = await build_snapshot(rules, self.resources, self.snapshot, version)
            if before_install is not None:
                try:
                    await before_install(built)
                except BaseException:
                    await self._discard(built)
                    raise
            old, self.snapshot = self.snapshot, built
            built.health.start()
            await old.health.aclose()
            old.leases.retired = True
            self._retired.append(old)
            self._close_idle()
        return built

    async def _discard(self, built: RulesSnapshot) -> None:
        """Closes what a built snapshot that will never serve opened for itself."""
        live: dict[int, Closer] = {}
        for snapshot in (self.snapshot, *self._retired):
            live |= snapshot.owned()
        await _close_all(close for key, close in built.owned().items() if key not in live)

    def leased(self) -> SnapshotLease:
        """``async with``: the current snapshot, held until the scope ends (however it ends): a
        snapshot replaced meanwhile is closed only once its last lease is given back."""
        return SnapshotLease(self)

    def _lease(self) -> RulesSnapshot:
        snapshot = self.snapshot
        snapshot.leases.count += 1
        self._idle.clear()
        return snapshot

    def _release(self, snapshot: RulesSnapshot) -> None:
        snapshot.leases.count -= 1
        if snapshot.leases.retired and snapshot.leases.count == 0:
            self._close_idle()
        if self.in_flight == 0:
            self._idle.set()

    @property
    def in_flight(self) -> int:
        return self.snapshot.leases.count + sum(s.leases.count for s in self._retired)

    async def drained(self, timeout_s: float) -> bool:
        """Waits until no request is in flight, up to ``timeout_s``; whether none is left."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        return self.in_flight == 0

    def _close_idle(self) -> None:
        """Closes what only idle retired snapshots hold; a resource another live snapshot shares stays."""
        idle = [s for s in self._retired if s.leases.count == 0]
        if not idle:
            return
        self._retired = [s for s in self._retired if s.leases.count]
        live: dict[int, Closer] = {}
        for snapshot in (self.snapshot, *self._retired):
            live |= snapshot.owned()
        closers: dict[int, Closer] = {}
        for snapshot in idle:
            closers |= {key: close for key, close in snapshot.owned().items() if key not in live}
        if closers:
            task = asyncio.get_running_loop().create_task(_close_all(closers.values()))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)

    async def aclose(self) -> None:
        await self.snapshot.health.aclose()
        closers: dict[int, Closer] = {}
        for snapshot in (self.snapshot, *self._retired):
            closers |= snapshot.owned()
        await _close_all(closers.values())
        for task in list(self._closing):
            with contextlib.suppress(Exception):
                await task
        await close_resources(self.resources)


async def open_state(resources: Resources, rules: Rules, version: int) -> GatewayState:
    """The state serving ``rules`` as ``version``; on failure the resources are closed."""
    try:
        snapshot = await build_snapshot(rules, resources, None, version)
    except BaseException:
        await close_resources(resources)
        raise
    state = GatewayState(resources, snapshot)
    resources.metrics.watch_upstreams(lambda: state.snapshot.upstreams)
    snapshot.health.start()
    return state


async def _close_all(closers: Iterable[Closer]) -> None:
    results = await asyncio.gather(*(close() for close in closers), return_exceptions=True)
    for result in results:
        if isinstance(result, Exception):
            log.warning("closing a retired resource failed: %s", result)


class SnapshotLease:
    """A class, not a generator-based context manager: one is entered per request, and an async
    generator costs a registration with the event loop each time (bench/results/profile-pinned.txt)."""

    __slots__ = ("_snapshot", "_state")

    def __init__(self, state: GatewayState) -> None:
        self._state = state
        self._snapshot: RulesSnapshot | None = None

    async def __aenter__(self) -> RulesSnapshot:
        self._snapshot = self._state._lease()
        return self._snapshot

    async def __aexit__(self, *exc_info: object) -> None:
        if self._snapshot is not None:
            self._state._release(self._snapshot)


def gateway_state(request: Request) -> GatewayState:
    """The one way handlers reach the process resources."""
    state: GatewayState = request.app.state.gateway
    return state


def request_snapshot(request: Request) -> RulesSnapshot:
    """The rules snapshot this request was given when it arrived."""
    snapshot: RulesSnapshot = request.state.snapshot
    return snapshot
