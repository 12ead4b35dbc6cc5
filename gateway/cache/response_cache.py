"""The response cache: who may read and write which entry, and failing open.

Every store call goes through :class:`gateway.store_guard.StoreGuard` (a failing store serves
uncached); identical concurrent misses share one backend call through
:mod:`gateway.cache.single_flight`.
"""

from __future__ import annotations

import contextlib
import logging
from dataclasses import dataclass

from pydantic import BaseModel, ValidationError

from contracts.wire import ChatCompletion, ChatCompletionRequest
from gateway.cache.key import cache_key, is_deterministic
from gateway.cache.single_flight import Flight, LocalFlight
from gateway.cache.store import CacheStore
from gateway.observe.metrics import Metrics
from gateway.rules import CachePolicy
from gateway.store_guard import StoreGuard, StoreUnavailable

log = logging.getLogger("turnout")


class CacheEntry(BaseModel):
    completion: str
    """The answer as first served, JSON."""
    backend: str
    created: float
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost_usd: float = 0.0
    guardrails: str | None = None
    """The fingerprint of the output guardrails that checked it (``None``: none did)."""

    def answer(self) -> ChatCompletion:
        return ChatCompletion.model_validate_json(self.completion)


@dataclass(frozen=True)
class CachePlan:
    key: str
    namespace: str
    policy: CachePolicy
    primary: str
    """The route's first backend: only its answers fill the cache unless ``fallback_fills``."""
    identity: str
    """What answers on the route's primary backend (``model_identity``): part of the key."""
    can_read: bool
    can_write: bool


class ResponseCache:
    def __init__(self, store: CacheStore, metrics: Metrics, timeout_s: float) -> None:
        self.store = store
        self.guard = StoreGuard("cache store", timeout_s, metrics.observe_cache_error)
        self.flights: dict[str, LocalFlight] = {}
        """Cache key to the flight in this process that identical requests wait on."""

    def plan(
        self,
        route: str,
        policy: CachePolicy,
        primary: str,
        identity: str,
        request: ChatCompletionRequest,
        tenant: str,
        cache_control: str,
    ) -> CachePlan:
        eligible = policy.enabled and (policy.mode == "always" or is_deterministic(request))
        directives = {d.strip().lower() for d in cache_control.split(",")}
        namespace = "shared" if policy.shared else f"t:{tenant}"
        return CachePlan(
            # Hashing the whole request costs; a request the cache will not touch skips it.
            key=cache_key(namespace, route, identity, request) if eligible else "",
            namespace=namespace,
            policy=policy,
            primary=primary,
            identity=identity,
            can_read=eligible and "no-cache" not in directives,
            can_write=eligible and "no-store" not in directives,
        )

    def _parsed(self, plan: CachePlan, raw: bytes | None) -> CacheEntry | None:
        if raw is None:
            return None
        try:
            return CacheEntry.model_validate_json(raw)
        except ValidationError:
            log.warning("dropping an unreadable cache entry %s", plan.key)
            return None

    def flight(self, plan: CachePlan, wait_s: float) -> Flight:
        """The request's part in the single flight of its key, waiting at most ``wait_s`` (and at most
        the policy's ``single_flight_wait_ms``) for an identical request already asking the backend."""
        return Flight(self, plan, min(wait_s, plan.policy.single_flight_wait_ms / 1000), lease_s=wait_s)

    async def store_answer(self, plan: CachePlan, entry: CacheEntry, has_tool_calls: bool) -> bool:
        """Store an answer asked for outside any flight, if the policy allows it; never raises."""
        return self.may_store(plan, entry, has_tool_calls) and await self.write(plan, entry)

    async def read_or_lock(self, plan: CachePlan, lock: str, ttl_ms: int) -> tuple[CacheEntry | None, str | None]:
        """The entry, or else the single-flight lock's token (``None``: another holds it), in one
        round trip; raises ``StoreUnavailable`` when the store failed."""
        raw, token = await self.guard.call(self.store.read_or_lock(plan.key, lock, ttl_ms))
        return self._parsed(plan, raw), token

    async def write(self, plan: CachePlan, entry: CacheEntry, lock: tuple[str, str] | None = None) -> bool:
        """Store ``entry`` (and release ``lock``, name and token, in the same round trip); says
        whether the store took it. Never raises."""
        value = entry.model_dump_json().encode()
        ttl_s = plan.policy.ttl_s
        operation = (
            self.store.set(plan.key, value, ttl_s)
            if lock is None
            else self.store.write_and_unlock(plan.key, value, ttl_s, *lock)
        )
        try:
            await self.guard.call(operation)
        except StoreUnavailable:
            return False
        return True

    async def release(self, name: str, token: str) -> None:
        """Release a lock this process took, if ``token`` still owns it. Never raises."""
        with contextlib.suppress(StoreUnavailable):
            await self.guard.call(self.store.unlock(name, token))

    def may_store(self, plan: CachePlan, entry: CacheEntry, has_tool_calls: bool) -> bool:
        if not plan.can_write or (entry.backend != plan.primary and not plan.policy.fallback_fills):
            return False
        if has_tool_calls and not plan.policy.tool_calls:
            return False
        return len(entry.completion) <= plan.policy.max_entry_bytes
