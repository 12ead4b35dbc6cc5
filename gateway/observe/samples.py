"""The dry run's sample: the routing inputs of recent requests, per replica, in memory only.

A privacy choice, on by default and bounded three ways (``TURNOUT_DRY_RUN_*``): how many requests
are kept (the oldest leave first), for how long, and which tenants are never kept. Only what routing
reads is kept: the requested model, the tenant, the ``x-`` headers a rule may match (keys and
cookies never), the API's ``user`` field (a route's variants may stick to it), and the last user
message bounded to the head and tail the router reads.
"""

from __future__ import annotations

import time
from collections import deque
from dataclasses import dataclass

from starlette.datastructures import Headers

from contracts.wire import ChatCompletionRequest
from routers.routing_text import routing_text

SECRET_HEADERS = frozenset({"authorization", "cookie", "x-api-key", "proxy-authorization"})
PREVIEW_CHARS = 80


@dataclass(frozen=True)
class RoutingSample:
    request_id: str
    tenant: str
    model: str
    headers: dict[str, str]
    text: str
    at: float
    user: str | None = None

    @property
    def preview(self) -> str:
        return self.text[:PREVIEW_CHARS]

    def request(self) -> ChatCompletionRequest:
        body: dict[str, object] = {"model": self.model, "messages": [{"role": "user", "content": self.text}]}
        return ChatCompletionRequest.model_validate(body | ({"user": self.user} if self.user else {}))


class RoutingSamples:
    def __init__(self, size: int, ttl_s: float, excluded_tenants: frozenset[str] = frozenset()) -> None:
        self._ring: deque[RoutingSample] = deque(maxlen=max(size, 1))
        self._is_on = size > 0
        self._ttl_s = ttl_s
        self._excluded = excluded_tenants

    def add(self, request_id: str, tenant: str, chat: ChatCompletionRequest, headers: Headers) -> None:
        if not self._is_on or tenant in self._excluded:
            return
        kept = {name: value for name, value in headers.items() if name.startswith("x-") and name not in SECRET_HEADERS}
        user = (chat.model_extra or {}).get("user")
        sample = RoutingSample(
            request_id,
            tenant,
            chat.model,
            kept,
            routing_text(chat),
            time.monotonic(),
            user if isinstance(user, str) else None,
        )
        self._ring.append(sample)

    def recent(self) -> list[RoutingSample]:
        """The samples younger than the TTL, oldest first; older ones are dropped."""
        oldest = time.monotonic() - self._ttl_s
        while self._ring and self._ring[0].at < oldest:
            self._ring.popleft()
        return list(self._ring)
