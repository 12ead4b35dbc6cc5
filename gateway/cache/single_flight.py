"""Single flight: among identical concurrent cache misses one request asks the backend, the others
wait for its answer, in this process (a future) and across replicas (a Redis lock).

A :class:`Flight` is an ``async with`` scope that settles on every exit, cancellation included:
waiting requests are handed the answer, or ``None`` (ask the backend yourselves), and the store's
lock is released. Nothing waits on a leader that is gone:

- the store's lock lives ``LOCK_TTL_S`` and its leader renews it while it works, so a leader that
  died, or finished while the store was failing and could not release it, frees it within seconds;
- a request waiting for another replica watches the lock: when it is gone and no answer appeared,
  it leads; it stops waiting as soon as the store fails, and after ``max_wait_s`` in any case;
- a request waiting in this process waits at most ``max_wait_s``, and a flight older than its own
  bound is taken over rather than joined.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from types import TracebackType
from typing import TYPE_CHECKING

from gateway.store_guard import StoreUnavailable

if TYPE_CHECKING:
    from gateway.cache.response_cache import CacheEntry, CachePlan, ResponseCache

LOCK = ":lock"
LOCK_TTL_S = 3.0
"""How long the store's lock outlives a leader that stopped renewing it."""
RENEW_EVERY_S = LOCK_TTL_S / 3
POLL_S = 0.02


@dataclass
class LocalFlight:
    """The flight of one key in this process: its followers wait on ``answer`` until ``expires``."""

    answer: asyncio.Future[CacheEntry | None]
    expires: float

    def is_stale(self) -> bool:
        return self.answer.done() or time.monotonic() >= self.expires


@dataclass
class Flight:
    """One request's part in the flight of its cache key. Enter it to look the key up; then
    ``entry`` is an answer (from the cache or the request that led), or ``None`` and the request
    asks the backend itself and lands its answer with :meth:`land` (leaders share it)."""

    cache: ResponseCache
    plan: CachePlan
    max_wait_s: float
    lease_s: float
    """The longest this request may lead (its remaining budget): the lock is renewed no longer."""
    entry: CacheEntry | None = None
    is_leader: bool = False
    """This request's answer is handed to the identical requests waiting in this process."""
    is_store_down: bool = False
    _local: LocalFlight | None = None
    _token: str | None = None
    _renewal: asyncio.Task[None] | None = None
    _is_settled: bool = field(default=False)
    _outlives_scope: bool = False

    async def __aenter__(self) -> Flight:
        try:
            await self._join()
        except BaseException:
            await self._settle()
            raise
        return self

    async def __aexit__(
        self, kind: type[BaseException] | None, error: BaseException | None, trace: TracebackType | None
    ) -> None:
        if not self._outlives_scope:
            await self._settle()

    def outlive_scope(self) -> None:
        """The request hands the flight on (to a stream, whose end calls :meth:`aclose`): leaving the
        ``async with`` no longer settles it. Called only once nothing in the scope can fail any more."""
        self._outlives_scope = True

    async def aclose(self) -> None:
        """Settle a flight that outlived its scope: waiting requests ask for themselves, the lock goes."""
        await self._settle()

    async def land(self, entry: CacheEntry | None, has_tool_calls: bool = False) -> bool:
        """Store the answer if the policy allows it and hand it to waiting requests; says whether it
        was stored. Never raises; only the first call of a flight hands anything over."""
        storable = entry is not None and self.cache.may_store(self.plan, entry, has_tool_calls)
        self._hand_over(entry if storable else None)
        if not storable or entry is None:
            await self._settle()
            return False
        lock = (self.plan.key + LOCK, self._token) if self._token is not None else None
        stored = await self.cache.write(self.plan, entry, lock)  # the entry and the lock's release: one trip
        if stored:
            self._token = None
        await self._settle()
        return stored

    async def share(self, entry: CacheEntry) -> None:
        """Hand an answer found elsewhere (the semantic cache) to waiting requests, storing nothing."""
        self._hand_over(entry)
        await self._settle()

    async def _join(self) -> None:
        flights = self.cache.flights
        local = flights.get(self.plan.key)
        if local is not None and not local.is_stale():
            self.entry = await self._follow_locally(local)
            return
        self._local = LocalFlight(asyncio.get_running_loop().create_future(), time.monotonic() + self.max_wait_s)
        flights[self.plan.key] = self._local
        self.is_leader = True
        try:
            self.entry = await self._lead_or_follow_replica()
        except StoreUnavailable:
            self.is_store_down = True
            return
        if self.entry is not None:
            self.is_leader = False
            self._hand_over(self.entry)

    async def _follow_locally(self, local: LocalFlight) -> CacheEntry | None:
        try:
            async with asyncio.timeout(max(0.0, min(self.max_wait_s, local.expires - time.monotonic()))):
                return await asyncio.shield(local.answer)
        except TimeoutError:
            return None

    async def _lead_or_follow_replica(self) -> CacheEntry | None:
        """The entry, or else the store's lock, in one round trip; while another replica holds the
        lock, wait for its answer or for its lock to go (then take it). Raises ``StoreUnavailable``
        as soon as the store fails."""
        give_up_at = time.monotonic() + self.max_wait_s
        name = self.plan.key + LOCK
        while True:
            entry, self._token = await self.cache.read_or_lock(self.plan, name, int(LOCK_TTL_S * 1000))
            if entry is not None:
                return entry
            if self._token is not None:
                self._renewal = asyncio.get_running_loop().create_task(self._renew(name, self._token))
                return None
            if time.monotonic() >= give_up_at:
                return None  # ask the backend without the lock: the other replica is slow, not gone
            await asyncio.sleep(POLL_S)

    async def _renew(self, name: str, token: str) -> None:
        give_up_at = time.monotonic() + self.lease_s
        while time.monotonic() < give_up_at:  # a flight never settled still frees its lock
            await asyncio.sleep(RENEW_EVERY_S)
            with contextlib.suppress(StoreUnavailable):
                if not await self.cache.guard.call(self.cache.store.renew(name, token, int(LOCK_TTL_S * 1000))):
                    return  # expired and perhaps taken by another replica: nothing left to renew

    def _hand_over(self, entry: CacheEntry | None) -> None:
        """Wake this process's waiting requests (synchronous: it happens even while cancelled)."""
        local, self._local = self._local, None
        if local is None:
            return
        if self.cache.flights.get(self.plan.key) is local:
            del self.cache.flights[self.plan.key]
        if not local.answer.done():
            local.answer.set_result(entry)

    async def _settle(self) -> None:
        self._hand_over(None)
        if self._is_settled:
            return
        self._is_settled = True
        if self._renewal is not None:
            self._renewal.cancel()
        token, self._token = self._token, None
        if token is not None:  # compare-and-delete; if this fails the lock expires by itself
            await self.cache.release(self.plan.key + LOCK, token)
