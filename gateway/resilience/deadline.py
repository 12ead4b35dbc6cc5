"""Time as a value: a request's deadline, made once and passed down to every backend attempt."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass

from contracts.errors import RequestError

BUDGET_HEADER = "x-turnout-budget-ms"
WHOLE_NUMBER = re.compile(r"[0-9]{1,12}")
"""ASCII digits only: ``str.isdigit`` also takes ``²`` and ``١``, which ``int`` then refuses or reads."""
CLOCK_GRAIN_S = 0.002
"""Event loops wake timers up to a millisecond early (uvloop counts whole milliseconds): a timer set
for the deadline may see a sliver of time left. Less than this left is none."""


@dataclass(frozen=True)
class Deadline:
    """When the answer is due (``time.monotonic()`` seconds, the event loop's clock) and, for
    streams, when its first chunk is."""

    started: float
    budget_ms: int
    expires: float
    first_chunk_expires: float
    is_tightened: bool = False
    """The client asked for less than the route's budget."""

    @classmethod
    def start(
        cls, budget_ms: int, first_chunk_ms: int | None = None, now: float | None = None, is_tightened: bool = False
    ) -> Deadline:
        started = time.monotonic() if now is None else now
        first = min(first_chunk_ms or budget_ms, budget_ms)
        return cls(started, budget_ms, started + budget_ms / 1000, started + first / 1000, is_tightened)

    def remaining(self, now: float | None = None) -> float:
        """Seconds left, never negative."""
        return max(0.0, self.expires - (time.monotonic() if now is None else now))

    def remaining_first_chunk(self, now: float | None = None) -> float:
        return max(0.0, self.first_chunk_expires - (time.monotonic() if now is None else now))

    def elapsed_ms(self, now: float | None = None) -> int:
        return round(((time.monotonic() if now is None else now) - self.started) * 1000)

    def is_expired(self, now: float | None = None, first_chunk: bool = False) -> bool:
        left = self.remaining_first_chunk(now) if first_chunk else self.remaining(now)
        return left <= CLOCK_GRAIN_S


def requested_budget_ms(header: str | None, route_budget_ms: int) -> int:
    """The route's budget, tightened (never loosened) by the client's ``x-turnout-budget-ms``."""
    if header is None:
        return route_budget_ms
    value = header.strip()
    if WHOLE_NUMBER.fullmatch(value) is None or int(value) == 0:
        raise RequestError(
            f"{BUDGET_HEADER} must be a positive whole number of milliseconds, got {header!r}",
            param=BUDGET_HEADER,
            code="invalid_budget",
        )
    return min(int(value), route_budget_ms)
